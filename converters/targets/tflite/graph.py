"""The TFLite target's graph reader for the per-layer INT8 report (:mod:`edgepose.converters.int8.ranking`),
the float groups its mixed-precision builder denylists, and the float model the report compares with.

Every op but (de)quantise, read with ``experimental_preserve_all_tensors`` (LiteRT's builtin kernels: the
XNNPACK delegate keeps no intermediate tensors); the float model gives the same tensor name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgepose.spec import ModelSpec

from ...int8.ranking import Graph, Layer
from .convert import onnx_to_saved_model, sample_images, tflite_from_saved_model


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


_TFLITE_COMPUTE = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "BATCH_MATMUL")


def tflite_macs(model: bytes) -> dict[str, int]:
    """Multiply-accumulates per compute op of a TFLite model (batch 1), by output tensor name (the names the
    builder denylists): the float cap counts a TFLite layer on the TFLite graph itself, since onnx2tf's op names
    are not the ONNX graph's. CONV_2D: output elements x the filter (O, kh, kw, I/g) per output channel;
    DEPTHWISE_CONV_2D: output elements x kh x kw; TRANSPOSE_CONV (inputs: output shape, filter (O, kh, kw, I),
    data): input elements x O x kh x kw; FULLY_CONNECTED / BATCH_MATMUL: output elements x the reduced dimension."""
    from edgepose.runtimes.engines.litert import interpreter_module

    it = interpreter_module()[0].Interpreter(model_content=model)
    det = {d["index"]: d for d in it.get_tensor_details()}
    out: dict[str, int] = {}
    for op in it._get_ops_details():  # noqa: SLF001 - the interpreter's only op listing
        kind = op["op_name"]
        if kind not in _TFLITE_COMPUTE or not len(op["outputs"]):
            continue
        y = [int(v) for v in det[int(op["outputs"][0])]["shape"]]
        if kind == "TRANSPOSE_CONV":
            w, x = (list(det[int(op["inputs"][k])]["shape"]) for k in (1, 2))
            macs = int(np.prod(x)) * int(np.prod(w[:3]))
        else:
            x, w = (list(det[int(op["inputs"][k])]["shape"]) for k in (0, 1))
            per = {"CONV_2D": np.prod(w[1:]), "DEPTHWISE_CONV_2D": np.prod(w[1:3]), "BATCH_MATMUL": x[-1]}
            macs = int(np.prod(y)) * int(per.get(kind, w[-1]))
        out[det[int(op["outputs"][0])]["name"]] = macs
    return out


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


def read(int8_path: str | Path, float_path: str | Path, threads: int | None = None) -> Graph:
    """:func:`tflite_graph` of two files (what the target registers as its graph reader)."""
    return tflite_graph(Path(int8_path).read_bytes(), Path(float_path).read_bytes(), threads)


def float_model(onnx_path: Path, spec: ModelSpec, workdir: Path) -> tuple[Path, str]:
    """The FP32 TFLite file of an ONNX export (onnx2tf, then TensorFlow's converter), for the report."""
    sm = workdir / "saved_model"
    onnx_to_saved_model(onnx_path, sm, sample_images(np.zeros((0,)), spec.mean, spec.std))
    out = workdir / "float.tflite"
    out.write_bytes(tflite_from_saved_model(sm, "fp32"))
    return out, "onnx2tf"
