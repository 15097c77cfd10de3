"""The ONNX target's mixed-precision INT8 builder: ONNX Runtime's own pieces of ``quantize_static``, calibrated
once (``create_calibrator``, MinMax) and re-quantised per layer set (``QDQQuantizer`` with ``nodes_to_exclude``),
with the settings of :mod:`.settings`; with no layer excluded the result is ``quantize_static``'s (a test
checks it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...base import Context, Converted, quiet
from .settings import (
    EXTRA_OPTIONS,
    PER_CHANNEL,
    RANGES,
    REDUCE_RANGE,
    Reader,
    float_head,
    pre_process,
    quant_types,
    range_method,
)


class OnnxMixed:
    """ORT QDQ models of one calibration, any set of nodes left in float (see the module doc)."""

    def __init__(self, src: Path, calib: np.ndarray, workdir: Path, batch_size: int = 1, ranges: str = "minmax"):
        from onnxruntime.quantization import create_calibrator
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

        self.float_model = src  # what the graph reader compares the candidates with
        self.pre = workdir / "mixed.pre.onnx"
        self.op_types = list(set(list(QLinearOpsRegistry) + list(QDQRegistry)))
        self.head = float_head(src)  # float in every build (quantize_onnx)
        method, extra = range_method(ranges)
        self.ranges_note = RANGES[ranges][2]
        with quiet(f"ONNX calibration ({ranges})"):
            pre_process(src, self.pre)
            aug = workdir / f"mixed.aug.{ranges}.onnx"
            cal = create_calibrator(self.pre, self.op_types, augmented_model_path=str(aug), calibrate_method=method,
                                    extra_options=extra)  # fmt: skip
            cal.collect_data(Reader(calib, batch_size))
            self.ranges = cal.compute_data()
        del cal

    def build(self, float_nodes: list[str], dst: Path) -> Path:
        from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
        from onnxruntime.quantization.quant_utils import load_model_with_shape_infer, update_opset_version

        weights, activations = quant_types()
        with quiet("ONNX INT8 quantisation"):
            model = update_opset_version(load_model_with_shape_infer(self.pre), weights)
            q = QDQQuantizer(model, PER_CHANNEL, REDUCE_RANGE, weights, activations, self.ranges, [],
                             self.head + list(float_nodes), self.op_types, dict(EXTRA_OPTIONS))  # fmt: skip
            q.quantize_model()
            q.model.save_model_to_file(str(dst), False)
        return dst


def mixed(c: Converted, ctx: Context, threads: int | None = None, ranges: str = "minmax") -> Any:
    """The builder the search asks for (registered in ``__init__``), calibrated with the range option
    ``ranges`` (:data:`.settings.RANGES`)."""
    ctx.log(f"onnx int8: calibrating once ({ranges}) for the mixed-precision search")
    return OnnxMixed(ctx.onnx_path, ctx.calib, ctx.workdir, 1 if not ctx.dynamic_batch else 8, ranges)
