"""ONNX -> TFLite: one onnx2tf run to a TensorFlow graph (NHWC), then TensorFlow's own converter per precision.

onnx2tf's own TFLite output path converts from concrete functions, which costs ~75 s per file here; instead
the Keras model it returns is written once as a SavedModel (ExportArchive: variables and one endpoint only,
~6 s, where ``tf.saved_model.save`` on the Keras model takes ~60 s) and
``tf.lite.TFLiteConverter.from_saved_model`` makes FP32, FP16 (float16 weights) and full INT8 (per-channel
weights, int8 activations; float input/output unless ``int8_io``) in a few seconds each.

onnx2tf fetches a sample image array from GitHub while it converts (``download_test_image_data``, used to
check its ops and as default INT8 calibration); it is replaced here by an array made from the calibration
crops, so conversion never touches the network.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgepose.errors import EdgeposeError
from edgepose.files import atomic_write
from edgepose.runtimes.artifact import KEY

from ...base import Context, Converted, Timer, io_spec, quiet, require, version_of
from ...export import export_onnx

TF_LOG_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3"}


def import_tf():
    for k, v in TF_LOG_ENV.items():
        os.environ.setdefault(k, v)
    with quiet("importing TensorFlow"):
        import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


def sample_images(calib: np.ndarray, mean: Any, std: Any) -> np.ndarray:
    """onnx2tf's test array: 20 x 128 x 128 x 3 float32 RGB in [0, 1] (here: de-normalised crops)."""
    import cv2

    out = np.zeros((20, 128, 128, 3), dtype=np.float32)
    if len(calib):
        imgs = calib.transpose(0, 2, 3, 1) * (np.float32(std) / 255) + np.float32(mean) / 255
        for i in range(20):
            out[i] = cv2.resize(np.clip(imgs[i % len(imgs)], 0, 1), (128, 128), interpolation=cv2.INTER_AREA)
    else:
        out[:] = np.random.default_rng(0).random(out.shape, dtype=np.float32)
    return out


def onnx_to_saved_model(onnx_path: Path, saved_model: Path, sample: np.ndarray) -> None:
    """onnx2tf (offline) -> Keras model -> SavedModel with one ``serving_default`` endpoint input -> heatmaps."""
    tf = import_tf()
    limit = sys.getrecursionlimit()
    import onnx2tf
    import onnx2tf.onnx2tf as o2t
    import tf_keras

    # onnx2tf sets the recursion limit to 2**31 - 1 on import: deep recursion then overflows the C stack and
    # kills the process (a nested JSON file, anything) instead of raising. Give the limit back, with room.
    sys.setrecursionlimit(max(limit, 10_000))

    original = o2t.download_test_image_data
    o2t.download_test_image_data = lambda: sample  # never download the sample images
    tf_keras.backend.clear_session()  # Keras names layers from process-wide counters: same names every time
    try:
        with quiet("onnx2tf"):
            model = onnx2tf.convert(
                input_onnx_file_path=str(onnx_path),
                output_folder_path=str(saved_model.parent / "onnx2tf"),
                not_use_onnxsim=True,  # the ONNX file is simplified already
                disable_model_save=True,  # we write the SavedModel ourselves, faster
                verbosity="error",
            )
    finally:
        o2t.download_test_image_data = original
    spec = tf.TensorSpec(model.inputs[0].shape, model.inputs[0].dtype, "input")  # float32, or uint8 crops
    with quiet("SavedModel export"):
        archive = tf_keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(name="serving_default", fn=lambda x: {"heatmaps": model(x)}, input_signature=[spec])
        archive.write_out(str(saved_model))


def tflite_from_saved_model(
    saved_model: Path, precision: str, calib_nhwc: np.ndarray | None = None, int8_io: bool = False
) -> bytes:
    """One TFLite flatbuffer from the SavedModel: fp32, fp16 (weights) or full int8."""
    tf = import_tf()
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        data = calib_nhwc

        def representative():
            for i in range(len(data)):
                yield [data[i : i + 1]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            if data.dtype != np.uint8:  # a uint8-crop input stays as it is: the bytes are the input
                conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
    with quiet(f"TFLite {precision} conversion"):
        return conv.convert()


def tflite_io(path: Path) -> tuple[dict, dict]:
    """Input/output descriptions (shape, dtype, scale/zero point) read back from the flatbuffer."""
    from edgepose.runtimes.engines.litert import interpreter_module

    mod, _, _ = interpreter_module()
    it = mod.Interpreter(model_path=str(path))

    def desc(d: dict[str, Any]) -> dict:
        scale, zero = d["quantization"]
        quant = {"scale": float(scale), "zero_point": int(zero)} if scale else None
        shape = [None if s == -1 else int(s) for s in d.get("shape_signature", d["shape"])]
        return io_spec(d["name"], shape, np.dtype(d["dtype"]).name, quant)

    return desc(it.get_input_details()[0]), desc(it.get_output_details()[0])


def tflite_operators(path: Path) -> dict[str, int]:
    """Operator counts of the main subgraph read from the flatbuffer, keyed ``"NAME vVERSION"``."""
    schema = _tflite_schema()
    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())  # the schema keeps codes < 127 in both fields
        codes.append(f"{names.get(code, code)} v{oc.Version()}")
    sub = model.Subgraphs(0)
    counts: dict[str, int] = {}
    for j in range(sub.OperatorsLength()):
        key = codes[sub.Operators(j).OpcodeIndex()]
        counts[key] = counts.get(key, 0) + 1
    return counts


def xnnpack_delegation(path: Path) -> dict[str, Any]:
    """How LiteRT's default XNNPACK delegate partitions the graph: ``partitions`` (delegate kernels it created)
    and ``whole_graph`` (one partition that reads the model's input and writes its output, so no operator runs
    outside it). Read from the interpreter after ``allocate_tensors``: each delegated partition becomes one node
    named ``DELEGATE`` appended after the model's own nodes."""
    from edgepose.runtimes.engines.litert import interpreter_module

    mod, _, _ = interpreter_module()
    with quiet(f"LiteRT loading {path.name}"):
        it = mod.Interpreter(model_path=str(path), num_threads=1)
        it.allocate_tensors()
    w = it._interpreter  # the node list is not in the public API; names/inputs/outputs per node are
    nodes = [i for i in range(w.NumNodes()) if w.NodeName(i) == "DELEGATE"]
    schema = _tflite_schema()
    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    sub = model.Subgraphs(0)

    def constant(t: int) -> bool:
        buf = model.Buffers(sub.Tensors(t).Buffer())
        return buf.DataLength() > 0 or buf.Offset() > 0

    ins = {d["index"] for d in it.get_input_details()}
    outs = {d["index"] for d in it.get_output_details()}
    whole = len(nodes) == 1 and (
        {int(t) for t in w.NodeInputs(nodes[0]) if t >= 0 and not constant(int(t))} == ins
        and {int(t) for t in w.NodeOutputs(nodes[0])} == outs
    )
    return {"partitions": len(nodes), "whole_graph": bool(whole)}


def convert(ctx: Context, precisions: list[str]) -> list[Converted]:
    tools = {"onnx2tf": version_of("onnx2tf"), "tensorflow": version_of("tensorflow")}
    require("onnx2tf", "tensorflow", "tf_keras", target="TFLite")
    saved_model = ctx.workdir / "tflite_work" / "saved_model"
    saved_model.parent.mkdir(parents=True, exist_ok=True)
    with Timer() as t0:
        onnx_path = ctx.onnx_path
        if ctx.dynamic_batch:  # onnx2tf cannot build ConvTranspose with an unknown batch: convert batch 1
            ctx.notes.append("tflite: dynamic batch is not supported (onnx2tf, ConvTranspose); TFLite files have "
                             "batch 1 and the runtime splits larger batches")  # fmt: skip
        if ctx.dynamic_batch or ctx.uint8_input:
            # uint8 crops: onnx2tf gets the uint8 input in NCHW (no transpose in the graph) and moves it channels
            # last itself, as it does every input: the TFLite input is then uint8 N x H x W x 3
            onnx_path = saved_model.parent / "for_onnx2tf.onnx"
            from ...tasks import task_for

            export_onnx(ctx.model, ctx.spec, onnx_path, dynamic_batch=False, input_kind=ctx.input_kind,
                        uint8_layout="NCHW", plain_names=task_for(ctx.spec).plain_node_names)  # fmt: skip
        ctx.log("tflite: onnx2tf -> SavedModel (NHWC)")
        onnx_to_saved_model(onnx_path, saved_model, sample_images(ctx.calib, ctx.spec.mean, ctx.spec.std))
    ctx.log(f"tflite: SavedModel ready in {t0.seconds:.1f} s")
    out = []
    calib_nhwc = np.ascontiguousarray(ctx.calib.transpose(0, 2, 3, 1)) if len(ctx.calib) else None
    if ctx.uint8_input:
        calib_nhwc = ctx.calib_inputs() if len(ctx.calib_inputs()) else None
        if ctx.int8_io:
            ctx.notes.append("tflite: --int8-io with --input uint8: the input stays the uint8 crop, the output is int8")
    for i, p in enumerate(precisions):
        with Timer() as t:
            if p == "int8":
                ctx.log(f"tflite int8: calibrating on {len(ctx.calib)} crops")
            flat = tflite_from_saved_model(saved_model, p, calib_nhwc, ctx.int8_io)
            dst = ctx.artifact_path(p, ".tflite")
            dst.write_bytes(flat)
        inp, outp = tflite_io(dst)
        details: dict[str, Any] = {"saved_model_seconds": round(t0.seconds, 2)} if i == 0 else {}
        if p == "int8":
            details.update(quantization="full integer (TFLITE_BUILTINS_INT8), per-channel weights",
                           num_calibration=int(len(ctx.calib)), int8_io=bool(ctx.int8_io))  # fmt: skip
        elif p == "fp16":
            details.update(quantization="float16 weights, float32 compute")
        conv = Converted("tflite", p, dst, layout={"input": "NHWC", "output": "NHWC"}, input=inp, output=outp,
                         tools=tools, details=details, seconds=t.seconds + (t0.seconds if i == 0 else 0.0))  # fmt: skip
        out.append(conv)
        ctx.log(f"tflite {p}: {dst.name} in {t.seconds:.1f} s")
    if not ctx.keep_work:
        shutil.rmtree(saved_model.parent, ignore_errors=True)
    return out


def _tflite_schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            from tensorflow.lite.python import schema_py_generated as schema
        except ImportError:
            raise EdgeposeError(
                "writing TFLite metadata needs ai-edge-litert or tensorflow: pip install 'edgepose[convert]'"
            ) from None
    return schema


def embed_tflite(path: Path, text: str) -> None:
    """Rebuild the flatbuffer with a ``metadata`` entry named ``edgepose`` pointing at a new buffer."""
    import flatbuffers

    schema = _tflite_schema()
    buf = path.read_bytes()
    model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    model.buffers = list(model.buffers or [])
    model.metadata = list(model.metadata or [])
    existing = [m for m in model.metadata if (m.name.decode() if isinstance(m.name, bytes) else m.name) == KEY]
    if existing:
        model.buffers[existing[0].buffer].data = data
    else:
        b = schema.BufferT()
        b.data = data
        model.buffers.append(b)
        m = schema.MetadataT()
        m.name = KEY
        m.buffer = len(model.buffers) - 1
        model.metadata.append(m)
    builder = flatbuffers.Builder(len(buf) + len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    atomic_write(path, bytes(builder.Output()))
