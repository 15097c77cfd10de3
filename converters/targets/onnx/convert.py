"""The ONNX target: the exported FP32 file, an FP16 copy (weights and compute in float16, float32 input and
output), and INT8 as a QDQ model from ONNX Runtime's static quantisation (per-channel weights), calibrated on
the calibration batch.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgepose.files import atomic_write
from edgepose.runtimes.artifact import KEY

from ..base import Context, Converted, Timer, quiet, register_target, require, version_of
from ..export import INPUT_NAME, OPSET, OUTPUT_NAME, onnx_io


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


def to_fp16(src: Path, dst: Path) -> dict[str, Any]:
    """Weights and compute in float16, float32 input and output (a Cast at each end), with ONNX Runtime's own
    converter. For GPUs (CUDA / TensorRT execution providers); on CPU, ONNX Runtime runs most fp16 ops through
    casts and is slower than FP32."""
    require("onnxruntime", target="ONNX FP16")
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    with quiet("ONNX FP16 conversion"):
        half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    onnx.save(half, str(dst))
    return {"method": "onnxruntime.transformers.float16", "weights": "float16", "compute": "float16",
            "io": "float32 (cast inside the graph)"}  # fmt: skip


def convert(ctx: Context, precisions: list[str]) -> list[Converted]:
    """The exported FP32 file as the fp32 artifact; its float16 twin as fp16; an ONNX Runtime QDQ model as int8."""
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
            elif p == "fp16":
                details = to_fp16(ctx.onnx_path, dst)
            else:
                ctx.log(f"onnx int8: ONNX Runtime static quantisation on {len(ctx.calib)} crops")
                details = quantize_onnx(ctx.onnx_path, dst, ctx.calib_inputs(), 1 if not ctx.dynamic_batch else 8)
        out.append(Converted("onnx", p, dst, input=inp, output=outp, tools=tools, details=details, seconds=t.seconds))
    return out


def embed_onnx(path: Path, text: str) -> None:
    import onnx

    model = onnx.load(str(path))
    props = [p for p in model.metadata_props if p.key != KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    model.metadata_props.add(key=KEY, value=text)
    atomic_write(path, model.SerializeToString())


# The head form ``--head auto`` exports per precision (converters/transforms.py), chosen by
# benchmarks/head_forms.py: INT8 with the 3x3 form ~1.75x faster than with ConvTranspose (which ONNX Runtime
# keeps in float between Q/DQ pairs; the 3x3 convolutions run as int8; the 2x2 form gained ~1.1x), heatmap SNR
# 19 -> 28.6 dB, and faster than FP32. FP32 and FP16 keep the original head: on the CPU provider the rewrites
# were within a few % of it (0.94-1.10x over four loaded runs), FP16 ~0.9x.
HEAD_FORMS = {"fp32": "deconv", "fp16": "deconv", "int8": "subpixel3x3"}

register_target("onnx", ".onnx", ("fp32", "fp16", "int8"), requires=("onnx", "onnxruntime"), embed=embed_onnx,
                head_forms=HEAD_FORMS)(convert)
