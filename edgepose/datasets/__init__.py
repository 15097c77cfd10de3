"""The evaluation sets: readers, each in its real format, yielding samples exactly as mmpose 0.x builds its db.

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

from pathlib import Path

from ..errors import EdgeposeError
from ..plugins import import_submodules
from ..spec import ModelSpec
from . import base as _base
from .base import (
    DATASET_KINDS,
    Dataset,
    DatasetKind,
    MpiiGroundTruth,
    Sample,
    headline_metric,
    read_json,
    register_dataset,
)

# Importing the package registers every dataset module in it.
import_submodules(__name__, __path__, skip=("base",))

from .mpii import read_mpii_mat  # noqa: E402

__all__ = ["DATASET_KINDS", "Dataset", "DatasetKind", "MpiiGroundTruth", "Sample", "headline_metric",
           "load_dataset", "read_json", "read_mpii_mat", "register_dataset"]  # fmt: skip


def load_dataset(
    name: str,
    ann: str | Path,
    images: str | Path,
    spec: ModelSpec,
    bbox_file: str | Path | None = None,
    det_bbox_thr: float = 0.0,
    check_images: bool = True,
    skip_bad_images: bool = False,
) -> Dataset:
    """Read an evaluation set; centre/scale follow ``spec``'s input size and the dataset's box rule.

    ``check_images``: every image must exist and be whole (its end checked now, the whole file when it is
    decoded); the first bad one fails naming the file, before any model is loaded. ``skip_bad_images``: bad
    images (walked whole) are left out instead, with their ground truth, and counted in ``ds.notes``.
    """
    if name not in DATASET_KINDS:
        raise EdgeposeError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_KINDS)}")
    kind = DATASET_KINDS[name]
    ann, images = Path(ann), Path(images)
    if bbox_file is not None and not kind.detections:
        with_dets = ", ".join(k for k, v in DATASET_KINDS.items() if v.detections)
        raise EdgeposeError(f"--bbox-file is only supported for {with_dets}, not {name}")
    ds = kind.read(ann, images, spec, Path(bbox_file) if bbox_file else None, det_bbox_thr)
    if not ds.samples:
        raise EdgeposeError(f"{bbox_file or ann}: no instances to evaluate")
    if check_images:
        bad = _base.check_images(images, ds.samples, skip_missing=skip_bad_images)
        bad.update(_base.bad_images([s for s in ds.samples if s.image not in bad], full=skip_bad_images))
        if bad and not skip_bad_images:
            (first, why), more = next(iter(bad.items())), len(bad) - 1
            tail = f" (and {more} more image(s); --skip-bad-images leaves them out)" if more else ""
            raise EdgeposeError(f"{first}: {why}{tail}")
        if bad:
            ds = _base.drop_images(ds, bad)
            if not ds.samples:
                raise EdgeposeError(f"{images}: every image of {ann.name} is missing or damaged")
    return ds
