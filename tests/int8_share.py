"""The INT8 share of an INT8 artifact's MACs, counted on the artifact itself, independently of edgepose's own
count (``converters/int8/macs.py`` counts on the exported ONNX graph and maps the search's layer names onto it):
the tests of the float cap and ``benchmarks/int8_unseen.py`` hold the metadata's ``int8_macs_share`` against it.

* ONNX (QDQ): a Conv / ConvTranspose / Gemm / MatMul runs in INT8 when its weights come out of a
  ``DequantizeLinear`` (a float layer reads a float initializer directly); shapes from ONNX shape inference.
* TFLite: the flatbuffer read with the schema's generated reader (not the interpreter edgepose's graph reader
  uses): a CONV_2D / DEPTHWISE_CONV_2D / TRANSPOSE_CONV / FULLY_CONNECTED / BATCH_MATMUL runs in INT8 when both its
  data input and its weights are INT8 tensors.
* OpenVINO IR (``openvino.Core().read_model``): a Convolution / GroupConvolution / ConvolutionBackpropData /
  MatMul runs in INT8 when its weights pass through a ``FakeQuantize`` (or are an i8/u8 constant) and its data
  input is a ``FakeQuantize``'s output (through ops that only move values).

Each returns ``(int8_macs, total_macs, float_ops)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def onnx_share(path: str | Path) -> tuple[int, int, list[str]]:
    import onnx
    from onnx import shape_inference

    m = shape_inference.infer_shapes(onnx.load(str(path)))
    g = m.graph
    shapes = {vi.name: [d.dim_value or 1 for d in vi.type.tensor_type.shape.dim]
              for vi in [*g.input, *g.value_info, *g.output]}  # fmt: skip
    shapes.update({i.name: list(i.dims) for i in g.initializer})
    made_by = {o: n for n in g.node for o in n.output}
    int8 = total = 0
    floats = []
    for n in g.node:
        if n.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        x, w, y = shapes[n.input[0]], shapes[n.input[1]], shapes[n.output[0]]
        if n.op_type == "ConvTranspose":
            macs = int(np.prod(x)) * int(np.prod(w[1:]))
        elif n.op_type == "Conv":
            macs = int(np.prod(y)) * int(np.prod(w[1:]))
        else:
            macs = int(np.prod(y)) * int(w[0])
        total += macs
        src = made_by.get(n.input[1])
        if src is not None and src.op_type == "DequantizeLinear":
            int8 += macs
        else:
            floats.append(n.name)
    return int8, total, floats


def tflite_share(path: str | Path) -> tuple[int, int, list[str]]:
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(bytearray(Path(path).read_bytes()), 0)
    ops = schema.BuiltinOperator
    code = {v: k for k, v in vars(ops).items() if not k.startswith("_")}
    sg = m.subgraphs[0]
    int8_types = (schema.TensorType.INT8, schema.TensorType.UINT8)
    int8 = total = 0
    floats = []
    for op in sg.operators:
        oc = m.operatorCodes[op.opcodeIndex]
        name = code.get(max(oc.builtinCode, oc.deprecatedBuiltinCode))
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "BATCH_MATMUL"):
            continue
        t = sg.tensors
        if name == "TRANSPOSE_CONV":  # inputs: output shape, weights (O, kh, kw, I), data
            x, w = t[op.inputs[2]], t[op.inputs[1]]
            macs = int(np.prod(x.shape)) * int(np.prod(w.shape[:3]))
        else:
            x, w = t[op.inputs[0]], t[op.inputs[1]]
            y = t[op.outputs[0]]
            per = {"CONV_2D": np.prod(w.shape[1:]), "DEPTHWISE_CONV_2D": np.prod(w.shape[1:3])}.get(name, w.shape[-1])
            if name == "BATCH_MATMUL":
                per = x.shape[-1]
            macs = int(np.prod(y.shape)) * int(per)
        total += macs
        if x.type in int8_types and w.type in int8_types:
            int8 += macs
        else:
            out = t[op.outputs[0]].name
            floats.append(out.decode() if isinstance(out, bytes) else out)
    return int8, total, floats


_MOVES = ("Reshape", "Transpose", "Concat", "Squeeze", "Unsqueeze", "DepthToSpace", "SpaceToDepth", "Pad",
          "MaxPool", "StridedSlice", "Split", "VariadicSplit")  # fmt: skip
_WEIGHT_PATH = ("Convert", "Subtract", "Multiply", "Reshape", "Transpose", "Unsqueeze", "Squeeze")


def _fq_fed(node) -> bool:
    t = node.get_type_name()
    if t == "FakeQuantize":
        return True
    if t in _MOVES:
        return _fq_fed(node.input_value(0).get_node())
    return False


def _weights_int8(node) -> bool:
    t = node.get_type_name()
    if t == "FakeQuantize":
        return True
    if t == "Constant":
        return node.get_element_type().get_type_name() in ("i8", "u8", "i4", "u4")
    if t in _WEIGHT_PATH:
        return any(_weights_int8(i.get_source_output().get_node()) for i in node.inputs())
    return False


def openvino_share(path: str | Path) -> tuple[int, int, list[str]]:
    import openvino as ov

    model = ov.Core().read_model(str(path))
    int8 = total = 0
    floats = []
    for op in model.get_ordered_ops():
        t = op.get_type_name()
        if t not in ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul"):
            continue
        x = [int(d) for d in op.input_value(0).get_shape()]
        w = [int(d) for d in op.input_value(1).get_shape()]
        y = [int(d) for d in op.get_output_shape(0)]
        if t == "Convolution":  # w: (O, I, kh, kw)
            macs = int(np.prod(y)) * int(np.prod(w[1:]))
        elif t == "GroupConvolution":  # w: (G, O/G, I/G, kh, kw)
            macs = int(np.prod(y)) * int(np.prod(w[2:]))
        elif t == "ConvolutionBackpropData":  # w: (I, O, kh, kw)
            macs = int(np.prod(x)) * int(np.prod(w[1:]))
        else:
            macs = int(np.prod(y)) * int(x[-1])
        total += macs
        if _fq_fed(op.input_value(0).get_node()) and _weights_int8(op.input_value(1).get_node()):
            int8 += macs
        else:
            floats.append(op.get_friendly_name())
    return int8, total, floats


SHARE = {"onnx": onnx_share, "tflite": tflite_share, "openvino": openvino_share}


def int8_share(target: str, path: str | Path) -> tuple[float, list[str]]:
    """(INT8 share of the artifact's MACs, the compute ops that run in float)."""
    int8, total, floats = SHARE[target](path)
    return int8 / total, floats
