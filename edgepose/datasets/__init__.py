"""The evaluation sets: readers, each in its real format, yielding samples exactly as mmpose 0.x builds its db.

* COCO person keypoints (``TopDownCocoDataset``): ground-truth boxes cleaned (``clean_coco_box``), skipping
  crowd, area-0 and keypoint-less instances; or a detection results file (category 1, ``score >= det_bbox_thr``,
  boxes as they come).
* MPII (``TopDownMpiiDataset``): mmpose's json (image, center, scale, joints, joints_vis); the PCKh ground truth
  is ``mpii_gt_val.mat`` beside the json when present (read with scipy), else the json's own joints.
* Hands in COCO style (OneHand10K, CMU Panoptic with ``head_size``, RHD): the raw annotation box is kept, it
  is the PCK normaliser.

numpy only (scipy is imported for the .mat alone). Bad files raise a one-line :class:`EdgeposeError`.

The package: ``base`` (records, reader helpers, the registry), one module per format, ``load``
(:func:`load_dataset`: a set read and its images checked), ``resolve`` (where the data come from: defaults,
checks and bench's ``--limit`` cut, shared by eval, bench and convert). This file re-exports them.
"""

from __future__ import annotations

from ..plugins import import_submodules
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
from .load import load_dataset
from .resolve import EvalData, default_data, eval_data, resolve_data, subset_dataset

# Importing the package registers every dataset module in it (the shared modules are not formats).
import_submodules(__name__, __path__, skip=("base", "load", "resolve"))

from .mpii import read_mpii_mat  # noqa: E402

__all__ = ["DATASET_KINDS", "Dataset", "DatasetKind", "EvalData", "MpiiGroundTruth", "Sample", "default_data",
           "eval_data", "headline_metric", "load_dataset", "read_json", "read_mpii_mat", "register_dataset",
           "resolve_data", "subset_dataset"]  # fmt: skip
