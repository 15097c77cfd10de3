"""Files: the one atomic writer, the one output-path check, the one JSON writer and the one cache folder.

Every file edgepose writes goes through :func:`atomic_path`: the content is written to a hidden temporary
file beside the destination and moved into place with ``os.replace`` only when complete, so a crash, a full
disk or Ctrl-C never leaves a half-written file under the final name. The file gets the mode a plain
``open()`` would give (``0o666 & ~umask``), not ``mkstemp``'s private 0600. A file system error while
writing becomes one :class:`EdgeposeError` line naming the file.

Every command checks its output paths with :func:`check_writable` before any work starts, so a bad path
fails at once and not after an hour of evaluation. JSON is written with :func:`json_text` (strict: a NaN or
an infinity is an error, never a bare ``NaN`` that no JSON reader accepts).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import EdgeposeError

__all__ = ["atomic_path", "atomic_write", "cache_dir", "check_distinct", "check_writable", "json_text", "normal_mode",
           "parse_json", "sha256_of", "sha256_cached", "staging_dir", "clean_stale_staging"]  # fmt: skip


def normal_mode() -> int:
    """The mode a plain ``open(path, 'w')`` gives a new file under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it becomes ``path`` (normal mode), else it goes.

    ``suffix`` lets writers that pick a format from the name (``np.savez``, ``cv2.imwrite``, matplotlib)
    see the right extension. An ``OSError`` (read-only folder, full disk, a directory in the way) becomes
    an :class:`EdgeposeError` naming ``path``.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
        os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, normal_mode())
        os.replace(tmp, path)
    except OSError as e:
        raise EdgeposeError(f"{path}: cannot write ({_why(e)})") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (str as UTF-8) to ``path`` atomically; returns ``path``."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def json_text(obj: Any, what: str = "JSON", **kwargs: Any) -> str:
    """``json.dumps`` that refuses NaN and infinities (``allow_nan=False``) with one line saying where."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError as e:
        raise EdgeposeError(f"{what}: refusing to write a value that is not a finite number ({e})") from None


JSON_DEPTH = 200  # nesting levels a JSON file from outside may have (annotation files need fewer than 10)


def parse_json(data: bytes | str) -> Any:
    """``json.loads`` for files from outside, with nesting bounded: a file of 100 000 ``[`` raises
    ``RecursionError`` instead of overflowing the C stack (which kills the process when a library has raised the
    recursion limit: onnx2tf sets it to 2**31 - 1 on import). Raises ``ValueError``/``RecursionError`` as
    ``json.loads`` does; callers turn them into one line naming the file."""
    import sys

    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + JSON_DEPTH)
    try:
        return json.loads(data)
    finally:
        sys.setrecursionlimit(old)


def check_writable(path: str | Path | None, what: str = "output", folder: bool = False) -> None:
    """Fail at once, with one line, when ``path`` cannot be written later.

    ``folder=False``: ``path`` is a file (it may exist, but not as a directory); ``folder=True``: a directory
    that may exist. Missing parent folders must be creatable: the nearest existing one must be a folder we can
    create files in (probed with a real temporary file, since permission bits do not bind root and a
    read-only mount shows only on writing). Nothing is left behind.
    """
    if path is None:
        return
    if str(path).strip() == "":
        raise EdgeposeError(f"{what}: an empty path; give a file or folder name")
    p = Path(path).expanduser()
    label = f"{what} {p}"
    try:
        _check_writable(p, label, folder)
    except OSError as e:  # a name too long for the file system, a loop of links, ...
        raise EdgeposeError(f"{label}: {_why(e)}") from None


TEMP_NAME_EXTRA = 24  # what atomic_path's temporary name adds to an output's name (".NAME.XXXXXXXX.part")


def _check_writable(p: Path, label: str, folder: bool) -> None:
    if p.exists() or p.is_symlink():
        if folder and not p.is_dir():
            raise EdgeposeError(f"{label}: exists and is not a folder")
        if not folder and p.is_dir():
            raise EdgeposeError(f"{label}: is a directory; give a file name")
        if not folder and not p.is_file():
            raise EdgeposeError(f"{label}: exists and is not a regular file")
    anchor = p if (folder and p.is_dir()) else p.parent
    while not anchor.exists():
        if anchor.is_symlink():
            raise EdgeposeError(f"{label}: {anchor} is a broken symbolic link")
        if anchor.parent == anchor:
            break
        anchor = anchor.parent
    if not anchor.is_dir():
        raise EdgeposeError(f"{label}: {anchor} is not a folder")
    try:
        name_max = os.pathconf(anchor, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    for part in p.parts[len(anchor.parts) :] if p.is_relative_to(anchor) else (p.name,):
        if len(os.fsencode(part)) + TEMP_NAME_EXTRA > name_max:
            raise EdgeposeError(f"{label}: file name too long ({len(os.fsencode(part))} bytes; this file system "
                                f"allows {name_max - TEMP_NAME_EXTRA} for an output name)")  # fmt: skip
    try:
        fd, probe = tempfile.mkstemp(dir=anchor, prefix=".edgepose-probe-")
    except OSError as e:
        where = "its folder" if anchor in (p, p.parent) else f"{anchor} (to make its folder)"
        reason = "read-only" if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else _why(e)
        raise EdgeposeError(f"{label}: cannot write in {where}: {reason}") from None
    os.close(fd)
    os.unlink(probe)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return os.path.realpath(a) == os.path.realpath(b)
    except OSError:
        return False


def check_distinct(outputs: Iterable[tuple[str, str | Path | None]],
                   inputs: Iterable[tuple[str, str | Path | None]] = ()) -> None:  # fmt: skip
    """Fail at once when an output path is one of the inputs (the same file, through any link or spelling) or
    another output: ``predict x.jpg --out x.jpg`` must not overwrite its own image, ``--out o.png --json o.png``
    must not replace the image with JSON. ``outputs`` and ``inputs`` are (option, path) pairs; ``None`` is
    skipped."""
    outs = [(w, Path(p).expanduser()) for w, p in outputs if p is not None and str(p) != ""]
    ins = [(w, Path(p).expanduser()) for w, p in inputs if p is not None and str(p) != ""]
    for i, (what, out) in enumerate(outs):
        for in_what, src in ins:
            if _same_file(out, src):
                raise EdgeposeError(f"{what} {out}: is the input {in_what} {src}; refusing to overwrite it "
                                    "(give another output path)")  # fmt: skip
        for other, out2 in outs[i + 1 :]:
            if _same_file(out, out2):
                raise EdgeposeError(f"{what} {out}: is also the path of {other}; give each output its own file")


def _staging_head(prefix: str) -> str:
    host = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"
    return f".{prefix}-{host}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is gone too
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def clean_stale_staging(parent: str | Path, prefix: str) -> list[Path]:
    """Remove the work folders :func:`staging_dir` made in ``parent`` for processes of this host that are gone
    (killed with SIGKILL, or the machine lost power: no cleanup ran); returns them. Folders of live processes and
    of other hosts (a shared file system) are left alone."""
    head, gone = _staging_head(prefix), []
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return gone
    for d in entries:
        pid = d.name[len(head) :].partition("-")[0] if d.name.startswith(head) else ""
        if pid.isdigit() and d.is_dir() and not d.is_symlink() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d)
    return gone


def staging_dir(parent: str | Path, prefix: str) -> Path:
    """A new hidden work folder ``parent/.PREFIX-HOST-PID-XXXXXXXX`` whose content is moved into place when
    complete; stale ones of dead processes are removed first (:func:`clean_stale_staging`)."""
    clean_stale_staging(parent, prefix)
    return Path(tempfile.mkdtemp(dir=parent, prefix=f"{_staging_head(prefix)}{os.getpid()}-"))


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


# sha256 of big files, hashed once: keyed by the real path, size, mtime, ctime and inode (a rewrite changes
# ctime, which no user can set), in this process and in a small JSON file under the cache folder.
_HASHES: dict[tuple, str] = {}
_HASH_FILE = "file-hashes.json"
_HASH_FILE_MAX = 512


def _stat_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def sha256_cached(path: str | Path) -> str:
    """:func:`sha256_of`, remembered while the file is unchanged (see the comment above)."""
    path = Path(path)
    key = _stat_key(path)
    if key in _HASHES:
        return _HASHES[key]
    store = cache_dir(_HASH_FILE)
    try:
        known = parse_json(store.read_bytes())
        entry = known.get(key[0]) if isinstance(known, dict) else None
        if isinstance(entry, list) and len(entry) == 5 and tuple(entry[:4]) == key[1:]:
            _HASHES[key] = str(entry[4])
            return _HASHES[key]
    except (OSError, ValueError, RecursionError):
        known = {}
    digest = sha256_of(path)
    _HASHES[key] = digest
    if _stat_key(path) == key:  # unchanged while hashing: worth remembering across runs
        try:
            known = dict(list(known.items())[-(_HASH_FILE_MAX - 1) :]) if isinstance(known, dict) else {}
            known.pop(key[0], None)
            known[key[0]] = [*key[1:], digest]
            store.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(store, json.dumps(known))
        except (OSError, EdgeposeError):
            pass  # a cache we cannot write only costs time
    return digest
