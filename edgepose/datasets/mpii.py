"""MPII (``TopDownMpiiDataset``): mmpose's json (image, center, scale, joints, joints_vis); the PCKh ground truth
is ``mpii_gt_val.mat`` beside the json when present (read with scipy), else the json's own joints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import EdgeposeError
from ..metrics import MPII_JOINTS, mpii_pckh
from ..processing import mpii_center_scale
from ..spec import DATASETS, ModelSpec
from .base import Dataset, DatasetKind, MpiiGroundTruth, Sample, read_json, register_dataset


def read_mpii(ann: Path, images: Path, spec: ModelSpec) -> Dataset:
    """mmpose's MPII json; PCKh ground truth from ``mpii_gt_val.mat`` beside it, else from the json."""
    data = read_json(ann)
    if not isinstance(data, list):
        raise EdgeposeError(f"{ann}: not an mmpose MPII file (expected a list of {{image, center, scale, joints}})")
    k = DATASETS["mpii"].num_keypoints
    samples, joints, vis = [], [], []
    for i, a in enumerate(data):
        try:
            center = np.asarray(a["center"], dtype=np.float64).reshape(2)
            scale = float(a["scale"])
            image = images / a["image"]
            j = np.asarray(a.get("joints", np.zeros((k, 2))), dtype=np.float64).reshape(-1, 2)
            jv = np.asarray(a.get("joints_vis", np.zeros(k)), dtype=np.float64).reshape(-1)
        except (KeyError, TypeError, ValueError):
            raise EdgeposeError(f"{ann}: entry {i} lacks a valid image, center, scale, joints or joints_vis") from None
        if len(j) != k or len(jv) != k:
            raise EdgeposeError(f"{ann}: entry {i} has {len(j)} joints, expected {k}")
        if not (np.isfinite(center).all() and np.isfinite(scale) and scale > 0 and np.isfinite(j).all()):
            raise EdgeposeError(f"{ann}: entry {i}: center, scale or joints hold NaN, infinity or a scale <= 0")
        c, s = mpii_center_scale(center, scale)
        c, s = c[0], s[0]
        kp = np.concatenate([j - 1.0, jv[:, None]], axis=1).astype(np.float32)  # 0-based, as mmpose's joints_3d
        region = np.array([c[0] - s[0] * 100, c[1] - s[1] * 100, s[0] * 200, s[1] * 200], dtype=np.float64)
        samples.append(Sample(image, region, c, s, kp, a["image"], i))
        joints.append(j)
        vis.append(jv > 0)
    mat = ann.parent / "mpii_gt_val.mat"
    if mat.is_file():
        gt = read_mpii_mat(mat, len(samples))
    else:
        gt = _mpii_gt_from_joints(np.asarray(joints).reshape(-1, k, 2), np.asarray(vis).reshape(-1, k))
    notes = {"head_size_source": gt.source}
    if gt.source == "joints":
        notes["persons_without_head_size"] = int(np.sum(gt.head_norms <= 0))
    return Dataset("mpii", ann, images, samples, mpii_gt=gt, notes=notes)


def read_mpii_mat(path: Path, expected: int | None = None) -> MpiiGroundTruth:
    """HRNet's ``gt_valid.mat`` (mmpose's ``mpii_gt_val.mat``): dataset_joints, jnt_missing, pos_gt_src,
    headboxes_src."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise EdgeposeError(f"{path}: reading the MPII ground truth needs scipy (pip install scipy)") from None
    try:
        m = loadmat(str(path))
        names = tuple(str(np.ravel(x)[0]).strip() for x in np.ravel(m["dataset_joints"]))
        if len(names) != 16:  # a char matrix (16, n) rather than MATLAB's cell array
            names = tuple("".join(row).strip() for row in np.asarray(m["dataset_joints"]).reshape(16, -1))
        joints = np.transpose(np.asarray(m["pos_gt_src"], dtype=np.float64), [2, 0, 1])
        visible = 1 - np.asarray(m["jnt_missing"]).T
        hb = np.asarray(m["headboxes_src"], dtype=np.float64)
        head = np.linalg.norm(hb[1, :, :] - hb[0, :, :], axis=0)
    except KeyError as e:
        expected = "dataset_joints, jnt_missing, pos_gt_src, headboxes_src"
        raise EdgeposeError(f"{path}: missing {e} (expected {expected})") from None
    except Exception as e:  # scipy raises several types for a damaged file
        raise EdgeposeError(f"{path}: cannot read the MPII ground truth ({type(e).__name__}: {e})") from None
    if joints.shape[1:] != (16, 2) or visible.shape != joints.shape[:2] or head.shape != joints.shape[:1]:
        raise EdgeposeError(f"{path}: unexpected array shapes in the MPII ground truth")
    if expected is not None and len(joints) != expected:
        raise EdgeposeError(
            f"{path}: holds {len(joints)} persons but the annotation file has {expected} "
            "(mpii_gt_val.mat belongs to the full mpii_val.json)"
        )
    if set(MPII_JOINTS) - set(names):
        raise EdgeposeError(f"{path}: dataset_joints lacks {sorted(set(MPII_JOINTS) - set(names))}")
    return MpiiGroundTruth(joints, visible, head, names, "mpii_gt_val.mat")


def _mpii_gt_from_joints(joints: np.ndarray, visible: np.ndarray) -> MpiiGroundTruth:
    """Without the .mat: the json's joints (1-based, as the .mat's), with head size 0.6 x |head_top - upper_neck|.

    mmpose cannot score without the .mat; the head box diagonal is replaced by the head segment, so these PCKh
    values are not comparable with published ones (the JSON says ``head_size_source: joints``). A person whose
    head_top or upper_neck is not visible has no head size and is left out (all joints invisible).
    """
    neck, top = MPII_JOINTS.index("neck"), MPII_JOINTS.index("head")
    head = np.linalg.norm(joints[:, top] - joints[:, neck], axis=1)
    ok = visible[:, top] & visible[:, neck] & (head > 0)
    head = np.where(ok, head, 0.0)
    vis = (visible & ok[:, None]).astype(np.float64)
    return MpiiGroundTruth(joints.astype(np.float64), vis, head, MPII_JOINTS, "joints")


def score_mpii(ds: Dataset, keypoints: np.ndarray) -> dict:
    gt = ds.mpii_gt
    return mpii_pckh(keypoints, gt.joints, gt.visible, gt.head_norms, gt.joint_names)


register_dataset(DatasetKind("mpii", lambda ann, images, spec, *_: read_mpii(ann, images, spec), score_mpii, "PCKh"))
