"""Calibration sets for INT8 conversion: crops made by the shared pipeline, stored as a compressed ``.npz``.

A set holds ``crops`` (N, H, W, 3) uint8 RGB, made exactly as inference makes them (box -> centre/scale ->
affine crop, :mod:`edgepose.processing`), ``holdout`` (M, H, W, 3) crops from *other* images that the
converters use for the parity check and never calibrate on, and ``meta`` (a JSON string: model, input size,
source, seed, image names). numpy + OpenCV only; bad files raise a one-line :class:`EdgeposeError`.

By default a set is refused from an evaluation split (an annotation file or folder named val/test, or the
synthetic val split): calibrating on the images you then score on flatters the INT8 numbers.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import EdgeposeError
from .files import atomic_path, cache_dir, json_text, parse_json
from .npz import MAX_ARRAY_BYTES, read_npz
from .processing import box_to_center_scale, crop, normalize, read_image
from .spec import ModelSpec

__all__ = [
    "CalibrationSet",
    "read_calibration",
    "write_calibration",
    "make_calibration",
    "from_image_folder",
    "from_dataset",
    "is_eval_split",
    "default_calibration_path",
    "synthetic_calibration",
    "calibration_dirs",
    "check_calibration",
    "scene_frames",
    "synthetic_scene_calibration",
]

FORMAT_VERSION = 1
FLAT_STD = 2.0  # a crop whose pixels vary by less than this (grey levels, std) is near-constant: no content
MIN_DISTINCT = 4  # fewer distinct crops with content than this cannot give INT8 ranges worth having
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
_EVAL_RE = re.compile(r"(?<![a-z])(val|valid|validation|test|testdev|eval)(?![a-z])")


log = logging.getLogger(__name__)


@dataclass
class CalibrationSet:
    """Crops for calibration and held-out crops for parity, with where they came from."""

    crops: np.ndarray  # (N, H, W, 3) uint8 RGB
    holdout: np.ndarray  # (M, H, W, 3) uint8 RGB, from images not used in ``crops``
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def input_size(self) -> tuple[int, int]:
        """(W, H) of the crops."""
        return int(self.crops.shape[2]), int(self.crops.shape[1])

    def calibration_batch(self, spec: ModelSpec, num: int | None = None) -> np.ndarray:
        """The first ``num`` crops, normalised for ``spec``: float32 NCHW."""
        return normalize(self.crops[:num], spec.mean, spec.std)


# ------------------------------------------------------------------------------------------- files
def read_calibration(path: str | Path, spec: ModelSpec | None = None) -> CalibrationSet:
    """Read and check a calibration file; with ``spec``, the crops must have its input size."""
    path = Path(path)
    if not path.is_file():
        raise EdgeposeError(f"{path}: calibration file not found")
    arrays = read_npz(path, "calibration file (an .npz from 'edgepose calibrate')")
    if "crops_jpeg" in arrays and "crops" not in arrays:
        try:
            shape = tuple(int(v) for v in np.asarray(arrays["shape"]).reshape(-1))
            for name in ("crops", "holdout"):
                if f"{name}_jpeg" in arrays:
                    arrays[name] = _decode_jpeg(path, arrays[f"{name}_jpeg"], arrays[f"{name}_jpeg_sizes"], shape)
        except (KeyError, ValueError, TypeError, OverflowError) as e:
            raise EdgeposeError(f"{path}: JPEG-encoded calibration file is incomplete ({e})") from None
    if "crops" not in arrays:
        raise EdgeposeError(f"{path}: calibration file has no 'crops' array (found: {', '.join(arrays) or 'none'})")
    crops = arrays["crops"]
    holdout = arrays.get("holdout", np.zeros((0,) + crops.shape[1:], dtype=np.uint8))
    for name, a in (("crops", crops), ("holdout", holdout)):
        if a.dtype != np.uint8 or a.ndim != 4 or a.shape[3] != 3:
            raise EdgeposeError(
                f"{path}: '{name}' must be uint8 (N, H, W, 3) RGB crops, got {a.dtype} {tuple(a.shape)}"
            )
    if len(crops) == 0:
        raise EdgeposeError(f"{path}: calibration file holds no crops")
    if len(holdout) and holdout.shape[1:] != crops.shape[1:]:
        raise EdgeposeError(f"{path}: 'holdout' crops {holdout.shape[1:3]} differ in size from {crops.shape[1:3]}")
    meta: dict[str, Any] = {}
    if "meta" in arrays:
        try:
            meta = parse_json(str(arrays["meta"]))
        except (ValueError, RecursionError) as e:
            raise EdgeposeError(f"{path}: calibration metadata is not valid JSON ({e})") from None
        if not isinstance(meta, dict):
            raise EdgeposeError(f"{path}: calibration metadata is not a JSON object")
    cset = CalibrationSet(crops, holdout, meta, path)
    if spec is not None and cset.input_size != tuple(spec.input_size):
        raise EdgeposeError(
            f"{path}: crops are {cset.input_size[0]}x{cset.input_size[1]} (WxH) but model {spec.name} takes "
            f"{spec.input_size[0]}x{spec.input_size[1]}; make a set with 'edgepose calibrate --model {spec.name}'"
        )
    return cset


def check_calibration(cset: CalibrationSet, num: int | None = None, spec: ModelSpec | None = None) -> dict[str, Any]:
    """Refuse, with one line, a set that INT8 cannot be calibrated on; returns what was checked.

    Checked on the first ``num`` crops (the ones calibration uses) and on the holdout (the parity inputs):
    crops of another size than ``spec``'s input; more than half of them near-constant (pixel std below
    ``FLAT_STD`` grey levels: black, white or flat crops give activation ranges of a blank image); fewer than
    ``MIN_DISTINCT`` distinct crops with content. A valid but useless set would otherwise give an INT8 model
    whose parity check passes on its own blank holdout crops while its accuracy collapses.
    """
    import hashlib

    name = cset.path or "calibration set"
    crops = cset.crops[:num] if num else cset.crops
    if spec is not None and cset.input_size != tuple(spec.input_size):
        raise EdgeposeError(f"{name}: crops are {cset.input_size[0]}x{cset.input_size[1]} (WxH) but model "
                            f"{spec.name} takes {spec.input_size[0]}x{spec.input_size[1]}")  # fmt: skip

    def flat(a: np.ndarray) -> np.ndarray:
        return np.array([float(c.std()) < FLAT_STD for c in a], dtype=bool)

    is_flat = flat(crops)
    if len(crops) and is_flat.mean() > 0.5:
        black = " (all black)" if not crops.any() else ""
        raise EdgeposeError(
            f"{name}: {int(is_flat.sum())} of {len(crops)} calibration crops are near-constant{black} (pixel std < "
            f"{FLAT_STD:g} grey levels); INT8 ranges fitted to them are useless: make a set from real images with "
            "'edgepose calibrate'"
        )
    distinct = len({hashlib.sha1(c.tobytes()).digest() for c, f in zip(crops, is_flat) if not f})
    if distinct < MIN_DISTINCT:
        raise EdgeposeError(f"{name}: only {distinct} distinct calibration crops with content (at least "
                            f"{MIN_DISTINCT} needed); make a larger set with 'edgepose calibrate'")  # fmt: skip
    hold_flat = flat(cset.holdout)
    if len(cset.holdout) and hold_flat.mean() > 0.5:
        raise EdgeposeError(f"{name}: {int(hold_flat.sum())} of {len(cset.holdout)} holdout crops are "
                            "near-constant; the parity check would compare blank inputs")  # fmt: skip
    return {"crops": int(len(crops)), "near_constant": int(is_flat.sum()), "distinct_with_content": distinct,
            "holdout": int(len(cset.holdout)), "holdout_near_constant": int(hold_flat.sum())}  # fmt: skip


def write_calibration(path: str | Path, cset: CalibrationSet, jpeg_quality: int | None = None) -> Path:
    """Write a compressed ``.npz`` atomically (temp file in the same folder, then rename).

    ``jpeg_quality`` stores each crop JPEG-encoded (``crops_jpeg`` + ``crops_jpeg_sizes``; a tenth of the size,
    for sets shipped with edgepose); reading decodes them, so calibration and parity see the decoded pixels.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(cset.meta)
    arrays: dict[str, np.ndarray] = {}
    if jpeg_quality:
        meta["encoding"] = f"jpeg{int(jpeg_quality)}"
        for name, a in (("crops", cset.crops), ("holdout", cset.holdout)):
            data, sizes = _encode_jpeg(a, int(jpeg_quality))
            arrays[f"{name}_jpeg"], arrays[f"{name}_jpeg_sizes"] = data, sizes
        arrays["shape"] = np.array(cset.crops.shape[1:], dtype=np.int64)
    else:
        meta["encoding"] = "raw"
        arrays.update(crops=cset.crops, holdout=cset.holdout)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, meta=np.array(json_text(meta, str(path))), **arrays)
    return path


def _encode_jpeg(crops: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    blobs = []
    for c in crops:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(c, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise EdgeposeError("JPEG encoding of a calibration crop failed")
        blobs.append(buf.reshape(-1))
    sizes = np.array([len(b) for b in blobs], dtype=np.int64)
    return (np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)), sizes


def _decode_jpeg(path: Path, data: np.ndarray, sizes: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    import cv2

    data, sizes = np.asarray(data).reshape(-1), np.asarray(sizes).reshape(-1)
    if len(shape) != 3 or shape[2] != 3 or not (0 < shape[0] <= 8192 and 0 < shape[1] <= 8192):
        raise EdgeposeError(f"{path}: JPEG crops declare shape {shape}, not (H, W, 3) with H, W in 1..8192")
    if sizes.dtype.kind not in "iu" or (len(sizes) and sizes.min() < 1):
        raise EdgeposeError(f"{path}: JPEG crop sizes are not positive whole numbers")
    if len(sizes) * shape[0] * shape[1] * 3 > MAX_ARRAY_BYTES:
        raise EdgeposeError(f"{path}: {len(sizes)} JPEG crops of {shape} would exceed {MAX_ARRAY_BYTES >> 30} GiB")
    ends = np.cumsum(sizes.astype(np.int64))
    if data.dtype != np.uint8 or (len(ends) and ends[-1] != len(data)):
        raise EdgeposeError(f"{path}: JPEG crop data is inconsistent with its sizes")
    out = np.empty((len(sizes), *shape), dtype=np.uint8)
    for i, (a, b) in enumerate(zip(ends - sizes, ends)):
        img = cv2.imdecode(data[a:b], cv2.IMREAD_COLOR)
        if img is None or img.shape != tuple(shape):
            raise EdgeposeError(f"{path}: JPEG crop {i} does not decode to {tuple(shape)}")
        out[i] = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return out


def calibration_dirs() -> list[Path]:
    """Where bundled sets are looked for: ``$EDGEPOSE_CALIBRATION_DATA``, the package, the source checkout."""
    here = Path(__file__).resolve().parent
    dirs = [here / "calibration_data", here.parent / "calibration_data"]
    env = os.environ.get("EDGEPOSE_CALIBRATION_DATA")
    return ([Path(env)] if env else []) + dirs


def _cache_dir() -> Path:
    return cache_dir("calibration")


def default_calibration_path(spec: ModelSpec, make: bool = True) -> Path:
    """The default set for ``spec``'s input size, ``default_<H>x<W>.npz`` (named like the models, HxW).

    A bundled file when there is one (the demo model's 256x192); otherwise, with ``make``, one made once from
    the synthetic training split (offline) and cached in ``~/.cache/edgepose/calibration``.
    """
    name = f"default_{spec.input_size[1]}x{spec.input_size[0]}.npz"
    for d in [*calibration_dirs(), _cache_dir()]:
        if (d / name).is_file():
            return d / name
    if not make:
        raise EdgeposeError(
            f"no default calibration set {name} for {spec.name}; make one with "
            f"'edgepose calibrate --model {spec.name} --images DIR --out FILE.npz' and pass --calib FILE.npz"
        )
    log.info("making the default calibration set %s from the synthetic training split (once)", name)
    return write_calibration(_cache_dir() / name, synthetic_calibration(spec), jpeg_quality=95)


def synthetic_calibration(spec: ModelSpec, num: int = 128, holdout: int = 32, seed: int = 0) -> CalibrationSet:
    """A set from edgepose's synthetic *training* split (never the val split the demo model is scored on)."""
    from .synthetic import SPLITS, VERSION, ensure_split

    ann, images = ensure_split("train")
    cset = from_dataset(spec, "coco", ann, images, num, holdout, seed)
    cset.meta["source"] = {"kind": "synthetic", "dataset": "coco", "split": "train", "version": VERSION,
                           "split_seed": SPLITS["train"][1]}  # fmt: skip
    return cset


def scene_frames(spec: ModelSpec, indices: range | list[int], seed: int | None = None) -> np.ndarray:
    """Letterboxed frames of the synthetic multi-person scenes (the detector's input, uint8 NHWC RGB): scene ``i``
    is ``render_scene(default_rng([seed, i]))``, the generator of the ``scenes_train`` split (its seed by default),
    letterboxed into ``spec.input_size`` with the detector's pad value, as :class:`edgepose.detection.PersonDetector`
    feeds it."""
    from .detection import letterbox, pad_value
    from .synthetic import SCENE_SPLITS, render_scene

    seed = SCENE_SPLITS["scenes_train"][1] if seed is None else int(seed)
    w, h = spec.input_size
    out = np.empty((len(indices), h, w, 3), np.uint8)
    for k, i in enumerate(indices):
        img, _ = render_scene(np.random.default_rng([seed, int(i)]))
        out[k] = letterbox(img, spec.input_size, pad_value(spec))[0]
    return out


def synthetic_scene_calibration(spec: ModelSpec, num: int = 128, holdout: int = 16) -> CalibrationSet:
    """A detector's set: the first ``num`` frames of the ``scenes_train`` generator (the split the bundled detector
    trained on; never ``scenes_val``, which it is scored on), letterboxed; the ``holdout`` parity frames come from
    the same generator past the split's last image (rendered, never trained on)."""
    from .synthetic import SCENE_SPLITS, SCENES_VERSION

    count, seed = SCENE_SPLITS["scenes_train"]
    meta = {"format_version": FORMAT_VERSION, "model": spec.name, "input_size": list(spec.input_size),
            "layout": "NHWC", "color": "RGB", "num": num, "holdout": holdout, "seed": seed,
            "source": {"kind": "synthetic", "dataset": "coco", "split": "scenes_train", "version": SCENES_VERSION,
                       "split_seed": seed, "frames": f"render_scene(default_rng([{seed}, i])), letterboxed"},
            "images": [f"scenes_train_{i:06d}.jpg" for i in range(num)],
            "holdout_images": [f"scenes_train+{i:06d}" for i in range(count, count + holdout)],
            "edgepose_version": __version__}  # fmt: skip
    return CalibrationSet(scene_frames(spec, range(num), seed), scene_frames(spec, range(count, count + holdout), seed),
                          meta)


# ------------------------------------------------------------------------------------------ making
def is_eval_split(*paths: str | Path | None) -> str | None:
    """The first path whose file or folder name says val/test (an evaluation split), else ``None``."""
    for p in paths:
        if p is None:
            continue
        p = Path(p)
        for name in (p.name, p.parent.name):
            if _EVAL_RE.search(name.lower()):
                return str(p)
    return None


def _split(items: list[tuple[Any, ...]], num: int, holdout: int, seed: int) -> tuple[list, list]:
    """Pick ``num`` calibration and ``holdout`` parity items, the two from disjoint images.

    ``items`` are ``(image_path, center, scale)``. Images are shuffled with ``seed``; a fifth of them at most
    go to the holdout; within each part, one instance per image comes first (round robin), for variety.
    """
    rng = np.random.default_rng(seed)
    by_image: dict[Any, list] = {}
    for it in items:
        by_image.setdefault(it[0], []).append(it)
    images = list(by_image)
    rng.shuffle(images)
    n_hold = min(holdout, max(1, len(images) // 5)) if holdout and len(images) > 1 else 0

    def round_robin(imgs: list) -> list:
        ranked = []
        for order, img in enumerate(imgs):
            inst = by_image[img]
            for rank, j in enumerate(rng.permutation(len(inst))):
                ranked.append((rank, order, inst[j]))
        ranked.sort(key=lambda r: (r[0], r[1]))
        return [r[2] for r in ranked]

    return round_robin(images[n_hold:])[:num], round_robin(images[:n_hold])[:holdout]


def _crops(spec: ModelSpec, items: list, label: str) -> np.ndarray:
    w, h = spec.input_size
    out = np.empty((len(items), h, w, 3), dtype=np.uint8)
    cache: tuple[Any, np.ndarray] | None = None
    tty = sys.stderr.isatty()
    for i, (img_path, center, scale) in enumerate(items):
        if cache is None or cache[0] != img_path:
            cache = (img_path, read_image(img_path))
        if spec.is_detector:  # a detector takes the whole frame, letterboxed as PersonDetector feeds it
            from .detection import letterbox, pad_value

            out[i] = letterbox(cache[1], spec.input_size, pad_value(spec))[0]
        elif center is None:  # whole image as the box
            ih, iw = cache[1].shape[:2]
            c, s = box_to_center_scale(np.array([[0, 0, iw, ih]], np.float32), w / h, spec.box_padding)
            center, scale = c[0], s[0]
        if not spec.is_detector:
            out[i] = crop(cache[1], center, scale, spec.input_size)
        if (i + 1) % 25 == 0 or i + 1 == len(items):
            end = "" if tty and i + 1 < len(items) else "\n"
            print(f"\r{label}: {i + 1}/{len(items)} crops", end=end, file=sys.stderr, flush=True)
    return out


def make_calibration(
    spec: ModelSpec, items: list[tuple[Any, ...]], num: int, holdout: int, seed: int, source: dict[str, Any]
) -> CalibrationSet:
    """Crop ``num`` calibration + ``holdout`` parity instances out of ``items`` ``(image, center, scale)``."""
    if num < 1:
        raise EdgeposeError(f"--num must be at least 1, got {num}")
    if not items:
        raise EdgeposeError(f"{source.get('images', 'source')}: no images/instances to make crops from")
    cal, hold = _split(items, num, holdout, seed)
    crops = _crops(spec, cal, "calibration")
    held = _crops(spec, hold, "holdout") if hold else np.zeros((0,) + crops.shape[1:], dtype=np.uint8)
    meta = {
        "format_version": FORMAT_VERSION,
        "model": spec.name,
        "input_size": list(spec.input_size),
        "layout": "NHWC",
        "color": "RGB",
        "num": len(crops),
        "holdout": len(held),
        "seed": seed,
        "source": source,
        "images": [Path(it[0]).name for it in cal],
        "holdout_images": [Path(it[0]).name for it in hold],
        "edgepose_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return CalibrationSet(crops, held, meta)


def from_image_folder(
    spec: ModelSpec, images: str | Path, num: int = 128, holdout: int = 32, seed: int = 0, allow_eval_split=False
) -> CalibrationSet:
    """One crop per image, the whole image as the box (as ``edgepose predict`` does without ``--bbox``)."""
    images = Path(images)
    if not images.is_dir():
        raise EdgeposeError(f"{images}: image folder not found")
    bad = is_eval_split(images / "x")
    if bad and not allow_eval_split:
        raise EdgeposeError(f"{images}: looks like an evaluation split (val/test); calibrate on training images, "
                            "or pass --allow-eval-split")  # fmt: skip
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise EdgeposeError(f"{images}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder")
    items = [(f, None, None) for f in files]  # centre/scale from the image size, when cropped
    source = {"kind": "folder", "images": str(images), "split": "eval" if bad else "train"}
    return make_calibration(spec, items, num, holdout, seed, source)


def from_dataset(
    spec: ModelSpec,
    dataset: str,
    ann: str | Path,
    images: str | Path,
    num: int = 128,
    holdout: int = 32,
    seed: int = 0,
    allow_eval_split: bool = False,
) -> CalibrationSet:
    """Crops of annotated instances (ground-truth boxes, the dataset's own box rule) from a training split."""
    from .datasets import load_dataset

    bad = is_eval_split(ann)
    if bad and not allow_eval_split:
        raise EdgeposeError(
            f"{ann}: is an evaluation split (val/test); calibrate on the training split, or pass --allow-eval-split"
        )
    ds = load_dataset(dataset, ann, images, spec, check_images=True)
    items = [(s.image, s.center, s.scale) for s in ds.samples]
    if spec.is_detector:  # one letterboxed frame per image, not one crop per person
        items = list({str(it[0]): it for it in items}.values())
    source = {"kind": "dataset", "dataset": dataset, "ann": str(ann), "images": str(images),
              "split": "eval" if bad else "train"}  # fmt: skip
    return make_calibration(spec, items, num, holdout, seed, source)
