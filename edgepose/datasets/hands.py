"""Hands in COCO style (OneHand10K, CMU Panoptic with ``head_size``, RHD): the raw annotation box is kept, it is
the PCK normaliser (Panoptic: the head size, PCKh@0.7).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import EdgeposeError
from ..metrics import hand_metrics
from ..spec import DATASETS, ModelSpec
from .base import (
    Dataset,
    DatasetKind,
    Sample,
    box_of,
    coco_index,
    keypoints_of,
    read_json,
    register_dataset,
    set_center_scale,
)


def read_coco_hand(ann: Path, images: Path, spec: ModelSpec, name: str) -> Dataset:
    """OneHand10K / Panoptic / RHD in COCO style (HandBaseDataset ``_get_db``): the annotation box, no cleaning."""
    k = DATASETS[name].num_keypoints
    data = read_json(ann)
    imgs, anns = coco_index(ann, data)
    samples = []
    for img_id, img in imgs.items():
        for a in anns[img_id]:
            kp = keypoints_of(ann, a, k)
            if kp.max() == 0:
                continue
            box = np.asarray(box_of(ann, a), dtype=np.float64)
            head = None
            if name == "panoptic":
                try:
                    head = float(a["head_size"])
                except (KeyError, TypeError, ValueError):
                    raise EdgeposeError(f"{ann}: annotation {a.get('id')} lacks a numeric 'head_size'") from None
            samples.append(Sample(images / img["file_name"], box, None, None, kp, img_id, a.get("id"), 1.0, box, head))
    set_center_scale(spec, name, samples)
    return Dataset(name, ann, images, samples, gt=data)


def score_hand_bbox(ds: Dataset, keypoints: np.ndarray) -> dict:
    gts = ds.stack("keypoints")
    return hand_metrics(keypoints, gts, gts[..., 2] > 0, bbox_sizes=[np.max(s.raw_bbox[2:]) for s in ds.samples])


def score_hand_head(ds: Dataset, keypoints: np.ndarray) -> dict:
    gts = ds.stack("keypoints")
    return hand_metrics(keypoints, gts, gts[..., 2] > 0, head_sizes=[s.head_size for s in ds.samples])


def _reader(name: str):
    return lambda ann, images, spec, *_: read_coco_hand(ann, images, spec, name)


register_dataset(DatasetKind("onehand10k", _reader("onehand10k"), score_hand_bbox, "PCK@0.2"))
register_dataset(DatasetKind("panoptic", _reader("panoptic"), score_hand_head, "PCKh@0.7"))
register_dataset(DatasetKind("rhd", _reader("rhd"), score_hand_bbox, "PCK@0.2"))
