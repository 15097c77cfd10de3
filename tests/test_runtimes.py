"""The ONNX Runtime, LiteRT and OpenVINO runtimes on tiny hand-built models whose outputs are known exactly.

Each model is a per-channel affine map y[c] = a[c] * x[c] + b[c] (a 1x1 depthwise conv), so the expected
output is one line of numpy. NHWC and int8 handling is checked on TFLite files made by TensorFlow here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from edgepose.converters.metadata import write_sidecar

from edgepose.errors import EdgeposeError
from edgepose.runtimes import load_runtime

A = np.array([2.0, -1.0, 0.5], np.float32)
B = np.array([0.25, 1.0, -3.0], np.float32)


def expected(x: np.ndarray) -> np.ndarray:
    return x * A[None, :, None, None] + B[None, :, None, None]


def _x(n: int = 3, h: int = 4, w: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-2, 2, (n, 3, h, w)).astype(np.float32)


# --------------------------------------------------------------------------------------------- ONNX
def _onnx_model(path, batch: int | str = 1):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(A.reshape(3, 1, 1, 1), "w")
    b = numpy_helper.from_array(B, "b")
    node = helper.make_node("Conv", ["input", "w", "b"], ["heatmaps"], group=3)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 4, 5])
    out = helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [batch, 3, 4, 5])
    graph = helper.make_graph([node], "g", [inp], [out], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_onnxruntime_fixed_batch_is_chunked(tmp_path):
    pytest.importorskip("onnxruntime")
    rt = load_runtime(_onnx_model(tmp_path / "m.onnx"), threads=1)
    x = _x(3)
    assert rt.batch_size == 1 and rt.engine == "onnxruntime"
    np.testing.assert_allclose(rt(x), expected(x), rtol=1e-6, atol=1e-6)
    info = rt.info()
    assert info["version"] and info["providers"] == ["CPUExecutionProvider"] and info["threads"] == 1


def test_onnxruntime_dynamic_batch_and_metadata(tmp_path):
    pytest.importorskip("onnxruntime")
    path = _onnx_model(tmp_path / "m.onnx", batch="N")
    write_sidecar(path, {"precision": "int8", "layout": {"input": "NCHW", "output": "NCHW"}})
    rt = load_runtime(path)
    assert rt.batch_size is None and rt.precision == "int8"
    x = _x(5)
    np.testing.assert_allclose(rt(x), expected(x), rtol=1e-6, atol=1e-6)


def test_onnxruntime_threads_stop_spinning_after_a_call_unless_told(tmp_path):
    """Sessions ask ONNX Runtime to stop their threads' spinning when a call returns (two sessions called in turn
    spun against each other, ~2x slower: benchmarks/ort_sessions.py); ``stop_spinning=False`` leaves ONNX
    Runtime's default; the outputs are the same either way and info() says which ran."""
    pytest.importorskip("onnxruntime")
    path = _onnx_model(tmp_path / "m.onnx", batch="N")
    stop, spin = load_runtime(path, threads=2), load_runtime(path, threads=2, stop_spinning=False)
    key = "session.force_spinning_stop"
    assert stop.session.get_session_options().get_session_config_entry(key) == "1"
    with pytest.raises(RuntimeError, match="does not have configuration"):  # not set: ONNX Runtime's default
        spin.session.get_session_options().get_session_config_entry(key)
    assert stop.info()["stop_spinning"] is True and spin.info()["stop_spinning"] is False
    x = _x(4)
    np.testing.assert_array_equal(stop(x), spin(x))
    np.testing.assert_allclose(stop(x), expected(x), rtol=1e-6, atol=1e-6)


def _uint8_onnx_model(path):
    """uint8 NHWC in -> Cast -> Transpose to NCHW -> the affine map (an ``--input uint8`` artifact in small)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(A.reshape(3, 1, 1, 1), "w")
    b = numpy_helper.from_array(B, "b")
    nodes = [helper.make_node("Cast", ["input"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["f"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "w", "b"], ["heatmaps"], group=3)]  # fmt: skip
    inp = helper.make_tensor_value_info("input", TensorProto.UINT8, [1, 4, 5, 3])
    out = helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [1, 3, 4, 5])
    model = helper.make_model(helper.make_graph(nodes, "g", [inp], [out], [w, b]),
                              opset_imports=[helper.make_opsetid("", 13)])  # fmt: skip
    model.ir_version = 8
    onnx.save(model, str(path))
    write_sidecar(path, {"precision": "fp32", "layout": {"input": "NHWC", "output": "NCHW"},
                         "input": {"name": "input", "dtype": "uint8", "kind": "uint8_nhwc_rgb"}})  # fmt: skip
    return path


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_uint8_input_artifact_takes_crops_and_refuses_floats(tmp_path, engine):
    pytest.importorskip(engine)
    path = _uint8_onnx_model(tmp_path / "u8.onnx")
    if engine == "openvino":
        import openvino as ov

        xml = tmp_path / "u8.xml"
        ov.save_model(ov.Core().read_model(str(path)), str(xml))
        write_sidecar(xml, {**json.loads(path.with_name("u8.onnx.json").read_text()), "format": "openvino"})
        path = xml
    rt = load_runtime(path, **({"inference_precision": "f32"} if engine == "openvino" else {}))
    assert rt.input_kind == "uint8_nhwc_rgb" and rt.info()["input_kind"] == "uint8_nhwc_rgb"
    crops = np.random.default_rng(3).integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)  # batch 3 through batch 1
    np.testing.assert_allclose(rt(crops), expected(crops.transpose(0, 3, 1, 2).astype(np.float32)), rtol=1e-6)
    with pytest.raises(EdgeposeError, match=r"u8\.(onnx|xml): takes uint8 NHWC RGB crops .* got float32"):
        rt(crops.transpose(0, 3, 1, 2).astype(np.float32))
    float_rt = load_runtime(_onnx_model(tmp_path / "f.onnx")) if engine == "onnxruntime" else None
    if float_rt is not None:
        with pytest.raises(EdgeposeError, match=r"f\.onnx: takes float32 NCHW normalised crops .* got uint8"):
            float_rt(crops)


def test_unknown_device_and_bad_file(tmp_path):
    pytest.importorskip("onnxruntime")
    with pytest.raises(EdgeposeError, match=r"npu\b.*(unknown device|not supported).*\(use cpu, cuda"):
        load_runtime(_onnx_model(tmp_path / "m.onnx"), device="npu")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"nope")
    with pytest.raises(EdgeposeError, match=r"bad\.onnx: (not a readable ONNX model|ONNX Runtime cannot load it)"):
        load_runtime(bad)


# ---------------------------------------------------------------------------------------- OpenVINO
def _openvino_model(path, batch: int = 1):
    ov = pytest.importorskip("openvino")
    import openvino.opset13 as ops

    x = ops.parameter([batch, 3, 4, 5], np.float32, name="input")
    y = ops.add(ops.multiply(x, ops.constant(A.reshape(1, 3, 1, 1))), ops.constant(B.reshape(1, 3, 1, 1)))
    ov.save_model(ov.Model([y], [x], "m"), str(path), compress_to_fp16=False)
    return path


def test_openvino_default_is_the_plugins_choice_and_strict_is_f32(tmp_path):
    """By default the CPU plugin picks (bf16 on AMX/AVX512-BF16 CPUs); the runtime reports what it picked,
    read back independently here from a plain OpenVINO compile; strict_options asks for f32."""
    import openvino as ov

    from edgepose.runtimes import RUNTIMES

    path = _openvino_model(tmp_path / "m.xml")
    plain = ov.Core().compile_model(str(path), "CPU").get_property("INFERENCE_PRECISION_HINT").to_string()
    rt = load_runtime(path)
    assert rt.info()["inference_precision"] == plain and rt.info()["version"] and rt.batch_size == 1
    assert rt.precision_used == {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}[plain]
    assert rt.info()["precision_used"] == rt.precision_used
    strict = load_runtime(path, **RUNTIMES["openvino"].strict_options)
    assert strict.info()["inference_precision"] == "f32" and strict.precision_used == "fp32"
    x = _x(3)
    np.testing.assert_allclose(strict(x), expected(x), rtol=1e-6, atol=1e-6)
    with pytest.raises(EdgeposeError, match="inference_precision 'fp64'"):
        load_runtime(path, inference_precision="fp64")


def test_openvino_missing_bin(tmp_path):
    path = _openvino_model(tmp_path / "m.xml")
    path.with_suffix(".bin").unlink()
    with pytest.raises(EdgeposeError, match=r"m\.xml: the weights file m\.bin is missing"):
        load_runtime(path)


# ------------------------------------------------------------------------------------------ LiteRT
@pytest.fixture(scope="module")
def tflite_models(tmp_path_factory):
    """An NHWC float model and a full-int8 one with int8 input/output, made by TensorFlow."""
    tf = pytest.importorskip("tensorflow")
    d = tmp_path_factory.mktemp("tflite")

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 5, 3], tf.float32)])
    def f(x):
        return x * A + B  # NHWC: channels last

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    (d / "f32.tflite").write_bytes(conv.convert())

    def rep():
        for i in range(20):
            yield [np.random.default_rng(i).uniform(-2, 2, (1, 4, 5, 3)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    (d / "i8.tflite").write_bytes(conv.convert())
    return d


def test_litert_nhwc_float(tflite_models):
    path = tflite_models / "f32.tflite"
    write_sidecar(path, {"precision": "fp32", "layout": {"input": "NHWC", "output": "NHWC"}})
    rt = load_runtime(path, threads=1)
    x = _x(3)
    np.testing.assert_allclose(rt(x), expected(x), rtol=1e-6, atol=1e-6)
    assert rt.batch_size == 1 and rt.info()["version"] and rt.info()["xnnpack"] is True
    assert load_runtime(path, xnnpack=False)(x[:1]).shape == (1, 3, 4, 5)


def test_litert_int8_input_and_output(tflite_models):
    path = tflite_models / "i8.tflite"  # no sidecar: layout guessed from the (1, 4, 5, 3) input
    rt = load_runtime(path)
    assert rt.input["dtype"] == np.int8 and rt.output["dtype"] == np.int8
    x = _x(2)
    out = rt(x)
    s_in, s_out = rt.input["quantization"][0], rt.output["quantization"][0]
    # error budget: input rounding (s_in / 2 times |a| <= 2) plus output rounding (s_out / 2), plus one step
    assert np.abs(out - expected(x)).max() <= s_in / 2 * 2 + s_out / 2 + s_out + 1e-6
    assert out.dtype == np.float32


def test_litert_bad_file(tmp_path):
    pytest.importorskip("ai_edge_litert")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(EdgeposeError, match=r"bad\.tflite: (not a readable TFLite flatbuffer|LiteRT cannot load it)"):
        load_runtime(bad)
