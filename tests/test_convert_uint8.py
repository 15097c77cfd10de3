"""``edgepose convert --input uint8`` for every target: the artifact takes the crop's bytes (uint8 NHWC RGB),
passes parity against PyTorch on the normalised floats, and scores the AP of its float twin.

The float twins come from the session's one float conversion (``demo_conversion``, 32 calibration crops, as
here). PyTorch and the accuracy are computed here, not read from edgepose's parity figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CONVERT_DEPS, start_job

for _m in CONVERT_DEPS:
    pytest.importorskip(_m)

# one more conversion (~1-2 minutes on 2 cores, a background job of the session) and eight small evaluations
pytestmark = [pytest.mark.slow, pytest.mark.background("u8")]

TARGETS = {"onnx": ".onnx", "tflite": ".tflite", "openvino": ".xml"}
PRECISIONS = ("fp32", "int8")
EVAL_IMAGES = 12


@dataclass
class _Artifact:
    target: str
    precision: str
    path: Path
    parity: dict


@dataclass
class _Conversion:
    """What ``edgepose convert --input uint8`` wrote, read back from its files and their sidecars."""

    out_dir: Path
    written: bool
    artifacts: list[_Artifact]


@pytest.fixture(scope="module")
def u8_conversion(tmp_path_factory, demo_checkpoint):
    """The conversion runs as the session's background job "u8" (tests/background.py) while the rest of the suite
    runs (the tests here run last); without the shipped checkpoint it runs here, the same command."""
    job = start_job("u8")
    if job is not None:
        r = job.result(timeout=1500)
    else:
        out = tmp_path_factory.mktemp("u8_artifacts") / "u8"
        r = subprocess.run([sys.executable, "-m", "edgepose", "convert", "--target", "all", "--num-calib", "32",
                            "--checkpoint", str(demo_checkpoint), "--out", str(out), "--quiet", "--precision",
                            "fp32,int8", "--input", "uint8", "--control-size", "10"],
                           capture_output=True, text=True, timeout=1500)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    out = Path(r.args[r.args.index("--out") + 1])
    arts = []
    for side in sorted(out.glob("*.json")):
        meta = json.loads(side.read_text())
        arts.append(_Artifact(meta["format"], meta["precision"], side.with_suffix(""), meta["parity"]))
    return _Conversion(out, bool(arts) and all(a.path.is_file() for a in arts), arts)


def _path(folder, target, precision, u8=True):
    return folder / f"demo_coco_256x192_{precision}{'_u8in' if u8 else ''}{TARGETS[target]}"


@pytest.fixture(scope="module")
def crops_and_reference(demo_checkpoint):
    import torch
    from edgepose.converters.parity import synthetic_parity_crops

    from edgepose.models import load_model
    from edgepose.processing import normalize
    from edgepose.spec import DEFAULT_MODEL, get_spec

    spec = get_spec(DEFAULT_MODEL)
    crops = synthetic_parity_crops(spec, 6, seed=77)
    model = load_model(DEFAULT_MODEL, str(demo_checkpoint), progress=False)
    with torch.inference_mode():
        ref = model(torch.from_numpy(normalize(crops, spec.mean, spec.std))).numpy()
    return crops, ref


def test_every_target_takes_uint8_crops_and_says_so(u8_conversion):
    from edgepose.artifact import read_embedded

    assert u8_conversion.written
    assert {(a.target, a.precision) for a in u8_conversion.artifacts} == {
        (t, p) for t in TARGETS for p in PRECISIONS if not (t == "onnx" and p == "fp16")
    }
    for a in u8_conversion.artifacts:
        assert a.path.name == _path(a.path.parent, a.target, a.precision).name and a.path.is_file()
        meta = json.loads((a.path.parent / (a.path.name + ".json")).read_text())
        embedded = read_embedded(a.path)  # the sidecar adds the file record, dates and timings only
        assert {k: v for k, v in meta.items() if k not in ("created", "file", "conversion")} == {
            k: v for k, v in embedded.items() if k != "conversion"}
        assert "created" not in embedded and meta["file"]["name"] == a.path.name
        assert meta["input"]["kind"] == "uint8_nhwc_rgb" and meta["input"]["dtype"] == "uint8"
        assert meta["input"]["shape"] == [1, 256, 192, 3] and meta["layout"]["input"] == "NHWC"
        assert meta["parity"]["passed"] and "fed as uint8 crops" in meta["parity"]["inputs"]


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("precision", PRECISIONS)
def test_uint8_artifact_matches_pytorch_on_the_normalised_crops(u8_conversion, crops_and_reference, target,
                                                                precision):  # fmt: skip
    from edgepose.runtimes import load_runtime

    crops, ref = crops_and_reference
    rt = load_runtime(_path(u8_conversion.out_dir, target, precision), **(
        {"inference_precision": "f32"} if target == "openvino" else {}))  # fmt: skip
    assert rt.input_kind == "uint8_nhwc_rgb"
    out = rt(crops)
    if precision == "fp32":
        assert np.abs(out - ref).max() / np.abs(ref).max() <= 1e-4
    else:
        snr = 10 * np.log10((ref.astype(np.float64) ** 2).sum() / ((out - ref).astype(np.float64) ** 2).sum())
        assert snr >= 15.0, snr


@pytest.fixture(scope="module")
def val_split(tmp_path_factory):
    from edgepose.synthetic import generate

    return generate(tmp_path_factory.mktemp("u8_val") / "val", "val", num_images=EVAL_IMAGES, seed=31)


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("precision", PRECISIONS)
def test_uint8_artifact_scores_the_float_artifacts_ap(u8_conversion, demo_artifacts, val_split, target, precision):
    """Same AP as the float twin: identical for FP32 (the same function up to float32 rounding), within noise
    for INT8 (the quantised first layer sees the same pixels; TFLite adds a uint8 -> int8 QUANTIZE step)."""
    from edgepose.evaluate import evaluate
    from edgepose.runtimes import load_runtime
    from edgepose.spec import DEFAULT_MODEL, get_spec

    spec = get_spec(DEFAULT_MODEL)
    ann, images = val_split
    ap = {}
    for u8 in (False, True):
        folder = u8_conversion.out_dir if u8 else demo_artifacts
        rt = load_runtime(_path(folder, target, precision, u8))
        ap[u8] = evaluate(spec, rt, "coco", ann, images, progress=False).metrics["AP"]
    assert ap[True] > 0.3  # the demo model on its own synthetic domain (sanity: not a broken artifact)
    assert abs(ap[True] - ap[False]) <= (1e-3 if precision == "fp32" else 0.03), ap


def test_read_artifact_tells_the_app_to_feed_bytes(u8_conversion, tmp_path):
    import subprocess
    import sys

    from tests.helpers import REPO

    art = _path(u8_conversion.out_dir, "tflite", "int8")
    out = tmp_path / "contract.json"
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "android" / "read_artifact.py"), str(art),
                           "--json", str(out)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    c = json.loads(out.read_text())
    assert c["input"]["kind"] == "uint8_nhwc_rgb" and c["input"]["dtype"] == "uint8"
    assert c["input"]["quantization"] is None and c["input"]["shape"] == [1, 256, 192, 3]
    assert "feed the crop's RGB bytes as they are" in c["input"]["rule"]


def test_uint8_int8_artifacts_are_scored_on_the_control_split(u8_conversion):
    """The task-metric check feeds each INT8 artifact what it takes (uint8 crops here) and records the drop."""
    for a in u8_conversion.artifacts:
        task = a.parity.get("task")
        assert (task is not None) == (a.precision == "int8")
        if task:
            assert task["control"]["num_images"] == 10 and task["passed"] and abs(task["drop"]) < 0.03
            assert 0.3 < task["value"] <= 1.0
