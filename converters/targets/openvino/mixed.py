"""The OpenVINO target's INT8 accuracy-control parts.

* The mixed-precision builder for edgepose's layer search: ``nncf.quantize`` (as the plain artifact) with an
  ``IgnoredScope`` naming, for each layer kept in float, the compute ops producing it and the ops its
  ``FakeQuantize`` feeds (:func:`.graph.openvino_float_ops`).
* ``--openvino-control nncf``: NNCF's own ``nncf.quantize_with_accuracy_control`` instead, its validation
  function returning the control metric and one value per image (mean OKS or PCK), so that NNCF ranks its
  quantiser groups by real metric differences. It re-ranks every remaining quantiser group on the control images
  after each step that did not help (measured on the hard case of ``benchmarks/int8_control.py``: ~2 min per
  ranking pass on 2 cores), and its own validation runs the model as NNCF compiles it, so its reached drop can
  differ from the shipped runtime's: the result is re-scored here and fails like the search does when over
  budget.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgepose.errors import EdgeposeError

from ...base import Context, Converted, quiet
from ...int8.control import ControlSet
from ...int8.search import candidate_path, scorer
from .convert import quantize_nncf, stable_names
from .graph import openvino_float_ops, openvino_quantized_ops

NNCF_RANKING_IMAGES = 25  # NNCF ranks each quantiser group on the control images that lose the most, this many


class OpenvinoMixed:
    """NNCF INT8 IRs made as the plain artifact is (``quantize_nncf``, same calibration), any layers in float:
    a layer (an op whose output is fake-quantised, named as in the per-layer report) maps to the ops NNCF
    leaves unquantised for it (:func:`.graph.openvino_float_ops`)."""

    method_note = " (candidates: nncf.quantize, IgnoredScope: the ops making and reading them)"

    def __init__(self, src: Path, calib: np.ndarray, plain_ir: Path, dynamic_batch: bool, ranges: str = "default"):
        import openvino as ov

        self.ranges = ranges
        self.ov, self.core, self.src, self.calib, self.dynamic_batch = ov, ov.Core(), src, calib, dynamic_batch
        self.float_model = src  # the graph reader compares with the ONNX file OpenVINO reads
        names = {op.get_friendly_name() for op in self.core.read_model(str(src)).get_ordered_ops()}
        self.compute = {k: [o for o in v if o in names]
                        for k, v in openvino_float_ops(self.core.read_model(str(plain_ir))).items()}  # fmt: skip

    def ops(self, layers: list[str]) -> list[str]:
        """The ops NNCF leaves unquantised for ``layers`` (in order, each once)."""
        return list(dict.fromkeys(o for la in layers for o in self.compute.get(la, [])))

    def build(self, layers: list[str], dst: Path) -> Path:
        q, _ = quantize_nncf(self.core.read_model(str(self.src)), self.calib, self.dynamic_batch, self.ops(layers),
                             self.ranges)  # fmt: skip
        with quiet("OpenVINO save_model"):
            self.ov.save_model(stable_names(q), str(dst), compress_to_fp16=False)
        return dst


def mixed(c: Converted, ctx: Context, threads: int | None = None, ranges: str = "default") -> Any:
    """The builder the search asks for (registered in ``__init__``), with the range option ``ranges``
    (:data:`.convert.RANGES`)."""
    ctx.log(f"openvino int8 ({ranges}): each candidate is NNCF-quantised with the float layers left out")
    return OpenvinoMixed(ctx.onnx_path, ctx.calib, c.path, ctx.dynamic_batch, ranges)


def nncf_control(c: Converted, ctx: Context, control: ControlSet, budget: float,
                 threads: int | None = None) -> dict[str, Any]:  # fmt: skip
    """``--openvino-control nncf``: NNCF's ``quantize_with_accuracy_control``, re-scored with the runtime edgepose
    ships (see the module doc)."""
    import openvino as ov

    with quiet("importing NNCF"):
        import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    logging.getLogger("nncf").setLevel(logging.ERROR)
    core = ov.Core()
    items = [ctx.calib[i : i + 1] for i in range(len(ctx.calib))]

    def validate(compiled: Any, data: Any) -> tuple[float, list[float]]:
        images = [int(i) for i in data]
        return control.score_images(lambda x: np.concatenate([compiled(x[i : i + 1])[0] for i in range(len(x))]),
                                    images)  # fmt: skip

    ctx.log(f"openvino int8: nncf.quantize_with_accuracy_control (max drop {budget:g} on {len(control.images)} "
            f"images; NNCF re-ranks its quantiser groups after every step that does not help: minutes per pass)")
    with quiet("NNCF accuracy control"):
        q = nncf.quantize_with_accuracy_control(
            core.read_model(str(ctx.onnx_path)), nncf.Dataset(items), nncf.Dataset(list(range(len(control.images)))),
            validate, max_drop=budget, drop_type=nncf.DropType.ABSOLUTE, preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(items), fast_bias_correction=True,
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                num_ranking_workers=1, ranking_subset_size=min(len(control.images), NNCF_RANKING_IMAGES)))
    dst = candidate_path(c, ctx.workdir, 0)
    with quiet("OpenVINO save_model"):
        ov.save_model(q, str(dst), compress_to_fp16=False)
    plain_ops = openvino_quantized_ops(core.read_model(str(c.path)))
    float_layers = sorted(plain_ops - openvino_quantized_ops(core.read_model(str(dst))))
    value = scorer(control, threads)(dst)
    drop = float(control.reference - value)
    if drop > budget + 1e-12:
        raise EdgeposeError(f"openvino int8: best {control.metric} drop reached on the control split {drop:.4f} "
                            f"({len(float_layers)} op(s) in float, NNCF's accuracy control; scored with the "
                            f"OpenVINO runtime edgepose ships) > budget {budget:g}; nothing written")  # fmt: skip
    return {"path": dst, "float_layers": float_layers, "drop": drop, "value": value, "steps": [],
            "method": "nncf.quantize_with_accuracy_control (per-image OKS/PCK values)"}
