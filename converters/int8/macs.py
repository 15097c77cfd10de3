"""Multiply-accumulates per layer, read once from the exported ONNX graph (format-free: every target is made
from it), for the float cap of the accuracy control (``--max-float``): the share of a model's MACs a set of
layers kept in float takes. Counted: Conv, ConvTranspose, Gemm and MatMul (batch 1); other ops are a rounding
error of a convolutional pose model's work and count zero.

A target's layer names are matched to the ONNX nodes by node name, then by output tensor name, then by the
ONNX name the target's name starts or ends with; a name matched by none counts the mean MACs of a counted
layer (:attr:`Macs.unmatched` says which), so the share stays an estimate there and says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

COUNTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass
class Macs:
    per_node: dict[str, int]  # ONNX node name -> MACs (counted ops only)
    by_output: dict[str, str] = field(default_factory=dict)  # output tensor name -> node name
    unmatched: set[str] = field(default_factory=set)  # names last looked up that matched no ONNX node

    @property
    def total(self) -> int:
        return int(sum(self.per_node.values()))

    def node_of(self, name: str) -> str | None:
        if name in self.per_node:
            return name
        if name in self.by_output:
            return self.by_output[name]
        hits = [n for n in self.per_node if n and (name.startswith(n) or name.endswith(n))]
        return max(hits, key=len) if hits else None

    def of(self, names: Iterable[str]) -> float:
        """MACs of ``names`` (each ONNX node once)."""
        nodes, extra = set(), 0.0
        self.unmatched = set()
        mean = self.total / max(1, len(self.per_node))
        for n in dict.fromkeys(names):
            node = self.node_of(n)
            if node is None:
                self.unmatched.add(n)
                extra += mean
            else:
                nodes.add(node)
        return float(sum(self.per_node[n] for n in nodes)) + extra

    def float_share(self, names: Iterable[str]) -> float:
        """The share of the model's MACs that ``names`` take (0 to 1)."""
        return min(1.0, self.of(names) / self.total) if self.total else 0.0


def count(onnx_path: str | Path) -> Macs:
    """:class:`Macs` of an ONNX file, shapes from ONNX shape inference."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    g = model.graph
    shapes: dict[str, list[int]] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = [d.dim_value if d.dim_value > 0 else 1 for d in vi.type.tensor_type.shape.dim]  # batch 1
        shapes[vi.name] = dims
    for init in g.initializer:
        shapes[init.name] = list(numpy_helper.to_array(init).shape) if init.data_type else list(init.dims)
    per, outs = {}, {}
    for node in g.node:
        if node.op_type not in COUNTED:
            continue
        x, w = shapes.get(node.input[0]), shapes.get(node.input[1]) if len(node.input) > 1 else None
        y = shapes.get(node.output[0])
        if not x or not w or not y:
            continue
        if node.op_type == "Conv":  # out elements x (C_in / group) x kernel; w: (C_out, C_in/g, k...)
            macs = int(np.prod(y)) * int(np.prod(w[1:]))
        elif node.op_type == "ConvTranspose":  # in elements x (C_out / group) x kernel; w: (C_in, C_out/g, k...)
            macs = int(np.prod(x)) * int(np.prod(w[1:]))
        else:  # Gemm / MatMul: out elements x the reduced dimension
            trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
            k = x[0] if (node.op_type == "Gemm" and trans_a) else x[-1]
            macs = int(np.prod(y)) * int(k)
        name = node.name or node.output[0]
        per[name] = macs
        for o in node.output:
            outs[o] = name
    return Macs(per, outs)


__all__ = ["Macs", "count", "COUNTED"]
