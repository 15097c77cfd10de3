"""mmpose 0.x's evaluation metrics as pure functions on arrays (numpy only; COCO tools imported lazily).

* COCO keypoint AP/AR: mmpose's rescoring and OKS-NMS, then ``COCOeval`` from xtcocotools (what mmpose uses)
  or, when that is not installed, pycocotools with the same sigmas and the same rules.
* MPII PCKh (``TopDownMpiiDataset.evaluate``) and hand PCK / PCKh / AUC / EPE (``keypoint_pck_accuracy``,
  ``keypoint_auc``, ``keypoint_epe``), including mmpose's dtypes (float32 distances), so that boundary
  cases are decided as mmpose decides them.

Every fraction is returned in 0..1 (mmpose's MPII code returns percentages); EPE is in pixels.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence

import numpy as np

from .errors import EdgeposeError

__all__ = [
    "COCO_STATS",
    "MPII_JOINTS",
    "rescore",
    "oks_iou",
    "oks_nms",
    "coco_results",
    "coco_keypoint_ap",
    "coco_box_ap",
    "box_results",
    "mpii_pckh",
    "keypoint_pck_accuracy",
    "keypoint_auc",
    "keypoint_epe",
    "hand_metrics",
]

# COCOeval.stats, in order, under the names edgepose reports (mmpose: AP, AP .5, AP .75, AP (M), ...)
COCO_STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
# Joint names as in mpii_gt_val.mat's ``dataset_joints`` (the MPII joint order)
MPII_JOINTS = (
    "rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thrx",
    "neck", "head", "rwri", "relb", "rsho", "lsho", "lelb", "lwri",
)  # fmt: skip
MPII_SC_BIAS = 0.6  # head size = 0.6 x head box diagonal


# ------------------------------------------------------------------------------------- COCO AP
def rescore(keypoints: np.ndarray, box_scores: np.ndarray, vis_thr: float = 0.2) -> np.ndarray:
    """mmpose's instance score: box score x mean of the joint scores above ``vis_thr`` (0 when none are).

    Computed in float32, joint by joint, as mmpose's loop over ``np.float32`` scalars does.
    """
    s = np.asarray(keypoints, dtype=np.float32)[..., 2]
    n, k = s.shape
    thr = np.float32(vis_thr)
    total = np.zeros(n, dtype=np.float32)
    count = np.zeros(n, dtype=np.int64)
    for j in range(k):
        above = s[:, j] > thr
        total = np.where(above, total + s[:, j], total).astype(np.float32)
        count += above
    mean = np.where(count > 0, total / np.maximum(count, 1).astype(np.float32), np.float32(0)).astype(np.float32)
    return (mean * np.asarray(box_scores, dtype=np.float32)).astype(np.float32)


def oks_iou(
    g: np.ndarray, d: np.ndarray, area_g: float, area_d: np.ndarray, sigmas: Sequence[float], vis_thr=None
) -> np.ndarray:
    """OKS of one pose ``g`` (K*3 flat) against poses ``d`` (M, K*3), mmpose's ``oks_iou`` (float32 out).

    The area is the mean of the two instances' areas (mmpose NMS; COCOeval uses the ground truth's area).
    Inputs keep their dtype (mmpose passes float32 keypoints and areas).
    """
    if sigmas is None:
        from .spec import COCO_SIGMAS

        sigmas = COCO_SIGMAS
    var = (np.asarray(sigmas, dtype=np.float64) * 2) ** 2
    g = np.asarray(g).reshape(-1)
    d = np.asarray(d).reshape(len(area_d), g.size)
    xg, yg = g[0::3], g[1::3]
    ious = np.zeros(len(d), dtype=np.float32)
    for i in range(len(d)):
        xd, yd, vd = d[i, 0::3], d[i, 1::3], d[i, 2::3]
        e = ((xd - xg) ** 2 + (yd - yg) ** 2) / var / ((area_g + area_d[i]) / 2 + np.spacing(1)) / 2
        if vis_thr is not None:
            # mmpose writes ``list(vg > t) and list(vd > t)``, which is just the detection's mask
            e = e[vd > vis_thr]
        ious[i] = np.sum(np.exp(-e)) / len(e) if len(e) else 0.0
    return ious


def oks_nms(
    keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, thr: float = 0.9, sigmas=None, vis_thr=None
) -> np.ndarray:
    """Greedy OKS-NMS (mmpose ``oks_nms``): indices kept, highest score first."""
    if len(keypoints) == 0:
        return np.zeros(0, dtype=np.int64)
    kpts = np.asarray(keypoints).reshape(len(keypoints), -1)
    areas = np.asarray(areas)
    order = np.asarray(scores).argsort()[::-1]
    keep = []
    while len(order) > 0:
        i = order[0]
        keep.append(i)
        ovr = oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas, vis_thr)
        order = order[np.where(ovr <= thr)[0] + 1]
    return np.asarray(keep, dtype=np.int64)


def coco_results(
    image_ids: Sequence,
    keypoints: np.ndarray,
    box_scores: np.ndarray,
    areas: np.ndarray,
    sigmas: Sequence[float],
    vis_thr: float = 0.2,
    oks_thr: float = 0.9,
    use_nms: bool = True,
    category_id: int = 1,
) -> list[dict]:
    """mmpose's COCO result list: rescore every instance, OKS-NMS per image, images in first-seen order.

    ``areas`` are ``prod(scale * 200)`` of each crop (float32, as mmpose's ``boxes[:, 4]``).
    """
    keypoints = np.asarray(keypoints, dtype=np.float32)
    scores = rescore(keypoints, box_scores, vis_thr)
    areas = np.asarray(areas, dtype=np.float32)
    by_image: dict = {}
    for i, img in enumerate(image_ids):
        by_image.setdefault(img, []).append(i)
    out = []
    for img, idx in by_image.items():
        idx = np.asarray(idx)
        keep = oks_nms(keypoints[idx], scores[idx], areas[idx], oks_thr, sigmas) if use_nms else np.arange(len(idx))
        for j in idx[keep]:
            out.append({
                "image_id": img,
                "category_id": category_id,
                "keypoints": keypoints[j].reshape(-1).tolist(),
                "score": float(scores[j]),
            })  # fmt: skip
    return out


def _coco_tools(backend: str):
    """(COCO, COCOeval, name): xtcocotools as mmpose, else pycocotools."""
    if backend in ("auto", "xtcocotools"):
        try:
            from xtcocotools.coco import COCO
            from xtcocotools.cocoeval import COCOeval

            return COCO, COCOeval, "xtcocotools"
        except ImportError:
            if backend == "xtcocotools":
                raise EdgeposeError("COCO evaluation with xtcocotools: pip install xtcocotools") from None
    if backend in ("auto", "pycocotools"):
        try:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            return COCO, COCOeval, "pycocotools"
        except ImportError:
            pass
    raise EdgeposeError("COCO keypoint AP needs xtcocotools or pycocotools: pip install 'edgepose[eval]'")


def coco_keypoint_ap(
    gt: dict, results: list[dict], sigmas: Sequence[float], backend: str = "auto", use_area: bool = True
) -> dict[str, float | None]:
    """``COCOeval(gt, results, 'keypoints', sigmas)`` stats by name (``None`` where COCO reports -1).

    ``gt`` is the ground-truth json (a dict, copied before use: COCOeval writes into it). With pycocotools
    the two rules where xtcocotools differs are applied by hand, so that both give the same numbers: results
    with no positive keypoint score are dropped, and ground truth without a ``num_keypoints`` field gets it.
    """
    coco_cls, eval_cls, name = _coco_tools(backend)
    gt = copy.deepcopy(gt)
    results = copy.deepcopy(results)
    if name == "pycocotools":
        if not use_area:
            raise EdgeposeError("use_area=False needs xtcocotools")
        for ann in gt.get("annotations", []):
            if "num_keypoints" not in ann and "keypoints" in ann:
                ann["num_keypoints"] = int(np.count_nonzero(np.asarray(ann["keypoints"])[2::3] > 0))
            ann.setdefault("iscrowd", 0)
        results = [r for r in results if np.count_nonzero(np.asarray(r["keypoints"])[2::3] > 0) > 0]
    stats = [-1.0] * len(COCO_STATS)
    with contextlib.redirect_stdout(io.StringIO()):  # both libraries print progress and tables
        coco_gt = coco_cls()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(results)
            if name == "xtcocotools":
                ev = eval_cls(coco_gt, coco_dt, "keypoints", np.asarray(sigmas), use_area=use_area)
            else:
                ev = eval_cls(coco_gt, coco_dt, "keypoints")
                ev.params.kpt_oks_sigmas = np.asarray(sigmas)
            ev.params.useSegm = None
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            stats = [float(s) for s in ev.stats]
    return {k: (None if v < 0 else v) for k, v in zip(COCO_STATS, stats)}


def box_results(image_id: int, dets: np.ndarray, category_id: int = 1) -> list[dict]:
    """COCO detection results for one image from ``(N, 5)`` x1, y1, x2, y2, score (pixel edges)."""
    d = np.asarray(dets, np.float64).reshape(-1, 5)
    return [
        {"image_id": int(image_id), "category_id": category_id, "score": float(s),
         "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]}
        for x1, y1, x2, y2, s in d
    ]  # fmt: skip


def coco_box_ap(gt: dict, results: list[dict], image_ids: Sequence[int] | None = None) -> dict[str, float | None]:
    """``COCOeval(gt, results, 'bbox')`` stats by name (pycocotools; ``None`` where COCO reports -1).

    ``gt`` is a COCO json dict (copied before use); ``iscrowd`` ground truth is an ignore region, as COCO's.
    ``image_ids`` limits the evaluation to those images (default: every image of ``gt``).
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise EdgeposeError("COCO box AP needs pycocotools: pip install 'edgepose[eval]'") from None
    gt = copy.deepcopy(gt)
    for ann in gt.get("annotations", []):
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
    stats = [-1.0] * len(COCO_STATS)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if results:
            ev = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), "bbox")
            if image_ids is not None:
                ev.params.imgIds = sorted(int(i) for i in image_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            stats = [float(s) for s in ev.stats]
    return {k: (None if v < 0 else v) for k, v in zip(COCO_STATS, stats)}


# ----------------------------------------------------------------------------------------- MPII
def mpii_pckh(
    preds: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray,
    head_norms: np.ndarray,
    joint_names: Sequence[str] = MPII_JOINTS,
    threshold: float = 0.5,
) -> dict[str, float]:
    """MPII PCKh as ``TopDownMpiiDataset.evaluate``, as fractions.

    ``preds`` (N, 16, >=2) are decoded 0-based image coordinates (1 is added here, as mmpose does);
    ``gt`` (N, 16, 2) are MPII's 1-based coordinates (``pos_gt_src``); ``visible`` (N, 16) is
    ``1 - jnt_missing``; ``head_norms`` (N,) the head box diagonals, scaled here by SC_BIAS 0.6.
    Pelvis and thorax are left out; the mean is weighted by each joint's visible count. ``PCKh@0.1`` uses
    threshold 0.10 (``pckAll[10]``, mmpose v0.17+ after PR #773; v0.10-v0.16 took ``pckAll[11]``, 0.11).
    """
    pred = np.asarray(preds, dtype=np.float32)[..., :2] + np.float32(1.0)
    pos_pred_src = np.transpose(pred, [1, 2, 0])
    pos_gt_src = np.transpose(np.asarray(gt, dtype=np.float64), [1, 2, 0])
    jnt_visible = np.asarray(visible).T
    names = list(joint_names)
    if pos_pred_src.shape != pos_gt_src.shape or jnt_visible.shape != pos_gt_src[:, 0].shape or len(names) != 16:
        raise EdgeposeError(
            f"PCKh: shape mismatch (predictions {pred.shape}, ground truth {np.shape(gt)}, "
            f"visibility {np.shape(visible)}, {len(names)} joint names)"
        )
    uv_err = np.linalg.norm(pos_pred_src - pos_gt_src, axis=1)
    headsizes = np.asarray(head_norms, dtype=np.float64) * MPII_SC_BIAS
    scale = headsizes * np.ones((len(uv_err), 1), dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled_uv_err = uv_err / scale * jnt_visible
        jnt_count = np.sum(jnt_visible, axis=1)
        less = (scaled_uv_err <= threshold) * jnt_visible
        pckh = 100.0 * np.sum(less, axis=1) / jnt_count
        rng = np.arange(0, 0.5 + 0.01, 0.01)
        pck_all = np.zeros((len(rng), 16), dtype=np.float32)
        for r, t in enumerate(rng):
            pck_all[r, :] = 100.0 * np.sum((scaled_uv_err <= t) * jnt_visible, axis=1) / jnt_count
    pckh = np.ma.array(pckh, mask=False)
    pckh.mask[6:8] = True
    count = np.ma.array(jnt_count, mask=False)
    count.mask[6:8] = True
    ratio = count / np.sum(count).astype(np.float64)

    def part(a: str, b: str | None = None) -> float:
        v = pckh[names.index(a)] if b is None else 0.5 * (pckh[names.index(a)] + pckh[names.index(b)])
        return float(v) / 100.0

    return {
        "PCKh": float(np.sum(pckh * ratio)) / 100.0,
        "PCKh@0.1": float(np.sum(pck_all[10, :] * ratio)) / 100.0,
        "Head": part("head"),
        "Shoulder": part("lsho", "rsho"),
        "Elbow": part("lelb", "relb"),
        "Wrist": part("lwri", "rwri"),
        "Hip": part("lhip", "rhip"),
        "Knee": part("lkne", "rkne"),
        "Ankle": part("lank", "rank"),
    }


# ---------------------------------------------------------------------------------------- hands
def _calc_distances(preds: np.ndarray, targets: np.ndarray, mask: np.ndarray, normalize: np.ndarray) -> np.ndarray:
    """(K, N) normalised distances, -1 where masked out (float32, as mmpose)."""
    n, k, _ = preds.shape
    mask = np.array(mask, dtype=bool, copy=True)
    normalize = np.array(normalize, dtype=np.float64, copy=True)
    mask[np.where((normalize == 0).sum(1))[0], :] = False
    distances = np.full((n, k), -1, dtype=np.float32)
    normalize[np.where(normalize <= 0)] = 1e6
    distances[mask] = np.linalg.norm(((preds - targets) / normalize[:, None, :])[mask], axis=-1)
    return distances.T


def _distance_acc(distances: np.ndarray, thr: float) -> float:
    valid = distances != -1
    n = valid.sum()
    if n > 0:
        return (distances[valid] < np.float32(thr)).sum() / n
    return -1


def keypoint_pck_accuracy(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, thr: float, normalize: np.ndarray
) -> tuple[np.ndarray, float, int]:
    """Per-joint PCK (dist / normaliser < thr, strict), their mean over joints with any valid sample, count."""
    distances = _calc_distances(np.asarray(pred)[..., :2], np.asarray(gt)[..., :2], mask, normalize)
    acc = np.array([_distance_acc(d, thr) for d in distances], dtype=np.float64)
    valid = acc[acc >= 0]
    return acc, (float(valid.mean()) if len(valid) else 0.0), len(valid)


def keypoint_auc(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, normalize: float = 30, num_step: int = 20
) -> float:
    """Mean PCK over thresholds i/num_step, i = 0..num_step-1, with a fixed pixel normaliser (perfect: 0.95)."""
    nor = np.tile(np.array([[normalize, normalize]], dtype=np.float64), (len(pred), 1))
    auc = 0.0
    for i in range(num_step):
        _, avg, _ = keypoint_pck_accuracy(pred, gt, mask, 1.0 * i / num_step, nor)
        auc += 1.0 / num_step * avg
    return auc


def keypoint_epe(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """Mean end-point error in pixels over all valid (sample, joint) pairs."""
    d = _calc_distances(
        np.asarray(pred)[..., :2], np.asarray(gt)[..., :2], mask, np.ones((len(pred), 2), dtype=np.float32)
    )
    valid = d[d != -1]
    return float(valid.sum() / max(1, len(valid)))


def hand_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray,
    bbox_sizes: np.ndarray | None = None,
    head_sizes: np.ndarray | None = None,
    pck_thr: float = 0.2,
    pckh_thr: float = 0.7,
    auc_nor: float = 30,
) -> dict[str, float]:
    """mmpose's hand report: ``PCK@0.2`` by the annotation box's longer side (when ``bbox_sizes`` is given),
    ``PCKh@0.7`` by the annotation's ``head_size`` (when ``head_sizes`` is given), ``AUC`` and ``EPE``."""
    pred = np.asarray(pred, dtype=np.float64)[..., :2]
    gt = np.asarray(gt, dtype=np.float64)[..., :2]
    mask = np.asarray(mask, dtype=bool)
    out: dict[str, float] = {}
    if bbox_sizes is not None:
        nor = np.repeat(np.asarray(bbox_sizes, dtype=np.float64).reshape(-1, 1), 2, axis=1)
        out[f"PCK@{pck_thr:g}"] = keypoint_pck_accuracy(pred, gt, mask, pck_thr, nor)[1]
    if head_sizes is not None:
        nor = np.repeat(np.asarray(head_sizes, dtype=np.float64).reshape(-1, 1), 2, axis=1)
        out[f"PCKh@{pckh_thr:g}"] = keypoint_pck_accuracy(pred, gt, mask, pckh_thr, nor)[1]
    out["AUC"] = keypoint_auc(pred, gt, mask, auc_nor)
    out["EPE"] = keypoint_epe(pred, gt, mask)
    return out


def id_switches(
    gt_frames: Sequence[dict], pred_frames: Sequence[dict], iou_threshold: float = 0.5
) -> dict[str, int]:
    """Identity switches of a tracker, as CLEAR-MOT counts them (IDSW).

    ``gt_frames`` / ``pred_frames``: one dict per frame, ``{track id: x, y, w, h box}``. In each frame the ground
    truth and predicted boxes are matched one to one, greedily by IoU (highest first, at least
    ``iou_threshold``); a ground-truth track matched to a different predicted id than at its last match is one
    switch. Returns ``{"id_switches", "matches", "misses", "false_positives"}``.
    """
    if len(gt_frames) != len(pred_frames):
        raise EdgeposeError(f"id_switches: {len(gt_frames)} ground-truth frames but {len(pred_frames)} predicted")
    last: dict = {}
    switches = matches = misses = false_pos = 0
    for gt, pred in zip(gt_frames, pred_frames):
        g_ids, p_ids = list(gt), list(pred)
        pairs = []
        if g_ids and p_ids:
            g = np.asarray([gt[i] for i in g_ids], np.float64).reshape(-1, 4)
            p = np.asarray([pred[i] for i in p_ids], np.float64).reshape(-1, 4)
            g[:, 2:] += g[:, :2]
            p[:, 2:] += p[:, :2]
            iw = np.clip(np.minimum(g[:, None, 2], p[None, :, 2]) - np.maximum(g[:, None, 0], p[None, :, 0]), 0, None)
            ih = np.clip(np.minimum(g[:, None, 3], p[None, :, 3]) - np.maximum(g[:, None, 1], p[None, :, 1]), 0, None)
            inter = iw * ih
            area_g = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
            area_p = (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1])
            iou = inter / np.maximum(area_g[:, None] + area_p[None, :] - inter, 1e-12)
            used_g, used_p = set(), set()
            for flat in np.argsort(-iou, axis=None, kind="stable"):
                i, j = divmod(int(flat), iou.shape[1])
                if iou[i, j] < iou_threshold:
                    break
                if i in used_g or j in used_p:
                    continue
                used_g.add(i)
                used_p.add(j)
                pairs.append((g_ids[i], p_ids[j]))
        for gid, pid in pairs:
            if gid in last and last[gid] != pid:
                switches += 1
            last[gid] = pid
        matches += len(pairs)
        misses += len(g_ids) - len(pairs)
        false_pos += len(p_ids) - len(pairs)
    return {"id_switches": switches, "matches": matches, "misses": misses, "false_positives": false_pos}
