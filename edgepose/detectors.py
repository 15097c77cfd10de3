"""``--detector FILE``: edgepose's person detector, or a detector users bring, opened through edgepose's runtimes.

:func:`open_detector` takes three kinds of file and returns one :class:`Detector` (``detector(image)`` ->
``(N, 5)`` x1, y1, x2, y2, score in image pixels, best first; ``detector.detect`` and ``detector.infer`` for a
caller that times the engine, such as :class:`edgepose.app.PoseTracker`):

* ``.pth``: demo_person_detector's PyTorch checkpoint (the torch runtime);
* an artifact with edgepose's metadata of a detection model (``edgepose convert``): its spec says everything;
* a file without edgepose's metadata (``.onnx``, ``.tflite``, ``.xml`` + ``.bin``), in one of three layouts,
  named by ``layout`` (``--detector-layout``) or read from its outputs (``auto``, one probe run on a blank
  input):

  ============ ============================================ ==================================================
  layout       outputs                                      decode (:mod:`edgepose.detection`)
  ============ ============================================ ==================================================
  ``edgepose`` one ``[1, 5, H/4, W/4]`` (or ``[1, H/4, W/4, 5]``) CenterNet peaks, top-K, threshold, NMS
  ``mmdeploy`` ``dets`` ``[1, N, 5]`` + ``labels`` ``[1, N]``   x1, y1, x2, y2, score in input pixels; the model did
                                                              the NMS; rows of ``person_class`` kept
  ``yolo``     one ``[1, 4 + C, N]``                         cx, cy, w, h and C class scores in input pixels; a
                                                              row is a person when its best class is
                                                              ``person_class``; class-agnostic NMS here
  ============ ============================================ ==================================================

  Anything else (two outputs that are not ``dets`` + ``labels``, ``[1, N, 4 + C]`` with N < 4 + C, three
  outputs...) is refused in one line that names the file and asks for ``--detector-layout``.

The input is read from the file: NCHW when its shape is ``[1, 3, H, W]``, NHWC when ``[1, H, W, 3]``; its size
(W, H) from the static dimensions (a dynamic one needs ``--detector-input WxH``); a float input gets ``(pixel -
mean) / std``, a uint8 input the pixels as they are. Preprocessing defaults per layout (each a flag):

* ``yolo`` (ultralytics' export): RGB, ``x / 255`` (mean 0, std 255), letterbox centred, padded with 114.
  Source: ultralytics ``ultralytics/data/augment.py`` ``LetterBox`` (``center=True``, border value
  ``(114, 114, 114)``, new size ``round(w * r)``, padding split ``round(dw / 2 -+ 0.1)``, i.e. the floor on the
  left/top as here) and ``ultralytics/engine/predictor.py`` ``preprocess`` (BGR -> RGB, ``/ 255``).
* ``mmdeploy`` (RTMDet): BGR, mean ``103.53, 116.28, 123.675``, std ``57.375, 57.12, 58.395`` (in BGR order),
  letterbox at the top-left corner, padded with 114. Source: mmdetection ``configs/rtmdet/rtmdet_l_8xb32-300e_
  coco.py`` (``DetDataPreprocessor(mean=[103.53, 116.28, 123.675], std=[57.375, 57.12, 58.395],
  bgr_to_rgb=False)``; test pipeline ``Resize(scale=(640, 640), keep_ratio=True)``, ``Pad(size=(640, 640),
  pad_val=dict(img=(114, 114, 114)))``, which pads the right and bottom edges). mmdeploy's end-to-end model
  takes that normalised tensor and returns boxes in its input's pixels. YOLOX's mmdet config normalises
  nothing: pass ``--detector-mean 0,0,0 --detector-std 1,1,1``.
* ``edgepose``: demo_person_detector's spec: RGB, ImageNet mean/std, letterbox centred, padded with the mean.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .detection import PersonDetector, decode_centernet, decode_mmdeploy, decode_yolo, letterbox, nms, pad_value
from .errors import EdgeposeError
from .processing import normalize_pixels
from .spec import get_spec, spec_for_artifact

__all__ = ["LAYOUTS", "PRESETS", "DetectorOptions", "Detector", "UserDetector", "guess_layout", "open_detector"]
log = logging.getLogger(__name__)

LAYOUTS = ("auto", "edgepose", "mmdeploy", "yolo")
DEMO_DETECTOR = "demo_person_detector"


@dataclass(frozen=True)
class Preset:
    """A layout's preprocessing defaults: channel order, normalisation (in the model's channel order), letterbox."""

    bgr: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pad: int | tuple[int, int, int]
    center: bool
    score_threshold: float


def _edgepose_preset() -> Preset:
    spec = get_spec(DEMO_DETECTOR)
    return Preset(False, tuple(spec.mean), tuple(spec.std), pad_value(spec), True, spec.score_threshold)


PRESETS: dict[str, Callable[[], Preset]] = {
    "yolo": lambda: Preset(False, (0.0, 0.0, 0.0), (255.0, 255.0, 255.0), 114, True, 0.3),
    "mmdeploy": lambda: Preset(True, (103.53, 116.28, 123.675), (57.375, 57.12, 58.395), 114, False, 0.3),
    "edgepose": _edgepose_preset,
}


@dataclass(frozen=True)
class DetectorOptions:
    """What ``--detector-*`` sets; ``None`` is the layout's default (:data:`PRESETS`)."""

    layout: str = "auto"
    input_size: tuple[int, int] | None = None  # (W, H): needed when the file's input is dynamic
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    bgr: bool | None = None
    person_class: int = 0
    score_threshold: float | None = None  # None: the spec's (edgepose), 0.3 (mmdeploy, yolo; see evaluation)
    # scoring box AP: a user layout's default threshold is 0.001 (mmdet's RTMDet test_cfg score_thr=0.001,
    # ultralytics' val conf=0.001), not the 0.3 of an app; edgepose's detector keeps its spec's
    evaluation: bool = False
    iou_threshold: float = 0.6
    top_k: int = 100

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise EdgeposeError(f"--detector-layout {self.layout!r}: choose {', '.join(LAYOUTS)}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is not None and (len(v) != 3 or not all(np.isfinite(v))):
                raise EdgeposeError(f"--detector-{name} {v}: give three finite numbers")
        if self.std is not None and min(self.std) <= 0:
            raise EdgeposeError(f"--detector-std {self.std}: every value must be more than 0")
        if self.input_size is not None and min(self.input_size) < 1:
            raise EdgeposeError(f"--detector-input {self.input_size}: give W x H of at least 1 pixel")
        if self.person_class < 0:
            raise EdgeposeError(f"--person-class {self.person_class}: must be 0 or more")

    def user_set(self) -> list[str]:
        """The preprocessing flags given (an edgepose artifact or checkpoint takes none)."""
        flags = {"input_size": "--detector-input", "mean": "--detector-mean", "std": "--detector-std",
                 "bgr": "--detector-bgr"}  # fmt: skip
        return [f for k, f in flags.items() if getattr(self, k) is not None]


@dataclass
class UserDetector:
    """A detector file without edgepose's metadata: preprocessing, the engine's raw outputs, the layout's decode.

    ``__call__(infer, image)`` (``infer``: :class:`RawInfer`, the file's own input -> its outputs) -> ``(N, 5)``
    boxes in image pixels, best first.
    """

    path: str
    layout: str  # edgepose, mmdeploy or yolo
    input_size: tuple[int, int]  # (W, H)
    nhwc: bool
    dtype: str  # the input tensor's numpy dtype
    preset: Preset
    person_class: int = 0
    score_threshold: float = 0.3
    iou_threshold: float = 0.6
    top_k: int = 100
    _mean: np.ndarray = field(init=False, repr=False)
    _std: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._mean = np.asarray(self.preset.mean, np.float32)
        self._std = np.asarray(self.preset.std, np.float32)

    def preprocess(self, image: np.ndarray):
        """RGB HWC uint8 image -> (the model's input ``[1, ...]``, the letterbox to undo)."""
        src = np.ascontiguousarray(image[..., ::-1]) if self.preset.bgr else image
        pad = self.preset.pad if isinstance(self.preset.pad, tuple) else (self.preset.pad,) * 3
        boxed, lb = letterbox(src, self.input_size, pad, center=self.preset.center)
        if np.dtype(self.dtype) == np.uint8:
            x = boxed[None] if self.nhwc else boxed.transpose(2, 0, 1)[None]
            return np.ascontiguousarray(x), lb
        x = normalize_pixels(boxed, self._mean, self._std, nhwc=self.nhwc)
        return (x if np.dtype(self.dtype) == np.float32 else x.astype(self.dtype)), lb

    def decode(self, outputs: list[tuple[str, np.ndarray]], lb) -> np.ndarray:
        """The file's outputs -> ``(N, 5)`` boxes in image pixels, best first."""
        if self.layout == "edgepose":
            (out,) = _arrays(outputs, 1, self.path, self.layout)
            if out.ndim == 4 and out.shape[3] == 5 and out.shape[1] != 5:
                out = out.transpose(0, 3, 1, 2)
            dets = decode_centernet(out, self.input_size, self.score_threshold, self.top_k)
        elif self.layout == "mmdeploy":
            dets_out, labels = _dets_labels(outputs, self.path)
            dets = decode_mmdeploy(dets_out, labels, self.person_class, self.score_threshold)
        else:
            (out,) = _arrays(outputs, 1, self.path, self.layout)
            dets = decode_yolo(out, self.person_class, self.score_threshold, self.iou_threshold, 300)
        dets = np.array(dets, np.float32).reshape(-1, 5)
        dets[:, :4] = lb.to_image(dets[:, :4])
        keep = (dets[:, 2] > dets[:, 0]) & (dets[:, 3] > dets[:, 1])
        dets = dets[keep]
        if self.layout == "edgepose":  # NMS after the letterbox is undone, as PersonDetector does
            return nms(dets, self.iou_threshold)
        return dets[np.argsort(-dets[:, 4], kind="stable")][: self.top_k]

    def __call__(self, infer, image: np.ndarray) -> np.ndarray:
        x, lb = self.preprocess(image)
        return self.decode(infer(x), lb)


class RawInfer:
    """A runtime's raw face (:meth:`edgepose.runtimes.base.Runtime.run_raw`) as a callable: input -> outputs."""

    def __init__(self, runtime):
        self.runtime = runtime

    def __call__(self, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
        return self.runtime.run_raw(x)


@dataclass
class Detector:
    """An opened ``--detector``: ``detect(infer, image)`` with its ``infer``, and what it is (``info``)."""

    detect: Callable[[Any, np.ndarray], np.ndarray]
    infer: Callable[[np.ndarray], Any]
    info: dict

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.detect(self.infer, image)


def _arrays(outputs, n: int, path: str, layout: str) -> list[np.ndarray]:
    if len(outputs) != n:
        raise EdgeposeError(f"{path}: the {layout} layout has {n} output(s); this file has {len(outputs)} "
                            f"({_describe(outputs)})")  # fmt: skip
    return [np.asarray(a) for _, a in outputs]


def _dets_labels(outputs, path: str) -> tuple[np.ndarray, np.ndarray]:
    """mmdeploy's (dets, labels) among two outputs, by name, else by shape (TFLite may reorder outputs)."""
    arrays = _arrays(outputs, 2, path, "mmdeploy")
    names = [str(n).lower() for n, _ in outputs]
    if "dets" in names and "labels" in names:
        return arrays[names.index("dets")], arrays[names.index("labels")]
    for a, b in (arrays, arrays[::-1]):
        if a.ndim == 3 and a.shape[2] == 5 and b.shape == a.shape[:2]:
            return a, b
    raise EdgeposeError(f"{path}: the mmdeploy layout is dets [1, N, 5] + labels [1, N]; this file has "
                        f"{_describe(outputs)}")  # fmt: skip


def _describe(outputs) -> str:
    return ", ".join(f"{n} {list(np.shape(a))}" for n, a in outputs) or "none"


def guess_layout(outputs: list[tuple[str, np.ndarray]], path: str | Path) -> str:
    """The layout of a detector from its outputs' count and shapes, or one error asking for the flag."""
    shapes = [tuple(np.shape(a)) for _, a in outputs]
    if len(shapes) == 2:
        a, b = shapes
        if any(len(d) == 3 and d[0] == 1 and d[2] == 5 and lab == d[:2] for d, lab in ((a, b), (b, a))):
            return "mmdeploy"
    if len(shapes) == 1:
        s = shapes[0]
        if len(s) == 4 and s[0] == 1 and (s[1] == 5) != (s[3] == 5):
            return "edgepose"
        if len(s) == 3 and s[0] == 1 and 5 <= s[1] < s[2]:
            return "yolo"
    raise EdgeposeError(f"{path}: cannot tell the detector layout from its outputs ({_describe(outputs)}); pass "
                        "--detector-layout edgepose, mmdeploy or yolo (see docs/android.md, 'Person detector')")


def _input_facts(rt, options: DetectorOptions, path) -> tuple[tuple[int, int], bool, str]:
    """(input size W x H, NHWC?, dtype) of a foreign file's first input."""
    _, shape, dtype = rt.raw_input()
    if len(shape) != 4 or (shape[1] != 3 and shape[3] != 3):
        raise EdgeposeError(f"{path}: a detector takes one image, [1, 3, H, W] or [1, H, W, 3]; its input is "
                            f"{['?' if d is None else d for d in shape]}")  # fmt: skip
    nhwc = shape[3] == 3 and shape[1] != 3
    h, w = (shape[1], shape[2]) if nhwc else (shape[2], shape[3])
    if options.input_size is not None:
        if (w is not None and w != options.input_size[0]) or (h is not None and h != options.input_size[1]):
            raise EdgeposeError(f"{path}: --detector-input {options.input_size[0]}x{options.input_size[1]} but the "
                                f"model's input is {w}x{h}")  # fmt: skip
        return tuple(options.input_size), nhwc, dtype
    if w is None or h is None:
        raise EdgeposeError(f"{path}: its input size is dynamic ({'?' if w is None else w}x{'?' if h is None else h}); "
                            "give it with --detector-input WxH (the size it was trained at, e.g. 640x640)")
    if dtype not in ("float32", "float16", "uint8"):
        raise EdgeposeError(f"{path}: its input is {dtype}; a detector here takes float32, float16 or uint8")
    return (int(w), int(h)), nhwc, dtype


def open_user_detector(rt, options: DetectorOptions, path) -> Detector:
    """A runtime opened on a file without edgepose's metadata, as a :class:`Detector`."""
    size, nhwc, dtype = _input_facts(rt, options, path)
    infer = RawInfer(rt)
    layout = options.layout
    if layout == "auto":  # one probe run on a blank input; an edgepose decode needs the preset to try it
        probe = UserDetector(str(path), "yolo", size, nhwc, dtype, PRESETS["yolo"]())
        x, _ = probe.preprocess(np.full((size[1], size[0], 3), 114, np.uint8))
        layout = guess_layout(infer(x), path)
    base = PRESETS[layout]()
    preset = replace(base, mean=options.mean or base.mean, std=options.std or base.std,
                     bgr=base.bgr if options.bgr is None else options.bgr)  # fmt: skip
    thr = options.score_threshold
    if thr is None:
        thr = 0.001 if options.evaluation and layout != "edgepose" else base.score_threshold
    det = UserDetector(str(path), layout, size, nhwc, dtype, preset, options.person_class, thr,
                       options.iou_threshold, options.top_k)  # fmt: skip
    info = {"file": str(path), "layout": layout, "engine": rt.engine, "input": {"size": list(size),
            "layout": "NHWC" if nhwc else "NCHW", "dtype": dtype}, "bgr": preset.bgr, "mean": list(preset.mean),
            "std": list(preset.std), "pad": preset.pad, "letterbox": "centre" if preset.center else "top-left",
            "person_class": options.person_class, "score_threshold": thr}  # fmt: skip
    log.info("%s: a %s-layout detector, %dx%d %s %s input", path, layout, size[0], size[1],
             info["input"]["layout"], dtype)  # fmt: skip
    return Detector(det, infer, info)


def open_detector(path: str | Path | None = None, threads: int | None = None,
                  options: DetectorOptions | None = None) -> Detector:  # fmt: skip
    """``--detector``: ``None`` (the bundled PyTorch demo_person_detector), its ``.pth``, an edgepose detector
    artifact, or a file without edgepose's metadata (see the module's docstring)."""
    from .runtimes import load_runtime
    from .runtimes.open import open_checkpoint

    options = options or DetectorOptions()
    what = f"--detector {path}" if path else "the demo detector"
    if path is None or str(path).endswith(".pth"):
        if options.layout not in ("auto", "edgepose") or options.user_set():
            raise EdgeposeError(f"{what}: demo_person_detector's checkpoint takes no --detector-layout "
                                f"{options.layout} / {' '.join(options.user_set())}")  # fmt: skip
        spec = get_spec(DEMO_DETECTOR)
        rt = open_checkpoint(spec, None if path is None else str(path), threads=threads)
        return _edgepose_detector(spec, rt, options, str(path or spec.checkpoint))
    rt = load_runtime(path, threads=threads)
    if rt.metadata.get("model"):  # edgepose's own artifact: its spec is the contract
        spec = spec_for_artifact(None, rt.metadata, path)
        if spec.task != "detection":
            raise EdgeposeError(f"{what}: a {spec.task} model, not a person detector")
        if options.layout not in ("auto", "edgepose") or options.user_set():
            raise EdgeposeError(f"{what}: an edgepose artifact (its metadata gives input and layout); drop "
                                f"--detector-layout/{'/'.join(options.user_set()) or '--detector-*'}")  # fmt: skip
        return _edgepose_detector(spec, rt, options, str(path))
    return open_user_detector(rt, options, path)


def _edgepose_detector(spec, rt, options: DetectorOptions, source: str) -> Detector:
    det = PersonDetector(spec, score_threshold=options.score_threshold, iou_threshold=options.iou_threshold,
                         top_k=options.top_k)  # fmt: skip
    info = {"file": source, "layout": "edgepose", "model": spec.name, "engine": rt.engine,
            "input": {"size": list(spec.input_size)}, "score_threshold": det.score_threshold}  # fmt: skip
    return Detector(det, rt, info)
