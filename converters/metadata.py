"""Writing artifact metadata (workstation side): the JSON sidecar and the copy embedded in the artifact.

The readers live on the device side in :mod:`edgepose.artifact` (they need no writer package); the writers
need ``onnx`` (ONNX), ``flatbuffers`` + the TFLite schema (TFLite) and only the standard library (OpenVINO XML).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgepose.errors import EdgeposeError
from edgepose.files import atomic_write, json_text
from edgepose.runtimes.artifact import sidecar_path

from . import targets as _targets  # noqa: F401  (registers every target: each writes its own format)
from .base import target_for

__all__ = ["write_sidecar", "write_metadata", "embed_metadata"]


def _dumps(meta: dict[str, Any], indent: int | None = 2) -> str:
    return json_text(meta, "artifact metadata", indent=indent, sort_keys=False, default=_json_default)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (Path, tuple)):
        return str(o) if isinstance(o, Path) else list(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def write_sidecar(path: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``<artifact>.json`` atomically; returns its path."""
    side = sidecar_path(path)
    atomic_write(side, (_dumps(meta) + "\n").encode())
    return side


def write_metadata(path: str | Path, meta: dict[str, Any], embed: bool = True) -> Path:
    """Write the sidecar and (``embed``) the embedded copy; returns the sidecar path."""
    if embed:
        embed_metadata(path, meta)
    return write_sidecar(path, meta)


def embed_metadata(path: str | Path, meta: dict[str, Any]) -> None:
    """Put ``meta`` inside the artifact file (replacing an earlier entry); needs that format's writer package."""
    path = Path(path)
    target = target_for(path)
    if target is None or target.embed is None:
        raise EdgeposeError(f"{path}: cannot embed metadata in '{path.suffix}' files")
    target.embed(path, _dumps(meta, indent=None))  # each target writes its own format
