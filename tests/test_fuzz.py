"""Property-based fuzzing of every reader that takes a file from outside: random and mutated bytes never crash
the process, never hang, and never raise anything but a one-line :class:`EdgeposeError`.

Readers: artifact metadata (sidecar JSON, TFLite flatbuffer, OpenVINO XML, ONNX protobuf), the artifact
integrity check, the calibration ``.npz`` reader, and the image structure check. Each starts from a real file
of its kind and mutates it (bytes flipped, cut, spliced), or starts from random bytes. Examples are bounded
and each has a deadline.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgepose.errors import EdgeposeError  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=2000, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip


def _tflite_seed() -> bytes:
    """A small real flatbuffer: an edgepose-style TFLite file built with the schema (metadata entry included)."""
    flatbuffers = pytest.importorskip("flatbuffers")
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        schema = pytest.importorskip("tensorflow.lite.python.schema_py_generated")
    model = schema.ModelT()
    model.version = 3
    sub = schema.SubGraphT()
    sub.tensors, sub.inputs, sub.outputs, sub.operators = [], [], [], []
    model.subgraphs = [sub]
    b0, b1 = schema.BufferT(), schema.BufferT()
    b1.data = np.frombuffer(json.dumps({"format": "tflite", "precision": "fp32"}).encode(), np.uint8)
    model.buffers = [b0, b1]
    meta = schema.MetadataT()
    meta.name, meta.buffer = "edgepose", 1
    model.metadata = [meta]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _xml_seed() -> bytes:
    value = json.dumps({"format": "openvino", "companions": {".bin": {"name": "m.bin", "size": 4, "sha256": "0" * 64}}})
    return (b'<?xml version="1.0"?>\n<net name="m" version="11"><layers><layer id="0" type="Const"><data '
            b'element_type="f32" offset="0" size="4"/></layer></layers><rt_info><edgepose value="'
            + value.replace('"', "&quot;").encode() + b'"/></rt_info></net>')  # fmt: skip


def _onnx_seed() -> bytes:
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])])  # fmt: skip
    model = helper.make_model(graph)
    model.metadata_props.add(key="edgepose", value='{"format": "onnx"}')
    return model.SerializeToString()


def _npz_seed() -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, crops=np.arange(2 * 8 * 6 * 3, dtype=np.uint8).reshape(2, 8, 6, 3),
                        holdout=np.zeros((1, 8, 6, 3), np.uint8), meta=np.array('{"model": "m"}'))  # fmt: skip
    return buf.getvalue()


def _jpeg_seed() -> bytes:
    import cv2

    img = (np.arange(32 * 24 * 3) % 251).astype(np.uint8).reshape(32, 24, 3)
    return cv2.imencode(".jpg", img)[1].tobytes()


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """``seed`` cut, with bytes overwritten, or spliced with random bytes; sometimes pure random bytes."""
    kind = draw(st.sampled_from(["flip", "cut", "splice", "random"]))
    data = bytearray(seed)
    if kind == "random" or not data:
        return draw(st.binary(max_size=4096))
    if kind == "cut":
        return bytes(data[: draw(st.integers(0, len(data)))])
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        return bytes(data)
    i = draw(st.integers(0, len(data)))
    return bytes(data[:i]) + draw(st.binary(max_size=512)) + bytes(data[i + draw(st.integers(0, 64)) :])


def _only_edgepose_errors(fn, *args):
    try:
        fn(*args)
    except EdgeposeError as e:
        assert "\n" not in str(e)


@pytest.fixture(scope="module")
def seeds():
    return {"tflite": _tflite_seed(), "xml": _xml_seed(), "onnx": _onnx_seed(), "npz": _npz_seed(),
            "jpg": _jpeg_seed()}  # fmt: skip


@pytest.mark.parametrize("kind", ["tflite", "xml", "onnx"])
def test_metadata_readers_survive_mutated_artifacts(kind, seeds, tmp_path):
    from edgepose.artifact import read_metadata, tflite_metadata_entries, tflite_problem, verify_artifact

    path = tmp_path / f"m.{kind}"
    path.with_suffix(".bin").write_bytes(b"\0" * 4)

    @SETTINGS
    @given(mutated(seeds[kind]))
    def check(data):
        path.write_bytes(data)
        _only_edgepose_errors(read_metadata, path)
        _only_edgepose_errors(verify_artifact, path)
        if kind == "tflite":
            _only_edgepose_errors(tflite_metadata_entries, path)
            assert tflite_problem(path) is None or isinstance(tflite_problem(path), str)

    check()


@pytest.mark.parametrize("suffix", [".onnx", ".xml"])
def test_sidecar_reader_survives_mutated_json(suffix, tmp_path):
    from edgepose.artifact import read_metadata, verify_artifact

    path = tmp_path / f"m{suffix}"
    path.write_bytes(b"x")
    path.with_suffix(".bin").write_bytes(b"w")
    seed = json.dumps({"format": "openvino" if suffix == ".xml" else "onnx", "layout": {"input": "NCHW"},
                       "file": {"name": path.name, "size": 1, "sha256": hashlib.sha256(b"x").hexdigest()},
                       "companions": {"/../x": {"name": "x", "size": 0, "sha256": ""},
                                      ".bin": {"name": "m.bin", "size": 1, "sha256": "1" * 64}}}).encode()  # fmt: skip

    @SETTINGS
    @given(st.one_of(mutated(seed), st.just(b"[" * 50_000 + b"]" * 50_000)))
    def check(data):
        (tmp_path / f"m{suffix}.json").write_bytes(data)
        _only_edgepose_errors(read_metadata, path)
        _only_edgepose_errors(verify_artifact, path)

    check()


def test_calibration_reader_survives_mutated_npz(seeds, tmp_path):
    from edgepose.calibration import read_calibration

    path = tmp_path / "c.npz"

    @SETTINGS
    @given(mutated(seeds["npz"]))
    def check(data):
        path.write_bytes(data)
        _only_edgepose_errors(read_calibration, path)

    check()


def test_calibration_reader_survives_lying_npy_headers(tmp_path):
    """Members whose .npy header declares any shape and dtype over a few real bytes: refused, never allocated."""
    from edgepose.calibration import read_calibration

    path = tmp_path / "c.npz"
    dims = st.integers(0, 2**40)

    @SETTINGS
    @given(st.lists(dims, max_size=5), st.sampled_from(["|u1", "<f4", "<U8", "|V100000000", "<i8"]),
           st.binary(max_size=256))  # fmt: skip
    def check(shape, descr, body):
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("crops.npy", buf.getvalue() + body)
        _only_edgepose_errors(read_calibration, path)

    check()


def test_image_check_survives_mutated_images(seeds, tmp_path):
    from edgepose.images import check_image_file, image_problem, read_image

    path = tmp_path / "i.jpg"

    @SETTINGS
    @given(mutated(seeds["jpg"]))
    def check(data):
        path.write_bytes(data)
        assert image_problem(data) is None or isinstance(image_problem(data), str)
        assert check_image_file(path, quick=True) is None or isinstance(check_image_file(path), str)
        _only_edgepose_errors(read_image, path)

    check()


def test_truncation_is_always_caught(seeds, tmp_path):
    """Every proper prefix of a JPEG is refused: by the structure check from the signature on, by the decoder
    before it (0 or 1 byte is no image at all)."""
    from edgepose.images import image_problem, read_image

    data = seeds["jpg"]
    assert image_problem(data) is None
    assert all(image_problem(data[:n]) for n in range(2, len(data)))
    for n in (0, 1):
        (p := tmp_path / f"{n}.jpg").write_bytes(data[:n])
        with pytest.raises(EdgeposeError, match=str(p)):
            read_image(p)
