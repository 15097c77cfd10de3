"""The runtime face and its registry."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import EdgeposeError

RUNTIMES: dict[str, type[Runtime]] = {}
_SUFFIXES: dict[str, str] = {}


def register_runtime(name: str, suffixes: tuple[str, ...] = ()) -> Callable[[type], type]:
    """Class decorator: make an engine loadable by name and by artifact suffix."""

    def deco(cls: type) -> type:
        cls.engine = name
        RUNTIMES[name] = cls
        for s in suffixes:
            _SUFFIXES.setdefault(s, name)
        return cls

    return deco


def engine_for(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        known = ", ".join(sorted(_SUFFIXES))
        raise EdgeposeError(f"{path}: no runtime for '{suffix}' files (known: {known})")
    return _SUFFIXES[suffix]


class Runtime:
    """Base class: subclasses implement ``_load`` and ``_infer`` (one call at the engine's batch size).

    ``batch_size`` is the artifact's fixed batch (``None`` when dynamic); ``__call__`` splits a larger
    batch into such calls, so callers never care.
    """

    engine = "base"

    def __init__(self, path: str | Path, threads: int | None = None, device: str = "cpu", **options: Any):
        self.path = Path(path)
        self.threads = threads
        self.device = device
        self.options = options
        self.metadata: dict[str, Any] = {}
        self.batch_size: int | None = None
        self.precision = "fp32"
        t0 = time.perf_counter()
        self._load()
        self.load_time_s = time.perf_counter() - t0

    def _load(self) -> None:
        raise NotImplementedError

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4:
            raise EdgeposeError(f"{self.path}: expected an NCHW batch, got shape {batch.shape}")
        bs = self.batch_size
        if bs is None or len(batch) == bs:
            return np.asarray(self._infer(batch), dtype=np.float32)
        outs = []
        for i in range(0, len(batch), bs):
            chunk = batch[i : i + bs]
            n = len(chunk)
            if n < bs:  # pad the last chunk of a fixed-batch artifact
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - n, axis=0)])
            outs.append(np.asarray(self._infer(chunk), dtype=np.float32)[:n])
        return np.concatenate(outs)

    def info(self) -> dict[str, Any]:
        """What ran: engine, its version, device and precision actually used, threads."""
        return {
            "engine": self.engine,
            "path": str(self.path),
            "device": self.device,
            "precision": self.precision,
            "threads": self.threads,
            "batch_size": self.batch_size,
        }


def load_runtime(path: str | Path, engine: str | None = None, **kwargs: Any) -> Runtime:
    """Open an artifact with its engine (chosen from the suffix unless ``engine`` names one)."""
    path = Path(path)
    name = engine or engine_for(path)
    if name not in RUNTIMES:
        raise EdgeposeError(f"{path}: unknown engine {name!r} (known: {', '.join(RUNTIMES)})")
    if not path.exists():
        raise EdgeposeError(f"{path}: artifact not found")
    return RUNTIMES[name](path, **kwargs)
