"""Seeded synthetic person-keypoint data in COCO format, for the demo model and for tests.

numpy + OpenCV only. Each image holds one to three articulated stick-and-blob figures with all 17 COCO
keypoints, drawn over a cluttered, textured background, with occluder shapes and truncation at the border.
Figures face the camera (the face shows eyes and nose), so, as for real people, the person's left side is on
the image's right; the two sides are painted in two clearly different colours (a random pair per figure),
which keeps left and right distinguishable while a horizontal mirror still yields a valid figure (mmpose's
flip augmentation and flip test stay correct). Every image comes from its own generator seeded by
``(seed, index)``, so a split is reproducible byte for byte and independent of generation order.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .errors import EdgeposeError
from .files import atomic_write, json_text, parse_json, staging_dir
from .spec import DATASETS

__all__ = [
    "SPLITS", "SCENE_SPLITS", "VERSION", "render_image", "render_scene", "generate", "generate_scenes",
    "ensure_split", "ensure_scenes", "cache_root", "render_video", "generate_video", "VIDEO_SEED",
]  # fmt: skip

VERSION = "v1"
SCENES_VERSION = "s1"  # the scene renderer's own version (cache folder names), bumped when its output changes
# split -> (number of images, seed); train and val never share a seed
SPLITS: dict[str, tuple[int, int]] = {"val": (300, 20241), "train": (3000, 777)}
# multi-person scenes for the person detector: split -> (number of images, seed), seeds apart from SPLITS'
SCENE_SPLITS: dict[str, tuple[int, int]] = {"scenes_val": (300, 31337), "scenes_train": (3000, 4242)}
MIN_VISIBLE = 0.3  # a figure with less of its in-image silhouette visible is a crowd (ignore) region
K = 17
# keypoint indices
NOSE, LEYE, REYE, LEAR, REAR, LSHO, RSHO, LELB, RELB, LWRI, RWRI, LHIP, RHIP, LKNE, RKNE, LANK, RANK = range(K)


# ----------------------------------------------------------------------------------------- drawing
def _hsv_colour(h: float, s: float, v: float) -> tuple[int, int, int]:
    """An RGB uint8 colour from HSV in [0, 1]."""
    px = np.uint8([[[int(h * 179) % 180, int(s * 255), int(v * 255)]]])
    r, g, b = cv2.cvtColor(px, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A smooth two-colour gradient with noise, random shapes and stripes (clutter)."""
    c0 = rng.uniform(30, 225, 3).astype(np.float32)
    c1 = rng.uniform(30, 225, 3).astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    xx = np.arange(w, dtype=np.float32)[None, :] * np.float32(np.cos(ang) / w)
    yy = np.arange(h, dtype=np.float32)[:, None] * np.float32(np.sin(ang) / h)
    t = ((xx + yy + 1.0) * 0.5)[..., None]
    img = c0 * (1 - t) + c1 * t
    small = rng.normal(0, 18, (max(2, h // 16), max(2, w // 16), 3)).astype(np.float32)
    img += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(6, 16))):
        col = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 4)
        p = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        if kind == 0:
            q = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.rectangle(img, p, q, col, -1 if rng.random() < 0.6 else int(rng.integers(1, 4)))
        elif kind == 1:
            cv2.circle(img, p, int(rng.integers(5, max(6, min(w, h) // 5))), col, -1 if rng.random() < 0.6 else 2)
        elif kind == 2:
            q = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(img, p, q, col, int(rng.integers(1, 6)), cv2.LINE_AA)
        else:
            pts = rng.integers(0, [w, h], (int(rng.integers(3, 6)), 2)).astype(np.int32)
            cv2.fillPoly(img, [pts], col)
    if rng.random() < 0.5:  # stripes texture over a region
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        step = int(rng.integers(4, 12))
        col = tuple(int(c) for c in rng.integers(0, 256, 3))
        for k in range(0, max(w, h), step):
            cv2.line(img, (x0 + k, y0), (x0 + k - h // 3, y0 + h // 3), col, 1)
    img = cv2.GaussianBlur(img, (3, 3), 0)
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(2, 8))
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _rot(v: np.ndarray, deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _pose(rng: np.random.Generator, height: float) -> tuple[np.ndarray, float]:
    """17 keypoints (person-local, pelvis at origin, image axes: y down) and the head radius."""
    H = height
    kp = np.zeros((K, 2))
    yaw = float(np.clip(rng.normal(0, 0.3), -0.8, 0.8))  # face turned; >0: towards image right
    width = 0.55 + 0.45 * np.cos(yaw * 1.2)
    sw = H * rng.uniform(0.10, 0.135) * width  # shoulder half width
    hw = H * rng.uniform(0.065, 0.095) * width  # hip half width
    torso = H * rng.uniform(0.27, 0.32)
    lean = rng.normal(0, 6)
    up = _rot(np.array([0.0, -1.0]), lean)
    side = _rot(np.array([1.0, 0.0]), lean)  # person's left = image right (facing the camera)
    neck = up * torso
    kp[LHIP], kp[RHIP] = side * hw, -side * hw
    kp[LSHO], kp[RSHO] = neck + side * sw, neck - side * sw
    r = H * rng.uniform(0.055, 0.07)
    head = neck + up * (r * 1.55) + side * yaw * r * 0.25
    kp[NOSE] = head + side * yaw * r * 0.75 - up * r * 0.1
    for i, sgn in ((LEYE, 1), (REYE, -1)):
        kp[i] = head + side * (sgn * 0.38 * r * np.cos(yaw) + yaw * r * 0.55) + up * r * 0.22
    for i, sgn in ((LEAR, 1), (REAR, -1)):
        kp[i] = head + side * (sgn * 0.95 * r * np.cos(yaw * 0.8) - yaw * r * 0.3) + up * r * 0.05
    # arms: angle measured from "down", positive = away from the body
    ua, fa = H * rng.uniform(0.16, 0.2), H * rng.uniform(0.14, 0.17)
    for sho, elb, wri, sgn in ((LSHO, LELB, LWRI, 1), (RSHO, RELB, RWRI, -1)):
        a = rng.uniform(-25, 165) if rng.random() < 0.85 else rng.uniform(-60, 180)
        # positive abduction rotates "down" towards the person's side
        d = _rot(-up, -a) if sgn > 0 else _rot(-up, a)
        kp[elb] = kp[sho] + d * ua
        bend = rng.uniform(-150, 150) * (1 if rng.random() < 0.8 else 0.2)
        kp[wri] = kp[elb] + _rot(d, bend) * fa
    th, sh = H * rng.uniform(0.22, 0.26), H * rng.uniform(0.21, 0.25)
    for hip, kne, ank, sgn in ((LHIP, LKNE, LANK, 1), (RHIP, RKNE, RANK, -1)):
        a = rng.uniform(-12, 45) if rng.random() < 0.85 else rng.uniform(-30, 95)
        d = _rot(-up, -a) if sgn > 0 else _rot(-up, a)
        kp[kne] = kp[hip] + d * th
        bend = rng.uniform(0, 100) * (1 if rng.random() < 0.5 else -0.6)
        kp[ank] = kp[kne] + _rot(d, bend) * sh
    return kp, r


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0] * 16)), int(round(p[1] * 16))  # 4 fractional bits for cv2 shift=4


def _limb(canvas: np.ndarray, mask: np.ndarray, a, b, col, thick: int, fid: int) -> None:
    dark = tuple(int(c * 0.55) for c in col)
    cv2.line(canvas, _pt(a), _pt(b), dark, thick + 2, cv2.LINE_AA, 4)
    cv2.line(canvas, _pt(a), _pt(b), col, thick, cv2.LINE_AA, 4)
    cv2.line(mask, _pt(a), _pt(b), fid, thick + 2, cv2.LINE_8, 4)


def _disc(canvas: np.ndarray, mask: np.ndarray, c, rad: float, col, fid: int, outline=None) -> None:
    rr = max(1, int(round(rad * 16)))
    cv2.circle(canvas, _pt(c), rr, col, -1, cv2.LINE_AA, 4)
    if outline is not None:
        cv2.circle(canvas, _pt(c), rr, outline, 1, cv2.LINE_AA, 4)
    cv2.circle(mask, _pt(c), rr, fid, -1, cv2.LINE_8, 4)


def _draw_figure(
    rng: np.random.Generator, img: np.ndarray, ids: np.ndarray, kp: np.ndarray, r: float, height: float, fid: int
) -> np.ndarray:
    """Paint one figure; returns its own silhouette mask."""
    own = np.zeros(ids.shape, np.uint8)
    layer_ids = np.zeros(ids.shape, np.uint8)
    hue = rng.uniform(0, 1)
    left_col = _hsv_colour(hue, rng.uniform(0.7, 1.0), rng.uniform(0.75, 1.0))
    right_col = _hsv_colour((hue + rng.uniform(0.35, 0.65)) % 1.0, rng.uniform(0.7, 1.0), rng.uniform(0.75, 1.0))
    body_col = _hsv_colour(rng.uniform(0, 1), rng.uniform(0.0, 0.6), rng.uniform(0.3, 0.9))
    skin = _hsv_colour(rng.uniform(0.02, 0.1), rng.uniform(0.25, 0.6), rng.uniform(0.45, 0.95))
    t_arm, t_fore = max(2, int(height * 0.05)), max(2, int(height * 0.042))
    t_thigh, t_shin = max(2, int(height * 0.065)), max(2, int(height * 0.052))

    def legs():
        for hip, kne, ank, col in ((LHIP, LKNE, LANK, left_col), (RHIP, RKNE, RANK, right_col)):
            _limb(img, layer_ids, kp[hip], kp[kne], col, t_thigh, fid)
            _limb(img, layer_ids, kp[kne], kp[ank], col, t_shin, fid)
            _disc(img, layer_ids, kp[kne], t_thigh * 0.45, tuple(int(c * 0.7) for c in col), fid)
            _disc(img, layer_ids, kp[ank], t_shin * 0.7, (40, 40, 40), fid)

    def arm(sho, elb, wri, col):
        _limb(img, layer_ids, kp[sho], kp[elb], col, t_arm, fid)
        _limb(img, layer_ids, kp[elb], kp[wri], col, t_fore, fid)
        _disc(img, layer_ids, kp[elb], t_arm * 0.45, tuple(int(c * 0.7) for c in col), fid)
        _disc(img, layer_ids, kp[wri], t_fore * 0.75, skin, fid)

    def torso():
        poly = np.array([kp[LSHO], kp[RSHO], kp[RHIP], kp[LHIP]])
        cv2.fillPoly(img, [np.round(poly * 16).astype(np.int32)], body_col, cv2.LINE_AA, 4)
        cv2.fillPoly(layer_ids, [np.round(poly * 16).astype(np.int32)], fid, cv2.LINE_8, 4)
        # shoulder and hip caps in the side colours (the side cue lives at the joint too)
        for j, col in ((LSHO, left_col), (RSHO, right_col), (LHIP, left_col), (RHIP, right_col)):
            _disc(img, layer_ids, kp[j], t_arm * 0.6, col, fid)
        neck = (kp[LSHO] + kp[RSHO]) / 2
        head = (kp[LEAR] + kp[REAR]) / 2
        _limb(img, layer_ids, neck, head, skin, max(2, int(r * 0.8)), fid)

    def head():
        c = (kp[LEAR] + kp[REAR]) / 2
        _disc(img, layer_ids, c, r, skin, fid, outline=tuple(int(v * 0.6) for v in skin))
        hair = tuple(int(v) for v in rng.integers(10, 120, 3))
        cv2.ellipse(img, _pt(c), (int(r * 16), int(r * 0.7 * 16)), 0, 180, 360, hair, -1, cv2.LINE_AA, 4)
        for e, col in ((LEAR, left_col), (REAR, right_col)):
            _disc(img, layer_ids, kp[e], r * 0.3, col, fid)
        for e in (LEYE, REYE):
            _disc(img, layer_ids, kp[e], max(1.0, r * 0.14), (15, 15, 15), fid)
        _disc(img, layer_ids, kp[NOSE], max(1.0, r * 0.14), (200, 40, 40), fid)

    order = rng.random()
    legs()
    if order < 0.3:  # one arm behind the body
        back, front = ((LSHO, LELB, LWRI, left_col), (RSHO, RELB, RWRI, right_col))[:: 1 if rng.random() < 0.5 else -1]
        arm(*back)
        torso()
        head()
        arm(*front)
    else:
        torso()
        arm(LSHO, LELB, LWRI, left_col)
        arm(RSHO, RELB, RWRI, right_col)
        head()
    own[layer_ids == fid] = 1
    ids[layer_ids == fid] = fid
    return own


def _occluder(rng: np.random.Generator, img: np.ndarray, ids: np.ndarray, box: np.ndarray) -> None:
    """A textured rectangle or ellipse over part of a figure's box (id 255)."""
    x, y, w, h = box
    cx, cy = x + rng.uniform(0, 1) * w, y + rng.uniform(0.1, 1) * h
    ow, oh = w * rng.uniform(0.2, 0.5), h * rng.uniform(0.12, 0.3)
    col = tuple(int(c) for c in rng.integers(0, 256, 3))
    m = np.zeros(ids.shape, np.uint8)
    if rng.random() < 0.5:
        p, q = (int(cx - ow / 2), int(cy - oh / 2)), (int(cx + ow / 2), int(cy + oh / 2))
        cv2.rectangle(img, p, q, col, -1)
        cv2.rectangle(m, p, q, 1, -1)
    else:
        axes = (max(1, int(ow / 2)), max(1, int(oh / 2)))
        ang = rng.uniform(0, 180)
        cv2.ellipse(img, (int(cx), int(cy)), axes, ang, 0, 360, col, -1)
        cv2.ellipse(m, (int(cx), int(cy)), axes, ang, 0, 360, 1, -1)
    col2 = tuple(int(c) for c in rng.integers(0, 256, 3))
    stripes = np.zeros(ids.shape, np.uint8)
    step = int(rng.integers(3, 8))
    for k in range(-img.shape[0], img.shape[1], step):
        cv2.line(stripes, (k, 0), (k + img.shape[0], img.shape[0]), 1, 1)
    sel = (m > 0) & (stripes > 0)
    img[sel] = col2
    ids[m > 0] = 255


def render_image(
    rng: np.random.Generator, size: tuple[int, int] | None = None, max_persons: int = 3
) -> tuple[np.ndarray, list[dict]]:
    """One RGB image and its persons: ``[{'keypoints': (17, 3) float, 'bbox': [x, y, w, h]}]``.

    ``keypoints`` rows are ``x, y, v`` with v=2 visible, v=1 occluded (by another figure or an occluder),
    v=0 outside the image (x = y = 0 then).
    """
    if size is None:
        w, h = int(rng.integers(256, 401)), int(rng.integers(256, 401))
    else:
        w, h = size
    img = _background(rng, w, h)
    ids = np.zeros((h, w), np.uint8)
    n = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25])) if max_persons >= 3 else int(rng.integers(1, max_persons + 1))
    figures = []
    for i in range(n):
        frac = rng.uniform(0.6, 0.95) if n == 1 else rng.uniform(0.4, 0.8)
        height = frac * h
        kp, r = _pose(rng, height)
        ang = float(np.clip(rng.normal(0, 12), -35, 35)) if rng.random() < 0.85 else float(rng.uniform(-90, 90))
        kp = np.array([_rot(p, ang) for p in kp])
        lo, hi = kp.min(0), kp.max(0)
        # place the figure; mostly inside, sometimes pushed past a border (truncation)
        slack = 0.25 if rng.random() < 0.25 else 0.0
        span = hi - lo
        ox = rng.uniform(-lo[0] - slack * span[0], w - hi[0] + slack * span[0]) if w > span[0] else -lo[0]
        oy = rng.uniform(-lo[1] - slack * span[1], h - hi[1] + slack * span[1]) if h > span[1] else -lo[1]
        if n > 1:  # spread people across the image
            ox = float(np.clip(ox + (i - (n - 1) / 2) * w / n * 0.5, -lo[0] - slack * span[0], w - hi[0] + 1))
        kp = kp + np.array([ox, oy])
        own = _draw_figure(rng, img, ids, kp, r, height, fid=i + 1)
        figures.append((kp, own))
    boxes = []
    for _kp, own in figures:
        ys, xs = np.nonzero(own)
        boxes.append(
            np.array([xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1], float)
            if len(xs)
            else np.zeros(4)
        )
    for b in boxes:
        if rng.random() < 0.35 and b[2] > 0:
            _occluder(rng, img, ids, b)
    persons = []
    for i, (kp, _own) in enumerate(figures):
        out = np.zeros((K, 3))
        for j in range(K):
            x, y = kp[j]
            if not (0 <= x < w and 0 <= y < h):
                continue
            xi, yi = int(x), int(y)
            vis = ids[yi, xi] == i + 1
            out[j] = (x, y, 2 if vis else 1)
        if (out[:, 2] > 0).sum() == 0 or boxes[i][2] < 2 or boxes[i][3] < 2:
            continue
        persons.append({"keypoints": out, "bbox": boxes[i]})
    return img, persons


def _keypoints_of(kp: np.ndarray, ids: np.ndarray, fid: int) -> np.ndarray:
    h, w = ids.shape
    out = np.zeros((K, 3))
    for j in range(K):
        x, y = kp[j]
        if 0 <= x < w and 0 <= y < h:
            out[j] = (x, y, 2 if ids[int(y), int(x)] == fid else 1)
    return out


def render_scene(
    rng: np.random.Generator, size: tuple[int, int] | None = None, max_persons: int = 6, occlusion: float = 0.25
) -> tuple[np.ndarray, list[dict]]:
    """One RGB frame with zero to ``max_persons`` figures, for the person detector.

    Figures of many sizes (8% to 110% of the frame height, log-uniform), overlapping (drawn far to near: smaller
    first), often cut by the frame's edge, over the cluttered background, with occluders. Returns the image and
    ``[{'bbox': [x, y, w, h], 'keypoints': (17, 3), 'iscrowd': 0|1, 'visible': fraction}]``. ``bbox`` is the
    true visible extent of the figure: the bounding box (pixel edges) of its pixels left in the final image
    after later figures and occluders painted over it. A figure with under :data:`MIN_VISIBLE` of its in-frame
    silhouette visible, or under 4 px wide or high, is marked ``iscrowd`` (COCOeval ignores detections on it).
    ``occlusion`` is the chance of an occluder shape over each figure.
    """
    if size is None:
        w = int(rng.integers(288, 481))
        h = int(np.clip(round(w / rng.uniform(0.75, 1.8)), 200, 480))
    else:
        w, h = size
    img = _background(rng, w, h)
    ids = np.zeros((h, w), np.uint8)
    n = int(rng.choice(np.arange(max_persons + 1), p=_scene_counts(max_persons)))
    heights = np.sort(np.exp(rng.uniform(np.log(0.08), np.log(1.1), n)) * h)  # far (small) first, near last
    figures = []
    for i, height in enumerate(heights):
        kp, r = _pose(rng, float(height))
        ang = float(np.clip(rng.normal(0, 10), -30, 30)) if rng.random() < 0.9 else float(rng.uniform(-90, 90))
        kp = np.array([_rot(p, ang) for p in kp])
        lo, hi = kp.min(0), kp.max(0)
        span = hi - lo
        slack = 0.4 if rng.random() < 0.3 else 0.0  # cut by the frame's edge
        ox = rng.uniform(-lo[0] - slack * span[0], max(-lo[0] - slack * span[0] + 1, w - hi[0] + slack * span[0]))
        oy = rng.uniform(-lo[1] - slack * span[1], max(-lo[1] - slack * span[1] + 1, h - hi[1] + slack * span[1]))
        kp = kp + np.array([ox, oy])
        own = _draw_figure(rng, img, ids, kp, r, float(height), fid=i + 1)
        figures.append((kp, int(own.sum())))
    for i in range(len(figures)):
        ys, xs = np.nonzero(ids == i + 1)
        if len(xs) and rng.random() < occlusion:
            _occluder(rng, img, ids, np.array([xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]))
    persons = []
    for i, (kp, own_px) in enumerate(figures):
        ys, xs = np.nonzero(ids == i + 1)
        if not len(xs):
            continue
        box = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
        visible = len(xs) / max(own_px, 1)
        crowd = int(visible < MIN_VISIBLE or box[2] < 4 or box[3] < 4)
        persons.append({"bbox": box, "keypoints": _keypoints_of(kp, ids, i + 1), "iscrowd": crowd, "visible": visible})
    return img, persons


VIDEO_SEED = 2525  # edgepose synth --video's default seed (apart from every split's)


def _swing(kp: np.ndarray, pivot: int, joints: tuple[int, int], deg: float) -> None:
    """Rotate ``joints`` of ``kp`` (in place) about the keypoint ``pivot`` by ``deg``."""
    for j in joints:
        kp[j] = kp[pivot] + _rot(kp[j] - kp[pivot], deg)


def render_video(
    seed: int = VIDEO_SEED, num_frames: int = 40, size: tuple[int, int] = (320, 256), persons: int = 3
):
    """Frames of one sequence of ``persons`` moving figures: yields ``(image, people)`` per frame.

    Each figure keeps its build, colours and depth for the whole sequence (its pose and drawing generators are
    seeded by ``(seed, figure)``); it walks across a fixed background at its own speed, bouncing off the frame's
    sides, arms and legs swinging, so figures pass in front of each other (nearer = taller = drawn later).
    ``people``: ``[{'track_id', 'bbox' (visible extent, x y w h), 'keypoints' (17, 3), 'iscrowd', 'visible'}]``
    with the rules of :func:`render_scene` (a keypoint hidden by a nearer figure has visibility 1).
    """
    w, h = size
    background = _background(np.random.default_rng([seed, 0]), w, h)
    figs = []
    for f in range(persons):
        rng = np.random.default_rng([seed, 1, f])
        height = float(rng.uniform(0.4, 0.7) * h)
        kp, r = _pose(rng, height)
        lo, hi = kp.min(0), kp.max(0)
        x_min, x_max = -lo[0] + 2, max(-lo[0] + 3, w - hi[0] - 2)
        y = float(rng.uniform(-lo[1] + 2, max(-lo[1] + 3, h - hi[1] - 2)))
        figs.append({
            "kp": kp, "r": r, "height": height, "x_min": x_min, "span": x_max - x_min, "y": y,
            "x0": float(rng.uniform(0, 1)),
            "speed": float(rng.uniform(0.012, 0.03)) * (1 if rng.random() < 0.5 else -1),
            "phase": float(rng.uniform(0, 2 * np.pi)), "period": float(rng.uniform(14, 24)), "track_id": f + 1,
        })  # fmt: skip
    order = sorted(range(persons), key=lambda f: figs[f]["height"])  # far (short) first
    for t in range(num_frames):
        img = background.copy()
        ids = np.zeros((h, w), np.uint8)
        placed = {}
        for f in order:
            g = figs[f]
            u = (g["x0"] + g["speed"] * t) % 2.0
            u = u if u <= 1.0 else 2.0 - u  # back and forth across the frame
            kp = g["kp"].copy()
            a = 25.0 * np.sin(2 * np.pi * t / g["period"] + g["phase"])
            _swing(kp, LSHO, (LELB, LWRI), a)
            _swing(kp, RSHO, (RELB, RWRI), -a)
            _swing(kp, LHIP, (LKNE, LANK), -0.5 * a)
            _swing(kp, RHIP, (RKNE, RANK), 0.5 * a)
            kp = kp + np.array([g["x_min"] + u * g["span"], g["y"] + 2.0 * np.sin(4 * np.pi * t / g["period"])])
            own = _draw_figure(np.random.default_rng([seed, 2, f]), img, ids, kp, g["r"], g["height"], fid=f + 1)
            placed[f] = (kp, int(own.sum()))
        people = []
        for f in range(persons):
            kp, own_px = placed[f]
            ys, xs = np.nonzero(ids == f + 1)
            if not len(xs):
                continue
            box = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
            visible = len(xs) / max(own_px, 1)
            crowd = int(visible < MIN_VISIBLE or box[2] < 4 or box[3] < 4)
            people.append({"track_id": f + 1, "bbox": box, "keypoints": _keypoints_of(kp, ids, f + 1),
                           "iscrowd": crowd, "visible": visible})  # fmt: skip
        yield img, people


def generate_video(
    out_dir: str | Path, num_frames: int = 40, seed: int = VIDEO_SEED, persons: int = 3,
    size: tuple[int, int] = (320, 256), fps: float = 10.0,
) -> tuple[Path, Path]:
    """``out_dir/video.mp4`` (MPEG-4 part 2) and ``out_dir/annotations.json``: one COCO image per frame (``id`` =
    frame index + 1, ``frame_index``), keypoints and visible-extent boxes with ``track_id``; ``(ann, video)``.

    The video is written under a temporary name and renamed when complete; ground truth comes from the geometry
    (the lossy codec does not change it).
    """
    from .files import atomic_path

    if num_frames < 1 or persons < 1:
        raise EdgeposeError(f"a synthetic video needs at least 1 frame and 1 person, got {num_frames}, {persons}")
    out_dir = Path(out_dir)
    video = out_dir / "video.mp4"
    images, anns = [], []
    with atomic_path(video, suffix=".mp4") as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not writer.isOpened():
            raise EdgeposeError(f"{video}: OpenCV cannot write MPEG-4 video here")
        try:
            for t, (img, people) in enumerate(render_video(seed, num_frames, size, persons)):
                writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
                images.append({"id": t + 1, "file_name": f"{video.name}#{t}", "frame_index": t,
                               "width": size[0], "height": size[1]})  # fmt: skip
                for p in people:
                    kp = p["keypoints"]
                    x, y, bw, bh = p["bbox"]
                    anns.append({
                        "id": len(anns) + 1, "image_id": t + 1, "category_id": 1, "iscrowd": p["iscrowd"],
                        "track_id": p["track_id"], "bbox": [x, y, bw, bh], "area": bw * bh,
                        "keypoints": [v for row in kp for v in (round(float(row[0]), 2), round(float(row[1]), 2),
                                                                 int(row[2]))],
                        "num_keypoints": int((kp[:, 2] > 0).sum()), "visible": round(p["visible"], 3),
                    })  # fmt: skip
        finally:
            writer.release()
    doc = {
        "info": {"description": "edgepose synthetic video (moving figures with track ids)", "version": VERSION,
                 "seed": seed, "fps": fps, "video": video.name, "num_frames": num_frames},
        "images": images, "annotations": anns, "categories": _categories(),
    }  # fmt: skip
    ann_path = out_dir / "annotations.json"
    atomic_write(ann_path, json_text(doc, str(ann_path), separators=(",", ":")))
    return ann_path, video


def _scene_counts(max_persons: int) -> np.ndarray:
    """P(number of figures): a few empty frames, mostly one to four, up to ``max_persons``."""
    if max_persons < 1:
        return np.ones(1)
    p = np.array([0.04] + [1.0 / (1 + 0.35 * k) for k in range(max_persons)])
    p[1:] *= 0.96 / p[1:].sum()
    return p


# ----------------------------------------------------------------------------------------- splits
def cache_root() -> Path:
    """``$EDGEPOSE_CACHE/synthetic`` (default ``~/.cache/edgepose/synthetic``)."""
    from .files import cache_dir

    return cache_dir("synthetic")


def _categories() -> list[dict]:
    info = DATASETS["coco"]
    return [{
        "id": 1, "name": "person", "supercategory": "person",
        "keypoints": list(info.keypoints),
        "skeleton": [[a + 1, b + 1] for a, b in info.skeleton],  # COCO json skeletons are 1-based
    }]  # fmt: skip


def _split_args(split: str, table: dict, what: str, num_images, seed) -> tuple[int, int]:
    """(images, seed) of a named split in ``table``, or the ones given; one error line for an unknown split."""
    if split not in table and (num_images is None or seed is None):
        raise EdgeposeError(f"unknown {what} {split!r}; choose one of {', '.join(table)} or give images and seed")
    n_def, s_def = table.get(split, (0, 0))
    num_images = n_def if num_images is None else int(num_images)
    seed = s_def if seed is None else int(seed)
    if num_images < 1:
        raise EdgeposeError(f"--num-images must be at least 1, got {num_images}")
    return num_images, seed


def generate(out_dir: str | Path, split: str = "val", num_images: int | None = None, seed: int | None = None):
    """Write ``out_dir/images/*.jpg`` and ``out_dir/annotations.json``; returns ``(ann_path, images_dir)``.

    Defaults come from :data:`SPLITS`. The same seed gives byte-identical files. Everything is made in a
    hidden staging folder inside ``out_dir`` and moved into place when complete: an interrupted run leaves no
    images without their annotations, and a re-run replaces the images of an earlier one instead of mixing
    with them. An ``images/`` folder holding files this function did not make is refused, never replaced.
    """
    num_images, seed = _split_args(split, SPLITS, "split", num_images, seed)
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    if images_dir.is_dir() and any(images_dir.iterdir()) and not _is_synthetic(out_dir / "annotations.json"):
        raise EdgeposeError(f"{images_dir}: holds files that are not an earlier synth's (no edgepose synthetic "
                            "annotations.json beside them); choose another --out, or remove them")  # fmt: skip
    made = [d for d in (out_dir, *out_dir.parents) if not d.exists()]
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(out_dir, "synth")
    try:
        ann_path = _generate(staging, split, num_images, seed)
        if images_dir.exists():
            os.replace(images_dir, staging / "old-images")
        os.replace(staging / "images", images_dir)
        os.replace(ann_path, out_dir / "annotations.json")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not (out_dir / "annotations.json").is_file():
            for d in made:  # the folders this run made, innermost first, when left empty
                with contextlib.suppress(OSError):
                    d.rmdir()
    return out_dir / "annotations.json", images_dir


def _is_synthetic(ann: Path) -> bool:
    """Whether ``ann`` is an annotations.json this module wrote (its images may then be replaced)."""
    try:
        doc = parse_json(ann.read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    info = doc.get("info") if isinstance(doc, dict) else None
    return isinstance(info, dict) and str(info.get("description", "")).startswith("edgepose synthetic ")


def _generate(out_dir: Path, split: str, num_images: int, seed: int) -> Path:
    images_dir = out_dir / "images"
    images_dir.mkdir()
    images, anns = [], []
    ann_id = 1
    for i in range(num_images):
        rng = np.random.default_rng([seed, i])
        img, persons = render_image(rng)
        name = f"{split}_{i:06d}.jpg"
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise EdgeposeError(f"{images_dir / name}: JPEG encoding failed")
        (images_dir / name).write_bytes(buf.tobytes())
        image_id = i + 1
        images.append({"id": image_id, "file_name": name, "width": img.shape[1], "height": img.shape[0]})
        for p in persons:
            kp = p["keypoints"]
            x, y, bw, bh = (float(v) for v in p["bbox"])
            anns.append({
                "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "bbox": [round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)],
                "area": round(bw * bh, 2),
                "keypoints": [v for row in kp for v in (round(float(row[0]), 2), round(float(row[1]), 2), int(row[2]))],
                "num_keypoints": int((kp[:, 2] > 0).sum()),
            })  # fmt: skip
            ann_id += 1
        if sys.stderr.isatty() and (i + 1) % 50 == 0:
            print(f"\r{split}: {i + 1}/{num_images} images", end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty() and num_images >= 50:
        print(file=sys.stderr)
    doc = {
        "info": {"description": f"edgepose synthetic {split} split", "version": VERSION, "seed": seed},
        "images": images, "annotations": anns, "categories": _categories(),
    }  # fmt: skip
    ann_path = out_dir / "annotations.json"
    atomic_write(ann_path, json_text(doc, str(ann_path), separators=(",", ":")))
    return ann_path


def generate_scenes(
    out_dir: str | Path, split: str = "scenes_val", num_images: int | None = None, seed: int | None = None
) -> tuple[Path, Path]:
    """Multi-person scenes (:func:`render_scene`) as COCO person boxes (+ keypoints): ``(ann_path, images_dir)``.

    Defaults come from :data:`SCENE_SPLITS` (train and val from different seeds); the same seed gives
    byte-identical files. Crowd figures (mostly hidden, tiny) carry ``iscrowd: 1``.
    """
    num_images, seed = _split_args(split, SCENE_SPLITS, "scene split", num_images, seed)
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(num_images):
        img, persons = render_scene(np.random.default_rng([seed, i]))
        name = f"{split}_{i:06d}.jpg"
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise EdgeposeError(f"{images_dir / name}: JPEG encoding failed")
        (images_dir / name).write_bytes(buf.tobytes())
        images.append({"id": i + 1, "file_name": name, "width": img.shape[1], "height": img.shape[0]})
        for p in persons:
            kp = p["keypoints"]
            x, y, bw, bh = p["bbox"]
            anns.append({
                "id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": p["iscrowd"],
                "bbox": [x, y, bw, bh], "area": bw * bh,
                "keypoints": [v for row in kp for v in (round(float(row[0]), 2), round(float(row[1]), 2), int(row[2]))],
                "num_keypoints": int((kp[:, 2] > 0).sum()), "visible": round(p["visible"], 3),
            })  # fmt: skip
    doc = {
        "info": {"description": f"edgepose synthetic {split} split (multi-person scenes)", "version": VERSION,
                 "seed": seed},
        "images": images, "annotations": anns, "categories": _categories(),
    }  # fmt: skip
    ann_path = out_dir / "annotations.json"
    atomic_write(ann_path, json_text(doc, str(ann_path), separators=(",", ":")))
    return ann_path, images_dir


def ensure_scenes(split: str = "scenes_val") -> tuple[Path, Path]:
    """The cached scene split (generated on first use, atomically): ``(ann_path, images_dir)``."""
    if split not in SCENE_SPLITS:
        raise EdgeposeError(f"unknown scene split {split!r}; choose one of {', '.join(SCENE_SPLITS)}")
    return _ensure(split, generate_scenes, SCENES_VERSION)


def ensure_split(split: str = "val") -> tuple[Path, Path]:
    """The cached split (generated on first use, atomically): ``(ann_path, images_dir)``."""
    if split not in SPLITS:
        raise EdgeposeError(f"unknown synthetic split {split!r}; choose one of {', '.join(SPLITS)}")
    return _ensure(split, generate, VERSION)


def _ensure(split: str, make, version: str) -> tuple[Path, Path]:
    final = cache_root() / f"{split}-{version}"
    ann, imgs = final / "annotations.json", final / "images"
    if ann.is_file() and imgs.is_dir():
        return ann, imgs
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{split}-{version}."))
    try:
        make(tmp, split)
        try:
            os.replace(tmp, final)
        except OSError:  # another process won the race; use its copy
            if not (ann.is_file() and imgs.is_dir()):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ann, imgs
