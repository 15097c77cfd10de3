"""Detectors users bring (``--detector FILE`` without edgepose's metadata): mmdeploy's ``dets`` + ``labels`` and
the raw YOLO ``[1, 4 + C, N]``, as ONNX, OpenVINO IR and TFLite, through edgepose's runtimes.

The models are tiny PyTorch modules whose outputs are fixed boxes in input pixels, one of them moved by the
mean of the input's first channel: the expected boxes in image pixels are worked out here by hand from the
solid colour of the image, the preset's channel order and normalisation, and the letterbox (mmdet pads the
right and bottom edges, ultralytics centres).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgepose import EdgeposeError  # noqa: E402
from edgepose.detectors import DetectorOptions, guess_layout, open_detector  # noqa: E402

IN_W, IN_H = 64, 48
RGB = (200, 100, 50)


class MmdeployLike(torch.nn.Module):
    """dets [1, 4, 5] + labels [1, 4] (int64): three fixed boxes and one whose x1 is 10 + mean(channel 0)."""

    def forward(self, x):
        m = x[:, 0].mean()
        base = torch.tensor([[[4.0, 6.0, 20.0, 30.0, 0.9], [30.0, 8.0, 50.0, 40.0, 0.8],
                              [0.0, 0.0, 10.0, 10.0, 0.95], [0.0, 2.0, 40.0, 22.0, 0.1]]])  # fmt: skip
        moved = torch.stack([10 + m, m * 0 + 12, m * 0 + 30, m * 0 + 20, m * 0 + 0.7]).reshape(1, 1, 5)
        dets = torch.cat([base[:, :2], moved, base[:, 2:]], 1)  # the score-0.1 row falls under the threshold
        labels = torch.tensor([[0, 0, 0, 1, 0]], dtype=torch.int64) + (m * 0).long()  # row 3 is class 1
        return dets, labels


class YoloLike(torch.nn.Module):
    """[1, 4 + 3, 20]: cx, cy, w, h, 3 class scores (15 candidates of score 0 after the five below); box 1
    duplicates box 0 (NMS), box 3 is class 2, box 4's cx is 255 * mean(channel 0) - 150
    (with x / 255: the mean red level less 150)."""

    def forward(self, x):
        m = x[:, 0].mean()
        cols = torch.tensor([[12.0, 14.0, 10.0, 16.0, 0.9, 0.0, 0.1],
                             [12.5, 14.0, 10.0, 16.0, 0.8, 0.0, 0.1],
                             [40.0, 30.0, 20.0, 20.0, 0.6, 0.2, 0.0],
                             [30.0, 20.0, 10.0, 10.0, 0.1, 0.0, 0.9],
                             [0.0, 24.0, 8.0, 8.0, 0.5, 0.0, 0.0]])  # fmt: skip
        cx = torch.zeros(5, 7)
        cx[4, 0] = 1.0
        out = torch.cat([cols + cx * (255 * m - 150), torch.zeros(15, 7)])  # 20 candidates, 15 of score 0
        return out.T.unsqueeze(0)


def _export(model, path, outputs):
    torch.onnx.export(model.eval(), (torch.zeros(1, 3, IN_H, IN_W),), str(path), input_names=["input"],
                      output_names=outputs, opset_version=13, dynamo=False)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("userdet")
    return {"mmdeploy": _export(MmdeployLike(), d / "rtmdet.onnx", ["dets", "labels"]),
            "yolo": _export(YoloLike(), d / "yolov8.onnx", ["output0"])}  # fmt: skip


def _openvino(onnx_path):
    ov = pytest.importorskip("openvino")
    xml = onnx_path.with_suffix(".xml")
    if not xml.exists():
        ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    return xml


def _image(w=128, h=64):
    img = np.empty((h, w, 3), np.uint8)
    img[:] = RGB
    return img


def _expected_mmdeploy() -> np.ndarray:
    """128x64 image -> 64x32 at the top-left of 64x48 (scale 0.5, no offset); BGR, mmdet mean/std; rows kept:
    label 0 and score >= 0.3, in image pixels, best first."""
    blue = (RGB[2] - 103.53) / 57.375  # channel 0 of a BGR input
    # the letterbox pads rows 32..47 with 114: channel 0's mean mixes both
    m = (32 * blue + 16 * (114 - 103.53) / 57.375) / 48
    rows = [[4, 6, 20, 30, 0.9], [30, 8, 50, 40, 0.8], [10 + m, 12, 30, 20, 0.7]]
    out = np.array(rows, np.float64)
    out[:, :4] *= 2
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, 64)
    return out


def _expected_yolo() -> np.ndarray:
    """128x64 -> 64x32 centred in 64x48 (dy = 8); RGB / 255: channel 0 = red; NMS drops box 1; box 3 is class 2."""
    red = (32 * RGB[0] + 16 * 114) / 48  # rows 0..7 and 40..47 are padding
    boxes = [[12, 14, 10, 16, 0.9], [40, 30, 20, 20, 0.6], [red - 150, 24, 8, 8, 0.5]]
    out = []
    for cx, cy, w, h, s in boxes:
        x1, y1, x2, y2 = cx - w / 2, cy - h / 2 - 8, cx + w / 2, cy + h / 2 - 8
        out.append([x1 * 2, y1 * 2, x2 * 2, y2 * 2, s])
    out = np.array(out, np.float64)
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, 128)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, 64)
    return out[(out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])]


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
@pytest.mark.parametrize("layout", ["mmdeploy", "yolo"])
def test_user_layouts_decode_to_the_hand_worked_boxes(models, layout, fmt):
    path = models[layout] if fmt == "onnx" else _openvino(models[layout])
    det = open_detector(str(path), threads=1)  # auto: the layout from the outputs
    assert det.info["layout"] == layout and det.info["input"] == {"size": [IN_W, IN_H], "layout": "NCHW",
                                                                  "dtype": "float32"}  # fmt: skip
    got = det(_image())
    want = _expected_mmdeploy() if layout == "mmdeploy" else _expected_yolo()
    np.testing.assert_allclose(got, want, atol=2e-3)


def test_flags_override_the_preset(models):
    """--no-detector-bgr and a mean/std of 0/10 change the moved box exactly as worked out by hand."""
    det = open_detector(str(models["mmdeploy"]), options=DetectorOptions(layout="mmdeploy", bgr=False,
                                                                         mean=(0, 0, 0), std=(10, 10, 10)))  # fmt: skip
    m = (32 * RGB[0] + 16 * 114) / 48 / 10
    got = det(_image())
    np.testing.assert_allclose(got[2, 0], 2 * (10 + m), rtol=1e-5)
    # --person-class 1 keeps the class-1 row only (score 0.95, a 10x10 box at the origin)
    det = open_detector(str(models["mmdeploy"]), options=DetectorOptions(person_class=1))
    np.testing.assert_allclose(det(_image()), [[0, 0, 20, 20, 0.95]], atol=1e-5)


def test_tflite_nhwc_yolo(tmp_path):
    """A TFLite model (NHWC input, made with tf.lite from a tf.function: no ONNX detour) in the YOLO layout."""
    tf = pytest.importorskip("tensorflow")

    @tf.function(input_signature=[tf.TensorSpec([1, IN_H, IN_W, 3], tf.float32)])
    def yolo(x):
        m = tf.reduce_mean(x[..., 0])
        cols = tf.constant([[12.0, 14.0, 10.0, 16.0, 0.9, 0.0, 0.1], [12.5, 14.0, 10.0, 16.0, 0.8, 0.0, 0.1],
                            [40.0, 30.0, 20.0, 20.0, 0.6, 0.2, 0.0], [30.0, 20.0, 10.0, 10.0, 0.1, 0.0, 0.9],
                            [0.0, 24.0, 8.0, 8.0, 0.5, 0.0, 0.0]])  # fmt: skip
        onehot = tf.one_hot([4 * 7], 35, dtype=tf.float32)  # element (4, 0)
        out = tf.concat([cols + tf.reshape(onehot, (5, 7)) * (255 * m - 150), tf.zeros((15, 7))], 0)
        return tf.expand_dims(tf.transpose(out), 0)

    conv = tf.lite.TFLiteConverter.from_concrete_functions([yolo.get_concrete_function()], yolo)
    path = tmp_path / "yolo.tflite"
    path.write_bytes(conv.convert())
    det = open_detector(str(path), threads=1)
    assert det.info["layout"] == "yolo" and det.info["input"]["layout"] == "NHWC"
    np.testing.assert_allclose(det(_image()), _expected_yolo(), atol=2e-3)


def test_guess_layout_refuses_what_it_cannot_tell():
    z = np.zeros
    assert guess_layout([("a", z((1, 84, 8400)))], "f.onnx") == "yolo"
    assert guess_layout([("l", z((1, 100))), ("d", z((1, 100, 5)))], "f.onnx") == "mmdeploy"
    assert guess_layout([("o", z((1, 5, 12, 16)))], "f.onnx") == "edgepose"
    for outs in ([("a", z((1, 8400, 84)))], [("a", z((1, 5, 5, 5)))], [("a", z((1, 10)))],
                 [("a", z((1, 100, 5))), ("b", z((1, 99)))], [("a", z((1, 84, 8400)))] * 3):  # fmt: skip
        with pytest.raises(EdgeposeError, match=r"^f\.onnx: cannot tell the detector layout .*--detector-layout"):
            guess_layout(outs, "f.onnx")


def test_wrong_layout_flag_and_bad_file_fail_in_one_line(models, tmp_path, capsys):
    import cv2

    from edgepose.cli import main

    with pytest.raises(EdgeposeError, match=r"rtmdet\.onnx: the yolo layout has 1 output\(s\); this file has 2"):
        open_detector(str(models["mmdeploy"]), options=DetectorOptions(layout="yolo"))(_image())
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"not a model")
    img = tmp_path / "img.png"
    cv2.imwrite(str(img), _image())
    for args, message in (
        (["--detector", str(bad)], "junk.onnx: not a readable ONNX model"),
        (["--detector", str(models["mmdeploy"]), "--detector-layout", "yolo"], "rtmdet.onnx: the yolo layout"),
        (["--detector", str(models["yolo"]), "--detector-input", "32x32"], "but the model's input is 64x48"),
    ):
        capsys.readouterr()
        assert main(["predict", str(img), "--out", str(tmp_path / "o.png"), *args]) == 2
        lines = capsys.readouterr().err.strip().splitlines()  # INFO progress lines may come first
        errors = [ln for ln in lines if ln.startswith("edgepose: error:")]
        assert errors == lines[-1:] and message in errors[0] and "Traceback" not in lines, lines
        assert not (tmp_path / "o.png").exists()


def test_predict_with_a_user_detector_crops_its_boxes(models, tmp_path):
    """``edgepose predict IMAGE --detector DET``: one person per detected box, the boxes written as xywh."""
    import cv2

    from edgepose.cli import main

    img = tmp_path / "img.png"
    cv2.imwrite(str(img), _image()[..., ::-1])
    out = tmp_path / "o.png"
    assert main(["predict", str(img), "--detector", str(models["yolo"]), "--out", str(out), "--json",
                 str(tmp_path / "o.json"), "--no-flip", "--threads", "1"]) == 0  # fmt: skip
    doc = json.loads((tmp_path / "o.json").read_text())
    want = _expected_yolo()
    got = np.array([p["bbox"] for p in doc["persons"]])
    np.testing.assert_allclose(got, np.c_[want[:, :2], want[:, 2:4] - want[:, :2]], atol=2e-3)
    assert out.is_file()


@pytest.fixture(scope="module")
def scenes4(tmp_path_factory):
    from edgepose import synthetic

    return synthetic.generate_scenes(tmp_path_factory.mktemp("scenes"), "scenes_val", num_images=4)


def test_eval_detector_scores_like_pycocotools_and_the_bbox_file_path(scenes4, tmp_path):
    """``eval --detector`` (the bundled demo detector, 4 scenes): its box AP is pycocotools' COCOeval on the
    detector's boxes; its keypoint AP with detected boxes is what ``eval --bbox-file`` gives on those boxes
    written as a COCO results file, and its AP with GT boxes is plain ``eval``'s."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from edgepose.cli import main
    from edgepose.images import read_image
    from edgepose.metrics import box_results

    ann, images = scenes4
    pth = "edgepose/assets/demo_person_detector.pth"
    common = ["--ann", str(ann), "--images", str(images), "--no-flip", "--threads", "1", "--no-progress"]
    assert main(["eval", "--detector", pth, *common, "--out", str(tmp_path / "box.json")]) == 0
    thr = ["--det-bbox-thr", "0.3"]  # fewer crops to pose (the test's cost), the same path
    assert main(["eval", "--model", "demo_coco_256x192", "--detector", pth, *common, *thr,
                 "--out", str(tmp_path / "both.json")]) == 0  # fmt: skip
    box, both = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("box", "both"))
    # the detector's boxes, made here, scored by pycocotools itself
    det = open_detector(pth, threads=1)
    gt = json.loads(ann.read_text())
    results = []
    for im in gt["images"]:
        results += box_results(im["id"], det(read_image(images / im["file_name"])))
    coco = COCO(str(ann))
    ev = COCOeval(coco, coco.loadRes(results), "bbox")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert box["box"]["metrics"]["AP"] == pytest.approx(ev.stats[0], abs=1e-12) and ev.stats[0] > 0.1
    assert both["box"]["metrics"]["AP"] == box["box"]["metrics"]["AP"]
    (tmp_path / "dets.json").write_text(json.dumps(results))
    assert main(["eval", "--model", "demo_coco_256x192", *common, "--bbox-file", str(tmp_path / "dets.json"), *thr,
                 "--out", str(tmp_path / "file.json")]) == 0  # fmt: skip
    assert main(["eval", "--model", "demo_coco_256x192", *common, "--out", str(tmp_path / "gt.json")]) == 0
    by_file, by_gt = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("file", "gt"))
    kp = both["keypoints"]
    assert kp["detected_boxes"]["metrics"] == by_file["metrics"]
    assert kp["gt_boxes"]["metrics"] == by_gt["metrics"]
    assert kp["AP_difference"] == pytest.approx(by_gt["metrics"]["AP"] - by_file["metrics"]["AP"])
    assert kp["detected_boxes"]["num_samples"] == sum(r["score"] >= 0.3 for r in results) > 0
    assert kp["det_bbox_thr"] == 0.3


def test_run_tracks_the_boxes_of_a_user_detector(models, tmp_path):
    """``edgepose run IMAGE --detector DET.xml`` (OpenVINO, layout auto): each person's box is a detected box."""
    import cv2

    from edgepose.cli import main

    img = tmp_path / "img.png"
    cv2.imwrite(str(img), _image()[..., ::-1])
    jsonl = tmp_path / "run.jsonl"
    assert main(["run", str(img), "--detector", str(_openvino(models["yolo"])), "--jsonl", str(jsonl), "--no-flip",
                 "--threads", "1", "--quiet"]) == 0  # fmt: skip
    (frame,) = [json.loads(line) for line in jsonl.read_text().splitlines()]
    want = _expected_yolo()
    got = np.array([p["bbox"] for p in frame["persons"]])
    np.testing.assert_allclose(got, np.c_[want[:, :2], want[:, 2:4] - want[:, :2]], atol=0.006)  # 2 decimals


def test_plain_onnx_of_the_demo_detector_decodes_like_person_detector(tmp_path):
    """The bundled CenterNetDetector exported with torch.onnx (no edgepose metadata): layout auto -> edgepose,
    and its boxes on two synthetic scenes are PersonDetector's over PyTorch (to ONNX Runtime's float error)."""
    from edgepose import synthetic
    from edgepose.detection import PersonDetector
    from edgepose.models import load_model
    from edgepose.spec import get_spec

    spec = get_spec("demo_person_detector")
    model = load_model(spec, None, progress=False).eval()
    w, h = spec.input_size
    path = tmp_path / "det.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, h, w),), str(path), input_names=["input"], output_names=["out"],
                      opset_version=13, dynamo=False)  # fmt: skip
    det = open_detector(str(path), threads=1)
    assert det.info["layout"] == "edgepose" and det.info["input"]["size"] == [w, h]
    ref = PersonDetector(spec)
    for i in range(2):
        img, _ = synthetic.render_scene(np.random.default_rng([31337, i]))

        def infer(x):
            with torch.no_grad():
                return model(torch.from_numpy(x)).numpy()

        want = ref(infer, img)
        got = det(img)
        assert len(want) >= 2 and got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=2e-3)


@pytest.mark.parametrize("argv,flags", [
    (["eval", "--detector-layout", "yolo"], "--detector-layout"),
    (["eval", "--person-class", "2", "--det-score-thr", "0.2"], "--person-class, --det-score-thr"),
    (["eval", "--det-bbox-thr", "0.5", "--no-detector-bgr"], "--[no-]detector-bgr"),  # bbox thr: --bbox-file's
    (["predict", "IMG", "--detector-mean", "1,2,3"], "--detector-mean"),
    (["predict", "IMG", "--bbox", "1,1,5,5", "--det-thr", "0.5"], "--det-thr"),
    (["run", "IMG", "--boxes", "ANN", "--detector-input", "64x64"], "--detector-input"),
])  # fmt: skip
def test_detector_flags_without_a_detector_are_one_line_not_ignored(tmp_path, capsys, argv, flags):
    """A --detector-* option (or a detector threshold) where no detector runs is refused in one line naming it,
    exit 2, nothing written, before any model loads (their defaults pass: the other CLI tests run without
    a detector)."""
    from edgepose.cli import main

    img = tmp_path / "f.png"
    img.write_bytes(b"not read: the options are checked first")
    ann = tmp_path / "a.json"
    ann.write_text('{"images": [], "annotations": []}')
    out = tmp_path / ("o.json" if argv[0] == "eval" else "o.png")
    argv = [{"IMG": str(img), "ANN": str(ann)}.get(a, a) for a in argv] + ["--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"edgepose: error: {flags}: only with a detector"), err
    assert not out.exists() and "Traceback" not in err[0]
