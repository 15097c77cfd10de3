"""The one pre/post-processing pipeline, reproducing mmpose 0.x's top-down test pipeline exactly.

(Over 400 lines on purpose: every rule of mmpose's test pipeline, and its fast bit-identical forms, in one file.)
numpy + OpenCV only. Every runtime, metric and converter check goes through these functions, so when two
artifacts disagree the cause can only be the model file. Arrays are batched: boxes ``(N, 4)`` xywh,
centres and scales ``(N, 2)`` (scale in units of 200 px, as mmpose), heatmaps ``(N, K, H, W)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from .errors import EdgeposeError
from .images import check_image_file, image_problem, read_image  # noqa: F401  (their home before images.py)
from .spec import ModelSpec

PIXEL_STD = 200.0
# What a model takes (an artifact's metadata ``input.kind``; re-exported by edgepose.artifact):
INPUT_FLOAT = "float_nchw_normalized"  # float32 (pixel - mean) / std, NCHW (the runtime face)
INPUT_UINT8 = "uint8_nhwc_rgb"  # the crop's RGB bytes, NHWC; normalisation inside the model (--input uint8)
INPUT_KINDS = (INPUT_FLOAT, INPUT_UINT8)


# ----------------------------------------------------------------------------------------------- boxes
def box_to_center_scale(
    boxes: np.ndarray, aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """mmpose ``_xywh2cs``: box centre, and the box grown to the input aspect ratio, /200, x padding."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x, y, w, h = boxes.T
    center = np.stack([x + w * 0.5, y + h * 0.5], axis=1)
    w = w.copy()
    h = h.copy()
    wider = w > aspect_ratio * h
    taller = w < aspect_ratio * h
    h[wider] = w[wider] / aspect_ratio
    w[taller] = h[taller] * aspect_ratio
    # mmpose's order of float32 rounding: scale = float32([w/200, h/200]) * padding, in float32
    scale = (np.stack([w, h], axis=1) / PIXEL_STD).astype(np.float32) * np.float32(padding)
    return center.astype(np.float32), scale


MAX_COORD = 1e6  # pixels: beyond any image; a box past it is a typo or an attack, not a person


def check_box(vals, what: str) -> list[float]:
    """Four finite numbers x, y, w, h with w, h > 0 and nothing beyond ``MAX_COORD``; else one line naming
    ``what`` (the option or the file entry)."""
    try:
        vals = [float(v) for v in vals]
    except (TypeError, ValueError):
        vals = []
    if len(vals) != 4:
        raise EdgeposeError(f"{what}: expected x,y,w,h (four numbers)")
    if not all(math.isfinite(v) for v in vals):
        raise EdgeposeError(f"{what}: x,y,w,h must be finite numbers, got {vals}")
    if vals[2] <= 0 or vals[3] <= 0:
        raise EdgeposeError(f"{what}: positive width and height needed, got {vals}")
    if max(abs(v) for v in vals) > MAX_COORD:
        raise EdgeposeError(f"{what}: a coordinate beyond {MAX_COORD:g} pixels, got {vals}")
    return vals


def boxes_outside(boxes: np.ndarray, width: int, height: int) -> list[int]:
    """Indices of xywh boxes that do not overlap the image at all (the model would "find" a person there)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = (b[:, 0] >= width) | (b[:, 1] >= height) | (b[:, 0] + b[:, 2] <= 0) | (b[:, 1] + b[:, 3] <= 0)
    return [int(i) for i in np.flatnonzero(out)]


def mpii_center_scale(center: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MPII's rule (TopDownMpiiDataset): move the centre down 15*s, pad 1.25, then 1-based -> 0-based."""
    # float32 throughout, as TopDownMpiiDataset
    c = np.array(center, dtype=np.float32).reshape(-1, 2)
    s = np.repeat(np.asarray(scale, dtype=np.float32).reshape(-1, 1), 2, axis=1)
    has = c[:, 0] != -1
    c[has, 1] = c[has, 1] + np.float32(15) * s[has, 1]
    s[has] = s[has] * np.float32(1.25)
    return c - np.float32(1), s


def clean_coco_box(box: Sequence[float], width: int, height: int) -> np.ndarray | None:
    """mmpose's ground-truth box sanitising; ``None`` for a box of zero area."""
    x, y, w, h = box
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 >= x1 and y2 >= y1 and (x2 - x1) * (y2 - y1) > 0:
        return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float64)
    return None


# ------------------------------------------------------------------------------------------ the crop
def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return b + np.array([-d[1], d[0]], dtype=np.float32)


def get_affine_transform(
    center: Sequence[float], scale: Sequence[float], output_size: Sequence[int], rot: float = 0.0, inv: bool = False
) -> np.ndarray:
    """mmpose ``get_affine_transform`` (three float32 points through ``cv2.getAffineTransform``).

    Maps ``center`` to the middle of ``output_size`` (W, H) with the uniform factor W / (scale_w * 200).
    Without rotation the points are computed with scalars (the same float64 then float32 operations, so the
    same matrix, in a third of the time); the output-size points are computed once per size.
    """
    if rot != 0:
        return _affine_rotated(center, scale, output_size, rot, inv)
    src_w = float(scale[0]) * PIXEL_STD
    cx, cy = float(center[0]), float(center[1])
    a0, a1 = np.float32(cx), np.float32(cy)
    b0, b1 = np.float32(cx + 0.0), np.float32(cy + src_w * -0.5)  # centre + (0, -src_w/2), rounded as float32
    src = np.array([[a0, a1], [b0, b1], [b0 - (a1 - b1), b1 + (a0 - b0)]], dtype=np.float32)  # _third_point
    dst = _dst_points(int(output_size[0]), int(output_size[1]))
    return cv2.getAffineTransform(dst, src) if inv else cv2.getAffineTransform(src, dst)


@functools.lru_cache(maxsize=16)
def _dst_points(dst_w: int, dst_h: int) -> np.ndarray:
    dst = np.zeros((3, 2), dtype=np.float32)
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([0.0, dst_w * -0.5])
    dst[2] = _third_point(dst[0], dst[1])
    dst.setflags(write=False)
    return dst


def _affine_rotated(center, scale, output_size, rot: float, inv: bool) -> np.ndarray:
    scale_tmp = np.asarray(scale, dtype=np.float64) * PIXEL_STD
    src_w = scale_tmp[0]
    dst_w, dst_h = output_size
    rad = np.pi * rot / 180.0
    sn, cs = np.sin(rad), np.cos(rad)
    src_dir = np.array([-src_w * -0.5 * sn, src_w * -0.5 * cs])  # rotate (0, -src_w/2)
    dst_dir = np.array([0.0, dst_w * -0.5])
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = np.asarray(center, dtype=np.float64)
    src[1] = np.asarray(center, dtype=np.float64) + src_dir
    src[2] = _third_point(src[0], src[1])
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
    dst[2] = _third_point(dst[0], dst[1])
    return cv2.getAffineTransform(dst, src) if inv else cv2.getAffineTransform(src, dst)


def crop(image: np.ndarray, center, scale, input_size: Sequence[int], rot: float = 0.0, out=None) -> np.ndarray:
    """One crop of ``input_size`` (W, H): ``cv2.warpAffine`` with bilinear sampling and a black border
    (written into ``out``, a contiguous H x W x C array, when given)."""
    m = get_affine_transform(center, scale, input_size, rot)
    size = (int(input_size[0]), int(input_size[1]))
    if out is None:
        return cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR)
    return cv2.warpAffine(image, m, size, dst=out, flags=cv2.INTER_LINEAR)


def crop_batch(
    image: np.ndarray, centers: np.ndarray, scales: np.ndarray, input_size: Sequence[int], out: np.ndarray | None = None
) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 crops of one image, each warped straight into its slot of ``out`` (made when
    not given)."""
    centers = np.asarray(centers).reshape(-1, 2)
    scales = np.asarray(scales).reshape(-1, 2)
    shape = (len(centers), input_size[1], input_size[0], image.shape[2])
    if out is None or out.shape != shape or out.dtype != image.dtype:
        out = np.empty(shape, dtype=image.dtype)
    for i in range(len(centers)):
        crop(image, centers[i], scales[i], input_size, out=out[i])
    return out


_LUTS: dict[tuple, np.ndarray] = {}


def _normalize_lut(m: np.ndarray, s: np.ndarray, divide: bool = True) -> np.ndarray:
    """A (C, 1, 256) float32 table per channel: ``(v / 255 - m) / s`` (``divide``) or ``(v - m) / s`` for every
    uint8 value ``v``, computed with the very float32 operations of the formula (so bit-identical to it)."""
    key = (m.tobytes(), s.tobytes(), divide)
    lut = _LUTS.get(key)
    if lut is None:
        v = np.arange(256, dtype=np.float32)
        lut = ((v / np.float32(255.0) if divide else v) - m[:, None]) / s[:, None]
        lut = _LUTS.setdefault(key, np.ascontiguousarray(lut.reshape(len(m), 1, 256)))
    return lut


def _lut_planes(crops: np.ndarray, lut: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW through ``lut``: per image one ``cv2.split`` and one ``cv2.LUT`` per channel
    straight into the planes of ``out`` (made when it is not a fitting contiguous buffer)."""
    n, h, w, c = crops.shape
    if out is None or out.shape != (n, c, h, w) or out.dtype != np.float32 or not out.flags.c_contiguous:
        out = np.empty((n, c, h, w), dtype=np.float32)
    for i in range(n):
        planes = cv2.split(crops[i]) if c > 1 else (crops[i, ..., 0],)
        for ch in range(c):
            cv2.LUT(planes[ch], lut[ch], dst=out[i, ch])
    return out


def normalize_pixels(image: np.ndarray, mean: Sequence[float], std: Sequence[float], nhwc: bool = False) -> np.ndarray:
    """One HWC image -> ``[1, C, H, W]`` (or ``[1, H, W, C]`` with ``nhwc``) float32 ``(image - mean) / std``, mean
    and std in pixel units (a detector's normalisation). For uint8 images through a 256-entry table per channel:
    bit-identical to the float32 formula, ~4x faster than numpy's subtract, divide and transpose."""
    m, s = np.asarray(mean, np.float32).reshape(-1), np.asarray(std, np.float32).reshape(-1)
    img = np.asarray(image)
    if img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == m.size == s.size and img.size:
        lut = _normalize_lut(m, s, divide=False)
        if nhwc:  # one cv2.LUT with a C-channel table keeps the interleaved layout
            table = np.ascontiguousarray(lut[:, 0, :].T.reshape(1, 256, m.size))
            return cv2.LUT(img, table)[None]
        return _lut_planes(img[None], lut)
    x = (img.astype(np.float32) - m) / s
    return np.ascontiguousarray(x[None] if nhwc else x.transpose(2, 0, 1)[None])


def normalize(
    crops: np.ndarray, mean: Sequence[float], std: Sequence[float], out: np.ndarray | None = None
) -> np.ndarray:
    """uint8 NHWC RGB -> float32 NCHW, as mmpose's ToTensor (/255) then NormalizeTensor.

    For uint8 crops (``out``: an optional float32 N x C x H x W buffer to fill) the float32 arithmetic is done
    once per value (a 256-entry table per channel), then per crop one ``cv2.split`` and one ``cv2.LUT`` per
    channel straight into the NCHW planes: bit-identical to the formula used for other dtypes, ~3x faster
    than a numpy transpose + table.
    """
    m = (np.asarray(mean, dtype=np.float64) / 255.0).astype(np.float32)
    s = (np.asarray(std, dtype=np.float64) / 255.0).astype(np.float32)
    crops = np.asarray(crops)
    if crops.dtype == np.uint8 and crops.ndim == 4 and crops.shape[3] == m.size and crops.size:
        return _lut_planes(crops, _normalize_lut(m, s), out)
    x = np.asarray(crops, dtype=np.float32) / np.float32(255.0)
    x = (x - m) / s
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


# ------------------------------------------------------------------------------------------ flip test
def flip_back(heatmaps: np.ndarray, flip_pairs: Sequence[Sequence[int]]) -> np.ndarray:
    """Undo a horizontal input flip on heatmaps: swap left/right channels, then mirror W."""
    hm = np.asarray(heatmaps)
    perm = _flip_permutation(hm.shape[1], tuple(tuple(int(v) for v in p) for p in flip_pairs))
    return hm[:, perm][..., ::-1]  # one gather (a copy) instead of a copy plus one swap per pair


@functools.lru_cache(maxsize=64)
def _flip_permutation(k: int, flip_pairs: tuple[tuple[int, int], ...]) -> np.ndarray:
    perm = np.arange(k)
    for a, b in flip_pairs:  # sequential swaps, as mmpose applies them
        perm[[a, b]] = perm[[b, a]]
    perm.setflags(write=False)
    return perm


def merge_flip(
    heatmaps: np.ndarray, heatmaps_flipped: np.ndarray, flip_pairs, shift: bool = True
) -> np.ndarray:
    """mmpose's flip-test average; ``shift`` moves the flipped-back map one column right (column 0 kept).

    Computed as ``(heatmaps + shifted(flip_back(heatmaps_flipped))) * 0.5`` with one channel gather, one
    ``cv2.flip`` and the shift folded into the add: bit-identical to the step-by-step definition.
    """
    hm = np.asarray(heatmaps)
    hf = np.asarray(heatmaps_flipped)
    back = hf[:, _flip_permutation(hf.shape[1], tuple(tuple(int(v) for v in p) for p in flip_pairs))]
    n, k, h, w = back.shape
    mirrored = cv2.flip(back.reshape(n * k * h, w), 1).reshape(back.shape)  # columns mirrored: one SIMD pass
    out = np.empty(np.broadcast_shapes(hm.shape, back.shape), dtype=np.result_type(hm, back))
    if shift and w > 1 and hm.shape == out.shape:
        # shifted[..., j] = mirrored[..., j - 1] (j >= 1), column 0 kept: on the flat arrays one contiguous add
        # does every column but 0 (whose flat neighbour belongs to the row before), then column 0 alone
        np.add(hm.reshape(-1)[1:], mirrored.reshape(-1)[:-1], out=out.reshape(-1)[1:])
        np.add(hm[..., 0], mirrored[..., 0], out=out[..., 0])
    elif shift and w > 1:
        np.add(hm[..., 1:], mirrored[..., :-1], out=out[..., 1:])
        np.add(hm[..., 0], mirrored[..., 0], out=out[..., 0])
    else:
        np.add(hm, mirrored, out=out)
    out *= 0.5
    return out


# ------------------------------------------------------------------------------------------- decoding
def get_max_preds(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer argmax per joint: coords ``(N, K, 2)`` (x, y) and maxvals ``(N, K, 1)``; (-1, -1) if max <= 0."""
    hm = np.asarray(heatmaps)
    n, k, _, w = hm.shape
    flat = hm.reshape(n, k, -1)
    idx = np.argmax(flat, axis=2)
    maxvals = np.take_along_axis(flat, idx[..., None], axis=2).astype(np.float32)
    coords = np.empty((n, k, 2), dtype=np.float32)
    coords[..., 0] = idx % w
    coords[..., 1] = idx // w
    coords[~(maxvals[..., 0] > 0.0)] = -1.0  # a peak <= 0 (or NaN) has no location
    return coords, maxvals


def quarter_offset(heatmaps: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """mmpose 'default' post-processing: +/-0.25 px towards the higher neighbour, strict interior only.

    Vectorised over all N x K joints with one flat index per neighbour (no per-joint Python work).
    """
    hm = np.asarray(heatmaps)
    n, k, h, w = hm.shape
    px = coords[..., 0].astype(np.int64).reshape(-1)
    py = coords[..., 1].astype(np.int64).reshape(-1)
    inside = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
    at = np.clip(py, 1, h - 2) * w + np.clip(px, 1, w - 2) + np.arange(n * k) * (h * w)
    flat = hm.reshape(-1)
    offset = np.empty((n * k, 2), dtype=np.float64)
    offset[:, 0] = np.sign(flat[at + 1] - flat[at - 1])
    offset[:, 1] = np.sign(flat[at + w] - flat[at - w])
    offset *= 0.25
    offset[~inside] = 0.0
    return (coords + offset.reshape(n, k, 2)).astype(np.float32)


def _gaussian_blur(heatmaps: np.ndarray, kernel: int = 11) -> np.ndarray:
    border = (kernel - 1) // 2
    out = np.array(heatmaps, dtype=np.float32, copy=True)
    n, k, h, w = out.shape
    for i in range(n):
        for j in range(k):
            peak = out[i, j].max()
            padded = np.zeros((h + 2 * border, w + 2 * border), dtype=np.float32)
            padded[border:-border, border:-border] = out[i, j]
            padded = cv2.GaussianBlur(padded, (kernel, kernel), 0)
            out[i, j] = padded[border:-border, border:-border]
            m = out[i, j].max()
            if m > 0:
                out[i, j] *= peak / m
    return out


def dark_refine(heatmaps: np.ndarray, coords: np.ndarray, kernel: int = 11) -> np.ndarray:
    """DARK ('unbiased') sub-pixel refinement: second-order Taylor step on the log of the blurred map.

    An option only: the mmpose configs of the zoo models decode with 'default'.
    """
    hm = np.log(np.maximum(_gaussian_blur(heatmaps, kernel), 1e-10))
    out = coords.astype(np.float64, copy=True)
    n, k, h, w = hm.shape
    for i in range(n):
        for j in range(k):
            px, py = int(out[i, j, 0]), int(out[i, j, 1])
            if not (1 < px < w - 2 and 1 < py < h - 2):
                continue
            m = hm[i, j]
            dx = 0.5 * (m[py, px + 1] - m[py, px - 1])
            dy = 0.5 * (m[py + 1, px] - m[py - 1, px])
            dxx = 0.25 * (m[py, px + 2] - 2 * m[py, px] + m[py, px - 2])
            dxy = 0.25 * (m[py + 1, px + 1] - m[py - 1, px + 1] - m[py + 1, px - 1] + m[py - 1, px - 1])
            dyy = 0.25 * (m[py + 2, px] - 2 * m[py, px] + m[py - 2, px])
            det = dxx * dyy - dxy**2
            if det != 0:
                hess_inv = np.array([[dyy, -dxy], [-dxy, dxx]]) / det
                out[i, j] -= hess_inv @ np.array([dx, dy])
    return out.astype(np.float32)


def transform_preds(coords: np.ndarray, centers: np.ndarray, scales: np.ndarray, heatmap_size) -> np.ndarray:
    """Heatmap coordinates back to the image (mmpose ``transform_preds`` without UDP)."""
    s = np.asarray(scales, dtype=np.float64).reshape(-1, 1, 2) * PIXEL_STD
    c = np.asarray(centers, dtype=np.float64).reshape(-1, 1, 2)
    factor = s / np.asarray(heatmap_size, dtype=np.float64)
    return (coords * factor + c - s * 0.5).astype(np.float32)


DECODERS = ("default", "dark", "none")


def keypoints_from_heatmaps(
    heatmaps: np.ndarray, centers: np.ndarray, scales: np.ndarray, method: str = "default"
) -> np.ndarray:
    """Heatmaps ``(N, K, H, W)`` -> keypoints ``(N, K, 3)``: image x, y and the peak value as score."""
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    coords, maxvals = get_max_preds(heatmaps)
    if method == "default":
        coords = quarter_offset(heatmaps, coords)
    elif method == "dark":
        coords = dark_refine(heatmaps, coords)
    elif method != "none":
        raise EdgeposeError(f"unknown decoder {method!r}; choose one of {', '.join(DECODERS)}")
    h, w = heatmaps.shape[2:]
    xy = transform_preds(coords, centers, scales, (w, h))
    return np.concatenate([xy, maxvals], axis=2)


# ------------------------------------------------------------------------------------------ pipeline
Infer = Callable[[np.ndarray], np.ndarray]  # NCHW float32 batch (or NHWC uint8 crops) -> NKHW heatmaps
Tick = Callable[[str], None]  # called with a stage name when that stage is done (benchmark timing)


def input_kind_of(infer: Infer) -> str:
    """What ``infer`` takes: its ``input_kind`` (a runtime's, from the artifact's metadata), else float NCHW."""
    return getattr(infer, "input_kind", None) or INPUT_FLOAT


def flip_batch(batch: np.ndarray) -> np.ndarray:
    """The batch mirrored horizontally, as a new contiguous array: uint8 NHWC crops or float NCHW planes.

    One ``cv2.flip`` over all rows at once (rows of pixels for NHWC, rows of one plane for NCHW): the same
    values as ``batch[..., ::-1]`` (NCHW) / ``batch[:, :, ::-1]`` (NHWC), without numpy's strided copy.
    """
    b = np.ascontiguousarray(batch)
    if b.dtype == np.uint8 and b.ndim == 4 and b.shape[3] in (1, 3, 4):  # NHWC crops
        n, h, w, c = b.shape
        return cv2.flip(b.reshape(n * h, w, c), 1).reshape(n, h, w, c)
    n, c, h, w = b.shape
    return cv2.flip(b.reshape(n * c * h, w), 1).reshape(n, c, h, w)


@dataclass
class TopDownPipeline:
    """Box -> crop -> normalise -> model (+ flip) -> decode, as mmpose's test pipeline for ``spec``.

    ``input_kind`` is what the model takes (a runtime's ``input_kind``, see :func:`input_kind_of`):
    ``INPUT_FLOAT`` normalised float32 NCHW, or ``INPUT_UINT8`` the crops themselves (uint8 NHWC RGB; artifacts
    made with ``edgepose convert --input uint8`` normalise inside), which skips normalisation here.
    """

    spec: ModelSpec
    flip_test: bool | None = None  # None: the spec's setting (on, as in every zoo config)
    decoder: str = "default"
    input_kind: str = INPUT_FLOAT

    def __post_init__(self) -> None:
        if self.flip_test is None:
            self.flip_test = self.spec.flip_test
        if self.decoder not in DECODERS:
            raise EdgeposeError(f"unknown decoder {self.decoder!r}; choose one of {', '.join(DECODERS)}")
        if self.input_kind not in INPUT_KINDS:
            raise EdgeposeError(f"unknown input kind {self.input_kind!r}; choose one of {', '.join(INPUT_KINDS)}")

    @property
    def aspect_ratio(self) -> float:
        w, h = self.spec.input_size
        return w / h

    def boxes_to_center_scale(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return box_to_center_scale(boxes, self.aspect_ratio, self.spec.box_padding)

    def preprocess(self, image: np.ndarray, centers: np.ndarray, scales: np.ndarray) -> np.ndarray:
        """The model's input for these boxes: the uint8 crops (``INPUT_UINT8``) or their normalised floats."""
        crops = crop_batch(image, centers, scales, self.spec.input_size)
        return crops if self.input_kind == INPUT_UINT8 else normalize(crops, self.spec.mean, self.spec.std)

    def forward(self, infer: Infer, batch: np.ndarray, tick: Tick | None = None) -> np.ndarray:
        """Heatmaps for a batch (as :meth:`preprocess` makes it), averaged with the flipped pass when flip test
        is on (the flipped batch: :meth:`mirror`, the uint8 crops mirrored for ``INPUT_UINT8``).

        ``tick(stage)`` (optional) is called after each stage: "infer", then "flip" (second pass + merge).
        """
        heatmaps = np.asarray(infer(batch), dtype=np.float32)
        if tick:
            tick("infer")
        if self.flip_test:
            heatmaps = self.merge(heatmaps, np.asarray(infer(self.mirror(batch)), dtype=np.float32))
            if tick:
                tick("flip")
        return heatmaps

    def decode(self, heatmaps: np.ndarray, centers: np.ndarray, scales: np.ndarray) -> np.ndarray:
        return keypoints_from_heatmaps(heatmaps, centers, scales, self.decoder)

    def mirror(self, batch: np.ndarray) -> np.ndarray:
        """The flip test's input: ``batch`` mirrored horizontally (:func:`flip_batch`)."""
        return flip_batch(batch)

    def merge(self, heatmaps: np.ndarray, flipped: np.ndarray) -> np.ndarray:
        """The flip test's average of the two passes (:func:`merge_flip` with the spec's pairs and shift)."""
        return merge_flip(heatmaps, flipped, self.spec.flip_pairs, self.spec.shift_heatmap)

    def stream(self, infer: Infer, items, prefetch: int = 2):
        """Keypoints for each image or ``(image, boxes)`` of ``items``, in order, identical to calling the
        pipeline on each; crops and decoding run on a worker thread meanwhile (:mod:`edgepose.streaming`)."""
        from .streaming import stream

        return stream(self, infer, items, prefetch)

    def __call__(
        self, infer: Infer, image: np.ndarray, boxes: np.ndarray | None = None, tick: Tick | None = None
    ) -> np.ndarray:
        """Keypoints ``(N, K, 3)`` for each xywh box (the whole image when no box is given).

        ``tick(stage)`` (optional) is called after each stage, "pre" (centre/scale, crop, normalise), "infer",
        "flip" (with flip test) and "decode", so that a benchmark times the stages this very code runs.
        """
        if boxes is None or len(boxes) == 0:
            boxes = np.array([[0, 0, image.shape[1], image.shape[0]]], dtype=np.float32)
        centers, scales = self.boxes_to_center_scale(boxes)
        batch = self.preprocess(image, centers, scales)
        if tick:
            tick("pre")
        keypoints = self.decode(self.forward(infer, batch, tick), centers, scales)
        if tick:
            tick("decode")
        return keypoints
