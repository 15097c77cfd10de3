"""What every evaluation set shares: the sample and dataset records, the reader helpers and the registry.

A dataset module in this package reads one format and scores it, and registers both with
:func:`register_dataset` together with its headline metric; nothing else in edgepose keeps a list of datasets
(the keypoint layouts are :data:`edgepose.spec.DATASETS`).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import EdgeposeError
from ..files import parse_json
from ..processing import MAX_COORD, PIXEL_STD, TopDownPipeline, box_to_center_scale, boxes_outside, check_image_file
from ..spec import DATASETS, ModelSpec


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


@dataclass(frozen=True)
class DatasetKind:
    """One evaluation format: how to read it, how to score predictions on it, and its headline metric."""

    name: str  # a key of edgepose.spec.DATASETS
    read: Callable[..., Dataset]  # (ann, images, spec, bbox_file=None, det_bbox_thr=0.0) -> Dataset
    score: Callable[[Dataset, np.ndarray], dict]  # (dataset, keypoints (N, K, 3)) -> metrics
    headline: str  # the metric name bench and convert report ("AP", "PCKh", "PCK@0.2", "PCKh@0.7")
    detections: bool = False  # accepts a person-detection results file (--bbox-file)
    prediction_fields: dict[str, Any] = field(default_factory=dict)  # constant fields of each prediction


DATASET_KINDS: dict[str, DatasetKind] = {}


def register_dataset(kind: DatasetKind) -> DatasetKind:
    if kind.name not in DATASETS:
        raise ValueError(f"dataset {kind.name!r} has no keypoint layout in edgepose.spec.DATASETS")
    DATASET_KINDS[kind.name] = kind
    return kind


def headline_metric(name: str) -> str | None:
    """The headline metric of dataset ``name`` (``None`` for an unknown one)."""
    kind = DATASET_KINDS.get(name)
    return kind.headline if kind else None


# ------------------------------------------------------------------------------------------ helpers
def read_json(path: str | Path, what: str = "annotation file") -> Any:
    """Parsed JSON, or a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise EdgeposeError(f"{path}: {what} not found")
    try:
        with open(path, encoding="utf-8") as f:
            return parse_json(f.read())
    except json.JSONDecodeError as e:
        raise EdgeposeError(f"{path}: {what} is not valid JSON ({e.msg} at line {e.lineno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EdgeposeError(f"{path}: cannot read {what} ({e})") from None
    except RecursionError:
        raise EdgeposeError(f"{path}: {what} is nested too deeply") from None


def center_scale_for(spec: ModelSpec, name: str, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre/scale of xywh boxes for ``spec``'s input, with the dataset's box padding (its mmpose config's)."""
    pipe = TopDownPipeline(spec)
    padding = DATASETS[name].box_padding
    if not len(boxes):
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    if padding == spec.box_padding:
        return pipe.boxes_to_center_scale(boxes)
    return box_to_center_scale(boxes, pipe.aspect_ratio, padding)


def keypoints_of(path: Path, ann: dict, k: int) -> np.ndarray:
    """(K, 3) float32 from a flat ``[x, y, v] * K`` or a nested ``[[x, y, v]] * K`` list."""
    try:
        kp = np.asarray(ann["keypoints"], dtype=np.float64)
    except KeyError:
        raise EdgeposeError(f"{path}: annotation {ann.get('id')} has no 'keypoints'") from None
    except (TypeError, ValueError):
        raise EdgeposeError(f"{path}: annotation {ann.get('id')}: 'keypoints' is not a list of numbers") from None
    if kp.size != 3 * k:
        raise EdgeposeError(f"{path}: annotation {ann.get('id')} has {kp.size} keypoint values, expected {3 * k}")
    if not np.isfinite(kp).all():
        raise EdgeposeError(f"{path}: annotation {ann.get('id')}: 'keypoints' holds NaN or infinity")
    return kp.reshape(k, 3).astype(np.float32)


def box_of(path: Path, ann: dict, key: str = "bbox", what: str = "annotation") -> list[float]:
    """``[x, y, w, h]`` of an entry: four finite numbers (w, h may be 0, as mmpose takes them), else one line
    naming the file and the entry."""
    box = ann.get(key)
    try:
        vals = [float(v) for v in box]
    except (TypeError, ValueError, OverflowError):
        vals = []
    if len(vals) < 4:
        raise EdgeposeError(f"{path}: {what} {ann.get('id')}: '{key}' is not [x, y, w, h]")
    vals = vals[:4]
    if not all(math.isfinite(v) for v in vals):
        raise EdgeposeError(f"{path}: {what} {ann.get('id')}: '{key}' holds NaN or infinity ({vals})")
    if max(abs(v) for v in vals) > MAX_COORD:
        raise EdgeposeError(f"{path}: {what} {ann.get('id')}: '{key}' has a coordinate beyond {MAX_COORD:g} ({vals})")
    return vals


def coco_index(path: Path, data: Any) -> tuple[dict, dict]:
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


log = logging.getLogger(__name__)


def warn_outside(path: Path, boxes: list[tuple[np.ndarray, dict]], what: str = "box(es)") -> int:
    """Count (and warn once about) boxes lying wholly outside their image; ``boxes`` pairs a box with its
    image entry (``width``/``height``). Returns the count."""
    n = 0
    for box, img in boxes:
        try:
            w, h = float(img["width"]), float(img["height"])
        except (KeyError, TypeError, ValueError):
            continue
        n += len(boxes_outside(np.asarray(box)[None], w, h))
    if n:
        log.warning("%s: %d of %d %s lie wholly outside their image; the model will still 'find' a pose there",
                    path, n, len(boxes), what)  # fmt: skip
    return n


def bad_images(samples: list[Sample], full: bool = False) -> dict[Path, str]:
    """The images among ``samples`` that are missing, unreadable or truncated, with the reason.

    ``full=False`` checks only the end of each file (a JPEG's end marker, a PNG's IEND; a file that ends
    well is decoded and checked whole when it is read); ``full=True`` walks every file's structure.
    """
    seen: dict[Path, str | None] = {}
    for s in samples:
        if s.image not in seen:
            seen[s.image] = check_image_file(s.image, quick=not full)
    return {p: why for p, why in seen.items() if why}


def drop_images(ds: Dataset, bad: dict[Path, str]) -> Dataset:
    """``ds`` without the samples of ``bad`` images and without those images in its ground truth (so a
    skipped image is neither scored nor counted as missed); the notes say which and how many."""
    keep = [i for i, s in enumerate(ds.samples) if s.image not in bad]
    ids = {s.image_id for s in ds.samples if s.image in bad}
    gone = len(ds.samples) - len(keep)
    ds.samples = [ds.samples[i] for i in keep]
    if ds.mpii_gt is not None:
        g = ds.mpii_gt
        idx = np.asarray(keep, dtype=np.int64)
        ds.mpii_gt = MpiiGroundTruth(g.joints[idx], g.visible[idx], g.head_norms[idx], g.joint_names, g.source)
    if isinstance(ds.gt, dict) and isinstance(ds.gt.get("images"), list):
        gt = dict(ds.gt)
        gt["images"] = [im for im in gt["images"] if im.get("id") not in ids]
        gt["annotations"] = [a for a in gt.get("annotations", []) if a.get("image_id") not in ids]
        ds.gt = gt
    ds.notes["skipped_images"] = sorted(p.name for p in bad)
    ds.notes["skipped_instances"] = gone
    first = next(iter(bad.items()))
    log.warning("skipped %d bad image(s) (%d instances; --skip-bad-images), first %s: %s", len(bad), gone,
                first[0], first[1])  # fmt: skip
    return ds


def check_images(image_dir: Path, samples: list[Sample], skip_missing: bool = False) -> dict[Path, str]:
    """Fail naming the first missing image (with ``skip_missing``: return them as bad images instead)."""
    if not image_dir.is_dir():
        raise EdgeposeError(f"{image_dir}: image folder not found")
    seen: set = set()
    missing = []
    for s in samples:
        if s.image not in seen:
            seen.add(s.image)
            if not s.image.is_file():
                missing.append(s.image)
    if missing and not skip_missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise EdgeposeError(f"{missing[0]}: image file not found{more}")
    return {p: "image file not found" for p in missing}


def set_center_scale(spec: ModelSpec, name: str, samples: list[Sample]) -> None:
    boxes = np.asarray([s.bbox for s in samples], dtype=np.float64).reshape(-1, 4)
    centers, scales = center_scale_for(spec, name, boxes)
    for s, c, sc in zip(samples, centers, scales):
        s.center, s.scale = c, sc
