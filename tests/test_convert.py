"""Conversion of the demo model to every target and precision (one shared session conversion).

Every number is checked against PyTorch run here, on crops of real COCO sample images (not the converter's
own parity crops), with the error and SNR computed in the test; metadata is read back with each format's own
library (onnx, openvino, the TFLite flatbuffer schema), not edgepose's readers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import CONVERT_DEPS
from tests.helpers import SAMPLES

for _m in CONVERT_DEPS:
    pytest.importorskip(_m)

pytestmark = pytest.mark.slow  # the shared conversion takes ~1-2 minutes on 2 cores

from edgepose.converters import targets as _targets  # noqa: E402,F401  (registers every target)
from edgepose.converters.base import TARGETS  # noqa: E402

from edgepose.files import sha256_of  # noqa: E402

# Every registered target and precision: a new target or precision is converted and checked here for free.
EXPECTED = {name: t.precisions for name, t in TARGETS.items()}
SUFFIX = {name: t.suffix for name, t in TARGETS.items()}
MIN_SNR = {"fp16": 40.0, "int8": 15.0}


def _snr_db(ref: np.ndarray, out: np.ndarray) -> float:
    ref, out = ref.astype(np.float64), out.astype(np.float64)
    return float(10 * np.log10((ref**2).sum() / max(((out - ref) ** 2).sum(), 1e-300)))


N_SYNTH = 6


@pytest.fixture(scope="module")
def real_inputs():
    """Crops of people in the real COCO sample images (ground-truth boxes) followed by ``N_SYNTH`` synthetic
    figure crops (unseen renders, in the demo model's own domain). INT8 is judged on the latter only: the demo
    model never saw a real photo, so its heatmaps there are near-flat noise that no INT8 scale is fitted to."""
    from edgepose.converters.parity import synthetic_parity_crops

    from edgepose.processing import TopDownPipeline, normalize, read_image
    from edgepose.spec import DEFAULT_MODEL, get_spec

    spec = get_spec(DEFAULT_MODEL)
    pipe = TopDownPipeline(spec)
    ann = SAMPLES / "coco" / "test_coco.json"
    batches = []
    if ann.is_file():
        data = json.loads(ann.read_text())
        files = {im["id"]: im["file_name"] for im in data["images"]}
        for a in data["annotations"][:6]:
            img = read_image(SAMPLES / "coco" / files[a["image_id"]])
            c, s = pipe.boxes_to_center_scale(np.array([a["bbox"]], np.float32))
            batches.append(pipe.preprocess(img, c, s))
    batches.append(normalize(synthetic_parity_crops(spec, N_SYNTH, seed=99), spec.mean, spec.std))
    return np.concatenate(batches)


@pytest.fixture(scope="module")
def torch_reference(demo_checkpoint, real_inputs):
    import torch

    from edgepose.models import load_model
    from edgepose.spec import DEFAULT_MODEL

    model = load_model(DEFAULT_MODEL, str(demo_checkpoint), progress=False)
    with torch.inference_mode():
        return model(torch.from_numpy(real_inputs)).numpy()


def _artifacts(out_dir):
    for target, precs in EXPECTED.items():
        for p in precs:
            yield target, p, out_dir / f"demo_coco_256x192_{p}{SUFFIX[target]}"


def test_conversion_writes_every_artifact_offline(demo_conversion, demo_artifacts):
    assert demo_conversion.network_attempts == []
    assert demo_conversion.written
    names = sorted(p.name for p in demo_artifacts.iterdir())
    expected = []
    for _, _, path in _artifacts(demo_artifacts):
        expected += [path.name, path.name + ".json"]
        if path.suffix == ".xml":
            expected.append(path.with_suffix(".bin").name)
    assert names == sorted(expected)  # no temp folder or stray file left behind
    assert {(a.target, a.precision) for a in demo_conversion.artifacts} == {
        (t, p) for t, ps in EXPECTED.items() for p in ps
    }


def test_reference_accuracy_is_recorded_in_every_artifact(demo_conversion):
    """convert measures the PyTorch original once on the demo's val split and records it (a torch-less device
    bench then still reports drops). 0.7535 is the AP that `edgepose eval` measured when the model was trained."""
    recs = [a.metadata["reference_accuracy"] for a in demo_conversion.artifacts]
    assert all(r == recs[0] for r in recs)
    rec = recs[0]
    assert rec["metric"] == "AP" and round(rec["value"], 4) == 0.7535 and rec["flip_test"] is True
    assert rec["num_images"] == 300 and len(rec["ann_sha256"]) == 64


def test_parity_figures_meet_tolerance(demo_conversion):
    for a in demo_conversion.artifacts:
        par = a.metadata["parity"]
        assert par["passed"] and not a.failed, (a.path.name, par)
        if a.precision == "fp32":
            assert par["rel_max_err"] <= 1e-4
        else:
            assert par["snr_db"] >= MIN_SNR[a.precision]
        assert par["n"] == 16 and par["inputs"].startswith("holdout crops of default_256x192.npz")
        assert par["precision_used"] == "fp32"  # the checked figures: float ops in float32 on every engine


@pytest.mark.parametrize("target,precision", [(t, p) for t, ps in EXPECTED.items() for p in ps])
def test_runtime_heatmaps_match_pytorch(demo_artifacts, real_inputs, torch_reference, target, precision):
    from edgepose.runtimes import load_runtime, runtime_for

    path = demo_artifacts / f"demo_coco_256x192_{precision}{SUFFIX[target]}"
    rt = load_runtime(path, **runtime_for(path).strict_options)  # float ops in float32 (OpenVINO: not bf16)
    out = rt(real_inputs)  # a batch through a batch-1 artifact: chunked by the runtime
    assert out.shape == torch_reference.shape == (len(real_inputs), 17, 64, 48)
    if precision == "fp32":
        rel = np.abs(out - torch_reference).max() / np.abs(torch_reference).max()
        assert rel <= 1e-4, rel
    elif precision == "fp16":
        assert _snr_db(torch_reference, out) >= MIN_SNR[precision]
    else:
        assert _snr_db(torch_reference[-N_SYNTH:], out[-N_SYNTH:]) >= MIN_SNR[precision]
    assert rt.precision == precision and rt.batch_size == 1


def test_openvino_parity_checked_in_f32_with_the_default_beside(demo_conversion):
    """FP32 tolerance (1e-4) is checked on OpenVINO computing in f32; what the plugin runs by default (bf16 on
    AMX CPUs) is recorded beside it, with its own figures when it differs."""
    import openvino as ov

    for a in demo_conversion.artifacts:
        if a.target != "openvino":
            continue
        par = a.metadata["parity"]
        assert par["precision_used"] == "fp32" and par["runtime_options"] == {"inference_precision": "f32"}
        plain = ov.Core().compile_model(str(a.path), "CPU").get_property("INFERENCE_PRECISION_HINT").to_string()
        d = par["default"]
        assert d["precision_used"] == {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}[plain]
        assert d["same_as_checked"] is (plain == "f32")
        if plain != "f32" and a.precision != "int8":
            assert 30.0 < d["snr_db"] < par["snr_db"]  # bf16 keeps 8 mantissa bits: ~40 dB, far below f32's


def test_litert_fp16_artifact_computes_in_fp32(demo_artifacts, real_inputs):
    """FP16 TFLite widens its fp16 weights and runs float32 kernels, XNNPACK included: XNNPACK's output equals
    the built-in float32 kernels' to float32 rounding (fp16 arithmetic would differ by ~1e-3 of the peak)."""
    from edgepose.bench.report import label
    from edgepose.runtimes import load_runtime

    path = demo_artifacts / "demo_coco_256x192_fp16.tflite"
    xnn = load_runtime(path)
    builtin = load_runtime(path, xnnpack=False)
    a, b = xnn(real_inputs[:4]), builtin(real_inputs[:4])
    assert np.abs(a - b).max() / np.abs(b).max() < 1e-5
    assert xnn.precision_used == "fp32" and xnn.precision == "fp16"
    row = {"format": "tflite", "precision": "fp16", "precision_used": xnn.precision_used, "status": "ok"}
    assert label(row) == "TFLite FP16 (ran fp32)"


def test_onnx_fp16_artifact_computes_in_fp32_on_cpu(demo_artifacts, tmp_path):
    """ONNX Runtime's CPU graph optimiser folds the fp16 weights' casts: every convolution of the optimised
    graph has float32 weights (read back from the graph ORT writes), so the FP16 file runs float32 kernels."""
    import onnx
    import onnxruntime as ort

    from edgepose.runtimes import load_runtime

    path = demo_artifacts / "demo_coco_256x192_fp16.onnx"
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(tmp_path / "optimised.onnx")).graph
    types = {i.name: i.data_type for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert len(convs) >= 50 and all(types[n.input[1]] == onnx.TensorProto.FLOAT for n in convs)
    rt = load_runtime(path)
    assert rt.precision == "fp16" and rt.precision_used == "fp32"


def test_onnx_int8_runs_every_quantised_convolution_as_an_int8_kernel(demo_artifacts, tmp_path):
    """In the graph ONNX Runtime's CPU provider really runs (its optimised graph, written back), every convolution
    of the INT8 artifact but the float ones its metadata names is a fused int8 QLinearConv: none is left in float
    between Q/DQ pairs (with int8 activations, the 15 beside the residual connections were)."""
    import onnx
    import onnxruntime as ort

    path = demo_artifacts / "demo_coco_256x192_int8.onnx"
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    floats = meta["conversion"]["float_nodes"]
    convs = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ran = onnx.load(str(tmp_path / "optimised.onnx")).graph.node
    fused = [n for n in ran if n.op_type == "QLinearConv"]
    float_convs = [n for n in ran if n.op_type == "Conv"]  # the default domain's and the NCHWc float kernel's
    assert len(floats) == 1 and len(convs) > 50
    assert len(fused) == len(convs) - len(floats), (len(fused), len(convs))
    assert len(float_convs) == len(floats), [n.name for n in float_convs]
    assert meta["conversion"]["activations"] == "uint8 asymmetric"


def _spec_dict():
    from edgepose.spec import DEFAULT_MODEL, get_spec

    return json.loads(json.dumps(get_spec(DEFAULT_MODEL).to_dict()))


def _embedded_by_format_library(path) -> dict:
    """The embedded JSON read with the format's own library (independent of edgepose.artifact)."""
    if path.suffix == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        return json.loads(props["edgepose"])
    if path.suffix == ".xml":
        import openvino as ov

        model = ov.Core().read_model(str(path))
        return json.loads(model.get_rt_info(["edgepose"]).astype(str))
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    [entry] = [e for e in m.metadata if e.name in (b"edgepose", "edgepose")]
    return json.loads(bytes(m.buffers[entry.buffer].data).decode())


@pytest.mark.parametrize("target,precision", [(t, p) for t, ps in EXPECTED.items() for p in ps])
def test_metadata_sidecar_and_embedded_reproduce_the_spec(demo_artifacts, target, precision):
    from edgepose.artifact import read_embedded, read_metadata
    from edgepose.spec import DEFAULT_MODEL, get_spec, spec_from_metadata

    path = demo_artifacts / f"demo_coco_256x192_{precision}{SUFFIX[target]}"
    sidecar = json.loads((path.parent / (path.name + ".json")).read_text())
    embedded = _embedded_by_format_library(path)
    assert sidecar == read_metadata(path) and embedded == read_embedded(path)
    # the sidecar is the embedded copy plus what would change the file it describes: the date, the timings,
    # and the file's own size and sha256
    assert _without_volatile(sidecar) == embedded and "created" not in embedded
    assert not any("seconds" in k for k in embedded["conversion"]) and sidecar["conversion"]["seconds"] >= 0
    assert sidecar["file"] == {"name": path.name, "size": path.stat().st_size, "sha256": sha256_of(path)}
    if target == "openvino":  # the embedded copy vouches for the weights file
        assert embedded["companions"][".bin"]["sha256"] == sha256_of(path.with_suffix(".bin"))
    assert sidecar["model"] == _spec_dict()
    assert spec_from_metadata(sidecar) == get_spec(DEFAULT_MODEL)
    assert sidecar["precision"] == precision and sidecar["format"] == target
    assert sidecar["decode"] == "default" and sidecar["batch"] == 1
    layout = "NHWC" if target == "tflite" else "NCHW"
    assert sidecar["layout"] == {"input": layout, "output": layout}
    w, h = 192, 256
    assert sidecar["input"]["shape"] == ([1, h, w, 3] if layout == "NHWC" else [1, 3, h, w])
    assert sidecar["output"]["shape"] == ([1, h // 4, w // 4, 17] if layout == "NHWC" else [1, 17, h // 4, w // 4])
    assert sidecar["input"]["dtype"] == "float32" and sidecar["input"]["quantization"] is None
    assert sidecar["tools"]["edgepose"] and sidecar["tools"]["torch"]
    assert {"rel_max_err", "snr_db", "kp_mean_px", "kp_within", "tolerance"} <= set(sidecar["parity"])
    assert ("calibration" in sidecar) == (precision == "int8")
    if precision == "int8":
        assert sidecar["calibration"]["num"] == 32 and sidecar["calibration"]["bundled"] is True
        task = sidecar["parity"]["task"]  # the task metric on the control split, beside the tensor parity
        assert task["metric"] == "AP" and task["max_drop"] == 0.03 and task["passed"] is True
        assert task["drop"] == pytest.approx(task["reference"] - task["value"]) and abs(task["drop"]) < 0.03
        assert task["control"]["num_images"] == 30 and task["control"]["source"] == "synthetic val split"
        assert "accuracy_control" not in sidecar  # no --max-drop


def _without_volatile(sidecar: dict) -> dict:
    meta = {k: v for k, v in sidecar.items() if k not in ("created", "file")}
    meta["conversion"] = {k: v for k, v in sidecar["conversion"].items() if "seconds" not in k}
    return meta


def test_embedded_metadata_alone_is_enough(demo_artifacts, tmp_path):
    """Without the sidecar, a runtime still finds layout and precision in the file (copied elsewhere)."""
    import shutil

    from edgepose.runtimes import load_runtime

    src = demo_artifacts / "demo_coco_256x192_fp16.tflite"
    dst = tmp_path / "renamed.tflite"
    shutil.copyfile(src, dst)
    rt = load_runtime(dst)
    assert rt.precision == "fp16" and rt.metadata["layout"]["input"] == "NHWC"
    assert rt.metadata == _without_volatile(json.loads((demo_artifacts / (src.name + ".json")).read_text()))


def _graph_ops(path) -> set[str]:
    """Operator names of an artifact, read with the format's own library."""
    if path.suffix == ".onnx":
        import onnx

        return {n.op_type for n in onnx.load(str(path)).graph.node}
    if path.suffix == ".xml":
        import xml.etree.ElementTree as ET

        return {layer.get("type") for layer in ET.parse(path).getroot().iter("layer")}
    from edgepose.converters.targets.tflite.convert import tflite_operators

    return {k.split(" v")[0] for k in tflite_operators(path)}


TRANSPOSED = {".onnx": "ConvTranspose", ".xml": "ConvolutionBackpropData", ".tflite": "TRANSPOSE_CONV"}


@pytest.mark.parametrize("target,precision", [(t, p) for t, ps in EXPECTED.items() for p in ps])
def test_head_form_chosen_by_auto_is_in_the_graph_and_the_metadata(demo_artifacts, target, precision):
    from edgepose.converters.base import TARGETS
    from edgepose.converters.transforms import REWRITES

    path = demo_artifacts / f"demo_coco_256x192_{precision}{SUFFIX[target]}"
    form = TARGETS[target].head_forms.get(precision, "deconv")
    conv = json.loads((path.parent / (path.name + ".json")).read_text())["conversion"]
    assert conv["head"] == form and conv["graph_rewrites"] == REWRITES[form]
    ops = _graph_ops(path)
    assert (TRANSPOSED[path.suffix] in ops) == (form == "deconv"), sorted(ops)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_tflite_has_no_transpose_conv_and_runs_in_one_xnnpack_partition(demo_artifacts, precision):
    from edgepose.converters.targets.tflite.convert import tflite_operators, xnnpack_delegation

    path = demo_artifacts / f"demo_coco_256x192_{precision}.tflite"
    ops = tflite_operators(path)
    assert not any(k.startswith("TRANSPOSE_CONV") for k in ops), ops
    assert ops.get("DEPTH_TO_SPACE v1" if precision == "fp32" else "DEPTH_TO_SPACE v2") == 3, ops
    assert xnnpack_delegation(path) == {"partitions": 1, "whole_graph": True}
