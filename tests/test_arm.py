"""The Raspberry Pi / Android hand-off: TFLite artifacts on emulated 64-bit ARM agree with x86, and the
Android reference (examples/android) follows edgepose.processing.

The end-to-end ARM check (``tools/arm_check.py``) is slow and needs root plus, for its first build, the Debian
mirror and PyPI; it skips with the reason when it cannot run here.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import start_job
from .helpers import REPO

TOOLS = REPO / "tools"
ANDROID = REPO / "examples" / "android"
COCO_KEYPOINTS_HEAD = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder"]
HEAVY = {"torch", "tensorflow", "onnxruntime", "openvino", "onnx", "nncf", "keras", "tf-keras"}


def _tool(name: str):
    """A module of tools/ (they import each other as top-level modules)."""
    import importlib

    sys.path.insert(0, str(TOOLS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(TOOLS))


# ------------------------------------------------------------------------------------- the ARM check
@pytest.mark.slow
@pytest.mark.background("arm")
def test_arm_check_agrees_with_x86(demo_artifacts):
    """predict/eval/bench on emulated aarch64 with only edgepose[lite]; keypoints equal to the x86 ones.

    The check runs as the session's background job "arm" (tests/background.py), started as soon as the demo
    artifacts exist, on the one core qemu uses, while the other tests run; this test runs last and reads it."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip("the ARM check emulates aarch64 on an x86-64 Linux host")
    job = start_job("arm", demo_artifacts)
    assert job is not None
    proc = job.result(timeout=1500)
    report_path = Path(proc.args[proc.args.index("--out") + 1])
    if proc.returncode == 77:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, f"arm_check exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads(report_path.read_text())
    assert report["pass"] is True
    assert report["arm"]["machine"] == "aarch64" and report["host"]["machine"] == "x86_64"
    assert "qemu" in report["arm"]["emulator"].lower()
    # nothing but the lite group in the ARM venv, and every command ran there
    installed = {d.split("==")[0].lower() for d in report["arm"]["distributions"]}
    assert {"numpy", "opencv-python-headless", "ai-edge-litert", "pycocotools", "edgepose"} <= installed
    assert not installed & HEAVY
    assert report["lite_only"]["heavy_importable"] == []
    assert report["lite_only"]["commands_ok"] == {"predict": True, "eval": True, "bench": True}
    assert report["xnnpack"] == {"x86": True, "arm": True}
    assert report["versions"]["mode"] == "host" and report["versions"]["differ"] == {}  # only the arch differs
    # Recompute the agreement from the raw outputs of both sides, independently of the report's own table.
    host = json.loads((Path(report["outputs"]["x86"]) / "results.json").read_text())
    arm = json.loads((Path(report["outputs"]["arm"]) / "results.json").read_text())
    arm_steps = {s["id"]: s for s in arm["steps"]}
    worst: dict[str, float] = {}
    n_points = 0
    for h in host["steps"]:
        g = arm_steps[h["id"]]
        assert h["rc"] == 0 and g["rc"] == 0, (h["id"], h.get("error"), g.get("error"))
        if h["id"].startswith("predict"):
            hk = np.array([p["keypoints"] for p in h["outputs"]["prediction"]["persons"]], dtype=np.float64)
            gk = np.array([p["keypoints"] for p in g["outputs"]["prediction"]["persons"]], dtype=np.float64)
            assert hk.shape == gk.shape and hk.shape[1:] == (17, 3)
            n_points += hk.shape[0] * 17
            prec = "int8" if "_int8" in h["id"] else "fp32"
            worst[prec] = max(worst.get(prec, 0.0), float(np.abs(hk[..., :2] - gk[..., :2]).max()))
        if h["id"].startswith("eval"):
            hm, gm = h["outputs"]["metrics"]["metrics"], g["outputs"]["metrics"]["metrics"]
            assert hm.keys() == gm.keys() and "AP" in hm
            for k in hm:
                assert hm[k] == pytest.approx(gm[k], abs=1e-4), k
    # both artifacts predict on one real photo; INT8 also evals one synthetic val image (FP32 costs ~40 s per
    # inference under emulation: a synthetic image with two people, flip test, ~3 minutes)
    assert n_points >= 2 * 17
    scores = [kp[2] for h in host["steps"] if h["id"].startswith("predict")
              for p in h["outputs"]["prediction"]["persons"] for kp in p["keypoints"]]  # fmt: skip
    assert np.mean(np.array(scores) > 0.1) > 0.5, "no real peaks: the agreement would say nothing"
    assert worst["int8"] <= 1e-3  # XNNPACK's INT8 kernels agree on x86 and ARM (a trial: bit-identical)
    assert worst["fp32"] <= 1e-3  # float reassociation only (a trial: ~1e-5 px)
    rows = {r["precision"]: r for r in report["artifacts"]}
    assert rows["int8"]["max_abs_diff_px"] == pytest.approx(worst["int8"], abs=1e-12)
    assert rows["fp32"]["max_abs_diff_px"] == pytest.approx(worst["fp32"], abs=1e-12)


def _fake_results(shift: float = 0.0, fail: bool = False) -> dict:
    kp = [[[10.0 + i, 20.0 + i, 0.5] for i in range(17)]]
    moved = [[[x + shift, y, s] for x, y, s in p] for p in kp]
    return {"steps": [
        {"id": "predict a_int8.tflite img.jpg", "rc": 1 if fail else 0, "error": None,
         "outputs": {"prediction": {"persons": [{"keypoints": p} for p in moved]}}},
        {"id": "eval a_int8.tflite", "rc": 0, "error": None, "outputs": {"metrics": {"metrics": {"AP": 0.5}}}},
    ]}  # fmt: skip


def _fake_job() -> dict:
    return {"artifacts": ["a_int8.tflite"], "precisions": {"a_int8.tflite": "int8"}, "steps": [
        {"id": "predict a_int8.tflite img.jpg", "kind": "predict", "artifact": "a_int8.tflite"},
        {"id": "eval a_int8.tflite", "kind": "eval", "artifact": "a_int8.tflite"},
    ]}  # fmt: skip


def test_compare_passes_identical_and_flags_a_shift():
    ac = _tool("arm_check")
    same = ac.compare(_fake_job(), _fake_results(), _fake_results())[0]
    assert same["pass"] and same["identical"] and same["keypoints"] == 17 and same["max_abs_diff_px"] == 0.0
    moved = ac.compare(_fake_job(), _fake_results(), _fake_results(shift=0.25))[0]
    assert not moved["pass"] and not moved["identical"]
    assert moved["max_abs_diff_px"] == pytest.approx(0.25)
    small = ac.compare(_fake_job(), _fake_results(), _fake_results(shift=1e-4))[0]
    assert small["pass"] and not small["identical"]
    broken = ac.compare(_fake_job(), _fake_results(), _fake_results(fail=True))[0]
    assert not broken["pass"] and any("on arm" in e for e in broken["errors"])


def test_lite_requirements_are_the_pyproject_lite_group():
    """The ARM venv gets exactly edgepose's core dependencies plus the lite group: no engine beyond LiteRT."""
    reqs = _tool("arm_rootfs").lite_requirements()
    names = {r.split(";")[0].split(">")[0].split("=")[0].strip().lower() for r in reqs}
    assert names == {"numpy", "opencv-python-headless", "ai-edge-litert", "pycocotools"}


# ------------------------------------------------------------------------------------ the Android hand-off
def test_read_artifact_prints_the_app_contract(demo_artifacts, tmp_path):
    """The contract read back from the INT8 artifact matches the mmpose spec (sizes, normalisation, names)."""
    art = demo_artifacts / "demo_coco_256x192_int8.tflite"
    out = tmp_path / "contract.json"
    proc = subprocess.run([sys.executable, str(ANDROID / "read_artifact.py"), str(art), "--json", str(out)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "layout NHWC" in proc.stdout and "nose" in proc.stdout
    c = json.loads(out.read_text())
    assert c["precision"] == "int8" and c["tensor_source"] == "LiteRT interpreter"
    assert c["input"]["shape"] == [1, 256, 192, 3] and c["input"]["layout"] == "NHWC"  # 256x192 = H x W
    assert c["output"]["shape"] == [1, 64, 48, 17] and c["output"]["heatmap_size_wh"] == [48, 64]
    assert c["input"]["mean_rgb_0_255"] == [123.675, 116.28, 103.53]  # mmpose: ImageNet mean * 255
    assert c["input"]["std_rgb_0_255"] == [58.395, 57.12, 57.375]
    q = c["input"]["quantization"]
    assert (c["input"]["dtype"] == "float32") == (q is None)
    assert c["keypoints"][:6] == COCO_KEYPOINTS_HEAD and len(c["keypoints"]) == 17
    assert [15, 13] in c["skeleton"] and len(c["skeleton"]) == 19
    assert c["flip_test"]["flip_pairs"][0] == [1, 2] and c["crop"]["box_padding"] == 1.25
    assert c["crop"]["aspect_ratio"] == pytest.approx(0.75)


def test_read_artifact_rejects_a_file_without_metadata(tmp_path):
    bad = tmp_path / "plain.tflite"
    bad.write_bytes(b"\x00" * 64)
    proc = subprocess.run([sys.executable, str(ANDROID / "read_artifact.py"), str(bad)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "plain.tflite" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


KOTLIN_MAIN = """
import org.edgepose.example.*
import java.io.File

fun main(args: Array<String>) {
    val lines = File(args[0]).readLines()
    fun nums(i: Int) = lines[i].trim().split(" ")
    val (iw, ih) = nums(0).map { it.toInt() }
    val img = nums(1).map { it.toInt().toByte() }.toByteArray()
    val b = nums(2).map { it.toDouble() }
    val hm = nums(3).map { it.toFloat() }.toFloatArray()
    val fl = nums(4).map { it.toFloat() }.toFloatArray()
    val pairs = Array(8) { intArrayOf(2 * it + 1, 2 * it + 2) }
    val model = PoseModel(192, 256, 17, flipPairs = pairs)
    val cs = PoseDecoder.centerScale(b[0], b[1], b[2], b[3], model)
    val merged = PoseDecoder.mergeFlip(hm, fl, model)
    File(args[1]).printWriter().use { out ->
        out.println("${cs.cx} ${cs.cy} ${cs.sw} ${cs.sh}")
        out.println(PoseDecoder.crop(img, iw, ih, cs, model).joinToString(" "))
        out.println(PoseDecoder.crop(img, iw, ih, cs, model, mirror = true).joinToString(" "))
        val raw = PoseDecoder.cropBytes(img, iw, ih, cs, model)
        out.println(raw.joinToString(" ") { (it.toInt() and 0xFF).toString() })
        out.println(merged.joinToString(" "))
        out.println(PoseDecoder.decode(merged, cs, model).joinToString(" ") { it.joinToString(" ") })
    }
}
"""


KOTLIN_DET_MAIN = """
import org.edgepose.example.*
import java.io.File

// DetMainKt IN OUT: line 0 "mode imgW imgH inputW inputH centered bgr thr iou topK nchw numClasses", line 1 the
// floats (an RGB frame's bytes for mode input), line 2 mmdeploy's labels; writes one box (or the input) a line
fun main(args: Array<String>) {
    val lines = File(args[0]).readLines()
    val h = lines[0].trim().split(" ")
    val (iw, ih, w, hh) = h.subList(1, 5).map { it.toInt() }
    val model = DetectorModel(w, hh, bgr = h[6] == "1", centered = h[5] == "1", scoreThreshold = h[7].toFloat(),
        iouThreshold = h[8].toFloat(), topK = h[9].toInt(),
        mean = if (h[0] == "input") floatArrayOf(10f, 20f, 30f) else floatArrayOf(123.675f, 116.28f, 103.53f),
        std = if (h[0] == "input") floatArrayOf(2f, 4f, 8f) else floatArrayOf(58.395f, 57.12f, 57.375f),
        pad = intArrayOf(114, 114, 114))
    val lb = DetectionDecoder.fit(iw, ih, model)
    val nums = lines[1].trim().split(" ")
    val boxes = when (h[0]) {
        "input" -> listOf(DetectionDecoder.input(nums.map { it.toInt().toByte() }.toByteArray(), iw, ih, lb, model))
        "centernet" ->
            DetectionDecoder.decodeCenterNet(nums.map { it.toFloat() }.toFloatArray(), lb, model, h[10] == "1")
        "yolo" -> DetectionDecoder.decodeYolo(nums.map { it.toFloat() }.toFloatArray(), h[11].toInt(), lb, model)
        else -> DetectionDecoder.decodeMmdeploy(nums.map { it.toFloat() }.toFloatArray(),
            lines[2].trim().split(" ").map { it.toLong() }.toLongArray(), lb, model)
    }
    File(args[1]).printWriter().use { out ->
        out.println("${lb.sx} ${lb.sy} ${lb.dx} ${lb.dy}")
        for (b in boxes) out.println(b.joinToString(" "))
    }
}
"""


@pytest.fixture(scope="module")
def kotlin_decoder(tmp_path_factory) -> Path:
    """PoseDecoder.kt compiled for the JVM with a small main (skips without kotlinc: `apt-get install kotlin`)."""
    if not (shutil.which("kotlinc") and shutil.which("java")):
        pytest.skip("kotlinc/java not installed (Debian: apt-get install kotlin): Kotlin decoder not checked")
    d = tmp_path_factory.mktemp("kotlin")
    (d / "Main.kt").write_text(KOTLIN_MAIN)
    (d / "DetMain.kt").write_text(KOTLIN_DET_MAIN)  # compiled in the same kotlinc run (it costs ~30 s a run)
    proc = subprocess.run(["kotlinc", str(ANDROID / "PoseDecoder.kt"), str(ANDROID / "DetectionDecoder.kt"),
                           str(d / "Main.kt"), str(d / "DetMain.kt"), "-include-runtime", "-d", str(d / "check.jar")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return d / "check.jar"


def _heatmaps(rng: np.random.Generator, k: int = 17, h: int = 64, w: int = 48) -> np.ndarray:
    """Gaussian peaks anywhere (borders included) over noise; the nose (no flip partner) is all negative."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = rng.normal(0, 0.01, (k, h, w)).astype(np.float32)
    for j in range(k):
        cx, cy = rng.uniform(-2, w + 1), rng.uniform(-2, h + 1)
        out[j] += (rng.uniform(-0.2, 1) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 8)).astype(np.float32)
    out[0] = -np.abs(out[0])
    return out[None]


@pytest.mark.parametrize("seed", [0, 1])
def test_kotlin_decoder_follows_edgepose_processing(kotlin_decoder, tmp_path, seed):
    from edgepose.processing import box_to_center_scale, crop_batch, keypoints_from_heatmaps, merge_flip, normalize
    from edgepose.spec import get_spec

    spec = get_spec("demo_coco_256x192")
    rng = np.random.default_rng(seed)
    ih, iw = 150, 211
    img = rng.integers(0, 256, (ih, iw, 3), dtype=np.uint8)  # noise: any sampling-geometry error shows
    box = [23.7, 10.2, 91.3, 160.9]  # reaches past the bottom: black border
    hm, fl = _heatmaps(rng), _heatmaps(rng)
    nhwc = lambda a: a[0].transpose(1, 2, 0).ravel()
    floats = lambda a: " ".join(repr(float(v)) for v in a)
    (tmp_path / "in.txt").write_text(
        f"{iw} {ih}\n" + " ".join(map(str, img.ravel())) + "\n" + " ".join(map(str, box)) + "\n"
        + floats(nhwc(hm)) + "\n" + floats(nhwc(fl)) + "\n"
    )  # fmt: skip
    subprocess.run(["java", "-cp", str(kotlin_decoder), "MainKt", str(tmp_path / "in.txt"),
                    str(tmp_path / "out.txt")], check=True, timeout=120)  # fmt: skip
    cs, crop, mirrored, crop_bytes, merged, kps = [
        np.array(line.split(), dtype=np.float64).astype(np.float32)
        for line in (tmp_path / "out.txt").read_text().splitlines()
    ]
    c, s = box_to_center_scale(np.array([box]), 192 / 256, spec.box_padding)
    np.testing.assert_array_equal(cs, np.concatenate([c[0], s[0]]))
    ref = normalize(crop_batch(img, c, s, spec.input_size), spec.mean, spec.std)[0].transpose(1, 2, 0)
    levels = np.abs(crop.reshape(256, 192, 3) - ref) * np.asarray(spec.std, dtype=np.float32)
    # cv2 interpolates in fixed point: most pixels equal, the rest a 1/32-pixel position step away
    assert (levels < 1e-3).mean() > 0.95 and levels.mean() < 0.2 and levels.max() <= 16
    np.testing.assert_array_equal(mirrored.reshape(256, 192, 3), crop.reshape(256, 192, 3)[:, ::-1])
    # the bytes a uint8-input artifact takes; crop() is their normalisation (to 1 ulp: Kotlin's mean is float32)
    raw = crop_bytes.reshape(1, 256, 192, 3).astype(np.uint8)
    ref_norm = normalize(raw, spec.mean, spec.std)[0].transpose(1, 2, 0)
    np.testing.assert_allclose(crop.reshape(256, 192, 3), ref_norm, rtol=0, atol=1e-6)
    grey = np.abs(raw[0].astype(np.int32) - crop_batch(img, c, s, spec.input_size)[0].astype(np.int32))
    assert (grey == 0).mean() > 0.95 and grey.max() <= 16
    ref_merged = merge_flip(hm, fl, spec.flip_pairs, spec.shift_heatmap)
    np.testing.assert_array_equal(merged, nhwc(ref_merged))
    ref_kps = keypoints_from_heatmaps(ref_merged, c, s)[0]
    np.testing.assert_allclose(kps.reshape(17, 3), ref_kps, atol=1e-4)
    assert ref_kps[0, 2] <= 0  # the no-positive joint went through the (-1, -1) branch on both sides


def _kotlin_det(jar: Path, tmp_path: Path, header: list, values, labels=None) -> tuple[np.ndarray, np.ndarray]:
    """Run DetMainKt: (sx, sy, dx, dy), and its rows (boxes, or the input) as float arrays."""
    body = " ".join(repr(float(v)) if isinstance(v, (float, np.floating)) else str(int(v)) for v in values)
    text = " ".join(map(str, header)) + "\n" + body + "\n" + ("" if labels is None else " ".join(map(str, labels)))
    (tmp_path / "det_in.txt").write_text(text + "\n")
    subprocess.run(["java", "-cp", str(jar), "DetMainKt", str(tmp_path / "det_in.txt"), str(tmp_path / "det_out.txt")],
                   check=True, timeout=120)  # fmt: skip
    rows = (tmp_path / "det_out.txt").read_text().splitlines()
    geo = np.array(rows[0].split(), np.float64)
    out = [np.array(r.split(), np.float32) for r in rows[1:]]
    return geo, (np.stack(out) if out else np.zeros((0, 5), np.float32))


def test_kotlin_detection_decoder_follows_edgepose_detection(kotlin_decoder, tmp_path):
    """DetectionDecoder.kt on the demo detector's real outputs (PyTorch, 3 synthetic scenes, NCHW and NHWC), on
    random YOLO and mmdeploy outputs, and its letterbox: the boxes equal edgepose.detection's to float32."""
    torch = pytest.importorskip("torch")
    from edgepose import synthetic
    from edgepose.detection import PersonDetector, decode_mmdeploy, decode_yolo, letterbox
    from edgepose.models import load_model
    from edgepose.spec import get_spec

    spec = get_spec("demo_person_detector")
    det = PersonDetector(spec, score_threshold=0.05)
    model = load_model(spec, None, progress=False)
    w, h = spec.input_size
    for i, nchw in ((0, True), (1, False), (2, True)):
        img, _ = synthetic.render_scene(np.random.default_rng([31337, i]))
        img = np.ascontiguousarray(img[: 200 + 40 * i, : 300 - 30 * i])  # other aspect ratios: other letterboxes
        x, lb = det.preprocess(img)
        with torch.no_grad():
            out = model(torch.from_numpy(x)).numpy()
        want = det.decode(out, lb)
        assert len(want) >= 2
        flat = out[0].ravel() if nchw else out[0].transpose(1, 2, 0).ravel()
        header = ["centernet", img.shape[1], img.shape[0], w, h, 1, 0, 0.05, 0.6, 100, int(nchw), 0]
        geo, got = _kotlin_det(kotlin_decoder, tmp_path, header, flat)
        assert tuple(geo) == (lb.sx, lb.sy, lb.dx, lb.dy)
        np.testing.assert_array_equal(got, want)
    rng = np.random.default_rng(7)
    # YOLO: 3 classes, 400 candidates, many overlapping; a 1280x720 frame centred in 640x640
    n = 400
    cxy = rng.uniform(0, 640, (2, n))
    wh = rng.uniform(5, 200, (2, n))
    yolo = np.concatenate([cxy, wh, rng.uniform(0, 1, (3, n))]).astype(np.float32)[None]
    lb = letterbox(np.zeros((720, 1280, 3), np.uint8), (640, 640), 114)[1]
    want = decode_yolo(yolo, 0, 0.3, 0.6)
    want[:, :4] = lb.to_image(want[:, :4])
    want = want[(want[:, 2] > want[:, 0]) & (want[:, 3] > want[:, 1])]
    geo, got = _kotlin_det(kotlin_decoder, tmp_path, ["yolo", 1280, 720, 640, 640, 1, 0, 0.3, 0.6, 100, 0, 3],
                           yolo[0].ravel())  # fmt: skip
    assert len(want) > 10
    np.testing.assert_array_equal(got, want)
    # mmdeploy: 100 rows, labels 0..2, top-left letterbox of a 500x900 frame in 640x640
    dets = np.concatenate([np.sort(rng.uniform(0, 640, (100, 2, 2)), 1).transpose(0, 2, 1).reshape(100, 4),
                           rng.uniform(0, 1, (100, 1))], 1).astype(np.float32)[None]  # fmt: skip
    labels = rng.integers(0, 3, (1, 100))
    lb = letterbox(np.zeros((900, 500, 3), np.uint8), (640, 640), 114, center=False)[1]
    want = decode_mmdeploy(dets, labels, 0, 0.3)
    want[:, :4] = lb.to_image(want[:, :4])
    want = want[(want[:, 2] > want[:, 0]) & (want[:, 3] > want[:, 1])]
    geo, got = _kotlin_det(kotlin_decoder, tmp_path, ["mmdeploy", 500, 900, 640, 640, 0, 0, 0.3, 0.6, 100, 0, 0],
                           dets[0].ravel(), labels[0])  # fmt: skip
    assert geo[2] == geo[3] == 0 and len(want) > 5
    np.testing.assert_array_equal(got, want[np.argsort(-want[:, 4], kind="stable")])
    # the letterboxed input (BGR, mean/std 10,20,30 / 2,4,8): OpenCV's INTER_LINEAR to a grey level
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    geo, got = _kotlin_det(kotlin_decoder, tmp_path, ["input", 53, 37, 40, 24, 1, 1, 0, 0, 0, 0, 0], img.ravel())
    boxed, lb = letterbox(np.ascontiguousarray(img[..., ::-1]), (40, 24), (114, 114, 114))
    levels = got.reshape(24, 40, 3) * np.float32([2, 4, 8]) + np.float32([10, 20, 30])
    diff = np.abs(levels - boxed)
    # OpenCV resizes uint8 in 11-bit fixed point: ~90 % of the levels equal, the rest one level off
    assert tuple(geo) == (lb.sx, lb.sy, lb.dx, lb.dy) and diff.max() <= 1.01 and (diff < 0.01).mean() > 0.85
