"""ONNX -> OpenVINO IR: the ONNX frontend (``Core.read_model``, what ``openvino.convert_model`` uses for ONNX)
and ``save_model`` for FP32 (``compress_to_fp16=False``) and FP16 (weights stored as f16); NNCF post-training
quantisation for INT8.

NNCF: ``nncf.quantize`` with the MIXED preset (symmetric weights, asymmetric activations: the heatmap head's
outputs are signed), per-channel weights, fast bias correction, on every crop of the calibration batch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgepose.files import atomic_write
from edgepose.runtimes.artifact import KEY

from ...base import Context, Converted, Timer, io_spec, quiet, require, version_of


def _io(model: Any) -> tuple[dict, dict]:
    def desc(port: Any) -> dict:
        shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
        return io_spec(port.get_any_name(), shape, port.get_element_type().to_dtype().name)

    return desc(model.inputs[0]), desc(model.outputs[0])


def stable_names(model: Any) -> Any:
    """Give the nodes OpenVINO named itself (``Constant_13627``: a process-wide counter) names from their place
    in the graph, so that the same model saved twice, in one process or two, gives the same XML bytes."""
    for i, op in enumerate(model.get_ordered_ops()):
        if op.get_friendly_name() == op.get_name():  # no name of its own: the auto-generated one
            op.set_friendly_name(f"{op.get_type_name()}_{i}")
    return model


# The range / correction options accuracy control tries before keeping any layer in float (``ranges=`` in the
# registration), cheapest first; the first is the plain artifact's: name -> what it is
RANGES = {
    "default": "nncf.quantize defaults: min-max activation ranges, fast bias correction (the plain artifact's)",
    "quantile": "activations_range_estimator_params=RangeEstimatorParametersSet.MEAN_QUANTILE (outliers clipped)",
}
# Not listed: fast_bias_correction=False (NNCF's full BiasCorrection) gave the demo model's IR the very same
# output as the default on the bundled crops (a smoke check, 2026-12-06): a wasted quantisation per search.


def quantize_nncf(model: Any, calib: Any, dynamic_batch: bool, float_ops: list[str] | None = None,
                  ranges: str = "default") -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """``float_ops``: op names NNCF leaves unquantised (``IgnoredScope``), the accuracy-control loop's lever;
    ``ranges``: one of :data:`RANGES`."""
    require("nncf", target="OpenVINO INT8")
    with quiet("importing NNCF"):  # it imports TensorFlow and torch when present, with their start-up chatter
        import nncf

    logging.getLogger("nncf").setLevel(logging.ERROR)
    items = [calib[i : i + 1] for i in range(len(calib))]
    ignored = {"ignored_scope": nncf.IgnoredScope(names=list(float_ops))} if float_ops else {}
    if ranges == "quantile":
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        ignored["advanced_parameters"] = AdvancedQuantizationParameters(
            activations_range_estimator_params=RangeEstimatorParametersSet.MEAN_QUANTILE)
    fast = True
    with quiet("NNCF quantisation"):
        q = nncf.quantize(
            model,
            nncf.Dataset(items),
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(items),
            fast_bias_correction=fast,
            **ignored,
        )
    details = {"method": "nncf.quantize", "preset": "mixed", "subset_size": len(items), "fast_bias_correction": fast}
    if ranges != "default":
        details["ranges"] = ranges
    return q, details


def convert(ctx: Context, precisions: list[str]) -> list[Converted]:
    require("openvino", target="OpenVINO")
    import openvino as ov

    tools = {"openvino": version_of("openvino")}
    core = ov.Core()
    # read_model goes straight to the ONNX frontend (convert_model first probes the file as a torch.export archive)
    with quiet("OpenVINO reading the ONNX model"):
        model = core.read_model(str(ctx.onnx_path))
    inp, outp = _io(model)
    out = []
    for p in precisions:
        dst = ctx.artifact_path(p, ".xml")
        details: dict[str, Any] = {}
        with Timer() as t:
            if p == "int8":
                ctx.log(f"openvino int8: NNCF on {len(ctx.calib)} crops")
                # NNCF changes the model in place in some versions: quantise a fresh copy
                q, details = quantize_nncf(core.read_model(str(ctx.onnx_path)), ctx.calib_inputs(), ctx.dynamic_batch)
                tools = {**tools, "nncf": version_of("nncf")}
                with quiet("OpenVINO save_model"):
                    ov.save_model(stable_names(q), str(dst), compress_to_fp16=False)
            else:
                with quiet("OpenVINO save_model"):
                    ov.save_model(stable_names(model), str(dst), compress_to_fp16=(p == "fp16"))
                details = {"weights": "f16" if p == "fp16" else "f32"}
        out.append(Converted("openvino", p, dst, extra_files=[dst.with_suffix(".bin")], input=inp, output=outp,
                             tools=dict(tools), details=details, seconds=t.seconds))  # fmt: skip
        ctx.log(f"openvino {p}: {dst.name} in {t.seconds:.1f} s")
    return out


def embed_openvino(path: Path, text: str) -> None:
    """Add/replace ``<rt_info><edgepose value=.../></rt_info>`` in the IR XML (the .bin is untouched).

    Editing the XML keeps the weights byte for byte (re-saving through OpenVINO could re-encode them); the
    entry is what ``Model.get_rt_info('edgepose')`` returns once OpenVINO reads the file.
    """
    import xml.etree.ElementTree as ET

    tree = ET.parse(path)
    root = tree.getroot()
    rt = root.find("rt_info")
    if rt is None:
        rt = ET.SubElement(root, "rt_info")
    for old in rt.findall(KEY):
        rt.remove(old)
    ET.SubElement(rt, KEY, {"value": text})
    atomic_write(path, ET.tostring(root, encoding="utf-8", xml_declaration=True))
