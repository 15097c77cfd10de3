"""Artifact metadata: what every converted model file carries with it.

Each artifact (``.onnx``, ``.tflite``, ``.xml``+``.bin``) has a JSON sidecar ``<artifact>.json`` and, where the
format allows, the same JSON embedded in the file: ONNX ``metadata_props['edgepose']``, OpenVINO ``rt_info``
entry ``edgepose``, and a TFLite flatbuffer ``metadata`` entry named ``edgepose``. The writers live on the
workstation side (:mod:`edgepose.converters.metadata`); this module only reads. :func:`read_metadata` prefers
the sidecar and falls back to the embedded copy; it needs neither torch nor TensorFlow (the TFLite flatbuffer
and the OpenVINO XML are parsed here by hand, ONNX with the ``onnx`` package when it is installed).

The metadata dict (``FORMAT_VERSION`` 1)::

    format_version, format ("onnx" | "tflite" | "openvino"), precision ("fp32" | "fp16" | "int8"),
    model (ModelSpec.to_dict()), batch (int, or None when dynamic), decode ("default"),
    layout {"input": "NCHW"|"NHWC", "output": ...},
    input / output {"name", "shape", "dtype", "quantization": None | {"scale", "zero_point"}},
    input.kind: what the app feeds, "float_nchw_normalized" (the default when absent: float32, (pixel -
        mean) / std, NCHW in the runtime face) or "uint8_nhwc_rgb" (the crop's RGB bytes, N x H x W x 3,
        normalisation and transpose inside the model; ``edgepose convert --input uint8``),
    tools {package: version}, source {"checkpoint", "sha256"}, calibration {...} (int8 only),
    parity {...} (figures against PyTorch, see edgepose.converters.parity), created (UTC ISO time)
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from ..errors import EdgeposeError
from ..processing import INPUT_FLOAT, INPUT_KINDS, INPUT_UINT8  # input.kind values

FORMAT_VERSION = 1
KEY = "edgepose"  # name of the embedded entry in every format

__all__ = [
    "FORMAT_VERSION",
    "KEY",
    "INPUT_FLOAT",
    "INPUT_UINT8",
    "INPUT_KINDS",
    "input_kind",
    "sidecar_path",
    "read_metadata",
    "read_embedded",
    "tflite_metadata_entries",
]


def sidecar_path(path: str | Path) -> Path:
    """``model.tflite`` -> ``model.tflite.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def input_kind(meta: dict[str, Any], source: str | Path = "artifact") -> str:
    """The ``input.kind`` an artifact's metadata declares (``INPUT_FLOAT`` when absent: older artifacts)."""
    inp = meta.get("input") if isinstance(meta, dict) else None
    kind = (inp.get("kind") if isinstance(inp, dict) else None) or INPUT_FLOAT
    if kind not in INPUT_KINDS:
        raise EdgeposeError(f"{source}: unknown input.kind {kind!r} in its metadata (known: {', '.join(INPUT_KINDS)})")
    return kind


# ------------------------------------------------------------------------------------------------ read
def read_metadata(path: str | Path) -> dict[str, Any]:
    """The artifact's metadata: the sidecar if there is one, else the embedded copy, else ``{}``."""
    path = Path(path)
    side = sidecar_path(path)
    if side.is_file():
        return _parse_json(side.read_bytes(), side)
    return read_embedded(path) or {}


def read_embedded(path: str | Path) -> dict[str, Any] | None:
    """The metadata embedded in the artifact file itself (``None`` when absent or not readable here)."""
    from .base import runtime_for

    path = Path(path)
    cls = runtime_for(path)
    reader = getattr(cls, "read_embedded", None)
    if reader is None or not path.is_file():
        return None
    raw = reader(path)  # each engine reads its own format
    return None if raw is None else _parse_json(raw, path)


def _parse_json(raw: bytes | str, source: Path) -> dict[str, Any]:
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise EdgeposeError(f"{source}: artifact metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise EdgeposeError(f"{source}: artifact metadata is not a JSON object")
    return meta


# A minimal FlatBuffers reader, enough for TFLite's Model.metadata and Model.buffers (schema.fbs):
# Model fields: 4 = buffers [Buffer], 6 = metadata [Metadata]; Metadata: 0 = name, 1 = buffer index;
# Buffer: 0 = data [ubyte], 1 = offset (uint64, data outside the flatbuffer), 2 = size (uint64).
class _FlatTable:
    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        vt = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vt_len = struct.unpack_from("<H", buf, vt)[0]
        self.vt = vt

    def _field(self, i: int) -> int | None:
        off = 4 + 2 * i
        if off >= self.vt_len:
            return None
        rel = struct.unpack_from("<H", self.buf, self.vt + off)[0]
        return self.pos + rel if rel else None

    def scalar(self, i: int, fmt: str, default: int = 0) -> int:
        p = self._field(i)
        return default if p is None else struct.unpack_from(fmt, self.buf, p)[0]

    def _target(self, i: int) -> int | None:
        p = self._field(i)
        return None if p is None else p + struct.unpack_from("<I", self.buf, p)[0]

    def bytes_(self, i: int) -> bytes | None:
        t = self._target(i)
        if t is None:
            return None
        n = struct.unpack_from("<I", self.buf, t)[0]
        return self.buf[t + 4 : t + 4 + n]

    def tables(self, i: int) -> list[_FlatTable]:
        t = self._target(i)
        if t is None:
            return []
        n = struct.unpack_from("<I", self.buf, t)[0]
        out = []
        for k in range(n):
            p = t + 4 + 4 * k
            out.append(_FlatTable(self.buf, p + struct.unpack_from("<I", self.buf, p)[0]))
        return out


def tflite_metadata_entries(path: str | Path) -> dict[str, bytes]:
    """All named metadata entries of a ``.tflite`` file (name -> bytes), read without TensorFlow."""
    path = Path(path)
    buf = path.read_bytes()
    try:
        if len(buf) < 8 or buf[4:8] != b"TFL3":
            raise ValueError("no TFL3 file identifier")
        model = _FlatTable(buf, struct.unpack_from("<I", buf, 0)[0])
        buffers = model.tables(4)
        out = {}
        for entry in model.tables(6):
            name = (entry.bytes_(0) or b"").decode("utf-8", "replace")
            b = buffers[entry.scalar(1, "<I")]
            data = b.bytes_(0)
            offset, size = b.scalar(1, "<Q"), b.scalar(2, "<Q")
            if not data and offset > 1:
                data = buf[offset : offset + size]
            out[name] = bytes(data or b"")
        return out
    except (ValueError, struct.error, IndexError) as e:
        raise EdgeposeError(f"{path}: not a readable TFLite flatbuffer ({e})") from None
