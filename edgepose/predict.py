"""Keypoints for one image: any runtime through the shared pipeline, drawn and/or written as JSON."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import EdgeposeError
from .files import atomic_write, json_text
from .processing import Infer, TopDownPipeline, boxes_outside, check_box, input_kind_of, read_image
from .spec import ModelSpec

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    image: str
    boxes: np.ndarray  # (N, 4) xywh
    keypoints: np.ndarray  # (N, K, 3) x, y, score

    def to_json(self, spec: ModelSpec) -> dict:
        return {
            "image": self.image,
            "model": spec.name,
            "keypoint_names": list(spec.keypoints),
            "persons": [
                {
                    "bbox": [float(v) for v in box],
                    "keypoints": [[float(x), float(y), float(s)] for x, y, s in kpts],
                    "score": float(kpts[:, 2].mean()),
                }
                for box, kpts in zip(self.boxes, self.keypoints)
            ],
        }


def parse_bbox(text: str) -> list[float]:
    """``"x,y,w,h"`` -> four floats, with a clear error for anything else."""
    return check_box(str(text).split(","), f"--bbox {text!r}")


def predict_image(
    spec: ModelSpec,
    infer: Infer,
    image_path: str | Path,
    boxes: Sequence[Sequence[float]] | None = None,
    flip_test: bool | None = None,
    decoder: str = "default",
    image: np.ndarray | None = None,
) -> Prediction:
    """Keypoints for each box (the whole image without one); ``image`` (RGB) saves reading the file again.

    Boxes must be finite with positive size; a box wholly outside the image is kept (the caller asked for it)
    but counted in a warning.
    """
    if image is None:
        image = read_image(image_path)
    if not boxes:
        boxes = [[0.0, 0.0, float(image.shape[1]), float(image.shape[0])]]
    boxes = [check_box(b, f"{image_path}: box {i}") for i, b in enumerate(boxes)]
    boxes_arr = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    outside = boxes_outside(boxes_arr, image.shape[1], image.shape[0])
    if outside:
        log.warning("%s: %d of %d box(es) lie wholly outside the %dx%d image (box %s); their keypoints are "
                    "guesses on black padding", image_path, len(outside), len(boxes_arr), image.shape[1],
                    image.shape[0], ", ".join(map(str, outside[:5])))  # fmt: skip
    pipe = TopDownPipeline(spec, flip_test=flip_test, decoder=decoder, input_kind=input_kind_of(infer))
    return Prediction(str(image_path), boxes_arr, pipe(infer, image, boxes_arr))


def write_json(path: str | Path, obj) -> None:
    atomic_write(path, json_text(obj, str(path), indent=2) + "\n")


def write_image(path: str | Path, image_rgb: np.ndarray) -> None:
    ext = Path(path).suffix.lower() or ".png"
    ok, buf = cv2.imencode(ext, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise EdgeposeError(f"{path}: cannot encode an image with suffix {ext!r}")
    atomic_write(path, buf.tobytes())
