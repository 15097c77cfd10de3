"""Reading ``.npz`` files that may be hostile: every declared shape and size is checked before anything is
allocated, and no pickle is ever loaded. numpy only.

``np.load`` trusts each member's header and allocates what it declares, so a crafted 1 kB file can ask for
terabytes (MemoryError) or make a reader loop for ever; :func:`read_npz` refuses such a file with one line.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EdgeposeError

__all__ = ["MAX_ARRAY_BYTES", "read_npz", "read_npy"]

MAX_ARRAY_BYTES = 2 << 30  # 2 GiB: ten times the largest calibration set anyone needs
MAX_MEMBERS = 32
_ZIP_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError,
               struct.error, OverflowError, UnicodeDecodeError, KeyError, TypeError, IndexError)  # fmt: skip


def read_npz(path: Path, kind: str = ".npz file") -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` with every declared shape and size checked *before* anything is allocated.

    ``np.load`` trusts each member's header and allocates what it declares (a crafted 1 kB file can ask for
    terabytes); here a member must be a plain (non-object) array whose header matches the bytes it really
    holds, at most :data:`MAX_ARRAY_BYTES`, read in the zip's own streamed chunks.
    """
    what = f"{path}: not a {kind}"
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise EdgeposeError(f"{what}: it holds {len(infos)} members")
            for info in infos:
                if not info.filename.endswith(".npy"):
                    continue
                key = info.filename[:-4]
                with zf.open(info) as f:
                    arrays[key] = read_npy(f, info, what)
    except EdgeposeError:
        raise
    except _ZIP_ERRORS as e:
        raise EdgeposeError(f"{what}: {type(e).__name__}: {str(e)[:160]}") from None
    if not arrays:
        raise EdgeposeError(f"{what}: it holds no arrays")
    return arrays


def read_npy(f: Any, info: zipfile.ZipInfo, what: str) -> np.ndarray:
    from numpy.lib import format as npy

    version = npy.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = npy.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = npy.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    name = info.filename
    if dtype.hasobject:
        raise EdgeposeError(f"{what}: '{name}' holds Python objects, refused")
    if any(d < 0 for d in shape):
        raise EdgeposeError(f"{what}: '{name}' declares a negative shape {shape}")
    count = 1
    for d in shape:
        count *= int(d)
    nbytes = count * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES or nbytes > info.file_size:
        raise EdgeposeError(f"{what}: '{name}' declares shape {shape} ({nbytes} bytes) but holds "
                            f"{info.file_size} bytes")  # fmt: skip
    data = f.read(nbytes) if nbytes else b""
    if len(data) != nbytes:
        raise EdgeposeError(f"{what}: '{name}' is truncated: {len(data)} of {nbytes} bytes")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()
