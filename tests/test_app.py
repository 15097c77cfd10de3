"""The app's frame loop (edgepose.app, ``edgepose run``, ``edgepose synth --video``): tracking, smoothing, batching,
video I/O, interrupts, and the synthetic video's ground truth. Everything here but the last tests runs without a
trained detector: boxes come from the synthetic video's ground truth (``--boxes``)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgepose.app import (
    OneEuroFilter,
    PoseTracker,
    box_from_keypoints,
    open_source,
    read_boxes,
    run_loop,
    score_video,
)
from edgepose.errors import EdgeposeError
from edgepose.metrics import id_switches
from edgepose.processing import TopDownPipeline
from edgepose.spec import DATASETS, DEFAULT_MODEL, get_spec
from edgepose.synthetic import generate_video, render_video

from .helpers import sigint_as_default

FRAMES = 24
DETECTOR_ASSET = Path(__file__).resolve().parents[1] / "edgepose" / "assets" / "demo_person_detector.pth"


def edgepose_cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgepose", *args], capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> tuple[Path, Path]:
    """A 24-frame, 3-person synthetic video: (annotations.json, video.mp4)."""
    return generate_video(tmp_path_factory.mktemp("synth_video"), FRAMES, seed=7, persons=3)


@pytest.fixture(scope="module")
def pose_onnx(eval_models) -> Path:
    return eval_models["onnx"]


def _onnx_runtime(path: Path):
    from edgepose.runtimes import load_runtime

    return load_runtime(path, threads=1)


def _read_all(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


# ----------------------------------------------------------------------------------------- pure parts
def test_one_euro_matches_the_papers_recurrence():
    """Against a scalar transcription of Casiez et al.'s algorithm (alpha = 1 / (1 + tau / Te))."""
    rng = np.random.default_rng(0)
    xs = np.cumsum(rng.normal(0, 3, 50)) + rng.normal(0, 1, 50)
    f = OneEuroFilter(min_cutoff=1.2, beta=0.1, d_cutoff=1.0)
    got = [float(f(np.array([x]), t / 30.0)[0]) for t, x in enumerate(xs)]

    def alpha(cutoff, te):
        return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff) / te)

    want, x_prev, dx_prev = [], None, 0.0
    for x in xs:
        if x_prev is None:
            x_prev = x
        else:
            dx = (x - x_prev) * 30.0
            dx_prev = alpha(1.0, 1 / 30.0) * dx + (1 - alpha(1.0, 1 / 30.0)) * dx_prev
            a = alpha(1.2 + 0.1 * abs(dx_prev), 1 / 30.0)
            x_prev = a * x + (1 - a) * x_prev
        want.append(x_prev)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # a still point with jitter comes out steadier
    f = OneEuroFilter(1.0, 0.0)
    noisy = 100 + rng.normal(0, 2, 200)
    out = np.array([f(np.array([v]), t / 30.0)[0] for t, v in enumerate(noisy)])
    assert out[20:].std() < noisy[20:].std() / 2


def test_box_from_keypoints():
    k = np.array([[10, 20, 0.9], [30, 60, 0.8], [500, 500, 0.1]], float)
    np.testing.assert_allclose(box_from_keypoints(k, 0.3, 1.0), [10, 20, 30, 60])
    np.testing.assert_allclose(box_from_keypoints(k, 0.3, 1.5), [5, 10, 35, 70])  # grown about the centre
    assert box_from_keypoints(k, 0.85, 1.25) is None  # one visible keypoint is no box


def test_id_switches_counts_a_swap_and_ignores_a_gap():
    a, b = [0, 0, 10, 10], [100, 0, 10, 10]
    gt = [{1: a, 2: b}, {1: a, 2: b}, {1: a, 2: b}, {1: a}, {1: a, 2: b}]
    pred = [{7: a, 8: b}, {8: a, 7: b}, {8: a, 7: b}, {8: a}, {8: a, 7: b}]
    r = id_switches(gt, pred)
    assert r == {"id_switches": 2, "matches": 9, "misses": 0, "false_positives": 0}
    r = id_switches(gt, [{7: a, 8: b}, {7: a}, {7: a, 8: [50, 50, 5, 5]}, {7: a}, {7: a, 8: b}])
    assert r == {"id_switches": 0, "matches": 7, "misses": 2, "false_positives": 1}


# ------------------------------------------------------------------------------------ synthetic video
def test_synth_video_ground_truth(video):
    ann, path = video
    doc = json.loads(ann.read_text())
    frames = _read_all(path)
    assert len(frames) == FRAMES == len(doc["images"])
    assert frames[0].shape == (256, 320, 3)
    by_track: dict[int, list] = {}
    for a in doc["annotations"]:
        by_track.setdefault(a["track_id"], []).append(a)
        x, y, w, h = a["bbox"]
        kp = np.asarray(a["keypoints"], float).reshape(17, 3)
        shown = kp[kp[:, 2] == 2]
        assert len(shown) and (shown[:, 0] >= x - 1).all() and (shown[:, 0] <= x + w + 1).all()
        assert (shown[:, 1] >= y - 1).all() and (shown[:, 1] <= y + h + 1).all()
    assert sorted(by_track) == [1, 2, 3]
    for anns in by_track.values():  # every figure moves
        xs = [a["bbox"][0] + a["bbox"][2] / 2 for a in anns]
        assert max(xs) - min(xs) > 5
    # the boxes are the figures' pixels: the decoded frame differs from the background inside each box
    img0, people = next(render_video(7, 1, (320, 256), 3))
    np.testing.assert_array_equal([p["bbox"] for p in people],
                                  [a["bbox"] for a in doc["annotations"] if a["image_id"] == 1])  # fmt: skip
    # seeded: the same seed renders the same frames; another seed does not
    again, _ = next(render_video(7, 1, (320, 256), 3))
    other, _ = next(render_video(8, 1, (320, 256), 3))
    assert np.array_equal(img0, again) and not np.array_equal(img0, other)
    # the video holds the rendered frames (lossy codec: close, not equal)
    assert np.abs(cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB).astype(int) - img0).mean() < 8


def test_synth_video_cli(tmp_path):
    r = edgepose_cli("synth", "--video", "--out", str(tmp_path / "v"), "--frames", "5", "--persons", "2",
                     "--size", "96x64")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert len(_read_all(tmp_path / "v" / "video.mp4")) == 5
    assert _read_all(tmp_path / "v" / "video.mp4")[0].shape == (64, 96, 3)
    r = edgepose_cli("synth", "--video", "--out", str(tmp_path / "w"), "--size", "12x5000")
    assert r.returncode == 2 and "--size" in r.stderr and "Traceback" not in r.stderr


# --------------------------------------------------------------------------------------- the tracker
def test_batched_pose_equals_one_by_one(video, eval_models):
    """All persons in one engine call give the keypoints of one call per person: ONNX Runtime with a dynamic
    batch, OpenVINO with a dynamic batch and with a fixed batch of 1 (the runtime face splits the batch)."""
    from edgepose.runtimes import load_runtime

    ann, path = video
    frame = next(open_source(str(path)).frames())
    boxes = read_boxes(ann)(0)
    assert len(boxes) == 3
    spec = get_spec(DEFAULT_MODEL)
    ref = None
    for key in ("onnx", "ov", "ov_b1"):
        rt = load_runtime(eval_models[key], threads=1)
        pipe = TopDownPipeline(spec, input_kind=rt.input_kind)
        calls = []

        def infer(batch, rt=rt, calls=calls):
            calls.append(len(batch))
            return rt(batch)

        together = pipe(infer, frame, boxes)
        assert calls == [3, 3]  # one call, and one for the flip test
        single = np.concatenate([pipe(rt, frame, boxes[i : i + 1]) for i in range(3)])
        np.testing.assert_allclose(together, single, atol=1e-3)
        if ref is None:
            ref = together
        # across engines, float rounding may move a near-tie argmax by a heatmap cell: nearly all agree
        assert (np.abs(together[..., :2] - ref[..., :2]) < 0.5).mean() > 0.95


def test_tracker_with_ground_truth_boxes(video, pose_onnx, demo_checkpoint):
    """--det-every 1 with ground-truth boxes: no identity switch; --det-every 4 asks for boxes on a quarter of the
    frames (more where a track weakens) and keeps every person; keypoint AP is scored against the ground truth."""
    ann, path = video
    gt = json.loads(ann.read_text())
    spec = get_spec(DEFAULT_MODEL)
    rt = _onnx_runtime(pose_onnx)
    scores = {}
    for k in (1, 4):
        asked = []
        boxes = read_boxes(ann)

        def boxes_for(i, boxes=boxes, asked=asked):
            asked.append(i)
            return boxes(i)

        results = []
        tr = PoseTracker(spec, rt, boxes_for=boxes_for, det_every=k, flip_test=False)
        s = run_loop(tr, open_source(str(path)), on_frame=results.append, progress=False)
        assert s.frames == FRAMES and s.interrupted is None
        assert all(r.detected == (r.index in asked) for r in results)
        assert set(range(0, FRAMES, k)) <= set(asked)
        scores[k] = score_video(gt, results, DATASETS["coco"].sigmas)
        if k == 1:
            assert asked == list(range(FRAMES))
        else:
            assert len(asked) < FRAMES
    assert scores[1]["id_switches"] == 0 and scores[1]["misses"] == 0
    assert scores[4]["misses"] <= FRAMES * 3 // 10
    if "_random" not in demo_checkpoint.name:  # the trained demo model (not conftest's stand-in) finds the figures
        assert scores[1]["AP"] > 0.3


def test_smoothing_changes_keypoints_and_keeps_ids(video, pose_onnx):
    ann, path = video
    spec = get_spec(DEFAULT_MODEL)
    rt = _onnx_runtime(pose_onnx)
    out = {}
    for smooth in (False, True):
        res = []
        tr = PoseTracker(spec, rt, boxes_for=read_boxes(ann), smooth=smooth, flip_test=False, fps=10)
        run_loop(tr, open_source(str(path)), on_frame=res.append, progress=False, max_frames=8)
        out[smooth] = res
    raw = np.stack([p.keypoints for r in out[False] for p in r.persons])
    smooth = np.stack([p.keypoints for r in out[True] for p in r.persons])
    assert [p.track_id for r in out[False] for p in r.persons] == [p.track_id for r in out[True] for p in r.persons]
    np.testing.assert_array_equal(raw[:3], smooth[:3])  # the first frame passes unchanged
    assert np.abs(raw[3:, :, :2] - smooth[3:, :, :2]).max() > 0.1


# --------------------------------------------------------------------------------------- the command
def test_run_writes_video_and_jsonl(video, pose_onnx, tmp_path):
    ann, path = video
    out, jl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    r = edgepose_cli("run", str(path), "--artifact", str(pose_onnx), "--boxes", str(ann), "--out", str(out),
                     "--jsonl", str(jl), "--det-every", "3", "--smooth", "--threads", "1", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"{FRAMES} frame(s)" in r.stdout and "fps" in r.stdout
    frames = _read_all(out)
    assert len(frames) == FRAMES
    lines = [json.loads(x) for x in jl.read_text().splitlines()]
    assert [d["frame"] for d in lines] == list(range(FRAMES))
    assert [d["detected"] for d in lines][:4] == [True, False, False, True] or lines[0]["detected"]
    p = lines[0]["persons"][0]
    assert len(p["keypoints"]) == 17 and len(p["bbox"]) == 4 and isinstance(p["track_id"], int)
    # drawn: the annotated frame differs from the source frame where the boxes are
    src = _read_all(path)[0]
    assert np.abs(frames[0].astype(int) - src.astype(int)).mean() > 1
    # images instead of a video
    r = edgepose_cli("run", str(path), "--artifact", str(pose_onnx), "--boxes", str(ann), "--out",
                     str(tmp_path / "frames"), "--max-frames", "2", "--threads", "1", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["frame_000000.png", "frame_000001.png"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_run_interrupted_leaves_a_playable_video(video, pose_onnx, tmp_path, sig):
    """Ctrl-C / SIGTERM mid-run: exit 130 / 143, the video at --out plays every frame written, every JSON line
    parses, and no temporary file is left."""
    ann, path = video
    long_video = tmp_path / "long"
    generate_video(long_video, 150, seed=3, persons=3, size=(320, 256))
    out, jl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "edgepose", "run", str(long_video / "video.mp4"), "--artifact",
                          str(pose_onnx), "--boxes", str(long_video / "annotations.json"), "--out", str(out),
                          "--jsonl", str(jl), "--threads", "1", "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=sigint_as_default)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and (not jl.exists() or jl.read_text().count("\n") < 4):
        time.sleep(0.1)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, err
    assert "Traceback" not in err
    lines = jl.read_text().splitlines()
    docs = [json.loads(x) for x in lines]
    assert 4 <= len(docs) < 150
    assert [d["frame"] for d in docs] == list(range(len(docs)))
    frames = _read_all(out)
    assert len(docs) <= len(frames) <= len(docs) + 1  # a frame is drawn before its line is written
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []


def test_run_bad_input_is_one_line(video, pose_onnx, tmp_path):
    ann, path = video
    cases = [
        (["run", str(tmp_path / "missing.mp4"), "--boxes", str(ann)], "missing.mp4"),
        (["run", str(ann), "--boxes", str(ann)], "annotations.json"),
        (["run", str(path), "--boxes", str(tmp_path / "none.json"), "--artifact", str(pose_onnx)], "--boxes"),
        (["run", str(path), "--det-every", "0"], "--det-every"),
    ]
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    cases.append((["run", str(fake), "--boxes", str(ann)], "fake.mp4"))
    bad = tmp_path / "bad.json"
    bad.write_text("{\"images\": 3}")
    cases.append((["run", str(path), "--boxes", str(bad), "--artifact", str(pose_onnx)], "bad.json"))
    cases.append((["run", "57", "--boxes", str(ann)], "camera 57"))  # no such camera: one line, no backend noise
    cases.append((["run", str(path), "--boxes", str(ann), "--out", str(path)], "--out"))  # the source itself
    for args, needle in cases:
        r = edgepose_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert needle in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_open_source_kinds(video, tmp_path):
    ann, path = video
    src = open_source(str(path))
    assert src.kind == "video" and src.total == FRAMES
    folder = tmp_path / "imgs"
    folder.mkdir()
    frames = _read_all(path)[:3]
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), f)
    got = list(open_source(str(folder)).frames())
    assert len(got) == 3 and np.array_equal(got[1], cv2.cvtColor(frames[1], cv2.COLOR_BGR2RGB))
    assert len(list(open_source(str(folder / "000.png")).frames())) == 1
    with pytest.raises(EdgeposeError, match="no images"):
        open_source(str(tmp_path / "imgs" / ".."))  # tmp_path holds folders only


# ------------------------------------------------------------------------- with the trained detector
def test_run_with_the_demo_detector(video, pose_onnx, tmp_path):
    if not DETECTOR_ASSET.is_file():
        pytest.skip(f"the trained demo detector is not bundled yet ({DETECTOR_ASSET})")
    ann, path = video
    gt = json.loads(ann.read_text())
    jl = tmp_path / "d.jsonl"
    r = edgepose_cli("run", str(path), "--artifact", str(pose_onnx), "--jsonl", str(jl), "--threads", "1",
                     "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    from edgepose.app import FrameResult, PersonResult

    results = [FrameResult(d["frame"], [PersonResult(p["track_id"], np.asarray(p["bbox"]),
                                                     np.asarray(p["keypoints"], np.float32)) for p in d["persons"]],
                           d["detected"]) for d in map(json.loads, jl.read_text().splitlines())]  # fmt: skip
    s = score_video(gt, results, DATASETS["coco"].sigmas)
    assert s["matches"] >= 0.6 * FRAMES * 3, s  # most persons found and followed
    assert s["AP"] > 0.2, s
    assert os.path.getsize(jl) > 0


# ------------------------------------------------------------------------------ the Raspberry Pi example
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "raspberry-pi" / "pose_camera.py"


def test_raspberry_pi_example_on_a_video_file(video, pose_onnx, tmp_path):
    """The camera loop of examples/raspberry-pi/ on a video file: a playable annotated video and one JSON line
    per frame; importing it loads no engine and no torch (the lite group brings LiteRT alone)."""
    ann, path = video
    out, jl = tmp_path / "pi.mp4", tmp_path / "pi.jsonl"
    r = subprocess.run([sys.executable, str(EXAMPLE), "--pose", str(pose_onnx), "--boxes", str(ann), "--camera",
                        str(path), "--threads", "1", "--out", str(out), "--jsonl", str(jl), "--max-frames", "6"],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "6 frames" in r.stdout
    assert len(_read_all(out)) == 6
    assert [json.loads(x)["frame"] for x in jl.read_text().splitlines()] == list(range(6))
    probe = ("import runpy, sys; runpy.run_path(sys.argv[1], run_name='x'); "
             "print(sorted(m for m in ('torch', 'onnxruntime', 'openvino', 'tensorflow') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", probe, str(EXAMPLE)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    r = subprocess.run([sys.executable, str(EXAMPLE), "--pose", str(tmp_path / "none.tflite"), "--boxes", str(ann),
                        "--camera", str(path)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and "none.tflite" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------ a detector artifact, no torch at run time
def test_run_with_a_detector_artifact_imports_no_torch(video, pose_onnx, detector_onnx, tmp_path):
    """``edgepose run --detector X.onnx --artifact Y.onnx``: the device side end to end (the detector runs on every
    K-th frame, its boxes become tracks) without importing torch."""
    ann, path = video
    jl = tmp_path / "d.jsonl"
    code = ("import sys; from edgepose.cli import main; rc = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, "run", str(path), "--artifact", str(pose_onnx), "--detector",
                        str(detector_onnx), "--det-thr", "0", "--max-persons", "2", "--det-every", "4", "--jsonl",
                        str(jl), "--max-frames", "8", "--threads", "1", "--quiet"],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    docs = [json.loads(x) for x in jl.read_text().splitlines()]
    assert [d["frame"] for d in docs] == list(range(8))
    assert docs[0]["detected"] and len(docs[0]["persons"]) == 2  # an untrained detector's best two peaks
    assert "detector on" in r.stdout
    # a pose artifact where the detector belongs (and the reverse) is one line
    r = edgepose_cli("run", str(path), "--artifact", str(pose_onnx), "--detector", str(pose_onnx))
    assert r.returncode == 2 and "not a person detector" in r.stderr and "Traceback" not in r.stderr
    r = edgepose_cli("run", str(path), "--artifact", str(detector_onnx), "--boxes", str(ann))
    assert r.returncode == 2 and "not a pose model" in r.stderr and "Traceback" not in r.stderr


def test_detector_input_made_on_the_reader_thread_changes_nothing(video, pose_onnx, detector_onnx):
    """run_loop letterboxes and normalises each frame for the detector on its frame reader thread (beside the
    engines): once per frame, off the main thread, and the tracks are those of stepping the same frames with the
    detector's input made in step (identical boxes, keypoints and ids)."""
    import threading

    from edgepose.detection import PersonDetector
    from edgepose.runtimes import load_runtime

    _, path = video
    spec = get_spec(DEFAULT_MODEL)
    pose_rt, det_rt = _onnx_runtime(pose_onnx), load_runtime(detector_onnx, threads=1)
    det_spec = get_spec("demo_person_detector")

    def tracker(detector):
        return PoseTracker(spec, pose_rt, detector=detector, detector_infer=det_rt, det_every=3, max_persons=2,
                           flip_test=False)  # fmt: skip

    made_on = []

    class Watched(PersonDetector):
        def preprocess(self, image, input_kind=None):
            made_on.append(threading.current_thread() is threading.main_thread())
            return super().preprocess(image, input_kind)

    looped = []
    run_loop(tracker(Watched(det_spec, score_threshold=0.0)), open_source(str(path)), max_frames=7,
             on_frame=looped.append, progress=False)  # fmt: skip
    assert len(made_on) >= 7 and not any(made_on)  # every frame read (up to two ahead), none on the main thread
    direct = tracker(PersonDetector(det_spec, score_threshold=0.0))
    stepped = [direct.step(f, i) for i, f in zip(range(7), open_source(str(path)).frames())]
    assert [r.detected for r in looped] == [r.detected for r in stepped] and looped[0].detected
    assert sum(len(r.persons) for r in looped) >= 7
    for a, b in zip(looped, stepped):
        assert [p.track_id for p in a.persons] == [p.track_id for p in b.persons]
        for pa, pb in zip(a.persons, b.persons):
            assert np.array_equal(pa.box, pb.box) and np.array_equal(pa.keypoints, pb.keypoints)


def test_run_on_one_image_writes_one_image(video, pose_onnx, tmp_path):
    ann, path = video
    frame = _read_all(path)[0]
    img = tmp_path / "one.png"
    cv2.imwrite(str(img), frame)
    out = tmp_path / "drawn.jpg"
    r = edgepose_cli("run", str(img), "--artifact", str(pose_onnx), "--boxes", str(ann), "--out", str(out),
                     "--threads", "1", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    drawn = cv2.imread(str(out))
    assert drawn.shape == frame.shape and np.abs(drawn.astype(int) - frame.astype(int)).mean() > 1
    r = edgepose_cli("run", str(path), "--boxes", str(ann), "--out", str(tmp_path / "x.png"))
    assert r.returncode == 2 and "x.png" in r.stderr and "Traceback" not in r.stderr


def test_a_weak_track_brings_the_detector_back(video, pose_onnx):
    """With a track score threshold no pose reaches (1.0), every frame after a pose step asks for boxes, whatever
    --det-every says; with 0, every K-th frame does, and fewer in all (tracks colliding may still ask)."""
    ann, path = video
    spec = get_spec(DEFAULT_MODEL)
    rt = _onnx_runtime(pose_onnx)
    for thr in (1.0, 0.0):
        asked = []
        boxes = read_boxes(ann)
        tr = PoseTracker(spec, rt, boxes_for=lambda i, asked=asked, boxes=boxes: asked.append(i) or boxes(i),
                         det_every=4, min_track_score=thr, kpt_thr=0.0, flip_test=False)  # fmt: skip
        run_loop(tr, open_source(str(path)), progress=False, max_frames=6)
        if thr == 1.0:
            assert asked == list(range(6))
        else:
            assert {0, 4} <= set(asked) and len(asked) < 6, asked


def test_bench_frames_pairs_engines_and_batches_in_one_call(eval_models, detector_onnx, tmp_path, capsys):
    """``edgepose bench --frames``: each pose artifact pairs with the detector of its engine (ONNX here) or, with
    none there, the PyTorch detector (said in the row); an OpenVINO IR with batch 1 is reshaped at load so that
    all persons go in one call (2 with the flip test) while one by one takes 2 per person; the loop runs the
    detector on every frame with K=1 and on fewer with K=2; JSON and Markdown carry the table."""
    out, md = tmp_path / "b.json", tmp_path / "b.md"
    r = edgepose_cli("bench", "--no-accuracy", "--no-reference", "--artifacts", str(eval_models["onnx"]),
                     str(eval_models["ov_b1"]), "--runs", "2", "--warmup", "0", "--threads", "1", "--quiet",
                     "--frames", "--detector", str(detector_onnx), "--persons", "1,3", "--det-every", "2",
                     "--frame-count", "4", "--json", str(out), "--markdown", str(md))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Frame loop per engine pair" in r.stdout
    frames = json.loads(out.read_text())["frames"]
    rows = {row["pose"]: row for row in frames["rows"]}
    onnx_row, ov_row = rows[eval_models["onnx"].name], rows[eval_models["ov_b1"].name]
    assert onnx_row["detector"] == detector_onnx.name and onnx_row["detector_engine"] == "onnxruntime"
    assert onnx_row["note"] == ""
    assert ov_row["detector_engine"] == "torch" and "PyTorch" in ov_row["note"]
    assert ov_row["batch"] == "dynamic" and ov_row["batch_reshaped"] is True
    for row in (onnx_row, ov_row):
        assert [b["persons"] for b in row["batching"]] == [1, 3]
        assert [b["calls"] for b in row["batching"]] == [2, 2]
        assert [b["one_by_one_calls"] for b in row["batching"]] == [2, 6]
        for b in row["batching"]:
            assert b["ratio"] == pytest.approx(b["batched_ms"] / b["one_by_one_ms"], abs=2e-3)
        k1, k2 = row["loop"]
        assert (k1["det_every"], k2["det_every"]) == (1, 2)
        assert k1["detections"] == 4 and 2 <= k2["detections"] <= 4
        assert k1["fps"] > 0 and 0 <= k1["AP"] <= 1 and k1["ms"]["frame"] >= k1["ms"]["engine"]
        assert row["fps_ratio"] == pytest.approx(k2["fps"] / k1["fps"], abs=2e-3)
        share = k1["ms"]["detect"] / k1["ms"]["frame"]
        assert row["fps_ratio_bound"] == pytest.approx(1 / (1 - share / 2), abs=2e-3)
    assert "### Frame loop on this machine" in md.read_text()
    # bad --frames options are one line, before any work (in this process: nothing is loaded before the check)
    from edgepose.cli import main

    base = ["bench", "--no-accuracy", "--no-reference", "--artifacts", str(eval_models["onnx"])]
    for extra, msg in ((["--frames", "--persons", "0,3"], "--persons"), (["--frames", "--det-every", "1"],
                       "--det-every 1"), (["--frames", "--detector", str(eval_models["onnx"])], "not a person "
                       "detector"), (["--detector", str(detector_onnx)], "add --frames")):  # fmt: skip
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err
