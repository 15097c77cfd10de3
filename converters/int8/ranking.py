"""Per-layer error of an INT8 artifact against its float model: where the quantisation noise comes from.

Both models run on the same held-out crops and every layer's activation is read from each, *as the next layer
sees it* (the INT8 value dequantised with its own scale and zero point):

* ONNX (QDQ): every compute node; its output's ``QuantizeLinear`` output is added as a graph output, so ONNX
  Runtime still runs its fused int8 kernels; the float model gives the same tensor name.
* TFLite: every op but (de)quantise, read with ``experimental_preserve_all_tensors`` (LiteRT's builtin kernels:
  the XNNPACK delegate keeps no intermediate tensors); the float model gives the same tensor name.
* OpenVINO: every activation ``FakeQuantize`` (named after the op it quantises) and the output, added as model
  outputs; the float model is the same graph without them.

Per layer: ``snr_db`` = 10 log10(sum f^2 / sum (q - f)^2) and ``rel_err`` = sqrt(sum (q - f)^2 / sum f^2) over
all crops (f float, q INT8), both *cumulative* (everything upstream included); ``added`` = the noise-to-signal
ratio this layer adds over the worst of the layers that feed it (max(0, rel_err^2 - max upstream rel_err^2));
``share`` = added / the sum of added over all layers: the layer's share of the quantisation noise, the ranking
the accuracy-control loop starts from (it then confirms the top layers one by one on the output).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Layer:
    name: str
    op: str
    int8: bool
    upstream: list[str] = field(default_factory=list)
    snr_db: float = math.inf
    rel_err: float = 0.0
    max_abs_err: float = 0.0
    added: float = 0.0
    share: float = 0.0
    removed: float | None = None  # share of the output error removed when only this layer is float (measured)


@dataclass
class Graph:
    """What a format gives the report: its layers, and runners returning each layer's activation (float)."""

    layers: list[Layer]
    run_int8: Callable[[np.ndarray], dict[str, np.ndarray]]  # NCHW float32 batch -> {layer: activation}
    run_float: Callable[[np.ndarray], dict[str, np.ndarray]]
    output: str  # the layer whose activation is the model output
    kernels: str = ""


# ----------------------------------------------------------------------------------------------- ONNX
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


# --------------------------------------------------------------------------------------------- TFLite
def tflite_graph(int8_model: bytes, float_model: bytes, threads: int | None = None) -> Graph:
    from edgepose.runtimes.engines.litert import interpreter_module

    mod = interpreter_module()[0]

    def interp(content: bytes) -> Any:
        it = mod.Interpreter(model_content=content, experimental_preserve_all_tensors=True, num_threads=threads,
                             experimental_op_resolver_type=mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
        return it

    iq, iff = interp(int8_model), interp(float_model)
    tq = {d["index"]: d for d in iq.get_tensor_details()}
    f_index = {d["name"]: d["index"] for d in iff.get_tensor_details()}
    ops = iq._get_ops_details()  # noqa: SLF001 - the interpreter's only op listing
    producer = {t: op for op in ops for t in op["outputs"]}
    skip = ("QUANTIZE", "DEQUANTIZE", "DELEGATE")
    layers, q_idx, by_tensor = [], {}, {}

    def source(t: int) -> int:
        p = producer.get(t)
        while p is not None and p["op_name"] in skip:
            t = p["inputs"][0]
            p = producer.get(t)
        return t

    out_t = source(iq.get_output_details()[0]["index"])
    f_map: dict[str, int] = {}
    compute = [op for op in ops if op["op_name"] not in skip and len(op["outputs"])]
    f_compute = [op for op in iff._get_ops_details() if op["op_name"] not in skip and len(op["outputs"])]  # noqa: SLF001
    # Files converted from one SavedModel have the same ops in the same order (quantisation adds only
    # (DE)QUANTIZE): match by position; tensor names can differ (onnx2tf numbers its layers per process)
    by_position = [o["op_name"] for o in compute] == [o["op_name"] for o in f_compute]
    for pos, op in enumerate(compute):
        t = op["outputs"][0]
        name = tq[t]["name"] if t in tq else ""
        if t == out_t:  # the output tensor is named after the graph's output in each file, not the same
            f_map[name] = iff.get_output_details()[0]["index"]
        elif by_position:
            f_map[name] = f_compute[pos]["outputs"][0]
        elif name in f_index:
            f_map[name] = f_index[name]
        else:
            continue
        up = [by_tensor[s] for i in op["inputs"] if i >= 0 and (s := source(i)) in by_tensor]
        int8 = np.dtype(tq[t]["dtype"]) in (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))
        layers.append(Layer(name, op["op_name"], bool(int8), sorted(set(up))))
        q_idx[name] = t
        by_tensor[t] = name
    names = [layer.name for layer in layers]

    def feed(it: Any, x: np.ndarray) -> None:
        d = it.get_input_details()[0]
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        if np.dtype(d["dtype"]) != np.float32:
            scale, zp = d["quantization"]
            info = np.iinfo(d["dtype"])
            x = np.clip(np.round(x / scale + zp), info.min, info.max).astype(d["dtype"])
        it.set_tensor(d["index"], x)
        it.invoke()

    def value(it: Any, idx: int, det: dict) -> np.ndarray:
        v = it.get_tensor(idx).astype(np.float64)
        scale, zp = det["quantization"]
        return (v - zp) * scale if scale else v

    def per_crop(it: Any, x: np.ndarray, index: dict[str, int], dets: dict) -> dict[str, np.ndarray]:
        res: dict[str, list[np.ndarray]] = {k: [] for k in names}
        for i in range(len(x)):  # the files have batch 1
            feed(it, x[i : i + 1])
            for k in names:
                res[k].append(value(it, index[k], dets[index[k]]))
        return {k: np.concatenate(v) for k, v in res.items()}

    fdets = {d["index"]: d for d in iff.get_tensor_details()}
    return Graph(layers, lambda x: per_crop(iq, x, q_idx, tq), lambda x: per_crop(iff, x, f_map, fdets),
                 tq[out_t]["name"], "LiteRT builtin kernels (no XNNPACK)")  # fmt: skip


_TFLITE_MOVE = ("PAD", "PADV2", "RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS", "DEPTH_TO_SPACE",
                "SPACE_TO_DEPTH", "CONCATENATION", "MAX_POOL_2D")  # fmt: skip


def tflite_float_groups(int8_model: bytes) -> dict[str, list[str]]:
    """For each layer of :func:`tflite_graph` (an op's output tensor name): the ops to keep in float (their
    output tensor names, what ``QuantizationDebugOptions(denylisted_nodes=...)`` takes) to take away the noise
    it adds. An op that only moves values (``PAD``, ``RESHAPE``, ...) adds the rounding of its int8 output,
    which its consumers would quantise again if it alone ran in float: its group takes in the consumers too
    (through further such ops). The input's quantisation shows up on the first such op (``PAD`` before the
    first convolution): its group is the pad and that convolution. The output op's group also names the graph
    output (the float model's name for that op's tensor)."""
    from edgepose.runtimes.engines.litert import interpreter_module

    it = interpreter_module()[0].Interpreter(model_content=int8_model)
    names = {d["index"]: d["name"] for d in it.get_tensor_details()}
    outputs = {int(d["index"]) for d in it.get_output_details()}
    ops = [op for op in it._get_ops_details() if len(op["outputs"])]  # noqa: SLF001
    consumers: dict[int, list[dict]] = {}
    for op in ops:
        for i in op["inputs"]:
            consumers.setdefault(int(i), []).append(op)

    def group(op: dict, seen: set[int]) -> list[str]:
        if op["index"] in seen:
            return []
        seen.add(op["index"])
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            # the float model names the output op's tensor after the graph output (the int8 file gives that
            # name to the final DEQUANTIZE and renames the op's own: "PartitionedCall:01")
            out = [names[op["outputs"][0]]] if int(op["outputs"][0]) in outputs else []
        else:
            out = [names[op["outputs"][0]]]
            if op["op_name"] not in _TFLITE_MOVE:
                return out + [names[int(c["outputs"][0])] for c in consumers.get(int(op["outputs"][0]), [])
                              if int(c["outputs"][0]) in outputs]  # fmt: skip
        for c in consumers.get(int(op["outputs"][0]), []):
            out += group(c, seen)
        return out

    return {names[op["outputs"][0]]: list(dict.fromkeys(group(op, set()))) for op in ops
            if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE", "DELEGATE")}  # fmt: skip


# ------------------------------------------------------------------------------------------- OpenVINO
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


# --------------------------------------------------------------------------------------------- figures
def measure(graph: Graph, inputs: np.ndarray, batch: int = 1) -> list[Layer]:
    """Fill in every layer's figures from ``inputs`` (float32 NCHW), ``batch`` crops at a time (artifacts: 1)."""
    acc = {layer.name: [0.0, 0.0, 0.0] for layer in graph.layers}  # sum f^2, sum e^2, max |e|
    for a in range(0, len(inputs), batch):
        x = np.ascontiguousarray(inputs[a : a + batch], dtype=np.float32)
        fq, ff = graph.run_int8(x), graph.run_float(x)
        for k, s in acc.items():
            e = fq[k] - ff[k]
            s[0] += float((ff[k] ** 2).sum())
            s[1] += float((e**2).sum())
            s[2] = max(s[2], float(np.abs(e).max()) if e.size else 0.0)
    nsr = {}
    for layer in graph.layers:
        sf2, se2, mx = acc[layer.name]
        nsr[layer.name] = se2 / sf2 if sf2 > 0 else (0.0 if se2 == 0 else math.inf)
        layer.rel_err = math.sqrt(nsr[layer.name])
        layer.snr_db = 200.0 if se2 == 0 else min(200.0, 10 * math.log10(max(sf2, 1e-300) / se2))
        layer.max_abs_err = mx
    for layer in graph.layers:
        before = max((nsr[u] for u in layer.upstream if u in nsr), default=0.0)
        layer.added = max(0.0, nsr[layer.name] - before) if math.isfinite(nsr[layer.name]) else 0.0
    total = sum(layer.added for layer in graph.layers)
    for layer in graph.layers:
        layer.share = layer.added / total if total > 0 else 0.0
    return graph.layers


def ranked(layers: list[Layer], exclude: set[str] = frozenset()) -> list[Layer]:
    """INT8 layers, largest share of the noise first."""
    return sorted((la for la in layers if la.int8 and la.name not in exclude), key=lambda la: -la.added)


def layer_dicts(layers: list[Layer]) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(la).items()}
            for la in layers]  # fmt: skip


__all__ = ["Layer", "Graph", "onnx_graph", "tflite_graph", "openvino_graph", "openvino_quantized_ops",
           "openvino_float_ops", "tflite_float_groups", "measure", "ranked", "layer_dicts"]  # fmt: skip
