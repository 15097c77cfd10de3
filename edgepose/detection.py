"""Person detection on the device side (numpy + OpenCV only): letterbox, decoding, NMS.

Three output layouts are decoded to boxes in image pixels, ``(N, 5)`` rows of ``x1, y1, x2, y2, score``
(pixel-edge coordinates: a box covering pixel columns 0..9 has x1 = 0, x2 = 10), best first:

* edgepose's own CenterNet-style detector (``demo_person_detector``): ONE output ``[1, 5, H/4, W/4]``:
  channel 0 the person-centre heatmap after the sigmoid, 1-2 the box width and height as fractions of the
  input width and height, 3-4 the centre's offset inside its stride-4 cell. Peaks are the heatmap's 3x3 local
  maxima (what a 3x3 max-pool keeps), the top ``top_k`` above ``score_threshold`` become boxes; the letterbox
  is undone, then class-agnostic NMS.
* mmdeploy's end-to-end export (RTMDet, YOLOX, ...): ``dets`` ``[1, N, 5]`` (x1, y1, x2, y2, score) and
  ``labels`` ``[1, N]``, NMS already done by the model.
* the raw YOLO layout ``[1, 4 + C, N]``: cx, cy, w, h and C class scores per candidate; NMS here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .errors import EdgeposeError
from .processing import INPUT_FLOAT, INPUT_UINT8, normalize_pixels
from .spec import ModelSpec

__all__ = [
    "Letterbox",
    "letterbox",
    "heatmap_peaks",
    "decode_centernet",
    "decode_mmdeploy",
    "decode_yolo",
    "nms",
    "box_iou",
    "PersonDetector",
    "DETECTION_CHANNELS",
    "BOX_AP_BUDGET",
]

STRIDE = 4
DETECTION_CHANNELS = 5  # heatmap, w, h, offset x, offset y
# every detector artifact's box AP within 0.01 of PyTorch's, FP32, FP16 and INT8 alike (issue 24): the budget
# convert checks at conversion and bench reports against
BOX_AP_BUDGET = 0.01


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the model input: ``input = image * (sx, sy) + (dx, dy)`` in pixel edges."""

    sx: float
    sy: float
    dx: int
    dy: int
    image_size: tuple[int, int]  # (width, height) of the original image

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes ``(N, 4)`` x1, y1, x2, y2 in input pixels -> image pixels, clipped to the image."""
        out = np.array(boxes, np.float32, copy=True).reshape(-1, 4)
        w, h = self.image_size
        out[:, [0, 2]] = np.clip((out[:, [0, 2]] - self.dx) / self.sx, 0, w)
        out[:, [1, 3]] = np.clip((out[:, [1, 3]] - self.dy) / self.sy, 0, h)
        return out


def pad_value(spec: ModelSpec) -> tuple[int, int, int]:
    """The letterbox border: the normalisation mean, so the border is zero after normalising."""
    return tuple(int(round(m)) for m in spec.mean)


def letterbox(
    image: np.ndarray, input_size: tuple[int, int], pad=(124, 116, 104), center: bool = True
) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` (HWC uint8) keeping its aspect ratio into ``input_size`` (W, H), padded with ``pad`` (an
    RGB triple or one value for all three):
    centred (edgepose, ultralytics' ``LetterBox``), or at the top-left corner with ``center=False`` (mmdet's
    ``Resize(keep_ratio=True)`` + ``Pad(size=...)``, which pads the right and bottom edges)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise EdgeposeError(f"letterbox: expected an HxWx3 image, got shape {tuple(image.shape)}")
    h, w = image.shape[:2]
    in_w, in_h = input_size
    s = min(in_w / w, in_h / h)
    nw, nh = max(1, min(in_w, round(w * s))), max(1, min(in_h, round(h * s)))
    dx, dy = ((in_w - nw) // 2, (in_h - nh) // 2) if center else (0, 0)
    # a frame already of the fitted size is used as it is (cv2.resize to its own size is a copy of it)
    fitted = image if (nw, nh) == (w, h) else cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    if (nw, nh) == (in_w, in_h):  # a copy, never the caller's own array
        out = np.array(fitted, np.uint8, copy=True, order="C") if fitted is image else fitted
    else:  # one allocation: the fitted image with the pad as its border
        colour = tuple(int(v) for v in np.broadcast_to(np.asarray(pad, np.uint8), (3,)))  # (r, g, b) or one value
        out = cv2.copyMakeBorder(np.ascontiguousarray(fitted, np.uint8), dy, in_h - nh - dy, dx, in_w - nw - dx,
                                 cv2.BORDER_CONSTANT, value=colour)  # fmt: skip
    return out, Letterbox(nw / w, nh / h, dx, dy, (w, h))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of x1, y1, x2, y2 boxes ``(N, 4)`` x ``(M, 4)``."""
    a = np.asarray(a, np.float64)[:, None, :4]
    b = np.asarray(b, np.float64)[None, :, :4]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(dets: np.ndarray, iou_threshold: float = 0.6) -> np.ndarray:
    """Greedy class-agnostic NMS on ``(N, 5)`` x1, y1, x2, y2, score: the kept rows, best first."""
    dets = np.asarray(dets, np.float32).reshape(-1, 5)
    dets = dets[np.argsort(-dets[:, 4], kind="stable")]
    if len(dets) < 2:
        return dets
    over = box_iou(dets, dets) > iou_threshold  # every pair once (one numpy pass), then the greedy walk
    keep = np.zeros(len(dets), bool)
    suppressed = np.zeros(len(dets), bool)
    for i in range(len(dets)):
        if not suppressed[i]:
            keep[i] = True
            suppressed |= over[i]  # only the later rows are read from here on
    return dets[keep]


def heatmap_peaks(heatmap: np.ndarray, top_k: int = 100, threshold: float = 0.0) -> tuple[np.ndarray, ...]:
    """The 3x3 local maxima of one ``(H, W)`` heatmap (a cell equal to the 3x3 max-pool of the map, as CenterNet
    keeps them), the best ``top_k`` with score >= ``threshold``: ``(ys, xs, scores)``, best first."""
    hm = np.ascontiguousarray(heatmap, np.float32)
    pooled = cv2.dilate(hm, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=-np.inf)
    ys, xs = np.nonzero((hm == pooled) & (hm >= threshold))
    scores = hm[ys, xs]
    order = np.argsort(-scores, kind="stable")[:top_k]
    return ys[order], xs[order], scores[order]


def decode_centernet(
    output: np.ndarray,
    input_size: tuple[int, int],
    score_threshold: float = 0.05,
    top_k: int = 100,
) -> np.ndarray:
    """One image's ``[1, 5, H, W]`` (or ``[5, H, W]``) output -> ``(N, 5)`` boxes in input pixels, best first."""
    out = np.asarray(output, np.float32)
    if out.ndim == 4 and out.shape[0] == 1:
        out = out[0]
    in_w, in_h = input_size
    if out.ndim != 3 or out.shape[0] != DETECTION_CHANNELS:
        raise EdgeposeError(f"detector output: expected [1, {DETECTION_CHANNELS}, H, W], got {list(np.shape(output))}")
    if out.shape[1] * STRIDE != in_h or out.shape[2] * STRIDE != in_w:
        raise EdgeposeError(f"detector output {list(out.shape[1:])} does not match the input {in_w}x{in_h} at stride 4")
    ys, xs, scores = heatmap_peaks(out[0], top_k, score_threshold)
    w = out[1, ys, xs] * in_w
    h = out[2, ys, xs] * in_h
    cx = (xs + out[3, ys, xs]) * STRIDE
    cy = (ys + out[4, ys, xs]) * STRIDE
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, scores], 1).astype(np.float32)


def decode_mmdeploy(
    dets: np.ndarray, labels: np.ndarray, person_label: int = 0, score_threshold: float = 0.3
) -> np.ndarray:
    """mmdeploy end-to-end outputs (``dets`` [1, N, 5], ``labels`` [1, N]) -> the person boxes ``(N, 5)``."""
    d = np.asarray(dets, np.float32)
    lab = np.asarray(labels)
    if d.ndim != 3 or d.shape[0] != 1 or d.shape[2] != 5:
        raise EdgeposeError(f"mmdeploy dets: expected [1, N, 5] (x1, y1, x2, y2, score), got {list(d.shape)}")
    if lab.shape != d.shape[:2]:
        raise EdgeposeError(f"mmdeploy labels: expected {list(d.shape[:2])}, got {list(lab.shape)}")
    d, lab = d[0], lab[0]
    keep = (lab == person_label) & (d[:, 4] >= score_threshold) & np.isfinite(d).all(1)
    d = d[keep]
    return d[np.argsort(-d[:, 4], kind="stable")]


def decode_yolo(
    output: np.ndarray,
    person_class: int = 0,
    score_threshold: float = 0.3,
    iou_threshold: float = 0.6,
    top_k: int = 300,
) -> np.ndarray:
    """Raw YOLO output [1, 4 + C, N] (cx, cy, w, h, C class scores) -> person boxes ``(N, 5)`` after NMS.

    A candidate is a person when its best class is ``person_class`` and that score passes the threshold.
    """
    out = np.asarray(output, np.float32)
    if out.ndim != 3 or out.shape[0] != 1 or out.shape[1] < 5:
        raise EdgeposeError(f"YOLO output: expected [1, 4 + C, N], got {list(out.shape)}")
    if not 0 <= person_class < out.shape[1] - 4:
        raise EdgeposeError(f"YOLO output has {out.shape[1] - 4} classes; no class {person_class}")
    p = out[0].T  # (N, 4 + C)
    cls = p[:, 4:]
    score = cls[:, person_class]
    keep = (cls.argmax(1) == person_class) & (score >= score_threshold) & np.isfinite(p[:, :4]).all(1)
    p, score = p[keep], score[keep]
    boxes = np.stack(
        [p[:, 0] - p[:, 2] / 2, p[:, 1] - p[:, 3] / 2, p[:, 0] + p[:, 2] / 2, p[:, 1] + p[:, 3] / 2, score], 1
    )
    boxes = boxes[np.argsort(-score, kind="stable")[:top_k]]
    return nms(boxes, iou_threshold)


@dataclass
class PersonDetector:
    """Frames in, person boxes out, over any runtime's ``infer`` (normalised NCHW float32 batch -> one array).

    ``__call__(image)`` letterboxes the RGB image into the spec's input, runs ``infer``, decodes the one
    ``[1, 5, H/4, W/4]`` output, undoes the letterbox and applies class-agnostic NMS: ``(N, 5)`` x1, y1, x2, y2,
    score in image pixels, best first.
    """

    spec: ModelSpec
    score_threshold: float | None = None
    iou_threshold: float = 0.6
    top_k: int = 100
    # what the model takes when the runtime does not say (a runtime's own ``input_kind`` wins in ``__call__``):
    # normalised float NCHW, or the letterboxed frame's uint8 RGB bytes NHWC (``convert --input uint8``)
    input_kind: str = INPUT_FLOAT
    _mean: np.ndarray = field(init=False, repr=False)
    _std: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.spec.task != "detection":
            raise EdgeposeError(f"{self.spec.name} is a {self.spec.task} model, not a detector")
        if self.score_threshold is None:
            self.score_threshold = self.spec.score_threshold
        self._mean = np.asarray(self.spec.mean, np.float32)
        self._std = np.asarray(self.spec.std, np.float32)

    def preprocess(self, image: np.ndarray, input_kind: str | None = None) -> tuple[np.ndarray, Letterbox]:
        """RGB HWC uint8 -> ``[1, 3, H, W]`` float32 normalised (or, for ``INPUT_UINT8``, the letterboxed frame
        ``[1, H, W, 3]`` uint8 itself), and the letterbox to undo. ``input_kind``: default ``self.input_kind``."""
        boxed, lb = letterbox(image, self.spec.input_size, pad_value(self.spec))
        if (input_kind or self.input_kind) == INPUT_UINT8:
            return boxed[None], lb
        return normalize_pixels(boxed, self._mean, self._std), lb

    def decode(self, output: np.ndarray, lb: Letterbox) -> np.ndarray:
        dets = decode_centernet(output, self.spec.input_size, self.score_threshold, self.top_k)
        dets[:, :4] = lb.to_image(dets[:, :4])
        w, h = dets[:, 2] - dets[:, 0], dets[:, 3] - dets[:, 1]
        return nms(dets[(w > 0) & (h > 0)], self.iou_threshold)

    def __call__(self, infer, image: np.ndarray) -> np.ndarray:
        x, lb = self.preprocess(image, getattr(infer, "input_kind", None))  # a runtime says what it takes
        return self.decode(np.asarray(infer(x)), lb)
