"""The person detector's device side (decode, NMS, letterbox, the two user layouts), box AP, and the scenes.

Every expectation comes from outside the code under test: boxes built by hand and scored by pycocotools'
COCOeval (bbox), AP worked out by hand, peaks against torch's max-pool, NMS against OpenCV's NMSBoxes, scene
boxes against the pixels the figure changed in the frame.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgepose import EdgeposeError, synthetic
from edgepose.detection import (
    Letterbox,
    PersonDetector,
    box_iou,
    decode_centernet,
    decode_mmdeploy,
    decode_yolo,
    heatmap_peaks,
    letterbox,
    nms,
)
from edgepose.metrics import box_results, coco_box_ap
from edgepose.spec import get_spec

SPEC = get_spec("demo_person_detector")
IN_W, IN_H = SPEC.input_size


def _gt(boxes_per_image: list[list[list[float]]], sizes, crowd=()) -> dict:
    images, anns = [], []
    for i, (boxes, (w, h)) in enumerate(zip(boxes_per_image, sizes), start=1):
        images.append({"id": i, "file_name": f"{i}.jpg", "width": w, "height": h})
        for b in boxes:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": list(b),
                         "area": b[2] * b[3], "iscrowd": int(len(anns) in crowd)})  # fmt: skip
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}


def _output_for(boxes_in: np.ndarray, scores) -> np.ndarray:
    """A hand-made detector output [1, 5, H/4, W/4]: a Gaussian peak per box centre, its size and offset."""
    out = np.zeros((1, 5, IN_H // 4, IN_W // 4), np.float32)
    ys, xs = np.mgrid[0 : IN_H // 4, 0 : IN_W // 4]
    for (x1, y1, x2, y2), s in zip(boxes_in, scores):
        cx, cy = (x1 + x2) / 8, (y1 + y2) / 8
        ix, iy = int(cx), int(cy)
        out[0, 0] = np.maximum(out[0, 0], s * np.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / 2.0))
        out[0, 1:, iy, ix] = ((x2 - x1) / IN_W, (y2 - y1) / IN_H, cx - ix, cy - iy)
    return out


def test_decode_of_hand_made_maps_scores_like_cocoeval_says():
    """Boxes put into maps come back through letterbox undo + NMS exactly; COCOeval gives AP 1, and with one
    person missed and a false positive ranked second, AP50 = 51/101 (101-point interpolation, by hand)."""
    w, h = 640, 360  # 16:9 frame: letterboxed to 320x180 at dy = 38
    gt_boxes = [[40.0, 60.0, 120.0, 260.0], [400.0, 20.0, 90.0, 300.0]]
    det = PersonDetector(SPEC)
    _, lb = letterbox(np.zeros((h, w, 3), np.uint8), SPEC.input_size)
    assert (lb.sx, lb.sy, lb.dx, lb.dy) == (0.5, 0.5, 0, 38)
    xyxy = np.array([[x, y, x + bw, y + bh] for x, y, bw, bh in gt_boxes])
    in_boxes = xyxy * 0.5 + [0, 38, 0, 38]
    dets = det.decode(_output_for(in_boxes, [0.9, 0.8]), lb)
    np.testing.assert_allclose(dets[:, :4], xyxy, atol=1e-3)
    np.testing.assert_allclose(dets[:, 4], [0.9, 0.8], atol=1e-6)
    doc = _gt([gt_boxes], [(w, h)])
    assert coco_box_ap(doc, box_results(1, dets))["AP"] == pytest.approx(1.0)

    fp = np.array([[250.0, 100.0, 300.0, 200.0]]) * 0.5 + [0, 38, 0, 38]
    dets = det.decode(_output_for(np.concatenate([in_boxes[:1], fp]), [0.9, 0.8]), lb)
    stats = coco_box_ap(doc, box_results(1, dets))
    assert stats["AP50"] == pytest.approx(51 / 101, abs=1e-9)


def test_crowd_ground_truth_is_an_ignore_region():
    doc = _gt([[[10.0, 10.0, 50.0, 100.0], [200.0, 10.0, 60.0, 120.0]]], [(320, 256)], crowd=(1,))
    hit = [[10.0, 10.0, 60.0, 110.0, 0.9]]
    assert coco_box_ap(doc, box_results(1, hit))["AP50"] == pytest.approx(1.0)
    on_crowd = hit + [[205.0, 15.0, 255.0, 125.0, 0.95]]  # above the true positive, yet no false positive
    assert coco_box_ap(doc, box_results(1, on_crowd))["AP50"] == pytest.approx(1.0)


def test_peaks_are_torch_max_pool_peaks():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    hm = cv2.GaussianBlur(rng.random((64, 80)).astype(np.float32), (5, 5), 1.0)
    hm[0, 0] = hm[-1, -1] = 2.0  # peaks on the border
    ys, xs, scores = heatmap_peaks(hm, top_k=1000, threshold=0.0)
    t = torch.from_numpy(hm)[None, None]
    pooled = torch.nn.functional.max_pool2d(t, 3, stride=1, padding=1)
    ref = set(zip(*np.nonzero((t == pooled)[0, 0].numpy())))
    assert set(zip(ys.tolist(), xs.tolist())) == ref
    assert np.all(np.diff(scores) <= 0) and scores[0] == 2.0
    assert len(heatmap_peaks(hm, top_k=3)[0]) == 3


def test_nms_keeps_what_opencv_keeps():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 200, (60, 2))
    wh = rng.uniform(20, 80, (60, 2))
    scores = rng.permutation(60) / 60 + 0.01  # distinct scores: one order
    dets = np.column_stack([xy, xy + wh, scores]).astype(np.float32)
    for thr in (0.3, 0.6):
        keep = cv2.dnn.NMSBoxes([list(map(float, b)) for b in np.column_stack([xy, wh])], scores.tolist(), 0.0, thr)
        expected = dets[np.asarray(keep).reshape(-1)]
        np.testing.assert_allclose(nms(dets, thr), expected[np.argsort(-expected[:, 4])])
    assert box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10]]))[0, 0] == pytest.approx(1 / 3)


def test_letterbox_round_trip_finds_a_painted_box():
    img = np.full((300, 500, 3), 20, np.uint8)
    img[100:180, 350:420] = 240  # pixel edges x 350..420, y 100..180
    boxed, lb = letterbox(img, SPEC.input_size)
    assert boxed.shape == (IN_H, IN_W, 3) and lb == Letterbox(320 / 500, 192 / 300, 0, 32, (500, 300))
    ys, xs = np.nonzero(boxed[..., 0] > 130)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    np.testing.assert_allclose(lb.to_image(found), [[350, 100, 420, 180]], atol=1.6)
    assert (boxed[:32] == (124, 116, 104)).all()  # the border is the normalisation mean
    with pytest.raises(EdgeposeError, match="expected an HxWx3 image"):
        letterbox(np.zeros((10, 10), np.uint8), SPEC.input_size)


@pytest.mark.parametrize("center", [True, False])
def test_letterbox_is_resize_then_paste_on_the_pad(center):
    """Every frame shape (the input's own, larger, smaller, 1x1, extreme aspect, a mirrored view) gives the pixels
    of the definition: cv2.resize to the fitted size pasted on a canvas of the pad colour; and never the caller's
    own array."""
    rng = np.random.default_rng(12)
    for shape in [(IN_H, IN_W, 3), (480, 640, 3), (IN_H // 2, IN_W // 2, 3), (1, 1, 3), (3, 901, 3), (257, 321, 3)]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        for frame in (img, img[:, ::-1]):
            h, w = frame.shape[:2]
            s = min(IN_W / w, IN_H / h)
            nw, nh = max(1, min(IN_W, round(w * s))), max(1, min(IN_H, round(h * s)))
            dx, dy = ((IN_W - nw) // 2, (IN_H - nh) // 2) if center else (0, 0)
            want = np.empty((IN_H, IN_W, 3), np.uint8)
            want[:] = (9, 99, 199)
            want[dy : dy + nh, dx : dx + nw] = cv2.resize(np.ascontiguousarray(frame), (nw, nh))
            got, lb = letterbox(frame, SPEC.input_size, (9, 99, 199), center=center)
            assert np.array_equal(got, want) and (lb.dx, lb.dy) == (dx, dy), (shape, center)
            assert not np.shares_memory(got, frame)
            want[:] = 114  # one value for the three channels (YOLO's pad)
            want[dy : dy + nh, dx : dx + nw] = cv2.resize(np.ascontiguousarray(frame), (nw, nh))
            assert np.array_equal(letterbox(frame, SPEC.input_size, 114, center=center)[0], want)


def test_mmdeploy_layout():
    dets = np.array([[[10, 10, 50, 90, 0.4], [0, 0, 5, 5, 0.99], [60, 10, 90, 80, 0.8], [1, 1, 2, 2, 0.1]]], np.float32)
    labels = np.array([[0, 2, 0, 0]])
    out = decode_mmdeploy(dets, labels, person_label=0, score_threshold=0.3)
    np.testing.assert_array_equal(out, dets[0, [2, 0]])
    with pytest.raises(EdgeposeError, match=r"expected \[1, N, 5\]"):
        decode_mmdeploy(dets[..., :4], labels)
    with pytest.raises(EdgeposeError, match="labels"):
        decode_mmdeploy(dets, labels[:, :2])


def test_yolo_layout():
    # candidates (cx, cy, w, h, person, car): a person, its duplicate, a car, a weak person, a second person
    cand = np.array([
        [50, 50, 20, 40, 0.9, 0.1],
        [51, 50, 20, 40, 0.8, 0.1],
        [150, 50, 20, 40, 0.3, 0.9],
        [100, 100, 10, 10, 0.2, 0.0],
        [200, 100, 30, 60, 0.7, 0.2],
    ], np.float32)  # fmt: skip
    out = decode_yolo(cand.T[None], person_class=0, score_threshold=0.3, iou_threshold=0.6)
    np.testing.assert_allclose(out, [[40, 30, 60, 70, 0.9], [185, 70, 215, 130, 0.7]])
    with pytest.raises(EdgeposeError, match="no class 5"):
        decode_yolo(cand.T[None], person_class=5)
    with pytest.raises(EdgeposeError, match=r"expected \[1, 4 \+ C, N\]"):
        decode_yolo(cand.T)


def test_decode_refuses_a_wrong_output():
    with pytest.raises(EdgeposeError, match=r"expected \[1, 5, H, W\]"):
        decode_centernet(np.zeros((1, 17, 64, 80), np.float32), SPEC.input_size)
    with pytest.raises(EdgeposeError, match="does not match the input"):
        decode_centernet(np.zeros((1, 5, 48, 64), np.float32), SPEC.input_size)
    with pytest.raises(EdgeposeError, match="not a detector"):
        PersonDetector(get_spec("demo_coco_256x192"))


def test_scene_boxes_are_the_visible_extent():
    """For one-figure scenes without occluders, the box is the extent of the pixels the figure changed in the
    frame (the same seed with no figures renders the background alone); any scene's boxes lie in the frame."""
    for i in range(10):
        img, persons = synthetic.render_scene(np.random.default_rng([5, i]))
        h, w = img.shape[:2]
        for p in persons:
            x, y, bw, bh = p["bbox"]
            assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h and bw >= 1 and bh >= 1
    checked = 0
    for i in range(30):
        img, persons = synthetic.render_scene(np.random.default_rng([5, i]), (360, 280), max_persons=1, occlusion=0)
        bg, none = synthetic.render_scene(np.random.default_rng([5, i]), (360, 280), max_persons=0)
        assert none == []
        if len(persons) != 1:
            continue
        ys, xs = np.nonzero(np.abs(img.astype(int) - bg.astype(int)).max(2) > 40)
        x, y, bw, bh = persons[0]["bbox"]
        np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], [x, y, x + bw, y + bh], atol=2)
        checked += 1
    assert checked >= 3


def test_generate_scenes_is_reproducible_coco(tmp_path):
    a, _ = synthetic.generate_scenes(tmp_path / "a", "t", num_images=4, seed=9)
    b, imgs = synthetic.generate_scenes(tmp_path / "b", "t", num_images=4, seed=9)
    assert a.read_bytes() == b.read_bytes()
    doc = json.loads(a.read_text())
    assert len(doc["images"]) == 4 and all((imgs / i["file_name"]).is_file() for i in doc["images"])
    gt = [a_ for a_ in doc["annotations"] if not a_["iscrowd"]]
    assert gt and coco_box_ap(doc, [
        {"image_id": g["image_id"], "category_id": 1, "bbox": g["bbox"], "score": 1.0} for g in gt
    ])["AP"] == pytest.approx(1.0)  # fmt: skip
    assert synthetic.SCENE_SPLITS["scenes_train"][1] != synthetic.SCENE_SPLITS["scenes_val"][1]
    with pytest.raises(EdgeposeError, match="unknown scene split"):
        synthetic.generate_scenes(tmp_path / "c", "nope")
