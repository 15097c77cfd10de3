"""Drawing keypoints and skeletons (OpenCV only), and the one way a matplotlib figure is made, written and
closed (:func:`figure`; matplotlib imported lazily, only there).
"""

from __future__ import annotations

import colorsys
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .files import atomic_path
from .spec import ModelSpec

NO_MATPLOTLIB = "plot skipped: matplotlib is not installed (pip install 'edgepose[plot]')"


def _palette(n: int) -> list[tuple[int, int, int]]:
    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(n, 1), 0.85, 1.0)) for i in range(n)]


def draw_keypoints(
    image: np.ndarray,
    keypoints: np.ndarray,
    spec: ModelSpec,
    boxes: np.ndarray | None = None,
    score_thr: float = 0.3,
) -> np.ndarray:
    """A copy of the RGB ``image`` with each person's skeleton (links with both ends above ``score_thr``)."""
    out = np.ascontiguousarray(image.copy())
    scale = max(1, round(max(image.shape[:2]) / 400))
    link_colors = _palette(len(spec.skeleton))
    kpt_colors = _palette(spec.num_keypoints)
    for i, person in enumerate(np.asarray(keypoints).reshape(-1, spec.num_keypoints, 3)):
        if boxes is not None and i < len(boxes):
            x, y, w, h = (int(round(v)) for v in boxes[i])
            cv2.rectangle(out, (x, y), (x + w, y + h), (255, 255, 255), scale)
        for (a, b), color in zip(spec.skeleton, link_colors):
            if person[a, 2] > score_thr and person[b, 2] > score_thr:
                pa = (int(round(person[a, 0])), int(round(person[a, 1])))
                pb = (int(round(person[b, 0])), int(round(person[b, 1])))
                cv2.line(out, pa, pb, color, 2 * scale, cv2.LINE_AA)
        for k, (x, y, s) in enumerate(person):
            if s > score_thr:
                cv2.circle(out, (int(round(x)), int(round(y))), 2 * scale + 1, kpt_colors[k], -1, cv2.LINE_AA)
    return out


def pyplot() -> Any | None:
    """``matplotlib.pyplot`` on the file-only Agg backend, or ``None`` when matplotlib is not installed (the
    caller then says :data:`NO_MATPLOTLIB`)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


@contextlib.contextmanager
def figure(path: str | Path, *args: Any, **kwargs: Any) -> Iterator[tuple[Any, Any]]:
    """``with figure(path, 2, 1, figsize=...) as (fig, axes):`` draw; ``plt.subplots(*args, **kwargs)`` made the
    figure. The PNG is written atomically (:func:`edgepose.files.atomic_path`) when the block ends without an
    error, and the figure is closed either way. Call :func:`pyplot` first: matplotlib must be installed."""
    plt = pyplot()
    if plt is None:
        raise ImportError(NO_MATPLOTLIB)
    fig, axes = plt.subplots(*args, **kwargs)
    try:
        yield fig, axes
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)
