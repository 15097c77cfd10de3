"""Metrics against their definitions, written out independently here, and against COCOeval itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgepose.datasets import load_dataset
from edgepose.metrics import (
    MPII_JOINTS,
    coco_keypoint_ap,
    coco_results,
    hand_metrics,
    keypoint_auc,
    keypoint_pck_accuracy,
    mpii_pckh,
    oks_iou,
    oks_nms,
    rescore,
)
from edgepose.spec import COCO_SIGMAS, get_spec
from tests.helpers import SAMPLES, require

BACKENDS: list[str] = []  # the COCO libraries installed here
for _name in ("xtcocotools", "pycocotools"):
    try:
        __import__(_name)
        BACKENDS.append(_name)
    except ImportError:
        pass
THRESHOLDS = [0.5 + 0.05 * i for i in range(10)]  # COCO's OKS thresholds .50:.05:.95


# -------------------------------------------------------------------------------- definitions
def oks_by_formula(gt: list[float], dt: list[float], area: float, sigmas) -> float:
    """OKS = mean over labelled joints of exp(-d^2 / (2 s^2 k^2)), s^2 = area, k = 2 sigma."""
    num, n = 0.0, 0
    for j, sig in enumerate(sigmas):
        xg, yg, v = gt[3 * j : 3 * j + 3]
        if v > 0:
            d2 = (dt[3 * j] - xg) ** 2 + (dt[3 * j + 1] - yg) ** 2
            num += math.exp(-d2 / (2 * area * (2 * sig) ** 2))
            n += 1
    return num / n


def pck_by_definition(pred, gt, mask, norms, thr) -> float:
    """Per joint: share of valid samples with dist / norm < thr; mean over joints that have a valid sample."""
    per_joint = []
    for j in range(gt.shape[1]):
        hits = [
            math.hypot(*(pred[i, j, :2] - gt[i, j, :2])) / norms[i] < thr
            for i in range(len(gt))
            if mask[i, j] and norms[i] > 0
        ]
        if hits:
            per_joint.append(sum(hits) / len(hits))
    return sum(per_joint) / len(per_joint)


def pckh_by_definition(pred0, gt1, visible, head_norms, thr) -> float:
    """MPII: correct / visible over all joints but pelvis and thorax, error normalised by 0.6 x head box.

    The visible-count-weighted mean of per-joint PCKh is exactly this pooled ratio.
    """
    correct = total = 0
    for i in range(len(gt1)):
        for j in range(16):
            if j in (6, 7) or not visible[i, j]:
                continue
            err = math.hypot(*(pred0[i, j, :2] + 1 - gt1[i, j])) / (0.6 * head_norms[i])
            correct += err <= thr
            total += 1
    return correct / total


def coco_case(dt_kpts, gt_kpts, area=20000.0, score=0.9):
    gt = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}],
        "annotations": [
            {
                "id": 7,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": area,
                "bbox": [100, 50, 120, 300],
                "keypoints": gt_kpts,
                "num_keypoints": int(sum(v > 0 for v in gt_kpts[2::3])),
            }
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    return gt, [{"image_id": 1, "category_id": 1, "keypoints": dt_kpts, "score": score}]


def hand_built_pose(seed: int = 3):
    rng = np.random.default_rng(seed)
    xy = rng.uniform([100, 50], [220, 350], (17, 2))
    vis = np.array([2] * 17)
    vis[[3, 4, 15]] = [0, 1, 0]  # two unlabelled joints, one labelled but occluded
    gt = np.concatenate([xy, vis[:, None]], 1).reshape(-1).tolist()
    dt_xy = xy + rng.normal(0, 6, xy.shape)
    dt = np.concatenate([dt_xy, rng.uniform(0.3, 1, (17, 1))], 1).reshape(-1).tolist()
    return gt, dt


# ------------------------------------------------------------------------------------- COCO
@pytest.mark.parametrize("backend", BACKENDS)
def test_computeoks_matches_the_formula(backend):
    gt_k, dt_k = hand_built_pose()
    gt, res = coco_case(dt_k, gt_k)
    if backend == "xtcocotools":
        from xtcocotools.coco import COCO
        from xtcocotools.cocoeval import COCOeval
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    dt = coco.loadRes(res)
    if backend == "xtcocotools":
        ev = COCOeval(coco, dt, "keypoints", np.array(COCO_SIGMAS))
    else:
        ev = COCOeval(coco, dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.array(COCO_SIGMAS)
    ev._prepare()
    got = ev.computeOks(1, 1)[0, 0]
    want = oks_by_formula(gt_k, dt_k, 20000.0, COCO_SIGMAS)
    assert 0.3 < want < 0.99
    assert got == pytest.approx(want, rel=1e-12)
    # mmpose's NMS OKS counts every joint and uses the mean of both areas (equal here)
    mine = oks_iou(np.array(gt_k), np.array([dt_k]), 20000.0, np.array([20000.0]), COCO_SIGMAS)[0]
    all_joints = np.array(gt_k).reshape(17, 3)
    all_joints[:, 2] = 2
    want_all = oks_by_formula(all_joints.reshape(-1).tolist(), dt_k, 20000.0, COCO_SIGMAS)
    assert mine == pytest.approx(want_all, rel=1e-6)  # float32 output, as mmpose


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("noise", [3.0, 8.0, 14.0])
def test_single_instance_ap_is_the_share_of_thresholds_below_its_oks(backend, noise):
    rng = np.random.default_rng(int(noise))
    gt_k, _ = hand_built_pose()
    xy = np.array(gt_k).reshape(17, 3)[:, :2]
    dt_k = np.concatenate([xy + rng.normal(0, noise, xy.shape), np.full((17, 1), 0.8)], 1).reshape(-1).tolist()
    gt, res = coco_case(dt_k, gt_k)
    oks = oks_by_formula(gt_k, dt_k, 20000.0, COCO_SIGMAS)
    assert min(abs(oks - t) for t in THRESHOLDS) > 1e-6  # no boundary case
    want = sum(oks >= t for t in THRESHOLDS) / 10
    m = coco_keypoint_ap(gt, res, COCO_SIGMAS, backend=backend)
    assert m["AP"] == pytest.approx(want, abs=1e-12) and m["AR"] == pytest.approx(want, abs=1e-12)
    assert m["AP50"] == pytest.approx(float(oks >= 0.5), abs=1e-12) and m["AP75"] == pytest.approx(
        float(oks >= 0.75), abs=1e-12
    )
    assert m["APl"] == pytest.approx(want, abs=1e-12)  # area 20000 > 96^2
    assert m["APm"] is None  # no medium ground truth: COCO's -1 becomes None


def test_rescore_is_box_score_times_mean_of_confident_joints():
    s = np.zeros((3, 17, 3), np.float32)
    s[0, :, 2] = 0.1
    s[0, [1, 4, 9], 2] = [0.5, 0.3, 0.9]
    s[0, 5, 2] = 0.2  # not above 0.2
    s[1, :, 2] = 0.05  # none above: score 0
    s[2, :, 2] = 1.0
    got = rescore(s, np.array([0.8, 0.9, 0.5]))
    assert got[0] == pytest.approx((0.5 + 0.3 + 0.9) / 3 * 0.8, rel=1e-6)
    assert got[1] == 0.0 and got[2] == pytest.approx(0.5)


def test_oks_nms_drops_near_duplicates_only():
    gt_k, _ = hand_built_pose()
    a = np.array(gt_k, dtype=np.float32).reshape(17, 3)
    a[:, 2] = 0.9
    b = a.copy()
    b[:, :2] += 1.0  # OKS with a is ~0.99 > 0.9
    c = a.copy()
    c[:, 0] += 300  # far away
    kp = np.stack([c, b, a])
    areas = np.array([20000, 21000, 20000], np.float32)
    keep = oks_nms(kp, np.array([0.5, 0.8, 0.9], np.float32), areas, 0.9, COCO_SIGMAS)
    assert keep.tolist() == [2, 0]
    ab = oks_iou(a.reshape(-1), b.reshape(1, -1), 20000.0, np.array([21000.0]), COCO_SIGMAS)[0]
    g = a.copy()
    g[:, 2] = 2  # every joint counts in the NMS OKS
    assert ab == pytest.approx(oks_by_formula(g.reshape(-1).tolist(), b.reshape(-1).tolist(), 20500.0, COCO_SIGMAS))


@pytest.fixture(scope="module")
def coco_gt():
    ann = require(SAMPLES / "coco" / "test_coco.json")
    return load_dataset("coco", ann, SAMPLES / "coco", get_spec("coco_256x192"))


def _coco_eval(ds, kp, backend):
    areas = [s.area for s in ds.samples]
    res = coco_results([s.image_id for s in ds.samples], kp, [s.score for s in ds.samples], areas, COCO_SIGMAS)
    return coco_keypoint_ap(ds.gt, res, COCO_SIGMAS, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ground_truth_as_predictions_scores_ap_one(coco_gt, backend):
    kp = coco_gt.stack("keypoints").copy()
    kp[..., 2] = 1.0
    m = _coco_eval(coco_gt, kp, backend)
    assert m["AP"] == pytest.approx(1.0) and m["AR"] == pytest.approx(1.0) and m["AP50"] == pytest.approx(1.0)


def test_xtcocotools_and_pycocotools_agree_on_perturbed_predictions(coco_gt):
    if len(BACKENDS) < 2:
        pytest.skip("needs both xtcocotools and pycocotools")
    rng = np.random.default_rng(0)
    kp = coco_gt.stack("keypoints").copy()
    kp[..., :2] += rng.normal(0, 6, kp[..., :2].shape)
    kp[..., 2] = rng.uniform(0, 1, kp[..., 2].shape)
    kp[0, :, 2] = 0.0  # no positive score: xtcocotools drops it, pycocotools is made to as well
    a, b = (_coco_eval(coco_gt, kp, be) for be in BACKENDS)
    assert 0.05 < a["AP"] < 0.95
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=1e-12), k


# ------------------------------------------------------------------------------------- hands
HANDS = [("onehand10k", "test_onehand10k.json"), ("panoptic", "test_panoptic.json"), ("rhd", "test_rhd.json")]


def _hand(name, ann):
    path = require(SAMPLES / name / ann)
    return load_dataset(name, path, SAMPLES / name, get_spec(f"{name}_256x256"))


def _hand_args(ds):
    if ds.name == "panoptic":
        return {"head_sizes": [s.head_size for s in ds.samples]}
    return {"bbox_sizes": [max(s.raw_bbox[2:]) for s in ds.samples]}


@pytest.mark.parametrize("name, ann", HANDS)
def test_hand_ground_truth_scores_perfectly(name, ann):
    ds = _hand(name, ann)
    gt = ds.stack("keypoints")
    m = hand_metrics(gt, gt, gt[..., 2] > 0, **_hand_args(ds))
    key = "PCKh@0.7" if name == "panoptic" else "PCK@0.2"
    assert m[key] == 1.0 and m["AUC"] == pytest.approx(0.95, abs=1e-12) and m["EPE"] == 0.0


@pytest.mark.parametrize("name, ann", HANDS)
def test_hand_metrics_match_their_definitions(name, ann):
    ds = _hand(name, ann)
    gt = ds.stack("keypoints").astype(np.float64)
    mask = gt[..., 2] > 0
    rng = np.random.default_rng(1)
    pred = gt.copy()
    pred[..., :2] += rng.normal(0, 12, pred[..., :2].shape)
    m = hand_metrics(pred, gt, mask, **_hand_args(ds))
    if name == "panoptic":
        norms, key, thr = [s.head_size for s in ds.samples], "PCKh@0.7", 0.7
    else:
        norms, key, thr = [max(s.raw_bbox[2:]) for s in ds.samples], "PCK@0.2", 0.2
    assert m[key] == pytest.approx(pck_by_definition(pred, gt, mask, norms, thr), abs=1e-12)
    grid = [i / 20 for i in range(20)]  # 0, 0.05, ..., 0.95
    auc = sum(pck_by_definition(pred, gt, mask, [30] * len(gt), t) for t in grid) / 20
    assert 0 < m["AUC"] < 0.95 and m["AUC"] == pytest.approx(auc, abs=1e-12)
    dists = [math.hypot(*(pred[i, j, :2] - gt[i, j, :2])) for i in range(len(gt)) for j in range(21) if mask[i, j]]
    assert m["EPE"] == pytest.approx(sum(dists) / len(dists), rel=1e-6)  # mmpose keeps distances in float32


def test_pck_is_strict_and_skips_joints_without_samples():
    gt = np.zeros((2, 3, 2))
    pred = np.zeros((2, 3, 2))
    pred[0, 1] = [12, 16]  # distance 20 = 0.2 x 100: not counted (strict <)
    mask = np.array([[False, True, True], [False, True, True]])  # joint 0 has no valid sample
    acc, avg, cnt = keypoint_pck_accuracy(pred, gt, mask, 0.2, np.full((2, 2), 100.0))
    assert acc[0] == -1 and acc[1] == 0.5 and acc[2] == 1.0 and cnt == 2 and avg == 0.75
    assert keypoint_auc(gt, gt, mask) == pytest.approx(0.95)  # threshold 0 counts nothing


# -------------------------------------------------------------------------------------- MPII
def _mpii_case(seed=0, n=40):
    rng = np.random.default_rng(seed)
    gt1 = rng.uniform(100, 900, (n, 16, 2))
    visible = rng.random((n, 16)) < 0.85
    head = rng.uniform(40, 120, n)
    pred0 = gt1 - 1 + rng.normal(0, 1, (n, 16, 2)) * head[:, None, None] * rng.uniform(0.05, 0.5, (n, 16, 1))
    return pred0.astype(np.float32), gt1, visible, head


def test_pckh_matches_its_definition():
    pred0, gt1, visible, head = _mpii_case()
    m = mpii_pckh(pred0, gt1, visible.astype(np.uint8), head)
    assert 0.2 < m["PCKh"] < 0.95
    assert m["PCKh"] == pytest.approx(pckh_by_definition(pred0, gt1, visible, head, 0.5), abs=1e-12)
    # pckAll is float32 in mmpose, hence the looser tolerance
    assert m["PCKh@0.1"] == pytest.approx(pckh_by_definition(pred0, gt1, visible, head, 0.1), abs=1e-6)
    head_idx = MPII_JOINTS.index("head")
    hits = [np.hypot(*(pred0[i, head_idx] + 1 - gt1[i, head_idx])) / (0.6 * head[i]) <= 0.5
            for i in range(len(gt1)) if visible[i, head_idx]]  # fmt: skip
    assert m["Head"] == pytest.approx(sum(hits) / len(hits), abs=1e-12)


def test_pckh_at_0_1_uses_threshold_0_10_not_0_11():
    gt1 = np.full((1, 16, 2), 500.0)
    pred0 = gt1 - 1
    pred0[0, :, 0] += 0.105 * 0.6 * 100  # every joint at normalised error 0.105
    m = mpii_pckh(pred0.astype(np.float32), gt1, np.ones((1, 16)), np.array([100.0]))
    assert m["PCKh"] == 1.0 and m["PCKh@0.1"] == 0.0


def test_pckh_ignores_pelvis_and_thorax():
    gt1 = np.full((2, 16, 2), 300.0)
    pred0 = (gt1 - 1).astype(np.float32)
    pred0[:, 6:8] += 500  # way off, but excluded
    m = mpii_pckh(pred0, gt1, np.ones((2, 16)), np.array([50.0, 60.0]))
    assert m["PCKh"] == 1.0 and m["PCKh@0.1"] == 1.0
