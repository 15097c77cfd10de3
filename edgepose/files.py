"""Files: the one atomic writer and the one cache folder that every part of edgepose uses.

Every file edgepose writes goes through :func:`atomic_path`: the content is written to a hidden temporary
file beside the destination and moved into place with ``os.replace`` only when complete, so a crash, a full
disk or Ctrl-C never leaves a half-written file under the final name. The file gets the mode a plain
``open()`` would give (``0o666 & ~umask``), not ``mkstemp``'s private 0600.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write", "cache_dir", "normal_mode", "sha256_of"]


def normal_mode() -> int:
    """The mode a plain ``open(path, 'w')`` gives a new file under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it becomes ``path`` (normal mode), else it goes.

    ``suffix`` lets writers that pick a format from the name (``np.savez``, ``cv2.imwrite``, matplotlib)
    see the right extension.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, normal_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (str as UTF-8) to ``path`` atomically; returns ``path``."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def cache_dir(*parts: str) -> Path:
    """``$EDGEPOSE_CACHE`` (default ``~/.cache/edgepose``) joined with ``parts``; not created here."""
    root = os.environ.get("EDGEPOSE_CACHE") or Path.home() / ".cache" / "edgepose"
    return Path(root).joinpath(*parts)


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """The file's sha256 as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
