"""PyTorch -> ONNX: backbone + head as mmpose's ``pytorch2onnx`` exports it (NCHW normalised ``input``, raw
``heatmaps`` out), one self-contained file, then ``onnx.checker``. INT8 is a QDQ model from ONNX Runtime's
static quantisation (per-channel weights), calibrated on the calibration batch.

The legacy TorchScript exporter is used (``dynamo=False``): for this all-convolution model it gives a small,
clean graph (Conv/Clip/Add/ConvTranspose/BatchNormalization/Relu) at opset 13, which onnx2tf, OpenVINO and
TensorRT all take; onnxsim, when installed, then folds the leftover Identity/Constant nodes.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .base import Context, Converted, Timer, io_spec, quiet, register_target, require, version_of

OPSET = 13
INPUT_NAME = "input"
OUTPUT_NAME = "heatmaps"


def export_onnx(model: Any, spec: Any, path: Path, opset: int = OPSET, dynamic_batch: bool = False) -> Path:
    """Export ``model`` for ``spec`` to ``path`` (FP32), simplify when onnxsim is there, and check it."""
    require("torch", "onnx", target="ONNX export")
    import onnx
    import torch

    w, h = spec.input_size
    dummy = torch.zeros(1, 3, h, w)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with quiet("ONNX export"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (dummy,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamic_axes=axes,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    try:
        import onnxsim
    except ImportError:
        onnxsim = None
    if onnxsim is not None:
        with quiet("onnxsim"):
            simplified, ok = onnxsim.simplify(proto)
        if ok:
            proto = simplified
    proto.producer_name = "edgepose"
    onnx.save(proto, str(path))
    with quiet("onnx.checker"):
        onnx.checker.check_model(str(path), full_check=True)
    return path


def onnx_io(path: Path) -> tuple[dict, dict]:
    """Input and output descriptions (name, shape with None for a dynamic dim, dtype) of an ONNX file."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph

    def desc(v: Any) -> dict:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
        return io_spec(v.name, dims, "float32")

    return desc(graph.input[0]), desc(graph.output[0])


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over the calibration batch, one sample at a time."""

    def __init__(self, batch: np.ndarray, batch_size: int):
        self.batch, self.bs, self.i = batch, batch_size, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.batch):
            return None
        x = self.batch[self.i : self.i + self.bs]
        self.i += self.bs
        return {INPUT_NAME: np.ascontiguousarray(x)}

    def rewind(self) -> None:
        self.i = 0


def quantize_onnx(src: Path, dst: Path, calib: np.ndarray, batch_size: int = 1) -> dict[str, Any]:
    """Static INT8 (QDQ, per-channel symmetric int8 weights, int8 activations, MinMax) with ONNX Runtime.

    The final 1x1 conv (K heatmaps out) stays float: heatmap peaks need the resolution, it costs ~0.3 % of
    the MACs, and ONNX Runtime 1.23's fused int8 kernel for it (QLinearConv, K=17) returned wrong values at
    every 16th column of the last channel on this AVX-512 machine (SNR 20 dB instead of 58 dB).
    """
    require("onnxruntime", target="ONNX INT8")
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = dst.with_name(dst.stem + ".pre.onnx")
    graph = onnx.load(str(src), load_external_data=False).graph
    head = [n.name for n in graph.node if OUTPUT_NAME in n.output]
    with quiet("ONNX INT8 quantisation"):
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(dst),
            _Reader(calib, batch_size),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=head,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    pre.unlink(missing_ok=True)
    return {"method": "onnxruntime.quantize_static", "format": "QDQ", "per_channel": True,
            "activations": "int8 asymmetric", "weights": "int8 symmetric", "calibration": "MinMax",
            "num_calibration": int(len(calib)), "float_nodes": head}  # fmt: skip


@register_target("onnx", ".onnx", ("fp32", "int8"), requires=("onnx", "onnxruntime"))
def convert(ctx: Context, precisions: list[str]) -> list[Converted]:
    """The exported FP32 file as the fp32 artifact; an ONNX Runtime QDQ model as the int8 one."""
    tools = {"torch": version_of("torch"), "onnx": version_of("onnx"), "onnxruntime": version_of("onnxruntime"),
             "onnxsim": version_of("onnxsim")}  # fmt: skip
    out = []
    inp, outp = onnx_io(ctx.onnx_path)
    for p in precisions:
        dst = ctx.artifact_path(p, ".onnx")
        with Timer() as t:
            if p == "fp32":
                shutil.copyfile(ctx.onnx_path, dst)
                details: dict[str, Any] = {"opset": OPSET, "exporter": "torch.onnx (TorchScript)"}
            else:
                ctx.log(f"onnx int8: ONNX Runtime static quantisation on {len(ctx.calib)} crops")
                details = quantize_onnx(ctx.onnx_path, dst, ctx.calib, 1 if not ctx.dynamic_batch else 8)
        out.append(Converted("onnx", p, dst, input=inp, output=outp, tools=tools, details=details, seconds=t.seconds))
    return out
