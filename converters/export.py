"""PyTorch -> ONNX, the step every target starts from: backbone + head as mmpose's ``pytorch2onnx`` exports it
(NCHW normalised ``input``, raw ``heatmaps`` out), one self-contained file, then ``onnx.checker``.

The legacy TorchScript exporter is used (``dynamo=False``): for this all-convolution model it gives a small,
clean graph (Conv/Clip/Add/ConvTranspose/BatchNormalization/Relu) at opset 13, which onnx2tf, OpenVINO and
TensorRT all take; onnxsim, when installed, then folds the leftover Identity/Constant nodes.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from .base import io_spec, quiet, require

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
