"""PyTorch -> ONNX, the step every target starts from: backbone + head as mmpose's ``pytorch2onnx`` exports it
(NCHW normalised ``input``, raw ``heatmaps`` out), one self-contained file, then ``onnx.checker``.

With ``input_kind="uint8_nhwc_rgb"`` (``edgepose convert --input uint8``) the model is wrapped first
(:class:`Uint8Input`): the input is the crop's uint8 RGB bytes, N x H x W x 3, and the cast, ``(x - mean) / std``
and the NHWC -> NCHW transpose are the graph's first ops, so an app feeds the bytes it has and skips both.

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


def uint8_input_module(model: Any, spec: Any, layout: str = "NHWC") -> Any:
    """``model`` behind a uint8 RGB input: cast to float, ``(x - mean) / std`` per channel (0..255 scale), NHWC ->
    NCHW, then the model (what :func:`edgepose.processing.normalize` does outside, up to float32 rounding: it
    computes ``(x/255 - mean/255) / (std/255)``). ``layout="NCHW"`` leaves out the transpose: the TFLite target
    feeds that to onnx2tf, which moves channels last itself (a transpose in the graph confuses its layout logic)."""
    import torch

    shape = (1, 1, 1, 3) if layout == "NHWC" else (1, 3, 1, 1)

    class Uint8Input(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(shape))
            self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(shape))

        def forward(self, x: Any) -> Any:
            x = (x.to(torch.float32) - self.mean) / self.std
            return self.model(x.permute(0, 3, 1, 2) if layout == "NHWC" else x)

    return Uint8Input().eval()


def export_onnx(
    model: Any, spec: Any, path: Path, opset: int = OPSET, dynamic_batch: bool = False, input_kind: str | None = None,
    uint8_layout: str = "NHWC", plain_names: bool = False,
) -> Path:
    """Export ``model`` for ``spec`` to ``path`` (FP32), simplify when onnxsim is there, and check it.

    ``input_kind`` ``INPUT_UINT8``: behind :func:`uint8_input_module` (``uint8_layout`` "NHWC", or "NCHW" for
    onnx2tf). ``plain_names``: node names without the exporter's leading ``/`` (the task asks for it: onnx2tf
    names some TensorFlow variables after the node, and a TF root scope may not start with ``/``; the person
    detector's depthwise FPN convolutions hit that)."""
    require("torch", "onnx", target="ONNX export")
    import onnx
    import torch

    from edgepose.processing import INPUT_FLOAT, INPUT_UINT8

    w, h = spec.input_size
    dummy = torch.zeros(1, 3, h, w)
    if (input_kind or INPUT_FLOAT) == INPUT_UINT8:
        model = uint8_input_module(model, spec, uint8_layout)
        dummy = torch.zeros((1, h, w, 3) if uint8_layout == "NHWC" else (1, 3, h, w), dtype=torch.uint8)
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
    if plain_names:
        for node in proto.graph.node:
            node.name = node.name.lstrip("/")
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
        dtype = onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name
        return io_spec(v.name, dims, dtype)

    return desc(graph.input[0]), desc(graph.output[0])
