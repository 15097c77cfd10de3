"""The control split of a person detector: COCO box AP on letterboxed frames. Format-free.

What :class:`.control.ControlSet` is to a pose model, :class:`BoxControlSet` is to a detector (``spec.task ==
"detection"``), with the same faces the acceptance check (:mod:`.check`) and the layer search (:mod:`.search`,
:mod:`.ranking`) use: ``crops`` / ``inputs`` (the letterboxed frames, uint8 NHWC and normalised NCHW),
``evaluate(infer) -> (value, detections)``, ``reference`` (PyTorch FP32), ``reference_heatmaps(x)`` (the raw
output the ranking compares), ``metric``, ``info``, ``budget``.

The frames are the first ``size`` images of the synthetic ``scenes_val`` split (or ``--control-ann`` /
``--control-images``: COCO person boxes), letterboxed once exactly as :class:`edgepose.detection.PersonDetector`
letterboxes them; every runtime's output is decoded by ``PersonDetector.decode`` (peaks, score threshold, the
letterbox undone, NMS) and the boxes are scored by ``COCOeval(..., 'bbox')`` (:func:`edgepose.metrics.coco_box_ap`),
as :func:`edgepose.detector_eval.score_detector` scores a split.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgepose.detection import BOX_AP_BUDGET
from edgepose.errors import EdgeposeError
from edgepose.spec import ModelSpec

from .control import CONFIRM_TOP, RANK_CROPS, ControlOptions, CropInputs, torch_infer

METRIC = "box_AP"  # COCO box AP (IoU .50:.95), the detector's headline


@dataclass
class BoxControlSet(CropInputs):
    spec: ModelSpec
    gt: dict  # the COCO document, restricted to the control images
    info: dict[str, Any]
    crops: np.ndarray  # (N, H, W, 3) uint8 letterboxed frames, one per image
    letterboxes: list[Any]  # edgepose.detection.Letterbox of each frame
    images: list[int]  # COCO image ids, control order
    metric: str = METRIC
    budget: float = BOX_AP_BUDGET  # every detector artifact's, FP32, FP16 and INT8 alike
    batch_size: int = 16
    rank_crops: int = RANK_CROPS
    confirm_top: int = CONFIRM_TOP
    methods: dict[str, str] = field(default_factory=dict)
    flip_test: bool = False
    reference: float | None = None
    reference_detections: list[np.ndarray] | None = None
    reference_infer: Callable[[np.ndarray], np.ndarray] | None = None
    _inputs: np.ndarray | None = field(default=None, repr=False)

    def predict(self, infer: Callable[[np.ndarray], np.ndarray]) -> list[np.ndarray]:
        """Boxes ``(n, 5)`` in image pixels per control image, decoded as the app decodes them."""
        from edgepose.detection import PersonDetector

        det = PersonDetector(self.spec)
        out: list[np.ndarray] = []
        for a in range(0, len(self.crops), self.batch_size):
            y = np.asarray(infer(self.inputs_for(infer, slice(a, a + self.batch_size))))
            out += [det.decode(y[i : i + 1], self.letterboxes[a + i]) for i in range(len(y))]
        return out

    def value(self, detections: list[np.ndarray]) -> float:
        from edgepose.metrics import box_results, coco_box_ap

        results = [r for i, d in zip(self.images, detections) for r in box_results(i, d)]
        v = coco_box_ap(self.gt, results, image_ids=self.images).get("AP")
        return float("nan") if v is None else float(v)

    def evaluate(self, infer: Callable[[np.ndarray], np.ndarray]) -> tuple[float, list[np.ndarray]]:
        dets = self.predict(infer)
        return self.value(dets), dets

    def drop_of(self, infer: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float]:
        value, _ = self.evaluate(infer)
        return value, float(self.reference - value)

    def set_reference(self, torch_model: Any, checkpoint_sha256: str | None = None) -> float:
        """Score the PyTorch FP32 detector once (a few seconds: not cached)."""
        self.reference_infer = torch_infer(torch_model)
        self.reference, self.reference_detections = self.evaluate(self.reference_infer)
        self.info["reference"] = {"runtime": "PyTorch FP32", self.metric: self.reference}
        return self.reference

    def reference_heatmaps(self, x: np.ndarray) -> np.ndarray:
        """PyTorch FP32 raw output ``[n, 5, H/4, W/4]`` of the frames ``x`` (what the layer ranking compares)."""
        return np.asarray(self.reference_infer(x), np.float64)

    def score_images(self, infer: Any, images: list[int]) -> tuple[float, list]:
        raise EdgeposeError("a detector's INT8 accuracy control runs edgepose's layer search only (--*-control search)")


def box_control_set(spec: ModelSpec, opts: ControlOptions | None) -> BoxControlSet:
    """The detector's control split: the first ``opts.size`` images (by id) of ``scenes_val`` or the control files."""
    from edgepose.detection import letterbox, pad_value
    from edgepose.images import read_image
    from edgepose.synthetic import ensure_scenes

    opts = opts or ControlOptions()
    if opts.ann is None:
        ann, images_dir = ensure_scenes("scenes_val")
        where = "synthetic scenes_val split"
    else:
        ann, images_dir = Path(opts.ann), Path(opts.images)
        where = "control files"
    try:
        doc = json.loads(Path(ann).read_text())
        chosen = sorted(doc["images"], key=lambda i: i["id"])[: opts.size]
        ids = [int(i["id"]) for i in chosen]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EdgeposeError(f"{ann}: not a COCO annotation file of person boxes ({e})") from None
    keep = set(ids)
    gt = {**doc, "images": chosen, "annotations": [a for a in doc.get("annotations", []) if a.get("image_id") in keep]}
    w, h = spec.input_size
    crops = np.empty((len(chosen), h, w, 3), np.uint8)
    boxes = []
    for k, info in enumerate(chosen):
        crops[k], lb = letterbox(read_image(Path(images_dir) / info["file_name"]), spec.input_size, pad_value(spec))
        boxes.append(lb)
    persons = sum(1 for a in gt["annotations"] if not a.get("iscrowd", 0))
    digest = hashlib.sha256("\n".join(str(i) for i in sorted(ids)).encode()).hexdigest()
    info = {"source": where, "dataset": "coco", "ann": Path(ann).name, "ann_path": str(ann), "images": str(images_dir),
            "selection": f"first {len(ids)} images by id", "num_images": len(ids), "num_instances": persons,
            "image_ids_sha256": digest, "boxes": "detected (PersonDetector: letterbox, peaks, NMS)",
            "metric": "COCO box AP (COCOeval 'bbox', IoU .50:.95)", "flip_test": False,
            "disjoint_from_calibration": True}  # fmt: skip
    return BoxControlSet(spec, gt, info, crops, boxes, ids, batch_size=opts.batch_size, rank_crops=opts.rank_crops,
                         confirm_top=opts.confirm_top, methods=dict(opts.methods))  # fmt: skip


__all__ = ["BoxControlSet", "box_control_set", "METRIC"]
