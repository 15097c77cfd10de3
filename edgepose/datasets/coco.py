"""COCO person keypoints (``TopDownCocoDataset``): ground-truth boxes cleaned (``clean_coco_box``), skipping
crowd, area-0 and keypoint-less instances; or a detection results file (category 1, ``score >= det_bbox_thr``,
boxes as they come). Scored with COCO keypoint AP after mmpose's rescoring and OKS-NMS.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import EdgeposeError
from ..metrics import coco_keypoint_ap, coco_results
from ..processing import clean_coco_box
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
    warn_outside,
)


def read_coco(
    ann: Path, images: Path, spec: ModelSpec, bbox_file: Path | None = None, det_bbox_thr: float = 0.0
) -> Dataset:
    """COCO person keypoints: ground-truth boxes (``use_gt_bbox``) or a detection results file."""
    k = DATASETS["coco"].num_keypoints
    data = read_json(ann)
    imgs, anns = coco_index(ann, data)
    cats = data.get("categories")
    if not isinstance(cats, list) or not any(isinstance(c, dict) and c.get("id") == 1 for c in cats):
        raise EdgeposeError(f"{ann}: 'categories' lists no person category (id 1): COCO keypoint AP scores that "
                            f"category only, every metric would be null (got {str(cats)[:60]})")  # fmt: skip
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
                box = clean_coco_box(box_of(ann, a), width, height)
                if box is None or ("area" in a and not a["area"] > 0):
                    continue
                if "keypoints" not in a:
                    continue
                kp = keypoints_of(ann, a, k)
                if kp.max() == 0 or a.get("num_keypoints", 1) == 0:
                    continue
                samples.append(Sample(images / img["file_name"], box, None, None, kp, img_id, a.get("id")))
        set_center_scale(spec, "coco", samples)
    return Dataset("coco", ann, images, samples, gt=data, bbox_file=bbox_file)


def _coco_detections(path: Path, imgs: dict, images: Path, spec: ModelSpec, thr: float) -> list[Sample]:
    dets = read_json(path, "detection results file")
    if not isinstance(dets, list):
        raise EdgeposeError(f"{path}: expected a list of detections {{image_id, category_id, bbox, score}}")
    if not dets:
        raise EdgeposeError(f"{path}: the detection results file is empty")
    k = DATASETS["coco"].num_keypoints
    samples: list[Sample] = []
    placed: list[tuple[np.ndarray, dict]] = []
    for i, d in enumerate(dets):
        if not isinstance(d, dict) or not {"image_id", "category_id", "bbox", "score"} <= d.keys():
            raise EdgeposeError(f"{path}: detection {i} lacks one of image_id, category_id, bbox, score")
        if d["category_id"] != 1:
            continue
        if d["image_id"] not in imgs:
            raise EdgeposeError(f"{path}: detection {i} refers to image {d['image_id']}, absent from the annotations")
        try:
            score = float(d["score"])
        except (TypeError, ValueError):
            score = float("nan")
        if not math.isfinite(score):
            raise EdgeposeError(f"{path}: detection {i}: 'score' is not a finite number ({d['score']!r})")
        if score < thr:
            continue
        box = np.asarray(box_of(path, {"id": i, "bbox": d["bbox"]}, what="detection"), dtype=np.float64)
        img = imgs[d["image_id"]]
        placed.append((box, img))
        samples.append(
            Sample(images / img["file_name"], box, None, None, np.zeros((k, 3), np.float32), d["image_id"], None, score)
        )
    warn_outside(path, placed, "detection box(es)")
    set_center_scale(spec, "coco", samples)
    return samples


def score_coco(ds: Dataset, keypoints: np.ndarray) -> dict:
    info = DATASETS["coco"]
    box_scores = np.asarray([s.score for s in ds.samples], dtype=np.float32)
    areas = np.asarray([s.area for s in ds.samples], dtype=np.float32)
    results = coco_results([s.image_id for s in ds.samples], keypoints, box_scores, areas, info.sigmas)
    return coco_keypoint_ap(ds.gt, results, info.sigmas)


register_dataset(DatasetKind("coco", read_coco, score_coco, "AP", detections=True,
                             prediction_fields={"category_id": 1}))
