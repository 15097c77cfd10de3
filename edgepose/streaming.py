"""Streaming top-down pose: the pre/post-processing of other items runs on a worker thread while the engine runs.

:func:`stream` (also :meth:`edgepose.processing.TopDownPipeline.stream`) takes an iterable of images or
``(image, boxes)`` pairs and yields each item's keypoints ``(N, K, 3)`` in order, identical to calling the
pipeline on each item one after the other. While the calling thread runs the engine on item *i*, one worker
thread crops (and normalises, and mirrors for the flip test) item *i + 1* ahead and decodes item *i - 1*'s
heatmaps: OpenCV and most numpy work release the GIL, and so do the engines (ONNX Runtime, OpenVINO, LiteRT,
torch) while they compute, so the engine waits on Python only for the hand-over. Reading the images (``items``
is consumed on the calling thread, ``prefetch`` items ahead) stays the caller's business.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["stream"]

Item = Any  # an image (H x W x 3 uint8 RGB), or (image, boxes xywh (N, 4) or None)
# (no import of edgepose.processing: the pipeline object brings every step, and processing imports this module)


def _split(item: Item) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(item, tuple):
        image, boxes = item
        return image, boxes
    return item, None


def stream(pipe: Any, infer: Callable[[np.ndarray], np.ndarray], items: Iterable[Item],
           prefetch: int = 2) -> Iterator[np.ndarray]:  # fmt: skip
    """Keypoints for every item of ``items``, in order, with pre/post-processing overlapped with ``infer``.

    ``pipe``: a :class:`edgepose.processing.TopDownPipeline` (its steps are used as they are).

    ``prefetch``: how many items are prepared ahead (at least 1). The worker thread ends with the generator
    (when it is exhausted, closed, or garbage-collected). An exception in any step is raised here after the
    results of every item before the failing one.
    """
    prefetch = max(1, int(prefetch))

    def prepare(item: Item) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
        image, boxes = _split(item)
        if boxes is None or len(boxes) == 0:
            boxes = np.array([[0, 0, image.shape[1], image.shape[0]]], dtype=np.float32)
        centers, scales = pipe.boxes_to_center_scale(boxes)
        batch = pipe.preprocess(image, centers, scales)
        return batch, (pipe.mirror(batch) if pipe.flip_test else None), centers, scales

    def finish(heatmaps: np.ndarray, flipped: np.ndarray | None, centers, scales) -> np.ndarray:
        if flipped is not None:
            heatmaps = pipe.merge(heatmaps, flipped)
        return pipe.decode(heatmaps, centers, scales)

    source = iter(items)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgepose-stream")
    prepared: deque[Future] = deque()
    decoded: deque[Future] = deque()

    def feed() -> None:
        for item in source:
            prepared.append(pool.submit(prepare, item))
            return

    try:
        for _ in range(prefetch):
            feed()
        while prepared:
            try:
                batch, mirrored, centers, scales = prepared.popleft().result()
                feed()  # the worker crops the next item while the engine runs on this one
                heatmaps = np.asarray(infer(batch), dtype=np.float32)
                flipped = np.asarray(infer(mirrored), dtype=np.float32) if mirrored is not None else None
            except BaseException:
                while decoded:  # every item before the failing one first, then the error
                    yield decoded.popleft().result()
                raise
            decoded.append(pool.submit(finish, heatmaps, flipped, centers, scales))
            while len(decoded) > 1 or (decoded and decoded[0].done()):
                yield decoded.popleft().result()
        while decoded:
            yield decoded.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
