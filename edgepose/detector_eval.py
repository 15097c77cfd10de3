"""COCO box AP of a person detector on a COCO-format split (numpy + OpenCV; pycocotools for the score).

``score_detector`` runs any ``infer`` (normalised NCHW float32 batch -> the one ``[1, 5, H/4, W/4]`` output:
PyTorch, or any engine's runtime) through :class:`edgepose.detection.PersonDetector` (or, with ``detect``, any
:class:`edgepose.detectors.Detector`: a user's mmdeploy or YOLO export) on every image of the annotation file
and scores the boxes with ``COCOeval(..., 'bbox')``.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .detection import PersonDetector
from .errors import EdgeposeError
from .files import atomic_write, json_text
from .images import read_image
from .metrics import box_results, coco_box_ap
from .spec import ModelSpec

__all__ = ["score_detector", "detect_split", "pose_with_detector"]


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


def pose_with_detector(
    spec: ModelSpec,
    pose_infer: Callable[[np.ndarray], np.ndarray],
    detector: Any,
    ann_path: str | Path,
    images_dir: str | Path,
    options: Any = None,
    det_bbox_thr: float = 0.0,
    skip_bad_images: bool = False,
) -> dict:
    """Box AP of ``detector`` (an :class:`edgepose.detectors.Detector`) on a COCO file, and the pose model's
    keypoint AP with ground-truth boxes beside its AP with the detector's boxes.

    The detected boxes are scored as mmpose scores detection results (``bbox_file`` in its COCO dataset):
    every box with score >= ``det_bbox_thr`` (mmpose's COCO test setting: 0.0) is cropped, the instance score is
    the box score times the mean of the keypoint scores above 0.2, then OKS NMS (0.9) per image
    (:func:`edgepose.metrics.coco_results`, :func:`edgepose.datasets.coco.score_coco`). The detections go
    through the same reader as ``edgepose eval --bbox-file`` (written to a temporary COCO results file).
    ``{'box': score_detector's dict without results, 'gt_boxes': EvalResult, 'detected_boxes': EvalResult}``.
    """
    from .datasets import load_dataset
    from .evaluate import evaluate_dataset

    ann_path, images_dir = Path(ann_path), Path(images_dir)
    ds_gt = load_dataset("coco", ann_path, images_dir, spec, skip_bad_images=skip_bad_images)  # checked first
    box = score_detector(detector.infer, spec, ann_path, images_dir, detect=detector.detect)
    results = box.pop("results")
    if not results:
        raise EdgeposeError(f"{ann_path}: the detector found no person on any of its {box['images']} images")
    gt = evaluate_dataset(spec, pose_infer, ds_gt, options)
    with tempfile.TemporaryDirectory(prefix="edgepose-dets-") as tmp:
        bbox_file = Path(tmp) / "detections.json"
        atomic_write(bbox_file, json_text(results, str(bbox_file)))
        ds_det = load_dataset("coco", ann_path, images_dir, spec, bbox_file, det_bbox_thr,
                              skip_bad_images=skip_bad_images)  # fmt: skip
        det = evaluate_dataset(spec, pose_infer, ds_det, options, det_bbox_thr=det_bbox_thr)
    det.info["bbox_file"] = "(the detector's boxes)"
    return {"box": box, "gt_boxes": gt, "detected_boxes": det}
