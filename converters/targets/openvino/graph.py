"""The OpenVINO target's graph reader for the per-layer INT8 report (:mod:`edgepose.converters.int8.ranking`)
and the layer -> op mapping its mixed-precision builder gives NNCF's ``IgnoredScope``.

Every activation ``FakeQuantize`` (named after the op it quantises) and the output, added as model outputs; the
float model is the same graph without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...int8.ranking import Graph, Layer

_PASS = ("Add", "Multiply", "Subtract", "Maximum", "Minimum", "Clamp", "Relu", "BatchNormInference", "Reshape")
_COMPUTE = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")


def _activations(model: Any) -> set[str]:
    """Names of the ops whose value depends on the input data (shape computations do not: ShapeOf cuts)."""
    act: set[str] = set()
    for op in model.get_ordered_ops():
        t = op.get_type_name()
        if t == "Parameter" or (t != "ShapeOf" and any(
                i.get_source_output().get_node().get_friendly_name() in act for i in op.inputs())):  # fmt: skip
            act.add(op.get_friendly_name())
    return act


_MOVE = ("Concat", "DepthToSpace", "SpaceToDepth", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "MaxPool")


def _quantised(node: Any, act: set[str]) -> bool:
    """Is ``node``'s value fake-quantised data: a ``FakeQuantize`` of an activation, or an op that only moves
    such values (NNCF puts the quantisers of a Concat or DepthToSpace consumer on their inputs)?"""
    t = node.get_type_name()
    if t == "FakeQuantize":
        return node.input_value(0).get_node().get_friendly_name() in act
    if t in _MOVE:
        data = [i.get_source_output().get_node() for i in node.inputs()]
        data = [n for n in data if n.get_friendly_name() in act]
        return bool(data) and all(_quantised(n, act) for n in data)
    return False


def _activation_fqs(model: Any, act: set[str]) -> list[Any]:
    """The ``FakeQuantize`` ops on activations (not on weights), in graph order."""
    return [o for o in model.get_ordered_ops()
            if o.get_type_name() == "FakeQuantize" and o.input_value(0).get_node().get_friendly_name() in act]


def _fed_by_fq(op: Any, act: set[str]) -> bool:
    return _quantised(op.input_value(0).get_node(), act)


def openvino_quantized_ops(model: Any) -> set[str]:
    """Names of the compute ops whose data input is fake-quantised (they run in INT8)."""
    act = _activations(model)
    return {op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() in _COMPUTE and _fed_by_fq(op, act)}  # fmt: skip


def openvino_float_ops(model: Any) -> dict[str, list[str]]:
    """For each layer of :func:`openvino_graph` (an op whose output is fake-quantised, and the output op): the
    ops NNCF must leave unquantised (``IgnoredScope``) to take away the noise the layer adds: the compute ops
    producing it (found upstream through bias adds, activations and residual adds, not past another
    ``FakeQuantize``: their weights stay float) and the ops its ``FakeQuantize`` feeds (their inputs stay float,
    so that ``FakeQuantize`` is gone). For the model input that is the first convolution; for the output, the
    head's last convolution."""
    act = _activations(model)
    fq_of: dict[str, list[Any]] = {}
    for o in _activation_fqs(model, act):
        fq_of.setdefault(o.input_value(0).get_node().get_friendly_name(), []).append(o)
    heads = {o.input_value(0).get_node().get_friendly_name(): o.input_value(0).get_node()
             for fqs in fq_of.values() for o in fqs}  # fmt: skip
    res = model.get_results()[0].input_value(0).get_node()
    heads.setdefault(res.get_friendly_name(), res)
    out: dict[str, list[str]] = {}
    for name, head in heads.items():
        found, seen, stack = [], set(), [head]
        while stack:
            n = stack.pop()
            nm = n.get_friendly_name()
            if nm in seen or nm not in act:
                continue
            seen.add(nm)
            if n.get_type_name() in _COMPUTE:
                found.append(nm)
            elif n.get_type_name() in _PASS:
                stack += [i.get_source_output().get_node() for i in n.inputs()]
        consumers = [t.get_node().get_friendly_name() for fq in fq_of.get(name, [])
                     for t in fq.output(0).get_target_inputs()]  # fmt: skip
        out[name] = list(dict.fromkeys(sorted(found) + sorted(consumers)))
    return out


def openvino_graph(int8_path: str | Path, float_path: str | Path, threads: int | None = None) -> Graph:
    import openvino as ov

    core = ov.Core()
    q, f = core.read_model(str(int8_path)), core.read_model(str(float_path))
    f_nodes = {o.get_friendly_name(): o for o in f.get_ordered_ops()}
    act = _activations(q)
    fqs = _activation_fqs(q, act)
    fq_of = {fq.input_value(0).get_node().get_friendly_name(): fq for fq in fqs}

    def upstream(node: Any) -> list[str]:
        found, seen, stack = set(), set(), [i.get_source_output().get_node() for i in node.inputs()]
        while stack:
            n = stack.pop()
            if n.get_friendly_name() in seen or n.get_friendly_name() not in act:
                continue
            seen.add(n.get_friendly_name())
            if n.get_type_name() == "FakeQuantize":
                found.add(n.input_value(0).get_node().get_friendly_name())
                continue
            stack += [i.get_source_output().get_node() for i in n.inputs()]
        return sorted(found)

    layers, q_outs, f_outs = [], [], []
    for name, fq in fq_of.items():
        if name not in f_nodes:
            continue
        src = fq.input_value(0).get_node()
        layers.append(Layer(name, src.get_type_name(), True, upstream(src)))
        q_outs.append(fq.output(0))
        f_outs.append(f_nodes[name].output(0))
    res_q = q.get_results()[0].input_value(0).get_node()
    out_name = res_q.get_friendly_name()
    if out_name not in fq_of and out_name in f_nodes:
        n, int8 = res_q, False  # does the op computing the output take fake-quantised data?
        while n.get_type_name() in _PASS:
            n = n.input_value(0).get_node()
        if n.get_type_name() in _COMPUTE:
            int8 = _fed_by_fq(n, act)
        layers.append(Layer(out_name, res_q.get_type_name(), int8, upstream(res_q)))
        q_outs.append(res_q.output(0))
        f_outs.append(f_nodes[out_name].output(0))
    def positions(model: Any, ports: list) -> list[int]:  # where each port ended up among the model outputs
        added = [p.get_node().get_friendly_name() for p in model.add_outputs(ports)]
        index = {o.get_node().get_friendly_name(): i for i, o in enumerate(model.outputs)}
        return [index[a] for a in added]

    pq, pf = positions(q, q_outs), positions(f, f_outs)
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    cq, cf = core.compile_model(q, "CPU", config), core.compile_model(f, "CPU", config)
    names = [layer.name for layer in layers]

    def runner(compiled: Any, pos: list[int]) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
        def run(x: np.ndarray) -> dict[str, np.ndarray]:
            res: dict[str, list[np.ndarray]] = {k: [] for k in names}
            for i in range(len(x)):
                r = compiled(x[i : i + 1])
                for j, k in enumerate(names):
                    res[k].append(np.asarray(r[pos[j]], np.float64))
            return {k: np.concatenate(v) for k, v in res.items()}

        return run

    return Graph(layers, runner(cq, pq), runner(cf, pf), out_name, "OpenVINO CPU, f32 inference precision")
