"""Evaluation at engine speed: the serial path's very batches, with the CPU work around them overlapped.

:func:`edgepose.evaluate.predict_dataset` (serial) reads an image, crops it, runs a batch once the crops fill
it, then decodes, one step after the other, so the engine idles while Python works. :func:`predict_items`
computes the same batches (crops of consecutive images share batches of ``batch_size``, in dataset order) and
returns the same keypoints bit for bit, but

* a small thread pool reads, crops and normalises images ahead (``prefetch`` batches), assembles each batch
  (with its mirrored copy for the flip test) and decodes finished heatmaps: OpenCV and numpy release the GIL,
  and so do the engines while they compute, so the calling thread only hands batches to the engine;
* the flip pass goes to the engine together with the originals (one call of 2B crops instead of two of B),
  where that gives the very same numbers: an engine may pick other kernels for another batch shape, so the
  first batch of each shape is run both ways and compared bit for bit; the serial path's results are used
  for it, and merged calls only where they were equal (``flip_merge="auto"``);
* an engine with an async face (``infer_async(batch) -> Future``, OpenVINO's ``AsyncInferQueue``) gets the
  next batch queued while it computes the current one (checked against the sync face the same way).

:class:`Item` is the unit of work (one image's crops, or crops shipped ready-made by a Ray driver, see
:mod:`edgepose.scale`); ``facts`` (:class:`Facts`) records what ran.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import EdgeposeError
from .processing import INPUT_UINT8, Infer, TopDownPipeline, crop_batch, merge_flip, normalize, read_image

__all__ = ["Item", "Facts", "plan_items", "batch_bounds", "predict_items", "crops_of", "model_input"]

log = logging.getLogger(__name__)


@dataclass
class Item:
    """The crops of one image that a run needs, in order: read from ``source`` (an image file), or given as
    uint8 crops ``(m, H, W, 3)`` (what :func:`crops_of` makes; a Ray driver ships these)."""

    source: Path | np.ndarray
    indices: np.ndarray  # (m,) sample indices, the order their keypoints are returned in
    centers: np.ndarray  # (m, 2) float32
    scales: np.ndarray  # (m, 2) float32

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class Facts:
    """What a pipelined run did (for the eval record): calls, flip batching, async use."""

    batches: int = 0
    engine_calls: int = 0  # calls of infer / infer_async (a fixed-batch runtime splits them further)
    # batch size ("any": fixed-batch-1 runtime) -> the merged/async calls gave the serial calls' numbers bit for bit
    fast_path: dict[int | str, bool] = field(default_factory=dict)
    async_used: bool = False
    flip_merged: bool = False
    workers: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"mode": "pipelined", "workers": self.workers, "batches": self.batches,
                "engine_calls": self.engine_calls, "flip_merged": self.flip_merged, "async": self.async_used,
                "fast_path_batch_sizes": [b for b, ok in self.fast_path.items() if ok],
                "serial_calls_batch_sizes": [b for b, ok in self.fast_path.items() if not ok]}  # fmt: skip


def plan_items(samples: Sequence[Any], centers: np.ndarray, scales: np.ndarray) -> list[Item]:
    """One :class:`Item` per image, images in order of their first sample, samples in order within each: the
    serial path's order (:func:`edgepose.evaluate.predict_dataset`)."""
    by_image: dict[Path, list[int]] = {}
    for i, s in enumerate(samples):
        by_image.setdefault(s.image, []).append(i)
    out = []
    for path, idx in by_image.items():
        ix = np.asarray(idx, dtype=np.int64)
        out.append(Item(Path(path), ix, centers[ix], scales[ix]))
    return out


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each batch over ``n`` crops in order: full batches, the remainder last."""
    return [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


def crops_of(pipe: TopDownPipeline, item: Item) -> np.ndarray:
    """The uint8 crops ``(m, H, W, 3)`` of an item (read from its image unless they are given)."""
    if isinstance(item.source, np.ndarray):
        return item.source
    return crop_batch(read_image(item.source), item.centers, item.scales, pipe.spec.input_size)


def model_input(pipe: TopDownPipeline, item: Item) -> np.ndarray:
    """What the model takes for an item: ``pipe.preprocess`` of its image, or of its shipped uint8 crops (the
    crops themselves for a pipeline whose model takes uint8 crops, else normalised)."""
    if not isinstance(item.source, np.ndarray):
        return pipe.preprocess(read_image(item.source), item.centers, item.scales)
    if pipe.input_kind == INPUT_UINT8:
        return item.source
    return normalize(item.source, pipe.spec.mean, pipe.spec.std)


def _mirror(src: np.ndarray, dst: np.ndarray) -> None:
    """The flip test's mirrored batch into ``dst`` (the values :func:`edgepose.processing.flip_batch` gives): width
    is the last axis of float NCHW input, axis 2 of uint8 NHWC crops (the two input kinds a pipeline feeds)."""
    if src.dtype == np.uint8 and src.ndim == 4 and src.shape[3] in (1, 3, 4):
        dst[...] = src[:, :, ::-1]
    else:
        dst[...] = src[..., ::-1]


class _Engine:
    """How a batch goes to the engine. The serial path makes two sync calls (originals, then mirrored); the
    fast path makes one merged call (flip test on and ``flip_merge`` not "off") through the engine's async
    face where it has one. The first batch of each size runs both ways: the serial path's results are used,
    and the fast path goes on for that size only if it gave the same numbers bit for bit."""

    def __init__(self, pipe: TopDownPipeline, infer: Infer, flip_merge: str, use_async: bool, facts: Facts):
        if flip_merge not in ("auto", "on", "off"):
            raise EdgeposeError(f"flip_merge {flip_merge!r}: choose auto, on or off")
        self.pipe, self.infer, self.facts, self.flip_merge = pipe, infer, facts, flip_merge
        self.submit: Callable[[np.ndarray], Future] | None = getattr(infer, "infer_async", None) if use_async else None
        self.merge = bool(pipe.flip_test) and flip_merge != "off"
        # a fixed-batch-1 runtime makes one engine call per crop whatever the batch: a merged sync call is the
        # very same engine calls (nothing to check), and one crop checks the async face for every batch size
        self.one = getattr(infer, "batch_size", None) == 1
        self.trivial = self.submit is None and (not self.merge or self.one)

    def _key(self, n: int) -> int | str:
        return "any" if self.one else n

    def _sync(self, x: np.ndarray) -> np.ndarray:
        self.facts.engine_calls += 1
        return np.asarray(self.infer(x), dtype=np.float32)

    def _start(self, x: np.ndarray) -> Future:
        self.facts.engine_calls += 1
        if self.submit is None:
            return _done(np.asarray(self.infer(x), dtype=np.float32))
        self.facts.async_used = True
        return self.submit(x)

    def run(self, x: np.ndarray, n: int) -> _Pending:
        """``(heatmaps, heatmaps of the mirrored batch or None)``, pending, for ``x``: ``n`` crops, then (flip
        test) their ``n`` mirrored copies, in one buffer."""
        flip = bool(self.pipe.flip_test)
        orig, mirrored = x[:n], (x[n:] if flip else None)
        if self._key(n) not in self.facts.fast_path:
            return self._probe(x, n)
        if not self.facts.fast_path[self._key(n)]:
            return _Pending([_done(self._sync(orig)), _done(self._sync(mirrored) if flip else None)])
        if flip and self.merge:
            self.facts.flip_merged = True
            return _Pending([self._start(x)], n)
        return _Pending([self._start(orig), self._start(mirrored) if flip else _done(None)])

    def _probe(self, x: np.ndarray, n: int) -> _Pending:
        flip = bool(self.pipe.flip_test)
        a = self._sync(x[:n])
        b = self._sync(x[n:]) if flip else None
        if self.trivial or self.flip_merge == "on":
            same = True
        else:
            m = 1 if self.one else n  # the crops the check runs on
            y, yf = x[:m], (x[n : n + m] if flip else None)
            if flip and self.merge:
                fast = _Pending([self._start(np.concatenate([y, yf]))], m).get()
            else:
                fast = _Pending([self._start(y), self._start(yf) if flip else _done(None)]).get()
            same = bool(np.array_equal(fast[0], a[:m]) and (b is None or np.array_equal(fast[1], b[:m])))
        self.facts.fast_path[self._key(n)] = same
        if not same:
            log.info("eval: the merged/async calls of %d crops differ from the serial calls; keeping serial calls", n)
        return _Pending([_done(a), _done(b)])


class _Inline:
    """``workers=0``: every step on the calling thread, in submission order (overlap comes from the engine's
    async face alone)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        f: Future = Future()
        try:
            f.set_result(fn(*args))
        except BaseException as e:  # noqa: BLE001 - raised where the result is asked for, as from a pool
            f.set_exception(e)
        return f

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def _done(value: Any) -> Future:
    f: Future = Future()
    f.set_result(value)
    return f


class _Pending:
    """Engine calls under way for one batch: two futures (originals, mirrored or None), or one future of a merged
    call of ``2 * split`` crops."""

    def __init__(self, futures: list[Future], split: int | None = None):
        self.futures, self.split = futures, split

    def done(self) -> bool:
        return all(f.done() for f in self.futures)

    def get(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self.split is not None:
            h = np.asarray(self.futures[0].result(), dtype=np.float32)
            return h[: self.split], h[self.split :]
        a, b = (f.result() for f in self.futures)
        return np.asarray(a, dtype=np.float32), None if b is None else np.asarray(b, dtype=np.float32)


def predict_items(
    pipe: TopDownPipeline,
    infer: Infer,
    items: Sequence[Item],
    batch_size: int = 16,
    workers: int = 2,
    prefetch: int = 3,
    flip_merge: str = "auto",
    use_async: bool = True,
    progress: Callable[[int], None] | None = None,
    facts: Facts | None = None,
) -> np.ndarray:
    """Keypoints ``(n, K, 3)`` of every crop of ``items``, in their order (item after item), bit-identical to
    the serial path on the same batches. ``progress(k)`` is called with each finished batch's crop count."""
    if batch_size < 1:
        raise EdgeposeError(f"batch size must be at least 1, got {batch_size}")
    facts = facts if facts is not None else Facts()
    facts.workers = workers = max(0, int(workers))
    spec = pipe.spec
    sizes = np.asarray([len(it) for it in items], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n = int(offsets[-1])
    out = np.zeros((n, spec.num_keypoints, 3), dtype=np.float32)
    if n == 0:
        return out
    centers = np.concatenate([np.asarray(it.centers, np.float32).reshape(-1, 2) for it in items])
    scales = np.concatenate([np.asarray(it.scales, np.float32).reshape(-1, 2) for it in items])
    bounds = batch_bounds(n, batch_size)
    facts.batches = len(bounds)
    # the items (and the slices of them) each batch takes, in order
    parts: list[list[tuple[int, int, int]]] = []
    for lo, hi in bounds:
        first = int(np.searchsorted(offsets, lo, side="right")) - 1
        take, j = [], first
        while j < len(items) and offsets[j] < hi:
            a, b = max(lo, offsets[j]), min(hi, offsets[j + 1])
            if b > a:
                take.append((j, int(a - offsets[j]), int(b - offsets[j])))
            j += 1
        parts.append(take)

    engine = _Engine(pipe, infer, flip_merge, use_async, facts)
    flip = bool(pipe.flip_test)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgepose-eval") if workers else _Inline()
    prepared: dict[int, Future] = {}
    builds: dict[int, Future] = {}

    def prepare(j: int) -> np.ndarray:
        return model_input(pipe, items[j])

    def build(futs: list[tuple[Future, int, int]], n: int) -> np.ndarray:
        """Batch ``k``'s engine input in one buffer: its crops, then (flip test) their mirrored copies."""
        parts = [f.result()[a:b] for f, a, b in futs]
        if not flip:
            return np.ascontiguousarray(parts[0]) if len(parts) == 1 else np.concatenate(parts)
        out = np.empty((2 * n, *parts[0].shape[1:]), dtype=parts[0].dtype)
        at = 0
        for p in parts:
            out[at : at + len(p)] = p
            at += len(p)
        _mirror(out[:n], out[n:])
        return out

    def decode(k: int, heat: np.ndarray, flipped: np.ndarray | None) -> int:
        if flipped is not None:
            heat = merge_flip(heat, flipped, spec.flip_pairs, spec.shift_heatmap)
        if heat.shape[1] != spec.num_keypoints:
            raise EdgeposeError(f"the model returned {heat.shape[1]} heatmaps, {spec.name} has "
                                f"{spec.num_keypoints} keypoints")  # fmt: skip
        lo, hi = bounds[k]
        out[lo:hi] = pipe.decode(heat, centers[lo:hi], scales[lo:hi])
        return hi - lo

    def schedule(k: int) -> None:
        if k >= len(bounds) or k in builds:
            return
        futs = []
        for j, a, b in parts[k]:
            if j not in prepared:
                prepared[j] = pool.submit(prepare, j)
            futs.append((prepared[j], a, b))
        # submitted after its items' tasks: the FIFO pool cannot deadlock on them
        builds[k] = pool.submit(build, futs, bounds[k][1] - bounds[k][0])
        for j, _, _ in parts[k][:-1]:
            prepared.pop(j, None)  # an item's last batch is the one where it is not the last part

    in_flight: deque[tuple[int, _Pending]] = deque()
    decoded: deque[Future] = deque()

    def collect(block: bool) -> None:
        while in_flight and (block or in_flight[0][1].done()):
            k, pending = in_flight.popleft()
            decoded.append(pool.submit(decode, k, *pending.get()))
        while decoded and decoded[0].done():
            done = decoded.popleft().result()
            if progress:
                progress(done)

    try:
        for k in range(min(prefetch, len(bounds))):
            schedule(k)
        for k in range(len(bounds)):
            x = builds.pop(k).result()
            in_flight.append((k, engine.run(x, bounds[k][1] - bounds[k][0])))
            schedule(k + prefetch)  # (workers=0: built here, while an async engine computes)
            collect(block=len(in_flight) > 1)  # one batch queued in the engine while it runs the other
        collect(block=True)
        while decoded:
            done = decoded.popleft().result()
            if progress:
                progress(done)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return out
