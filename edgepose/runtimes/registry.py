"""The runtime registry: engine name and artifact suffix -> runtime class.

It imports nothing of edgepose but the one exception type, so :mod:`.base` (the runtime face) and
:mod:`.artifact` (the metadata readers, which ask which engine reads a file) both import it without a circle.
Entries are added by :func:`register_runtime`, the class decorator every engine module in ``engines/`` uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import EdgeposeError

RUNTIMES: dict[str, Any] = {}  # engine name -> Runtime subclass
_SUFFIXES: dict[str, str] = {}  # ".onnx" -> engine name (the first engine to claim a suffix keeps it)


def register_runtime(cls: Any) -> Any:
    """Class decorator: make an engine loadable by name (``cls.engine``) and by artifact suffix."""
    if not cls.engine or cls.engine == "base":
        raise TypeError(f"{cls.__name__} declares no engine name")
    RUNTIMES[cls.engine] = cls
    for s in cls.suffixes:
        _SUFFIXES.setdefault(s, cls.engine)
    return cls


def engine_for(path: str | Path) -> str:
    """The engine name that opens ``path`` (by suffix), or one error line listing the known suffixes."""
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        known = ", ".join(sorted(_SUFFIXES))
        raise EdgeposeError(f"{path}: no runtime for '{suffix}' files (known: {known})")
    return _SUFFIXES[suffix]


def runtime_for(path: str | Path) -> Any:
    """The runtime class that opens ``path`` (by suffix), or ``None``."""
    name = _SUFFIXES.get(Path(path).suffix.lower())
    return RUNTIMES.get(name) if name else None


def runtime_of_format(fmt: str | None) -> Any:
    """The runtime class of an artifact format or suffix (``onnx``, ``.xml``), or ``None``."""
    f = (fmt or "").lower().lstrip(".")
    for cls in RUNTIMES.values():
        if f == cls.format or f in (s.lstrip(".") for s in cls.suffixes):
            return cls
    return None


def format_label(fmt: str | None) -> str:
    """The display name of an artifact format or suffix (``onnx`` -> ``ONNX``, ``xml`` -> ``OpenVINO``)."""
    cls = runtime_of_format(fmt)
    return cls.label if cls is not None else (fmt or "?")


def suffixes() -> dict[str, str]:
    """Every registered artifact suffix and the engine that opens it."""
    return dict(_SUFFIXES)
