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

from ...base import Context, Converted, Timer, quiet, require, version_of
from ...export import OPSET, onnx_io
from .settings import DETAILS, Reader, float_head, pre_process, static_options


def quantize_onnx(src: Path, dst: Path, calib: np.ndarray, batch_size: int = 1) -> dict[str, Any]:
    """Static INT8 with ONNX Runtime, with the settings of :mod:`.settings` (the heatmap conv stays float)."""
    require("onnxruntime", target="ONNX INT8")
    from onnxruntime.quantization import quantize_static

    pre = dst.with_name(dst.stem + ".pre.onnx")
    head = float_head(src)
    with quiet("ONNX INT8 quantisation"):
        pre_process(src, pre)
        quantize_static(str(pre), str(dst), Reader(calib, batch_size), nodes_to_exclude=head,
                        **static_options())  # fmt: skip
    pre.unlink(missing_ok=True)
    return {"method": "onnxruntime.quantize_static", **DETAILS, "num_calibration": int(len(calib)),
            "float_nodes": head}  # fmt: skip


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
