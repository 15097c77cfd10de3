"""COCO box AP of a person detector on a COCO-format split (numpy + OpenCV; pycocotools for the score).

``score_detector`` runs any ``infer`` (normalised NCHW float32 batch -> the one ``[1, 5, H/4, W/4]`` output:
PyTorch, or any engine's runtime) through :class:`edgepose.detection.PersonDetector` (or, with ``detect``, any
:class:`edgepose.detectors.Detector`: a user's mmdeploy or YOLO export) on every image of the annotation file
and scores the boxes with ``COCOeval(..., 'bbox')``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .detection import PersonDetector
from .errors import EdgeposeError
from .images import read_image
from .metrics import box_results, coco_box_ap
from .spec import ModelSpec

__all__ = ["score_detector", "detect_split"]


def detect_split(
    infer: Callable[[np.ndarray], np.ndarray],
    spec: ModelSpec,
    ann_path: str | Path,
    images_dir: str | Path,
    limit: int | None = None,
    score_threshold: float | None = None,
    detect: Callable[[Callable, np.ndarray], np.ndarray] | None = None,
) -> tuple[dict, list[dict], list[int]]:
    """Detections on the first ``limit`` images (by id) of a COCO file: ``(gt json, COCO results, image ids)``.

    ``detect(infer, image)`` (an :class:`edgepose.detectors.Detector`'s ``detect``: a user's layout too) in place
    of :class:`PersonDetector` over ``spec``."""
    ann_path, images_dir = Path(ann_path), Path(images_dir)
    if not ann_path.is_file():
        raise EdgeposeError(f"{ann_path}: annotation file not found")
    try:
        doc = json.loads(ann_path.read_text())
        images = sorted(doc["images"], key=lambda i: i["id"])[:limit]
    except (ValueError, KeyError, TypeError) as e:
        raise EdgeposeError(f"{ann_path}: not a COCO annotation file ({e})") from None
    det = PersonDetector(spec, score_threshold=score_threshold) if detect is None else detect
    results: list[dict] = []
    for info in images:
        results += box_results(info["id"], det(infer, read_image(images_dir / info["file_name"])))
    return doc, results, [i["id"] for i in images]


def score_detector(
    infer: Callable[[np.ndarray], np.ndarray],
    spec: ModelSpec,
    ann_path: str | Path,
    images_dir: str | Path,
    limit: int | None = None,
    score_threshold: float | None = None,
    detect: Callable[[Callable, np.ndarray], np.ndarray] | None = None,
) -> dict:
    """``{'metrics': COCO box stats (AP, AP50, AP75, ...), 'images', 'persons', 'detections', 'seconds',
    'results'}`` (``results``: the detections as a COCO results list)."""
    t0 = time.perf_counter()
    doc, results, ids = detect_split(infer, spec, ann_path, images_dir, limit, score_threshold, detect)
    wanted = set(ids)
    persons = sum(1 for a in doc["annotations"] if a["image_id"] in wanted and not a.get("iscrowd", 0))
    return {
        "metrics": coco_box_ap(doc, results, image_ids=ids),
        "images": len(ids),
        "persons": persons,
        "detections": len(results),
        "seconds": round(time.perf_counter() - t0, 2),
        "results": results,
    }
