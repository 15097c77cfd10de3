"""Readers for the evaluation sets, each in its real format, yielding samples exactly as mmpose 0.x builds its db.

* COCO person keypoints (``TopDownCocoDataset``): ground-truth boxes cleaned (``clean_coco_box``), skipping
  crowd, area-0 and keypoint-less instances; or a detection results file (category 1, ``score >= det_bbox_thr``,
  boxes as they come).
* MPII (``TopDownMpiiDataset``): mmpose's json (image, center, scale, joints, joints_vis); the PCKh ground truth
  is ``mpii_gt_val.mat`` beside the json when present (read with scipy), else the json's own joints.
* Hands in COCO style (OneHand10K, CMU Panoptic with ``head_size``, RHD): the raw annotation box is kept, it
  is the PCK normaliser.

numpy only (scipy is imported for the .mat alone). Bad files raise a one-line :class:`EdgeposeError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import EdgeposeError
from .metrics import MPII_JOINTS
from .processing import PIXEL_STD, TopDownPipeline, box_to_center_scale, clean_coco_box, mpii_center_scale
from .spec import DATASETS, ModelSpec

__all__ = ["Sample", "Dataset", "MpiiGroundTruth", "READERS", "load_dataset", "read_json"]


@dataclass
class Sample:
    """One top-down instance: where to crop, and the ground truth to score against."""

    image: Path
    bbox: np.ndarray  # (4,) xywh the crop is built from (MPII: the crop region itself)
    center: np.ndarray  # (2,) float32, pixels
    scale: np.ndarray  # (2,) float32, units of 200 px (padded, aspect-corrected)
    keypoints: np.ndarray  # (K, 3) float32: ground truth x, y (0-based pixels), visibility; zeros for detections
    image_id: Any
    annotation_id: Any = None  # None for detector boxes
    score: float = 1.0  # box score: 1 for ground-truth boxes
    raw_bbox: np.ndarray | None = None  # hands: the annotation's own box (PCK normaliser)
    head_size: float | None = None  # Panoptic: the annotation's head size (PCKh normaliser)

    @property
    def area(self) -> np.float32:
        """mmpose's ``boxes[:, 4]``: prod(scale * 200), float32."""
        return np.prod(self.scale.astype(np.float32) * np.float32(PIXEL_STD), dtype=np.float32)


@dataclass
class MpiiGroundTruth:
    """PCKh ground truth in MPII's conventions (1-based coordinates)."""

    joints: np.ndarray  # (N, 16, 2)
    visible: np.ndarray  # (N, 16)
    head_norms: np.ndarray  # (N,) head box diagonal (or the head segment, see ``source``)
    joint_names: tuple[str, ...]
    source: str  # "mpii_gt_val.mat" or "joints"


@dataclass
class Dataset:
    name: str
    ann_file: Path
    image_dir: Path
    samples: list[Sample]
    gt: dict | None = None  # the COCO json, for COCOeval
    mpii_gt: MpiiGroundTruth | None = None
    bbox_file: Path | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_images(self) -> int:
        return len({s.image for s in self.samples})

    def stack(self, attr: str) -> np.ndarray:
        return np.stack([np.asarray(getattr(s, attr)) for s in self.samples]) if self.samples else np.zeros((0,))


# ------------------------------------------------------------------------------------------ helpers
def read_json(path: str | Path, what: str = "annotation file") -> Any:
    """Parsed JSON, or a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise EdgeposeError(f"{path}: {what} not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise EdgeposeError(f"{path}: {what} is not valid JSON ({e.msg} at line {e.lineno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EdgeposeError(f"{path}: cannot read {what} ({e})") from None


def _center_scale(spec: ModelSpec, name: str, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre/scale of xywh boxes for ``spec``'s input, with the dataset's box padding (its mmpose config's)."""
    pipe = TopDownPipeline(spec)
    padding = DATASETS[name].box_padding
    if not len(boxes):
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    if padding == spec.box_padding:
        return pipe.boxes_to_center_scale(boxes)
    return box_to_center_scale(boxes, pipe.aspect_ratio, padding)


def _keypoints(path: Path, ann: dict, k: int) -> np.ndarray:
    """(K, 3) float32 from a flat ``[x, y, v] * K`` or a nested ``[[x, y, v]] * K`` list."""
    try:
        kp = np.asarray(ann["keypoints"], dtype=np.float64)
    except KeyError:
        raise EdgeposeError(f"{path}: annotation {ann.get('id')} has no 'keypoints'") from None
    except (TypeError, ValueError):
        raise EdgeposeError(f"{path}: annotation {ann.get('id')}: 'keypoints' is not a list of numbers") from None
    if kp.size != 3 * k:
        raise EdgeposeError(f"{path}: annotation {ann.get('id')} has {kp.size} keypoint values, expected {3 * k}")
    return kp.reshape(k, 3).astype(np.float32)


def _box(path: Path, ann: dict, key: str = "bbox") -> list[float]:
    box = ann.get(key)
    try:
        vals = [float(v) for v in box]
    except (TypeError, ValueError):
        vals = []
    if len(vals) < 4:
        raise EdgeposeError(f"{path}: annotation {ann.get('id')}: '{key}' is not [x, y, w, h]")
    return vals[:4]


def _coco_index(path: Path, data: Any) -> tuple[dict, dict]:
    """(images by id in file order, non-crowd annotations by image id in file order), checked."""
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("images"), list)
        or not isinstance(data.get("annotations"), list)
    ):
        raise EdgeposeError(f"{path}: not a COCO-style file (expected 'images' and 'annotations' lists)")
    images: dict = {}
    for img in data["images"]:
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise EdgeposeError(f"{path}: an image entry lacks 'id' or 'file_name'")
        images[img["id"]] = img
    anns: dict = {i: [] for i in images}
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise EdgeposeError(f"{path}: an annotation lacks 'image_id'")
        if ann["image_id"] not in images:
            raise EdgeposeError(f"{path}: annotation {ann.get('id')} refers to unknown image {ann['image_id']}")
        if not ann.get("iscrowd", 0):  # getAnnIds(imgIds=..., iscrowd=False)
            anns[ann["image_id"]].append(ann)
    return images, anns


def _check_images(image_dir: Path, samples: list[Sample]) -> None:
    if not image_dir.is_dir():
        raise EdgeposeError(f"{image_dir}: image folder not found")
    seen: set = set()
    missing = []
    for s in samples:
        if s.image not in seen:
            seen.add(s.image)
            if not s.image.is_file():
                missing.append(s.image)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise EdgeposeError(f"{missing[0]}: image file not found{more}")


# ------------------------------------------------------------------------------------------ COCO
def read_coco(
    ann: Path, images: Path, spec: ModelSpec, bbox_file: Path | None = None, det_bbox_thr: float = 0.0
) -> Dataset:
    """COCO person keypoints: ground-truth boxes (``use_gt_bbox``) or a detection results file."""
    k = DATASETS["coco"].num_keypoints
    data = read_json(ann)
    imgs, anns = _coco_index(ann, data)
    if bbox_file is not None:
        samples = _coco_detections(Path(bbox_file), imgs, images, spec, det_bbox_thr)
    else:
        samples = []
        for img_id, img in imgs.items():
            try:
                width, height = int(img["width"]), int(img["height"])
            except (KeyError, TypeError, ValueError):
                raise EdgeposeError(f"{ann}: image {img_id} lacks a valid 'width'/'height'") from None
            for a in anns[img_id]:
                if "bbox" not in a:
                    continue
                box = clean_coco_box(_box(ann, a), width, height)
                if box is None or ("area" in a and not a["area"] > 0):
                    continue
                if "keypoints" not in a:
                    continue
                kp = _keypoints(ann, a, k)
                if kp.max() == 0 or a.get("num_keypoints", 1) == 0:
                    continue
                samples.append(Sample(images / img["file_name"], box, None, None, kp, img_id, a.get("id")))
        _set_center_scale(spec, "coco", samples)
    return Dataset("coco", ann, images, samples, gt=data, bbox_file=bbox_file)


def _coco_detections(path: Path, imgs: dict, images: Path, spec: ModelSpec, thr: float) -> list[Sample]:
    dets = read_json(path, "detection results file")
    if not isinstance(dets, list):
        raise EdgeposeError(f"{path}: expected a list of detections {{image_id, category_id, bbox, score}}")
    if not dets:
        raise EdgeposeError(f"{path}: the detection results file is empty")
    k = DATASETS["coco"].num_keypoints
    samples = []
    for i, d in enumerate(dets):
        if not isinstance(d, dict) or not {"image_id", "category_id", "bbox", "score"} <= d.keys():
            raise EdgeposeError(f"{path}: detection {i} lacks one of image_id, category_id, bbox, score")
        if d["category_id"] != 1:
            continue
        if d["image_id"] not in imgs:
            raise EdgeposeError(f"{path}: detection {i} refers to image {d['image_id']}, absent from the annotations")
        score = float(d["score"])
        if score < thr:
            continue
        box = np.asarray(_box(path, {"id": i, "bbox": d["bbox"]}), dtype=np.float64)
        img = imgs[d["image_id"]]
        samples.append(
            Sample(images / img["file_name"], box, None, None, np.zeros((k, 3), np.float32), d["image_id"], None, score)
        )
    _set_center_scale(spec, "coco", samples)
    return samples


def _set_center_scale(spec: ModelSpec, name: str, samples: list[Sample]) -> None:
    boxes = np.asarray([s.bbox for s in samples], dtype=np.float64).reshape(-1, 4)
    centers, scales = _center_scale(spec, name, boxes)
    for s, c, sc in zip(samples, centers, scales):
        s.center, s.scale = c, sc


# ------------------------------------------------------------------------------------------ MPII
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


# ------------------------------------------------------------------------------------------ hands
def read_coco_hand(ann: Path, images: Path, spec: ModelSpec, name: str) -> Dataset:
    """OneHand10K / Panoptic / RHD in COCO style (HandBaseDataset ``_get_db``): the annotation box, no cleaning."""
    k = DATASETS[name].num_keypoints
    data = read_json(ann)
    imgs, anns = _coco_index(ann, data)
    samples = []
    for img_id, img in imgs.items():
        for a in anns[img_id]:
            kp = _keypoints(ann, a, k)
            if kp.max() == 0:
                continue
            box = np.asarray(_box(ann, a), dtype=np.float64)
            head = None
            if name == "panoptic":
                try:
                    head = float(a["head_size"])
                except (KeyError, TypeError, ValueError):
                    raise EdgeposeError(f"{ann}: annotation {a.get('id')} lacks a numeric 'head_size'") from None
            samples.append(Sample(images / img["file_name"], box, None, None, kp, img_id, a.get("id"), 1.0, box, head))
    _set_center_scale(spec, name, samples)
    return Dataset(name, ann, images, samples, gt=data)


# ------------------------------------------------------------------------------------------ entry
READERS: dict[str, Callable[..., Dataset]] = {
    "coco": read_coco,
    "mpii": read_mpii,
    "onehand10k": lambda ann, images, spec: read_coco_hand(ann, images, spec, "onehand10k"),
    "panoptic": lambda ann, images, spec: read_coco_hand(ann, images, spec, "panoptic"),
    "rhd": lambda ann, images, spec: read_coco_hand(ann, images, spec, "rhd"),
}


def load_dataset(
    name: str,
    ann: str | Path,
    images: str | Path,
    spec: ModelSpec,
    bbox_file: str | Path | None = None,
    det_bbox_thr: float = 0.0,
    check_images: bool = True,
) -> Dataset:
    """Read an evaluation set; centre/scale follow ``spec``'s input size and the dataset's box rule."""
    if name not in READERS:
        raise EdgeposeError(f"unknown dataset {name!r}; choose one of {', '.join(READERS)}")
    ann, images = Path(ann), Path(images)
    if bbox_file is not None and name != "coco":
        raise EdgeposeError(f"--bbox-file is only supported for COCO, not {name}")
    if name == "coco":
        ds = read_coco(ann, images, spec, Path(bbox_file) if bbox_file else None, det_bbox_thr)
    else:
        ds = READERS[name](ann, images, spec)
    if not ds.samples:
        raise EdgeposeError(f"{bbox_file or ann}: no instances to evaluate")
    if check_images:
        _check_images(images, ds.samples)
    return ds
