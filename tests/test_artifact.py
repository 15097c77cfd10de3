"""Artifact metadata: sidecar vs embedded, each format's embedding read back by that format's own library."""

from __future__ import annotations

import json

import numpy as np
import pytest
from edgepose.converters.metadata import embed_metadata, write_metadata, write_sidecar

from edgepose.artifact import read_embedded, read_metadata, sidecar_path, tflite_metadata_entries
from edgepose.errors import EdgeposeError
from edgepose.runtimes.io import dequantize, from_layout, quantize, to_layout

META = {"format_version": 1, "precision": "fp16", "model": {"name": "demo_coco_256x192"}, "layout": {"input": "NHWC"}}


def test_quantize_rule_by_hand():
    # scale 0.5, zero point -3: 1.2/0.5 = 2.4 -> 2, +(-3) = -1; 100/0.5 - 3 = 197 -> clipped to 127
    q = quantize(np.array([1.2, 100.0, -100.0, 0.0]), 0.5, -3, "int8")
    assert q.dtype == np.int8 and q.tolist() == [-1, 127, -128, -3]
    assert dequantize(np.array([-1, 127], np.int8), 0.5, -3).tolist() == [1.0, 65.0]
    assert quantize(np.array([-1.0, 1.0]), 0.1, 128, "uint8").tolist() == [118, 138]


def test_layout_round_trip_and_element():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    y = to_layout(x, "NHWC")
    assert y.shape == (2, 4, 5, 3) and y[1, 2, 3, 0] == x[1, 0, 2, 3]
    assert np.array_equal(from_layout(y, "NHWC"), x)
    assert to_layout(x, "NCHW") is x


def test_sidecar_first_then_embedded_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 2, 2])])  # fmt: skip
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert read_metadata(path) == {} and read_embedded(path) is None
    embed_metadata(path, META)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["edgepose"]) == META  # read with onnx itself
    assert read_metadata(path) == META
    write_sidecar(path, {**META, "precision": "int8"})
    assert read_metadata(path)["precision"] == "int8"  # the sidecar wins
    assert read_embedded(path)["precision"] == "fp16"
    embed_metadata(path, {"x": 1})  # replaces, never duplicates
    assert [p.key for p in onnx.load(str(path)).metadata_props].count("edgepose") == 1


def test_openvino_rt_info_read_by_openvino(tmp_path):
    ov = pytest.importorskip("openvino")
    import openvino.opset13 as ops

    x = ops.parameter([1, 3, 2, 2], np.float32, name="input")
    model = ov.Model([ops.relu(x)], [x], "m")
    path = tmp_path / "m.xml"
    ov.save_model(model, str(path))
    bin_before = path.with_suffix(".bin").read_bytes()
    embed_metadata(path, META)
    read_back = ov.Core().read_model(str(path))
    assert json.loads(read_back.get_rt_info(["edgepose"]).astype(str)) == META
    assert read_embedded(path) == META
    assert path.with_suffix(".bin").read_bytes() == bin_before
    out = ov.Core().compile_model(read_back, "CPU")(np.array([-1.0, 2.0] * 6, np.float32).reshape(1, 3, 2, 2))
    assert out[0].reshape(-1).tolist() == [0.0, 2.0] * 6  # the model still works


def _tiny_tflite(schema, entries: dict[str, bytes]) -> bytes:
    """A minimal flatbuffer (no subgraph) built with the generated TFLite schema, with metadata entries."""
    import flatbuffers

    m = schema.ModelT()
    m.version = 3
    m.buffers = [schema.BufferT()]  # buffer 0 is the empty sentinel, as the converter writes it
    m.metadata = []
    for name, data in entries.items():
        b = schema.BufferT()
        b.data = np.frombuffer(data, np.uint8)
        m.buffers.append(b)
        md = schema.MetadataT()
        md.name = name
        md.buffer = len(m.buffers) - 1
        m.metadata.append(md)
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_tflite_reader_and_writer_against_the_schema(tmp_path):
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    path = tmp_path / "m.tflite"
    path.write_bytes(_tiny_tflite(schema, {"min_runtime_version": b"1.5.0", "other": b"\x00\x01"}))
    # the hand-written reader finds what the generated writer put there
    assert tflite_metadata_entries(path) == {"min_runtime_version": b"1.5.0", "other": b"\x00\x01"}
    assert read_embedded(path) is None
    write_metadata(path, META)
    assert read_embedded(path) == META and json.loads(sidecar_path(path).read_text()) == META
    # and the generated reader finds what edgepose wrote, the old entries intact
    m = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    names = [e.name.decode() if isinstance(e.name, bytes) else e.name for e in m.metadata]
    assert names == ["min_runtime_version", "other", "edgepose"]
    assert json.loads(bytes(m.buffers[m.metadata[2].buffer].data)) == META
    embed_metadata(path, {"y": 2})
    assert tflite_metadata_entries(path)["edgepose"] == b'{"y": 2}' and len(tflite_metadata_entries(path)) == 3


def test_bad_files_give_one_line_errors(tmp_path):
    t = tmp_path / "x.tflite"
    t.write_bytes(b"garbage, not a flatbuffer")
    with pytest.raises(EdgeposeError, match=r"x\.tflite: not a readable TFLite flatbuffer"):
        read_metadata(t)
    sidecar_path(t).write_text("{not json")
    with pytest.raises(EdgeposeError, match=r"x\.tflite\.json: artifact metadata is not valid JSON") as e:
        read_metadata(t)
    assert "\n" not in str(e.value)
    x = tmp_path / "m.xml"
    x.write_text("<net><layers>")
    with pytest.raises(EdgeposeError, match=r"m\.xml: not a readable OpenVINO IR file"):
        read_embedded(x)
    assert read_metadata(tmp_path / "unknown.pth") == {}
