"""Readers against the annotation files themselves, with boxes and centre/scale computed here by hand."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from edgepose.datasets import load_dataset, read_mpii_mat
from edgepose.errors import EdgeposeError
from edgepose.evaluate import score
from edgepose.metrics import MPII_JOINTS
from edgepose.spec import get_spec
from tests.helpers import SAMPLES, require

COCO = get_spec("coco_256x192")


def xywh2cs(x, y, w, h, aspect, padding):
    """mmpose ``_xywh2cs``, written out."""
    cx, cy = x + w * 0.5, y + h * 0.5
    if w > aspect * h:
        h = w / aspect
    elif w < aspect * h:
        w = h * aspect
    return (cx, cy), (w / 200 * padding, h / 200 * padding)


def coco_json():
    return json.loads(require(SAMPLES / "coco" / "test_coco.json").read_text())


# ------------------------------------------------------------------------------------------ COCO
def test_coco_ground_truth_boxes_cleaned_and_filtered():
    data = coco_json()
    ds = load_dataset("coco", SAMPLES / "coco" / "test_coco.json", SAMPLES / "coco", COCO)
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    expected = []
    for a in data["annotations"]:  # the file lists images' annotations in image order
        w_img, h_img = sizes[a["image_id"]]
        x, y, w, h = a["bbox"]
        x1, y1 = max(0, x), max(0, y)
        x2, y2 = min(w_img - 1, x1 + max(0, w - 1)), min(h_img - 1, y1 + max(0, h - 1))
        if a["iscrowd"] or a["area"] <= 0 or not (x2 > x1 and y2 > y1) or a["num_keypoints"] == 0:
            continue
        expected.append((a["id"], [x1, y1, x2 - x1, y2 - y1]))
    assert len(ds) == len(expected) == 12 and ds.num_images == 4
    for s, (ann_id, box) in zip(ds.samples, expected):
        assert s.annotation_id == ann_id and s.score == 1.0
        np.testing.assert_allclose(s.bbox, box, atol=1e-9)
        c, sc = xywh2cs(*box, 192 / 256, 1.25)
        np.testing.assert_allclose(s.center, c, rtol=1e-6)
        np.testing.assert_allclose(s.scale, sc, rtol=1e-6)
        assert s.area == pytest.approx(sc[0] * sc[1] * 200 * 200, rel=1e-5)
    first = next(a for a in data["annotations"] if a["id"] == expected[0][0])
    np.testing.assert_array_equal(ds.samples[0].keypoints.reshape(-1), first["keypoints"])
    # x=0.5 at the left border: the cleaned box starts at 0.5 and is one pixel narrower
    edge = next(s for s in ds.samples if s.bbox[0] == 0.5)
    assert edge.bbox[2] == pytest.approx(89.1)


@pytest.mark.parametrize("thr", [0.0, 0.3, 0.9])
def test_coco_detections_filtered_by_score(thr):
    det_path = require(SAMPLES / "coco" / "test_coco_det_AP_H_56.json")
    dets = [d for d in json.loads(det_path.read_text()) if d["category_id"] == 1 and d["score"] >= thr]
    ds = load_dataset("coco", SAMPLES / "coco" / "test_coco.json", SAMPLES / "coco", COCO, det_path, thr)
    assert len(ds) == len(dets) and (thr > 0 or len(ds) == 118)
    for s, d in zip(ds.samples, dets):
        assert s.annotation_id is None and s.image_id == d["image_id"] and s.score == pytest.approx(d["score"])
        np.testing.assert_allclose(s.bbox, d["bbox"])  # used as it comes, no cleaning
        c, sc = xywh2cs(*d["bbox"], 0.75, 1.25)
        np.testing.assert_allclose(s.center, c, rtol=1e-6)
        np.testing.assert_allclose(s.scale, sc, rtol=1e-6)


def test_coco_384x288_uses_its_own_aspect():
    ds = load_dataset("coco", require(SAMPLES / "coco" / "test_coco.json"), SAMPLES / "coco", get_spec("coco_384x288"))
    _, sc = xywh2cs(*ds.samples[0].bbox, 288 / 384, 1.25)
    np.testing.assert_allclose(ds.samples[0].scale, sc, rtol=1e-6)


# ------------------------------------------------------------------------------------------ MPII
def test_mpii_centre_scale_and_joints():
    ann = require(SAMPLES / "mpii" / "test_mpii.json")
    data = json.loads(ann.read_text())
    ds = load_dataset("mpii", ann, SAMPLES / "mpii", get_spec("mpii_256x256"))
    assert len(ds) == len(data) == 5
    for s, a in zip(ds.samples, data):
        sc = a["scale"] * 1.25
        cx, cy = a["center"][0] - 1, a["center"][1] + 15 * a["scale"] - 1
        np.testing.assert_allclose(s.center, [cx, cy], rtol=1e-6)
        np.testing.assert_allclose(s.scale, [sc, sc], rtol=1e-6)
        np.testing.assert_allclose(s.keypoints[:, :2], np.array(a["joints"]) - 1, rtol=1e-6)
        assert s.image.name == a["image"]
    assert ds.notes["head_size_source"] == "joints" and ds.mpii_gt.source == "joints"
    top, neck = MPII_JOINTS.index("head"), MPII_JOINTS.index("neck")
    j = np.array(data[0]["joints"])
    assert ds.mpii_gt.head_norms[0] == pytest.approx(math.dist(j[top], j[neck]))


def _write_mat(path, joints1, visible, head_boxes):
    from scipy.io import savemat

    names = np.empty((1, 16), dtype=object)
    for i, n in enumerate(MPII_JOINTS):
        names[0, i] = np.array([n])
    savemat(
        str(path),
        {
            "dataset_joints": names,  # a MATLAB cell array, as in the real file
            "jnt_missing": (1 - visible).T.astype(np.uint8),
            "pos_gt_src": np.transpose(joints1, [1, 2, 0]),
            "headboxes_src": np.transpose(head_boxes, [1, 2, 0]),
        },
    )


@pytest.fixture()
def mpii_with_mat(tmp_path):
    pytest.importorskip("scipy")
    ann = require(SAMPLES / "mpii" / "test_mpii.json")
    shutil.copy(ann, tmp_path / "test_mpii.json")
    data = json.loads(ann.read_text())
    joints = np.array([a["joints"] for a in data], dtype=np.float64)
    visible = np.array([a["joints_vis"] for a in data], dtype=np.int64)
    visible[1, 3] = 0
    rng = np.random.default_rng(0)
    tl = rng.uniform(100, 500, (len(data), 2))
    boxes = np.stack([tl, tl + rng.uniform(30, 90, (len(data), 2))], axis=1)  # (N, 2 corners, 2)
    _write_mat(tmp_path / "mpii_gt_val.mat", joints, visible, boxes)
    return tmp_path / "test_mpii.json", joints, visible, boxes


def test_mpii_mat_is_read_and_scored(mpii_with_mat):
    ann, joints, visible, boxes = mpii_with_mat
    ds = load_dataset("mpii", ann, SAMPLES / "mpii", get_spec("mpii_256x256"))
    assert ds.notes["head_size_source"] == "mpii_gt_val.mat"
    np.testing.assert_allclose(ds.mpii_gt.head_norms, np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1))
    rng = np.random.default_rng(1)
    head = np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1) * 0.6
    pred = np.zeros((len(ds), 16, 3), np.float32)
    pred[..., :2] = joints - 1 + rng.normal(0, 1, joints.shape) * head[:, None, None] * 0.4
    metrics, _ = score(ds, pred)
    correct = total = 0
    for i in range(len(ds)):
        for j in range(16):
            if j in (6, 7) or not visible[i, j]:
                continue
            total += 1
            correct += math.dist(pred[i, j, :2] + 1, joints[i, j]) / head[i] <= 0.5
    assert 0 < correct / total < 1 and metrics["PCKh"] == pytest.approx(correct / total, abs=1e-12)
    perfect, _ = score(ds, np.concatenate([joints - 1, np.ones((len(ds), 16, 1))], 2).astype(np.float32))
    assert perfect["PCKh"] == 1.0 and perfect["PCKh@0.1"] == pytest.approx(1.0)


def test_mpii_mat_with_other_person_count_is_refused(mpii_with_mat, tmp_path):
    _, joints, visible, boxes = mpii_with_mat
    _write_mat(tmp_path / "mpii_gt_val.mat", joints[:4], visible[:4], boxes[:4])
    with pytest.raises(EdgeposeError, match="holds 4 persons"):
        read_mpii_mat(tmp_path / "mpii_gt_val.mat", expected=5)


# ----------------------------------------------------------------------------------------- hands
@pytest.mark.parametrize(
    "name, ann, n, padding",
    [("onehand10k", "test_onehand10k.json", 4, 1.25), ("panoptic", "test_panoptic.json", 4, 1.76),
     ("rhd", "test_rhd.json", 3, 1.25)],
)  # fmt: skip
def test_hand_readers(name, ann, n, padding):
    path = require(SAMPLES / name / ann)
    data = json.loads(path.read_text())
    ds = load_dataset(name, path, SAMPLES / name, get_spec(f"{name}_256x256"))
    assert len(ds) == n
    by_id = {a["id"]: a for a in data["annotations"]}
    for s in ds.samples:
        a = by_id[s.annotation_id]
        np.testing.assert_allclose(s.raw_bbox, a["bbox"])
        np.testing.assert_allclose(s.bbox, a["bbox"])
        np.testing.assert_allclose(s.keypoints.reshape(-1), np.asarray(a["keypoints"], float).reshape(-1), rtol=1e-6)
        c, sc = xywh2cs(*a["bbox"], 1.0, padding)
        np.testing.assert_allclose(s.center, c, rtol=1e-6)
        np.testing.assert_allclose(s.scale, sc, rtol=1e-6)
        assert s.head_size == (a["head_size"] if name == "panoptic" else None)


# ---------------------------------------------------------------------------------------- errors
def _one_line(e: pytest.ExceptionInfo, needle: str) -> None:
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


def test_missing_annotation_file(tmp_path):
    with pytest.raises(EdgeposeError) as e:
        load_dataset("coco", tmp_path / "nope.json", tmp_path, COCO)
    _one_line(e, "nope.json: annotation file not found")


def test_malformed_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(EdgeposeError) as e:
        load_dataset("onehand10k", bad, tmp_path, get_spec("onehand10k_256x256"))
    _one_line(e, "bad.json: annotation file is not valid JSON")


def test_wrong_structure_and_keypoint_count(tmp_path):
    f = tmp_path / "a.json"
    f.write_text(json.dumps([1, 2]))
    with pytest.raises(EdgeposeError) as e:
        load_dataset("coco", f, tmp_path, COCO)
    _one_line(e, "a.json: not a COCO-style file")
    data = coco_json()
    data["annotations"][0]["keypoints"] = data["annotations"][0]["keypoints"][:-3]
    f.write_text(json.dumps(data))
    with pytest.raises(EdgeposeError) as e:
        load_dataset("coco", f, tmp_path, COCO)
    _one_line(e, "has 48 keypoint values, expected 51")
    with pytest.raises(EdgeposeError) as e:
        load_dataset("mpii", f, tmp_path, get_spec("mpii_256x256"))
    _one_line(e, "not an mmpose MPII file")


def test_missing_images_and_panoptic_head_size(tmp_path):
    ann = require(SAMPLES / "coco" / "test_coco.json")
    with pytest.raises(EdgeposeError) as e:
        load_dataset("coco", ann, tmp_path, COCO)
    _one_line(e, "image file not found (and 3 more)")
    data = json.loads(require(SAMPLES / "panoptic" / "test_panoptic.json").read_text())
    del data["annotations"][1]["head_size"]
    f = tmp_path / "p.json"
    f.write_text(json.dumps(data))
    with pytest.raises(EdgeposeError) as e:
        load_dataset("panoptic", f, SAMPLES / "panoptic", get_spec("panoptic_256x256"))
    _one_line(e, "lacks a numeric 'head_size'")


def test_detection_file_errors(tmp_path):
    ann = require(SAMPLES / "coco" / "test_coco.json")
    f = tmp_path / "det.json"
    f.write_text(json.dumps([{"image_id": 999, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 1}]))
    with pytest.raises(EdgeposeError) as e:
        load_dataset("coco", ann, SAMPLES / "coco", COCO, f)
    _one_line(e, "det.json: detection 0 refers to image 999")
