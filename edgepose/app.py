"""The app's frame loop: detect people, pose all of them in one engine call, track them, smooth, draw.

numpy + OpenCV and the engines only (no torch unless the PyTorch runtime is the one asked for). The parts:

* :class:`PoseTracker` (one frame at a time, ``step(frame)``): the detector (:class:`edgepose.detection.PersonDetector`
  over any runtime, or boxes given per frame) runs on every ``det_every``-th frame, and on the frame after one
  where a track's mean keypoint score fell below ``min_track_score``; in between, each track's box is the box of
  its previous visible keypoints, padded to the person's extent as measured on its last detection frame (the
  ratio of the detection box to the keypoint box, and the shift of their centres), or by the model's
  ``box_padding`` before any detection; the crop rule then pads it as it pads a detector's box.
  All persons of a frame go to the pose engine as one batch through
  :class:`edgepose.processing.TopDownPipeline` (a fixed-batch artifact is split/padded by the runtime face).
  Detections are matched greedily by IoU to the box each track cropped on the frame before: matched tracks keep
  their ids, new detections start tracks, tracks unmatched at ``max_missed`` detection frames in a row (at once
  when a matched track holds their person), or left with under two visible keypoints, are dropped; when two
  tracks' next boxes overlap almost wholly, the newer keeps its last box and the detector runs on the next
  frame. ``smooth`` runs a
  One-Euro filter (:class:`OneEuroFilter`) over each track's keypoints.
* sources (:func:`open_source`: an image, a folder of images, a video file, a camera index) and sinks
  (:class:`VideoSink`: written under a temporary name, closed and renamed also on Ctrl-C/SIGTERM, so the file at
  the final name always plays; :class:`JsonlSink`: one whole line per frame, flushed; :class:`ImageSink`).
* :func:`run_loop`: source -> tracker -> sinks with a frames-per-second progress line; a frame reader thread
  decodes the next frame, and letterboxes and normalises it for the detector (:meth:`PoseTracker.prepare`),
  while the engines run.
* :func:`score_video`: keypoint AP over all frames and identity switches against ``edgepose synth --video``'s
  ground truth.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .detection import PersonDetector, box_iou
from .errors import EdgeposeError, terminate_as_interrupt
from .files import json_text, normal_mode, parse_json
from .images import read_image
from .metrics import coco_keypoint_ap, coco_results, id_switches
from .predict import write_image
from .processing import Infer, TopDownPipeline, check_box, input_kind_of
from .spec import ModelSpec
from .visualize import draw_keypoints

__all__ = ["OneEuroFilter", "Track", "PersonResult", "FrameResult", "PoseTracker", "box_from_keypoints",
           "open_source", "VideoSink", "JsonlSink", "ImageSink", "run_loop", "LoopSummary", "score_video",
           "VIDEO_SUFFIXES", "read_boxes"]  # fmt: skip
log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


# ------------------------------------------------------------------------------------------ smoothing
class OneEuroFilter:
    """The One-Euro filter (Casiez et al., CHI 2012) over an array, element-wise: a low-pass filter whose cutoff
    rises with the speed, ``cutoff = min_cutoff + beta * |dx/dt|`` (little lag when moving, little jitter when
    still). Times in seconds; the first value passes unchanged."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self.t: float | None = None

    @staticmethod
    def _alpha(cutoff, dt: float):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.x is None or self.t is None or t <= self.t:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self.t
        dx = (x - self.x) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self.dx = a_d * dx + (1 - a_d) * self.dx
        a = self._alpha(self.min_cutoff + self.beta * np.abs(self.dx), dt)
        self.x = a * x + (1 - a) * self.x
        self.t = t
        return self.x.copy()


# ------------------------------------------------------------------------------------------- tracking
def box_from_keypoints(keypoints: np.ndarray, score_thr: float, padding: float) -> np.ndarray | None:
    """The x1, y1, x2, y2 box of the keypoints scoring above ``score_thr``, grown about its centre by ``padding``;
    ``None`` with fewer than two such keypoints (or a box with no extent)."""
    k = np.asarray(keypoints, np.float64)
    vis = k[k[:, 2] > score_thr, :2]
    if len(vis) < 2:
        return None
    lo, hi = vis.min(0), vis.max(0)
    c, half = (lo + hi) / 2, (hi - lo) / 2 * padding
    if (half <= 0).any():
        return None
    return np.concatenate([c - half, c + half])


@dataclass
class Track:
    track_id: int
    box: np.ndarray  # x1, y1, x2, y2: the box the next pose step crops
    cropped: np.ndarray | None = None  # x1, y1, x2, y2 cropped at the last pose step (what detections match)
    keypoints: np.ndarray | None = None  # (K, 3) of the last pose step (smoothed when smoothing is on)
    missed: int = 0  # detection frames in a row without a matching detection
    box_score: float = 1.0
    filter: OneEuroFilter | None = None
    fresh: bool = True  # ``box`` came from a detection (not from keypoints)
    fit: np.ndarray | None = None  # detection box vs keypoint box at the last detection: w, h ratios, centre shift


@dataclass
class PersonResult:
    track_id: int
    box: np.ndarray  # x, y, w, h: the box that was cropped
    keypoints: np.ndarray  # (K, 3)

    @property
    def score(self) -> float:
        return float(self.keypoints[:, 2].mean())

    def to_json(self) -> dict:
        return {"track_id": self.track_id, "bbox": [round(float(v), 2) for v in self.box],
                "keypoints": [[round(float(x), 2), round(float(y), 2), round(float(s), 4)]
                              for x, y, s in self.keypoints],
                "score": round(self.score, 4)}  # fmt: skip


@dataclass
class FrameResult:
    index: int
    persons: list[PersonResult]
    detected: bool  # the detector (or the given boxes) ran on this frame
    ms: dict[str, float] = field(default_factory=dict)  # detect, pose, track (wall), engine (detector + pose calls)

    def to_json(self) -> dict:
        return {"frame": self.index, "detected": self.detected, "persons": [p.to_json() for p in self.persons]}


class _TimedInfer:
    """``infer`` with the time spent inside it added up (the engine's share of a frame)."""

    def __init__(self, infer: Infer):
        self.infer = infer
        self.input_kind = input_kind_of(infer)
        self.seconds = 0.0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self.infer(batch)
        finally:
            self.seconds += time.perf_counter() - t0


BoxesFor = Callable[[int], np.ndarray]  # frame index -> (N, 4) x, y, w, h boxes (ground truth, a file)


class PoseTracker:
    """Frames in, tracked persons out (see the module's docstring).

    ``detector`` + ``detector_infer``: the person detector; or ``boxes_for(frame_index)``: given xywh boxes in its
    place (ground truth, a boxes file). ``batched=False`` poses the persons one engine call each (to measure
    what batching saves). ``fps`` turns frame indices into the One-Euro filter's seconds.
    """

    def __init__(
        self,
        spec: ModelSpec,
        pose_infer: Infer,
        detector: PersonDetector | Callable | None = None,
        detector_infer: Infer | None = None,
        boxes_for: BoxesFor | None = None,
        det_every: int = 1,
        smooth: bool = False,
        kpt_thr: float = 0.3,
        min_track_score: float = 0.3,
        iou_threshold: float = 0.3,
        max_missed: int = 1,
        max_persons: int = 20,
        flip_test: bool | None = None,
        batched: bool = True,
        fps: float = 30.0,
        one_euro: tuple[float, float] = (1.0, 0.05),
        box_padding: float | None = None,
    ):
        if (detector is None or detector_infer is None) and boxes_for is None:
            raise EdgeposeError("PoseTracker: give a detector and its runtime, or boxes_for")
        if det_every < 1:
            raise EdgeposeError(f"--det-every {det_every}: must be at least 1")
        self.spec = spec
        self.pose = _TimedInfer(pose_infer)
        self.pipe = TopDownPipeline(spec, flip_test=flip_test, input_kind=self.pose.input_kind)
        self.detector = detector
        self.det_infer = _TimedInfer(detector_infer) if detector_infer is not None else None
        self.boxes_for = boxes_for
        self.det_every, self.smooth, self.kpt_thr = det_every, smooth, kpt_thr
        self.min_track_score, self.iou_threshold, self.max_missed = min_track_score, iou_threshold, max_missed
        self.max_persons, self.batched, self.fps, self.one_euro = max_persons, batched, fps, one_euro
        self.box_padding = spec.box_padding if box_padding is None else float(box_padding)
        self.tracks: list[Track] = []
        self.next_id = 1
        self.frames = 0
        self.detections = 0
        self._redetect = True

    # -- detection and matching
    def prepare(self, frame: np.ndarray) -> object | None:
        """The detector's input for ``frame`` (letterboxed, normalised) and its letterbox, or ``None`` with given
        boxes: pure work on the frame alone, which :func:`run_loop` does on its frame reader thread, beside the
        engines, and hands to :meth:`step` (a frame the detector then skips wasted it off the loop's path)."""
        if self.boxes_for is not None or not hasattr(self.detector, "preprocess"):
            return None  # given boxes, or a detector that is one callable (it preprocesses inside)
        if isinstance(self.detector, PersonDetector):  # float, or uint8 bytes: what the detector's runtime takes
            return self.detector.preprocess(frame, self.det_infer.input_kind)
        return self.detector.preprocess(frame)  # a user layout's: its input read from the file

    def _detect(self, frame: np.ndarray, index: int, prepared: object | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(x1, y1, x2, y2 boxes, scores) of this frame's persons."""
        if self.boxes_for is not None:
            b = np.asarray(self.boxes_for(index), np.float64).reshape(-1, 4)
            return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1), np.ones(len(b))
        if prepared is None:
            prepared = self.prepare(frame)
        if prepared is None:
            dets = self.detector(self.det_infer, frame)[: self.max_persons]
        else:  # PersonDetector or a user layout's Detector: the input made beforehand, the engine, the decode
            x, lb = prepared
            dets = self.detector.decode(self.det_infer(x), lb)[: self.max_persons]
        return dets[:, :4].astype(np.float64), dets[:, 4].astype(np.float64)

    def _match(self, boxes: np.ndarray, scores: np.ndarray) -> None:
        tracks = self.tracks
        used_t, used_d = set(), set()
        if tracks and len(boxes):
            iou = box_iou(np.stack([t.box if t.cropped is None else t.cropped for t in tracks]), boxes)
            for flat in np.argsort(-iou, axis=None, kind="stable"):
                i, j = divmod(int(flat), iou.shape[1])
                if iou[i, j] < self.iou_threshold:
                    break
                if i in used_t or j in used_d:
                    continue
                used_t.add(i)
                used_d.add(j)
                tracks[i].box, tracks[i].box_score, tracks[i].missed = boxes[j].copy(), float(scores[j]), 0
                tracks[i].fresh = True
        kept = []
        taken = np.stack([tracks[i].box for i in used_t]) if used_t else np.zeros((0, 4))
        for i, t in enumerate(tracks):
            if i not in used_t:
                t.missed += 1
                ref = t.box if t.cropped is None else t.cropped
                if len(taken) and box_iou(ref[None], taken).max() > 0.5:
                    continue  # a duplicate of a matched track (two tracks had drifted onto one person)
            if t.missed <= self.max_missed:
                kept.append(t)
        for j in range(len(boxes)):
            if j not in used_d and len(kept) < self.max_persons:
                kept.append(Track(self.next_id, boxes[j].copy(), box_score=float(scores[j])))
                self.next_id += 1
        self.tracks = kept

    def _collisions(self) -> None:
        """Two tracks whose next boxes overlap almost wholly (the pose model put both on one person): the newer
        one keeps the box it cropped, and the detector runs on the next frame to sort them out."""
        if len(self.tracks) < 2:
            return
        boxes = np.stack([t.box for t in self.tracks])
        iou = box_iou(boxes, boxes)
        order = sorted(range(len(self.tracks)), key=lambda i: self.tracks[i].track_id)
        for pos, a in enumerate(order):
            for b in order[pos + 1 :]:
                if iou[a, b] > 0.8 and self.tracks[b].cropped is not None:
                    self.tracks[b].box = self.tracks[b].cropped
                    self._redetect = True

    def _next_box(self, t: Track, k: np.ndarray) -> np.ndarray | None:
        """The box to crop on the next frame: the box of the visible keypoints, padded as the crop rule pads
        (``box_padding``), or, once a detection has fixed how this person's box relates to its keypoint box
        (``fit``: the ratio of sizes and the shift of centres, measured on the last detection frame), that
        relation applied (the padding then fits this person, arms up or down)."""
        kb = box_from_keypoints(k, self.kpt_thr, 1.0)
        if kb is None:
            return None
        c, size = (kb[:2] + kb[2:]) / 2, kb[2:] - kb[:2]
        if t.fresh:
            dc, ds = (t.box[:2] + t.box[2:]) / 2, t.box[2:] - t.box[:2]
            t.fit = np.concatenate([np.clip(ds / size, 1.0, 3.0), np.clip((dc - c) / size, -0.5, 0.5)])
            t.fresh = False
        if t.fit is None:
            half = size / 2 * self.box_padding
            return np.concatenate([c - half, c + half])
        c = c + t.fit[2:] * size
        half = size * t.fit[:2] / 2
        return np.concatenate([c - half, c + half])

    # -- one frame
    def step(self, frame: np.ndarray, index: int | None = None, prepared: object | None = None) -> FrameResult:
        """Track persons in one RGB frame (``index``: the frame number, default the count so far; ``prepared``:
        :meth:`prepare`'s result for this frame, made beforehand, else made here when the detector runs)."""
        index = self.frames if index is None else index
        t0 = time.perf_counter()
        eng0 = self.pose.seconds + (self.det_infer.seconds if self.det_infer else 0.0)
        detect = self._redetect or index % self.det_every == 0 or not self.tracks
        if detect:
            boxes, scores = self._detect(frame, index, prepared)
            self._match(boxes, scores)
            self.detections += 1
        t1 = time.perf_counter()
        persons: list[PersonResult] = []
        if self.tracks:
            xyxy = np.stack([t.box for t in self.tracks])
            xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1).astype(np.float32)
            if self.batched:
                kpts = self.pipe(self.pose, frame, xywh)
            else:
                kpts = np.concatenate([self.pipe(self.pose, frame, xywh[i : i + 1]) for i in range(len(xywh))])
        t2 = time.perf_counter()
        self._redetect = False
        if self.tracks:
            kept = []
            t_sec = index / self.fps
            for t, box, k in zip(self.tracks, xywh, kpts):
                k = k.astype(np.float64)
                if self.smooth:
                    if t.filter is None:
                        t.filter = OneEuroFilter(*self.one_euro)
                    k[:, :2] = t.filter(k[:, :2], t_sec)
                if k[:, 2].mean() < self.min_track_score:
                    self._redetect = True  # the detector runs on the next frame
                nxt = self._next_box(t, k)
                persons.append(PersonResult(t.track_id, box, k.astype(np.float32)))
                if nxt is None:
                    self._redetect = True
                    continue  # too few visible keypoints to follow: the track is lost
                t.keypoints, t.cropped, t.box = k, t.box, nxt
                kept.append(t)
            self.tracks = kept
            self._collisions()
        t3 = time.perf_counter()
        self.frames += 1
        engine = self.pose.seconds + (self.det_infer.seconds if self.det_infer else 0.0) - eng0
        ms = {"detect": (t1 - t0) * 1e3, "pose": (t2 - t1) * 1e3, "track": (t3 - t2) * 1e3,
              "engine": engine * 1e3, "frame": (t3 - t0) * 1e3}  # fmt: skip
        return FrameResult(index, persons, detect, ms)

    def draw(self, frame: np.ndarray, result: FrameResult, score_thr: float = 0.3) -> np.ndarray:
        """The frame with each person's skeleton, box and track id."""
        if not result.persons:
            return frame.copy()
        boxes = np.stack([p.box for p in result.persons])
        out = draw_keypoints(frame, np.stack([p.keypoints for p in result.persons]), self.spec, boxes, score_thr)
        for p in result.persons:
            x, y = int(p.box[0]), int(p.box[1])
            cv2.putText(out, f"#{p.track_id}", (max(0, x + 2), max(12, y + 14)), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
        return out


# ------------------------------------------------------------------------------------------ sources
@dataclass
class Source:
    """Frames of an image, a folder, a video file or a camera: ``frames()`` yields RGB arrays."""

    name: str
    fps: float
    kind: str  # image, folder, video, camera
    _open: Callable[[], Iterator[np.ndarray]] = field(repr=False)
    total: int | None = None

    def frames(self) -> Iterator[np.ndarray]:
        return self._open()


def _capture_frames(cap, name: str) -> Iterator[np.ndarray]:
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def open_source(source: str) -> Source:
    """``source``: a camera index (``0``), a video file, an image file or a folder of images (sorted by name)."""
    text = str(source)
    if text.isdigit():
        with _quiet_stderr():  # OpenCV's backends print their own lines about a missing camera
            cap = cv2.VideoCapture(int(text))
        if not cap.isOpened():
            raise EdgeposeError(f"camera {text}: cannot be opened")
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        return Source(f"camera {text}", fps if fps > 0 else 30.0, "camera", lambda: _capture_frames(cap, text))
    path = Path(text)
    if not path.exists():
        raise EdgeposeError(f"{text}: no such file, folder or camera index")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise EdgeposeError(f"{text}: a folder with no images ({', '.join(IMAGE_SUFFIXES)})")
        return Source(text, 30.0, "folder", lambda: (read_image(p) for p in files), len(files))
    if path.suffix.lower() in IMAGE_SUFFIXES:
        read_image(path)  # checked now: a bad image fails before any model loads
        return Source(text, 30.0, "image", lambda: iter([read_image(path)]), 1)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise EdgeposeError(f"{text}: not an image ({', '.join(IMAGE_SUFFIXES)}) or a video "
                            f"({', '.join(VIDEO_SUFFIXES)})")  # fmt: skip
    with _quiet_stderr():  # FFmpeg prints its own line about a broken file; the error below says it once
        cap = cv2.VideoCapture(str(path))
        first = cap.read()[0] if cap.isOpened() else False
        cap.release()
    if not first:
        raise EdgeposeError(f"{text}: OpenCV cannot read a frame of this video")
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    return Source(text, fps if fps and fps > 0 else 30.0, "video", lambda: _capture_frames(cap, text), total)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 sent to the null device (what C libraries print there) within the block."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _prefetched(
    frames: Iterator[np.ndarray], depth: int = 2, prepare: Callable[[np.ndarray], object] | None = None
) -> Iterator:
    """``frames`` decoded on a reader thread, ``depth`` ahead (decoding overlaps the engines); with ``prepare``,
    ``(frame, prepare(frame))`` pairs, ``prepare`` run on the reader thread too."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def read() -> None:
        try:
            for f in frames:
                item = f if prepare is None else (f, prepare(f))
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
            q.put(done)
        except BaseException as e:  # handed to the consumer, raised there
            q.put(e)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()

    th = threading.Thread(target=read, name="edgepose-frames", daemon=True)
    th.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while th.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            th.join(timeout=0.05)


# ------------------------------------------------------------------------------------------- sinks
class VideoSink:
    """An MPEG-4 video (``mp4v``) written under a hidden temporary name beside ``path`` and renamed to ``path``
    by :meth:`close` (which also runs on Ctrl-C/SIGTERM): the file at ``path`` is always a finished, playable
    video holding every frame written."""

    def __init__(self, path: str | Path, fps: float):
        self.path, self.fps = Path(path), float(fps)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.part{self.path.suffix}")
        self.writer = None
        self.frames = 0

    def write(self, frame_rgb: np.ndarray) -> None:
        if self.writer is None:
            h, w = frame_rgb.shape[:2]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise EdgeposeError(f"{self.path}: OpenCV cannot write MPEG-4 video here")
        self.writer.write(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.release()
        self.writer = None
        os.chmod(self.tmp, normal_mode())
        os.replace(self.tmp, self.path)


class ImageSink:
    """One PNG per frame in a folder (``frame_000000.png``, ...), or, given an image file name (``single``), the
    one frame of an image source; each written atomically."""

    def __init__(self, folder: str | Path, single: bool = False):
        self.folder = Path(folder)
        self.single = single
        self.frames = 0

    def write(self, frame_rgb: np.ndarray, index: int) -> None:
        if self.single and self.frames:
            raise EdgeposeError(f"--out {self.folder}: one image file, but the source has more than one frame")
        write_image(self.folder if self.single else self.folder / f"frame_{index:06d}.png", frame_rgb)
        self.frames += 1

    def close(self) -> None:
        pass


class JsonlSink:
    """One JSON line per frame (:meth:`FrameResult.to_json`), each written whole and flushed."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115  (closed by close())
        self.lines = 0

    def write(self, result: FrameResult) -> None:
        self.file.write(json_text(result.to_json(), str(self.path), separators=(",", ":")) + "\n")
        self.file.flush()
        self.lines += 1

    def close(self) -> None:
        self.file.close()


# ------------------------------------------------------------------------------------------- the loop
@dataclass
class LoopSummary:
    frames: int
    seconds: float
    detections: int
    interrupted: int | None  # the signal that stopped the loop (2 for Ctrl-C), None when it ran to its end
    ms: dict[str, float]  # mean per frame: detect, pose, track, engine, frame, draw

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def run_loop(
    tracker: PoseTracker,
    source: Source,
    video: VideoSink | None = None,
    images: ImageSink | None = None,
    jsonl: JsonlSink | None = None,
    max_frames: int | None = None,
    progress: bool = True,
    score_thr: float = 0.3,
    on_frame: Callable[[FrameResult], None] | None = None,
) -> LoopSummary:
    """Every frame of ``source`` through ``tracker`` into the sinks, until the source ends, ``max_frames``, or
    Ctrl-C / SIGTERM (then the sinks are closed as on a normal end: a playable video, whole JSON lines, and the
    summary says ``interrupted``)."""
    sums: dict[str, float] = {}
    n = 0
    interrupted = None
    t_start = time.perf_counter()
    last_print = 0.0
    try:
        with terminate_as_interrupt():
            frames = _prefetched(source.frames(), prepare=tracker.prepare)
            try:
                for frame, prepared in frames:
                    if max_frames is not None and n >= max_frames:
                        break
                    res = tracker.step(frame, n, prepared)
                    td = time.perf_counter()
                    if video is not None or images is not None:
                        drawn = tracker.draw(frame, res, score_thr)
                        if video is not None:
                            video.write(drawn)
                        if images is not None:
                            images.write(drawn, n)
                    res.ms["draw"] = (time.perf_counter() - td) * 1e3
                    if jsonl is not None:
                        jsonl.write(res)
                    if on_frame is not None:
                        on_frame(res)
                    for k, v in res.ms.items():
                        sums[k] = sums.get(k, 0.0) + v
                    n += 1
                    now = time.perf_counter()
                    if progress and now - last_print > 0.5:
                        last_print = now
                        total = f"/{source.total}" if source.total else ""
                        print(f"\r{source.name}: frame {n}{total}, {n / (now - t_start):.1f} fps, "
                              f"{len(res.persons)} person(s)", end="", file=sys.stderr, flush=True)  # fmt: skip
            finally:
                frames.close()
    except KeyboardInterrupt as e:
        interrupted = getattr(e, "signum", 2)
    finally:
        for sink in (video, images, jsonl):
            if sink is not None:
                sink.close()
        if progress and n:
            print(file=sys.stderr)
    seconds = time.perf_counter() - t_start
    return LoopSummary(n, seconds, tracker.detections, interrupted, {k: v / max(n, 1) for k, v in sums.items()})


# ------------------------------------------------------------------------------------------ scoring
def read_boxes(ann_path: str | Path) -> Callable[[int], np.ndarray]:
    """Per-frame xywh boxes from a COCO file whose images carry ``frame_index`` (``edgepose synth --video``) or
    come in frame order: ``boxes_for(frame_index)``. Crowd boxes are left out."""
    path = Path(ann_path)
    try:
        doc = parse_json(path.read_bytes())
    except OSError as e:
        raise EdgeposeError(f"--boxes {path}: cannot read ({e.strerror})") from None
    except (ValueError, RecursionError) as e:
        raise EdgeposeError(f"--boxes {path}: not valid JSON ({str(e)[:80]})") from None
    if not (isinstance(doc, dict) and isinstance(doc.get("images"), list) and isinstance(doc.get("annotations"), list)):
        raise EdgeposeError(f"--boxes {path}: not a COCO annotation file (images and annotations lists)")
    frame_of = {}
    for i, im in enumerate(doc["images"]):
        if not isinstance(im, dict) or "id" not in im:
            raise EdgeposeError(f"--boxes {path}: images[{i}] has no id")
        frame_of[im["id"]] = int(im.get("frame_index", i))
    by_frame: dict[int, list] = {}
    for i, a in enumerate(doc["annotations"]):
        if not isinstance(a, dict) or a.get("image_id") not in frame_of:
            raise EdgeposeError(f"--boxes {path}: annotations[{i}] names no image of the file")
        if a.get("iscrowd"):
            continue
        by_frame.setdefault(frame_of[a["image_id"]], []).append(check_box(a.get("bbox"), f"--boxes {path}: "
                                                                           f"annotations[{i}].bbox"))  # fmt: skip
    return lambda index: np.asarray(by_frame.get(index, []), np.float32).reshape(-1, 4)


def score_video(gt: dict, results: list[FrameResult], sigmas) -> dict:
    """Keypoint AP (COCOeval over all frames; each person scored as mmpose rescores it, no OKS NMS: one person
    per track) and identity switches (:func:`edgepose.metrics.id_switches`) of a run on ``edgepose synth --video``
    ground truth ``gt`` (frame ``i`` is image id ``i + 1``)."""
    image_ids, kpts, gt_frames, pred_frames = [], [], [], []
    by_image: dict[int, dict] = {im["id"]: {} for im in gt["images"]}
    for a in gt["annotations"]:
        if not a.get("iscrowd"):
            by_image[a["image_id"]][a["track_id"]] = a["bbox"]
    frame_ids = [im["id"] for im in sorted(gt["images"], key=lambda im: im.get("frame_index", im["id"]))]
    for res, image_id in zip(results, frame_ids):
        pred_frames.append({p.track_id: p.box for p in res.persons})
        gt_frames.append(by_image[image_id])
        for p in res.persons:
            image_ids.append(image_id)
            kpts.append(p.keypoints)
    n = min(len(results), len(frame_ids))
    gt_used = {**gt, "images": [im for im in gt["images"] if im["id"] in set(frame_ids[:n])]}
    gt_used["annotations"] = [a for a in gt["annotations"] if a["image_id"] in set(frame_ids[:n])]
    if kpts:
        k = np.stack(kpts).astype(np.float32)
        dets = coco_results(image_ids, k, np.ones(len(k), np.float32), np.ones(len(k), np.float32), sigmas,
                            use_nms=False)  # fmt: skip
        ap = coco_keypoint_ap(gt_used, dets, sigmas)
    else:
        ap = {"AP": 0.0}
    return {"AP": ap.get("AP"), "AP50": ap.get("AP50"), "frames": n, **id_switches(gt_frames[:n], pred_frames[:n])}
