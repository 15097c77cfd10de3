"""The ONNX target's graph reader for the per-layer INT8 report (:mod:`edgepose.converters.int8.ranking`).

QDQ: every compute node; its output's ``QuantizeLinear`` output is added as a graph output, so ONNX Runtime
still runs its fused int8 kernels; the float model gives the same tensor name.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ...int8.ranking import Graph, Layer

log = logging.getLogger(__name__)


def onnx_graph(int8_path: str | Path, float_path: str | Path, threads: int | None = None) -> Graph:
    import onnx
    import onnxruntime as ort
    from onnx import helper

    q, f = onnx.load(str(int8_path)), onnx.load(str(float_path))
    inits = {i.name: i for i in q.graph.initializer}
    producer = {o: n for n in q.graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in q.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    f_tensors = {o for n in f.graph.node for o in n.output}
    layers, q_out, f_out, deq = [], {}, {}, {}
    by_tensor: dict[str, str] = {}
    for n in q.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") or not n.output or n.output[0] not in f_tensors:
            continue
        t, up, fed, float_in, float_w = n.output[0], [], False, False, False
        for k, i in enumerate(n.input):
            p = producer.get(i)
            if not i or i in inits or (p is not None and p.op_type == "DequantizeLinear" and p.input[0] in inits):
                float_w |= bool(i) and i in inits and k == 1  # a float weight: the op computes in float
                continue  # weights and biases
            if p is not None and p.op_type == "DequantizeLinear":
                fed = True
                qn = producer.get(p.input[0])
                i = qn.input[0] if qn is not None and qn.op_type == "QuantizeLinear" else p.input[0]
            else:
                float_in = True
            if i in by_tensor:
                up.append(by_tensor[i])
        name = n.name or t
        qn = next((c for c in consumers.get(t, []) if c.op_type == "QuantizeLinear"), None)
        int8 = fed and not float_in and not float_w and qn is not None  # int8 in, int8 weights, int8 out
        if qn is not None:
            zp = inits.get(qn.input[2]) if len(qn.input) > 2 else None
            elem = zp.data_type if zp is not None else onnx.TensorProto.UINT8
            q_out[name] = (qn.output[0], elem)
            deq[name] = (onnx.numpy_helper.to_array(inits[qn.input[1]]).astype(np.float64),
                          onnx.numpy_helper.to_array(zp).astype(np.float64) if zp is not None else 0.0)  # fmt: skip
        else:
            q_out[name] = (t, onnx.TensorProto.FLOAT)
        f_out[name] = t
        by_tensor[t] = name
        layers.append(Layer(name, n.op_type, int8, sorted(set(up))))

    kernels = "ONNX Runtime CPU (fused int8 kernels)"

    def session(model: Any, outs: dict[str, tuple[str, int]], basic: bool = False) -> Any:
        del model.graph.output[:]
        model.graph.output.extend(helper.make_tensor_value_info(t, e, None) for t, e in outs.values())
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        so.log_severity_level = 3
        if basic:
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])

    out_t = f.graph.output[0].name
    try:
        sq = session(q, q_out)
    except Exception as e:  # noqa: BLE001 - a tap can leave ORT's QDQ fusion an int8 op without a kernel
        # (DepthToSpace of the sub-pixel head); then Q/DQ run as written: int8 values, float arithmetic
        log.info("ONNX Runtime rejected the tapped INT8 graph (%s); running its QDQ nodes unfused",
                 str(e).splitlines()[0][:200])  # fmt: skip
        sq = session(q, q_out, basic=True)
        kernels = "ONNX Runtime CPU, QDQ unfused (the layer taps block a fusion): int8 values, float arithmetic"
    sf = session(f, {k: (v, onnx.TensorProto.FLOAT) for k, v in f_out.items()})
    names = [layer.name for layer in layers]
    in_q, in_f = sq.get_inputs()[0].name, sf.get_inputs()[0].name

    def run_int8(x: np.ndarray) -> dict[str, np.ndarray]:
        outs = sq.run([q_out[k][0] for k in names], {in_q: x})
        res = {}
        for k, v in zip(names, outs):
            if k in deq:
                scale, zp = deq[k]
                v = (v.astype(np.float64) - zp) * scale
            res[k] = np.asarray(v, np.float64)
        return res

    def run_float(x: np.ndarray) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, np.float64) for k, v in zip(names, sf.run([f_out[k] for k in names], {in_f: x}))}

    output = next((k for k, v in f_out.items() if v == out_t), names[-1])
    return Graph(layers, run_int8, run_float, output, kernels)
