"""The person detector through the converters (issue 24, item 3): ONE conversion of demo_person_detector to every
target at FP32, FP16 and INT8 (background job ``detconv``, beside the suite), then

* the metadata an app needs (task, input, letterbox, output decoding, thresholds) is there and right;
* every artifact's box AP on the control split, checked at conversion, is within 0.01 of PyTorch's, and the
  PyTorch figure recorded is what :func:`edgepose.detector_eval.score_detector` gives on the same images;
* an INDEPENDENT pipeline (the engines' own Python APIs: onnxruntime, ai_edge_litert, openvino; a letterbox, a
  peak finder (scipy's maximum_filter), a box decoder and an NMS written here from the metadata alone; pycocotools
  directly) gives the boxes edgepose's PersonDetector gives on the same artifact, boxes close to PyTorch's, and
  the box AP edgepose recorded in the metadata;
* ``edgepose run --detector ART`` and ``edgepose inspect ART`` take a converted detector.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import DETECTOR_CONTROL_IMAGES, DETECTOR_PRECISIONS, REPO, start_job

MODEL = "demo_person_detector"
TARGETS = {"onnx": ".onnx", "tflite": ".tflite", "openvino": ".xml"}
PRECISIONS = DETECTOR_PRECISIONS


@pytest.fixture(scope="module")
def det_dir() -> Path:
    job = start_job("detconv")
    if job is None:
        pytest.skip("the convert extras are not installed")
    r = job.result(timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    out = Path(job.cmd[job.cmd.index("--out") + 1])
    sys.stderr.write(f"\n[detconv] {job.cmd[-1]}: conversion log tail:\n{r.stderr[-1500:]}\n")
    return out


@pytest.fixture(scope="module")
def control_images():
    """The control split's images (the first N of scenes_val by id) and its ground truth, read here."""
    from edgepose.synthetic import ensure_scenes

    ann, images = ensure_scenes("scenes_val")
    doc = json.loads(ann.read_text())
    chosen = sorted(doc["images"], key=lambda i: i["id"])[:DETECTOR_CONTROL_IMAGES]
    frames = [cv2.cvtColor(cv2.imread(str(images / i["file_name"])), cv2.COLOR_BGR2RGB) for i in chosen]
    ids = [i["id"] for i in chosen]
    gt = {**doc, "images": chosen, "annotations": [a for a in doc["annotations"] if a["image_id"] in set(ids)]}
    return ann, images, frames, ids, gt


# --------------------------------------------------------------------------- an independent decoder, from metadata
def my_letterbox(img: np.ndarray, app: dict) -> tuple[np.ndarray, tuple[float, float, int, int]]:
    w, h = app["input"]["width"], app["input"]["height"]
    ih, iw = img.shape[:2]
    s = min(w / iw, h / ih)
    nw, nh = max(1, min(w, round(iw * s))), max(1, min(h, round(ih * s)))
    dx, dy = (w - nw) // 2, (h - nh) // 2
    canvas = np.full((h, w, 3), app["letterbox"]["pad_value"], np.uint8)
    canvas[dy : dy + nh, dx : dx + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    x = (canvas.astype(np.float32) - np.float32(app["input"]["mean"])) / np.float32(app["input"]["std"])
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), (nw / iw, nh / ih, dx, dy)


def my_nms(boxes: np.ndarray, iou: float) -> np.ndarray:
    order = np.argsort(-boxes[:, 4], kind="stable")
    boxes = boxes[order]
    keep, dead = [], np.zeros(len(boxes), bool)
    for i in range(len(boxes)):
        if dead[i]:
            continue
        keep.append(i)
        xx1 = np.maximum(boxes[i, 0], boxes[:, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[:, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[:, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[:, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        ov = inter / (area[i] + area - inter)
        dead |= (ov > iou) & (np.arange(len(boxes)) > i)
    return boxes[keep]


def my_decode(out: np.ndarray, app: dict, lb: tuple, image_size: tuple[int, int]) -> np.ndarray:
    from scipy.ndimage import maximum_filter

    dec, stride = app["decode"], app["output"]["stride"]
    w, h = app["input"]["width"], app["input"]["height"]
    o = np.asarray(out, np.float32).reshape(app["output"]["shape"])
    o = (o.transpose(0, 3, 1, 2) if app["output"]["layout"] == "NHWC" else o)[0]  # the file's layout, as it says
    hm = o[0]
    peaks = (hm == maximum_filter(hm, size=3, mode="constant", cval=-np.inf)) & (hm >= dec["score_threshold"])
    ys, xs = np.nonzero(peaks)
    top = np.argsort(-hm[ys, xs], kind="stable")[: dec["top_k"]]
    ys, xs = ys[top], xs[top]
    cx, cy = (xs + o[3, ys, xs]) * stride, (ys + o[4, ys, xs]) * stride
    bw, bh = o[1, ys, xs] * w, o[2, ys, xs] * h
    sx, sy, dx, dy = lb
    iw, ih = image_size
    x1 = np.clip((cx - bw / 2 - dx) / sx, 0, iw)
    x2 = np.clip((cx + bw / 2 - dx) / sx, 0, iw)
    y1 = np.clip((cy - bh / 2 - dy) / sy, 0, ih)
    y2 = np.clip((cy + bh / 2 - dy) / sy, 0, ih)
    boxes = np.stack([x1, y1, x2, y2, hm[ys, xs]], 1).astype(np.float32)
    boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
    return my_nms(boxes, dec["nms_iou"])


def my_box_ap(gt: dict, per_image: dict[int, np.ndarray]) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    results = [{"image_id": i, "category_id": 1, "score": float(b[4]),
                "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
               for i, boxes in per_image.items() for b in boxes]  # fmt: skip
    coco = COCO()
    coco.dataset = copy.deepcopy(gt)
    coco.createIndex()
    ev = COCOeval(coco, coco.loadRes(results), "bbox")
    ev.params.imgIds = sorted(per_image)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return float(ev.stats[0])


def engine(path: Path, app: dict):
    """The artifact run by its engine's own Python API (no edgepose), fed and read as its ``app`` block says:
    x (1, 3, H, W) float32 -> the output in the file's own layout (the block's input and output by name)."""
    nhwc = app["input"]["layout"] == "NHWC"
    if path.suffix == ".onnx":
        import onnxruntime as ort

        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: s.run([app["output"]["name"]], {app["input"]["name"]: x})[0]
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path))
        it.allocate_tensors()
        i = next(d for d in it.get_input_details() if d["name"] == app["input"]["name"])
        o = next(d for d in it.get_output_details() if d["name"] == app["output"]["name"])
        assert list(i["shape"]) == app["input"]["shape"] and list(o["shape"]) == app["output"]["shape"]

        def run(x):
            it.set_tensor(i["index"], np.ascontiguousarray(x.transpose(0, 2, 3, 1) if nhwc else x))
            it.invoke()
            return it.get_tensor(o["index"])

        return run
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU")  # the plugin's default precision, as edgepose's default
    return lambda x: compiled(x)[0]


@pytest.fixture(scope="module")
def pytorch_run(det_dir, control_images):
    """PyTorch on the control images through the decoder above: (inputs, letterboxes, boxes per image id, box AP)."""
    import torch

    from edgepose.models import load_model
    from edgepose.spec import get_spec

    app = json.loads(Path(f"{det_dir / (MODEL + '_fp32.onnx')}.json").read_text())["app"]
    _, _, frames, ids, gt = control_images
    model = load_model(get_spec(MODEL), None, progress=False)
    inputs, lbs = zip(*(my_letterbox(f, app) for f in frames))
    with torch.inference_mode():
        out = np.concatenate([model(torch.from_numpy(np.concatenate(inputs[i : i + 20]))).numpy()
                              for i in range(0, len(inputs), 20)])  # fmt: skip
    boxes = {i: my_decode(out[k : k + 1], app, lbs[k], (f.shape[1], f.shape[0]))
             for k, (i, f) in enumerate(zip(ids, frames))}  # fmt: skip
    return inputs, lbs, boxes, my_box_ap(gt, boxes)


# ------------------------------------------------------------------------------------------------------ tests
@pytest.mark.background("detconv")
def test_detector_artifacts_metadata_and_box_ap(det_dir, pytorch_run):
    from edgepose.spec import get_spec

    spec = get_spec(MODEL)
    pytorch_ap = pytorch_run[3]
    seen = []
    for suffix in TARGETS.values():
        for prec in PRECISIONS:
            art = det_dir / f"{MODEL}_{prec}{suffix}"
            assert art.is_file(), sorted(p.name for p in det_dir.iterdir())
            meta = json.loads(Path(f"{art}.json").read_text())
            app = meta["app"]
            assert meta["model"]["task"] == "detection" and app["task"] == "detection"
            assert (app["input"]["width"], app["input"]["height"]) == (320, 256)
            nhwc = art.suffix == ".tflite"  # onnx2tf: NHWC in and out; the block names the file's own tensors
            assert app["input"]["layout"] == ("NHWC" if nhwc else "NCHW") and app["input"]["color"] == "RGB"
            assert app["input"]["shape"] == ([1, 256, 320, 3] if nhwc else [1, 3, 256, 320])
            assert app["input"]["name"] == meta["input"]["name"] and app["output"]["name"] == meta["output"]["name"]
            assert app["input"]["mean"] == list(spec.mean) and app["input"]["std"] == list(spec.std)
            assert app["letterbox"]["pad_value"] == [round(m) for m in spec.mean]
            assert app["output"]["shape"] == ([1, 64, 80, 5] if nhwc else [1, 5, 64, 80])
            assert app["output"]["stride"] == 4 and app["output"]["layout"] == ("NHWC" if nhwc else "NCHW")
            assert app["output"]["channels"][0] == "centre_heatmap_sigmoid" and len(app["output"]["channels"]) == 5
            assert app["decode"]["score_threshold"] == spec.score_threshold and app["decode"]["nms_iou"] == 0.6
            t = meta["parity"]["task"]
            assert t["metric"] == "box_AP" and t["control"]["num_images"] == DETECTOR_CONTROL_IMAGES
            assert t["max_drop"] == 0.01 and t["passed"]
            assert abs(t["reference"] - pytorch_ap) < 2e-3, (t["reference"], pytorch_ap)  # the same images, scored
            #                                                   here by PyTorch and the decoder of this file
            assert t["reference"] - t["value"] <= 0.01 + 1e-9, (art.name, t)  # the acceptance: within 0.01
            p = meta["parity"]
            assert p["passed"] and p["box_count"] >= 10 and p["box_within"] >= (0.75 if prec == "int8" else 0.95)
            assert p["snr_db"] >= {"fp32": 100, "fp16": 40, "int8": 15}[prec], (art.name, p["snr_db"])
            assert "Concat(Sigmoid(logit), wh, offset)" in meta["conversion"]["graph_rewrites"][0]
            ref = meta["reference_accuracy"]
            assert ref["metric"] == "box_AP" and ref["num_images"] == 300 and 0.05 < ref["value"] < 1
            seen.append((art.name, round(t["value"], 4)))
    print("box AP per artifact (control split):", seen, "PyTorch", round(pytorch_ap, 4))


@pytest.mark.background("detconv")
def test_detector_artifacts_through_an_independent_decoder(det_dir, control_images, pytorch_run):
    """Each engine alone + the decoder above on every control image: the box AP edgepose recorded at conversion;
    on the first 20, the boxes edgepose's PersonDetector decodes on the same artifact, and for ONNX Runtime and
    LiteRT FP32 PyTorch's boxes (OpenVINO's CPU plugin runs bf16 by default on this kind of CPU)."""
    from edgepose.detection import PersonDetector
    from edgepose.runtimes import load_runtime
    from edgepose.spec import get_spec

    det = PersonDetector(get_spec(MODEL))
    _, _, frames, ids, gt = control_images
    inputs, lbs, torch_boxes, _ = pytorch_run
    for art in [det_dir / f"{MODEL}_{p}{s}" for s in TARGETS.values() for p in ("fp32", "int8")]:
        meta = json.loads(Path(f"{art}.json").read_text())
        app = meta["app"]
        run, rt = engine(art, app), load_runtime(art)
        mine = {i: my_decode(run(x), app, lb, (f.shape[1], f.shape[0]))
                for i, x, lb, f in zip(ids, inputs, lbs, frames)}  # fmt: skip
        for i, frame in list(zip(ids, frames))[:20]:
            theirs = det(rt, frame)
            assert mine[i].shape == theirs.shape, (art.name, i, mine[i].shape, theirs.shape)
            np.testing.assert_allclose(mine[i], theirs, atol=0.05, err_msg=f"{art.name} image {i}")
            tb = torch_boxes[i]
            if "fp32" in art.name and art.suffix != ".xml":  # FP32 engines: PyTorch's boxes to a fraction of a pixel
                strong = tb[tb[:, 4] >= 0.3]
                assert len(mine[i][mine[i][:, 4] >= 0.3]) == len(strong)
                np.testing.assert_allclose(mine[i][: len(strong)], strong, atol=0.05)
        ap = my_box_ap(gt, mine)
        recorded = meta["parity"]["task"]["value"]
        assert abs(ap - recorded) < 2e-3, (art.name, ap, recorded)
        print(f"{art.name}: independent box AP {ap:.4f}, recorded {recorded:.4f}")


@pytest.mark.background("detconv")
def test_run_and_inspect_take_a_converted_detector(det_dir, control_images, tmp_path):
    from edgepose.artifact import read_metadata
    from edgepose.spec import spec_for_artifact

    art = det_dir / f"{MODEL}_int8.xml"
    spec = spec_for_artifact(None, read_metadata(art), art)
    assert spec.task == "detection" and spec.name == MODEL
    ann, images, frames, ids, gt = control_images
    busiest = max(ids, key=lambda i: sum(1 for a in gt["annotations"] if a["image_id"] == i and not a["iscrowd"]))
    name = next(im["file_name"] for im in gt["images"] if im["id"] == busiest)
    jsonl = tmp_path / "out.jsonl"
    r = subprocess.run([sys.executable, "-m", "edgepose", "run", str(images / name), "--detector", str(art),
                        "--jsonl", str(jsonl), "--quiet", "--no-flip"],
                       cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    line = json.loads(jsonl.read_text().splitlines()[0])
    assert line["detected"] and len(line["persons"]) >= 1
    # a pose model given as the detector, and the detector given as the pose model: one line each
    r = subprocess.run([sys.executable, "-m", "edgepose", "run", str(images / name), "--artifact", str(art),
                        "--quiet"], cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and "not a pose model" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = subprocess.run([sys.executable, "-m", "edgepose", "inspect", str(det_dir / f"{MODEL}_int8.onnx"),
                        "--num-crops", "2", "--top", "3"], cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "letterboxed synthetic scenes" in r.stdout or "holdout crops of default_detection" in r.stdout, r.stdout


@pytest.mark.background("detconv")
def test_a_uint8_input_detector_runs_where_the_float_one_does(det_dir, control_images, tmp_path):
    """``convert --input uint8`` of the detector: its app block says what the file takes (the letterboxed frame's
    RGB bytes, NHWC uint8), and PersonDetector over either runtime (the frame loop's reader-thread input too)
    finds the boxes of the float artifact; ``predict --detector`` takes it."""
    from edgepose.app import PoseTracker
    from edgepose.cli import main
    from edgepose.detection import PersonDetector
    from edgepose.runtimes import load_runtime
    from edgepose.spec import DEFAULT_MODEL, get_spec

    out = tmp_path / "u8"
    assert main(["convert", "--model", MODEL, "--target", "onnx", "--precision", "fp32", "--input", "uint8",
                 "--control-size", "20", "--out", str(out), "--quiet"]) == 0  # fmt: skip
    u8 = out / f"{MODEL}_fp32_u8in.onnx"
    app = json.loads(Path(f"{u8}.json").read_text())["app"]
    assert (app["input"]["shape"], app["input"]["layout"], app["input"]["dtype"]) == ([1, 256, 320, 3], "NHWC",
                                                                                       "uint8")  # fmt: skip
    rt_u8, rt_f = load_runtime(u8, threads=1), load_runtime(det_dir / f"{MODEL}_fp32.onnx", threads=1)
    det = PersonDetector(get_spec(MODEL), score_threshold=0.3)
    _, images, frames, _, _ = control_images
    for frame in frames[:4]:
        a, b = det(rt_u8, frame), det(rt_f, frame)
        assert len(a) == len(b) >= 1 and np.allclose(a, b, atol=0.05), (a, b)
    tracker = PoseTracker(get_spec(DEFAULT_MODEL), lambda x: x, detector=det, detector_infer=rt_u8)
    x, _ = tracker.prepare(frames[0])
    assert x.dtype == np.uint8 and x.shape == (1, 256, 320, 3)
    png = tmp_path / "p.png"
    name = sorted(p.name for p in images.iterdir())[0]
    assert main(["predict", str(images / name), "--detector", str(u8), "--out", str(png), "--threads", "1"]) == 0
    assert png.is_file()


def test_a_detector_artifact_is_recognised_by_its_metadata():
    """spec_from_metadata: a detector by its model entry, or (no task there) by its app block; a bad task is one
    line naming the file. Milliseconds: no conversion."""
    from edgepose.errors import EdgeposeError
    from edgepose.spec import get_spec, spec_from_metadata

    spec = get_spec(MODEL)
    model = json.loads(json.dumps({**spec.to_dict(), "name": "my_detector"}))  # renamed: rebuilt from the JSON
    made = spec_from_metadata({"model": model}, "det.onnx")
    assert made.task == "detection" and made.score_threshold == spec.score_threshold and made.input_size == (320, 256)
    no_task = {k: v for k, v in model.items() if k != "task"}
    assert spec_from_metadata({"model": no_task}, "det.onnx").task == "pose"
    assert spec_from_metadata({"model": no_task, "app": {"task": "detection"}}, "det.onnx").task == "detection"
    with pytest.raises(EdgeposeError, match=r"det\.onnx: metadata model 'task'"):
        spec_from_metadata({"model": {**model, "task": "segmentation"}}, "det.onnx")


def test_detector_calibration_sets_are_letterboxed_frames(tmp_path):
    """A detector's calibration set (``edgepose calibrate --model demo_person_detector``) holds whole frames
    letterboxed as PersonDetector feeds them, not person crops: a 640x480 image fills 320x240 of the 320x256
    input, with 8 rows of the pad value (the normalisation mean) above and below. About a second."""
    from edgepose.calibration import from_image_folder, synthetic_scene_calibration
    from edgepose.spec import get_spec

    spec = get_spec(MODEL)
    rng = np.random.default_rng(0)
    for k in range(3):
        img = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / f"train_{k}.png"), img)
    cset = from_image_folder(spec, tmp_path, num=2, holdout=1, allow_eval_split=True)  # pytest names it test_...
    assert cset.crops.shape == (2, 256, 320, 3) and cset.holdout.shape == (1, 256, 320, 3)
    pad = np.array([round(m) for m in spec.mean], np.uint8)
    for frame in (*cset.crops, *cset.holdout):
        assert (frame[:8] == pad).all() and (frame[-8:] == pad).all()
        assert (frame[8:-8].reshape(-1, 3) != pad).any(1).mean() > 0.9  # the image itself, not the border
    scenes = synthetic_scene_calibration(spec, num=2, holdout=1)
    assert scenes.crops.shape == (2, 256, 320, 3) and scenes.meta["source"]["split"] == "scenes_train"


def test_a_head_form_asked_of_the_detector_is_one_line_and_writes_nothing(tmp_path):
    """The pose head's forms do not apply to the detector (its task says so): one line, before any work."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from edgepose.converters.api import convert

    from edgepose.errors import EdgeposeError

    with pytest.raises(EdgeposeError, match=r"^--head subpixel3x3: model demo_person_detector \(detection\) has no"):
        convert(MODEL, targets="onnx", precisions="fp32", head="subpixel3x3", out=tmp_path / "det", progress=False)
    assert not (tmp_path / "det").exists()


@pytest.mark.background("detconv")
def test_bench_gives_detector_rows(det_dir, tmp_path, capsys):
    """``edgepose bench`` on detector artifacts: one row per artifact beside the PyTorch original; box AP on the
    first scenes_val images equals ``score_detector`` run here on the same engine, the drop is value minus the
    reference's, judged by the budget convert checks (0.01 box AP at every precision, INT8 included); the
    bench-only flags of a pose model are refused in one line."""
    from edgepose.cli import main
    from edgepose.detector_eval import score_detector
    from edgepose.runtimes import load_runtime
    from edgepose.spec import get_spec
    from edgepose.synthetic import ensure_scenes

    arts = [det_dir / f"{MODEL}_int8.onnx", det_dir / f"{MODEL}_fp32.xml"]
    out = tmp_path / "det_bench.json"
    rc = main(["bench", "--artifacts", *map(str, arts), "--runs", "2", "--warmup", "0", "--limit", "4", "--threads",
               "1", "--quiet", "--json", str(out)])  # fmt: skip
    assert rc == 0
    data = json.loads(out.read_text())
    ref, *rows = data["rows"]
    assert ref["reference"] and [r["name"] for r in rows] == [a.name for a in arts]
    ann, images = ensure_scenes("scenes_val")
    onnx_ap = score_detector(load_runtime(arts[0], threads=1), get_spec(MODEL), ann, images, limit=4)["metrics"]["AP"]
    assert rows[0]["accuracy"]["value"] == pytest.approx(onnx_ap, abs=1e-12)
    for r in rows:
        acc = r["accuracy"]
        art = det_dir / r["name"]  # an IR's size is its .xml and .bin together
        files = [art] + ([art.with_suffix(".bin")] if art.suffix == ".xml" else [])
        assert r["status"] == "ok" and r["size_bytes"] == sum(f.stat().st_size for f in files)
        assert acc["delta"] == pytest.approx(acc["value"] - ref["accuracy"]["value"], abs=1e-12)
        assert acc["max_drop"] == 0.01, (r["precision"], acc)  # not the pose models' INT8 0.03
        assert acc["pass"] == (-acc["delta"] <= acc["max_drop"] + 1e-12)
        assert 0 < r["model"]["p50_ms"] and r["model"]["n"] == 2
    assert "box AP" in capsys.readouterr().out
    assert main(["bench", "--artifacts", str(arts[0]), "--frames"]) == 2
    assert "not offered for a detector" in capsys.readouterr().err
