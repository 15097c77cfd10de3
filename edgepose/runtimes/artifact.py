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
    parity {...} (figures against PyTorch, see edgepose.converters.parity; INT8: ``task`` {metric, reference,
    value, drop, max_drop, passed, control {ann, image_ids_sha256, num_images, ...}}, the task metric on the
    control split), accuracy_control {...} (INT8 made with ``--max-drop``: budget, plain and reached drop,
    float_layers, steps; see edgepose.converters.int8),
    companions {".bin": {"name", "size", "sha256"}} (formats with companion files)
    sidecar only: created (UTC ISO time), conversion.seconds (and other timings), accuracy_control.latency,
        file {"name", "size", "sha256"}

Integrity: :func:`verify_artifact` (run by every ``load_runtime``) checks the artifact against the sizes and
sha256 that the sidecar records (the embedded copy records its companions'), before any engine parses the
file: a truncated ``.tflite`` can crash LiteRT outright, and a sidecar that belongs to another file would
feed the engine the wrong layout. Hashes are cached (:func:`edgepose.files.sha256_cached`).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from ..errors import EdgeposeError
from ..files import parse_json, sha256_cached, sha256_of
from ..processing import INPUT_FLOAT, INPUT_KINDS  # input.kind values (their one home is processing)
from ..spec import check_metadata_types
from .registry import runtime_for

FORMAT_VERSION = 1
KEY = "edgepose"  # name of the embedded entry in every format

__all__ = [
    "FORMAT_VERSION",
    "KEY",
    "input_kind",
    "sidecar_path",
    "artifact_inputs",
    "read_metadata",
    "read_embedded",
    "tflite_metadata_entries",
    "tflite_problem",
    "file_record",
    "verify_artifact",
]


def sidecar_path(path: str | Path) -> Path:
    """``model.tflite`` -> ``model.tflite.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def artifact_inputs(path: str | Path | None, what: str = "--artifact") -> list[tuple[str, Path]]:
    """Every file an artifact is read from, as (label, path) pairs for :func:`edgepose.files.check_distinct`:
    the artifact, its companions (OpenVINO's ``.bin``) and its sidecar; none for ``None``."""
    if not path:
        return []
    path = Path(path)
    cls = runtime_for(path)
    companions = [path.with_suffix(s) for s in (cls.companions if cls is not None else ())]
    return [(what, path)] + [(f"{what}'s companion", c) for c in companions] + [(f"{what}'s sidecar",
                                                                                  sidecar_path(path))]  # fmt: skip


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
    path = Path(path)
    cls = runtime_for(path)
    reader = getattr(cls, "read_embedded", None)
    if reader is None or not path.is_file():
        return None
    raw = reader(path)  # each engine reads its own format
    return None if raw is None else _parse_json(raw, path)


def _parse_json(raw: bytes | str, source: Path) -> dict[str, Any]:
    try:
        meta = parse_json(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise EdgeposeError(f"{source}: artifact metadata is not valid JSON ({e})") from None
    except RecursionError:
        raise EdgeposeError(f"{source}: artifact metadata is nested too deeply to be ours") from None
    if not isinstance(meta, dict):
        raise EdgeposeError(f"{source}: artifact metadata is not a JSON object")
    check_metadata_types(meta, source)
    return meta


# A minimal FlatBuffers reader, enough for TFLite's Model.metadata and Model.buffers (schema.fbs):
# Model fields: 4 = buffers [Buffer], 6 = metadata [Metadata]; Metadata: 0 = name, 1 = buffer index;
# Buffer: 0 = data [ubyte], 1 = offset (uint64, data outside the flatbuffer), 2 = size (uint64).
class _FlatTable:
    """One FlatBuffers table; every offset is bounds-checked (a damaged file raises ValueError, never reads
    outside the buffer or loops over a length it cannot hold)."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        vt = pos - self._i32(pos)
        self.vt_len = self._u16(vt)
        if self.vt_len < 4 or vt + self.vt_len > len(buf):
            raise ValueError(f"vtable at {vt} out of range")
        self.vt = vt

    def _check(self, pos: int, size: int) -> int:
        if pos < 0 or pos + size > len(self.buf):
            raise ValueError(f"offset {pos} out of range")
        return pos

    def _i32(self, pos: int) -> int:
        return struct.unpack_from("<i", self.buf, self._check(pos, 4))[0]

    def _u32(self, pos: int) -> int:
        return struct.unpack_from("<I", self.buf, self._check(pos, 4))[0]

    def _u16(self, pos: int) -> int:
        return struct.unpack_from("<H", self.buf, self._check(pos, 2))[0]

    def _field(self, i: int) -> int | None:
        off = 4 + 2 * i
        if off >= self.vt_len:
            return None
        rel = self._u16(self.vt + off)
        return self.pos + rel if rel else None

    def scalar(self, i: int, fmt: str, default: int = 0) -> int:
        p = self._field(i)
        if p is None:
            return default
        return struct.unpack_from(fmt, self.buf, self._check(p, struct.calcsize(fmt)))[0]

    def _target(self, i: int) -> int | None:
        p = self._field(i)
        return None if p is None else p + self._u32(p)

    def _vector(self, i: int, item: int) -> tuple[int, int] | None:
        t = self._target(i)
        if t is None:
            return None
        n = self._u32(t)
        self._check(t + 4, n * item)  # the whole vector lies inside the buffer
        return t + 4, n

    def bytes_(self, i: int) -> bytes | None:
        v = self._vector(i, 1)
        return None if v is None else self.buf[v[0] : v[0] + v[1]]

    def tables(self, i: int) -> list[_FlatTable]:
        v = self._vector(i, 4)
        if v is None:
            return []
        start, n = v
        return [_FlatTable(self.buf, start + 4 * k + self._u32(start + 4 * k)) for k in range(n)]


def _tflite_model(buf: bytes) -> _FlatTable:
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ValueError("no TFL3 file identifier")
    return _FlatTable(buf, struct.unpack_from("<I", buf, 0)[0])


def tflite_problem(path: str | Path) -> str | None:
    """What makes ``path`` an unsafe TFLite flatbuffer to hand to LiteRT (truncated or damaged), or ``None``.

    Checks the root table, every subgraph table and every buffer's data (in the flatbuffer, or at its
    offset/size outside it) against the file's length: flatbuffers are written back to front, so a file cut
    short loses buffer data first, which LiteRT would read out of bounds.
    """
    path = Path(path)
    buf = path.read_bytes()
    try:
        model = _tflite_model(buf)
        if not model.tables(2):  # subgraphs
            return "not a TFLite model (no subgraph)"
        for k, b in enumerate(model.tables(4)):  # buffers
            b.bytes_(0)
            offset, size = b.scalar(1, "<Q"), b.scalar(2, "<Q")
            if offset > 1 and offset + size > len(buf):
                return f"truncated TFLite file ({len(buf)} bytes; buffer {k} ends at {offset + size})"
    except (ValueError, struct.error, IndexError, OverflowError) as e:
        return f"truncated or damaged TFLite file ({e})"
    return None


def tflite_metadata_entries(path: str | Path) -> dict[str, bytes]:
    """All named metadata entries of a ``.tflite`` file (name -> bytes), read without TensorFlow."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as e:
        raise EdgeposeError(f"{path}: cannot read ({e.strerror})") from None
    try:
        model = _tflite_model(buf)
        buffers = model.tables(4)
        out = {}
        for entry in model.tables(6):
            name = (entry.bytes_(0) or b"").decode("utf-8", "replace")
            b = buffers[entry.scalar(1, "<I")]
            data = b.bytes_(0)
            offset, size = b.scalar(1, "<Q"), b.scalar(2, "<Q")
            if not data and offset > 1:
                if offset + size > len(buf):
                    raise ValueError(f"metadata buffer ends at {offset + size}, after the end of the file")
                data = buf[offset : offset + size]
            out[name] = bytes(data or b"")
        return out
    except (ValueError, struct.error, IndexError, OverflowError) as e:
        raise EdgeposeError(f"{path}: not a readable TFLite flatbuffer ({e})") from None


# --------------------------------------------------------------------------------------------- integrity
def file_record(path: str | Path) -> dict[str, Any]:
    """``{"name", "size", "sha256"}`` of a file, as the metadata records it."""
    path = Path(path)
    return {"name": path.name, "size": path.stat().st_size, "sha256": sha256_of(path)}


def _mismatch(path: Path, rec: Any, vouch: str, companion: bool = False) -> str | None:
    """Why ``path`` is not the file ``rec`` describes, as the rest of a message that starts with ``path``
    (``None`` when it is). ``vouch`` names where the record is: a sidecar, or the artifact for a companion."""
    if not isinstance(rec, dict) or not isinstance(rec.get("size"), int) or not isinstance(rec.get("sha256"), str):
        return f"{vouch} holds a damaged file record"
    if not path.is_file():
        return f"missing ({vouch} records it)"
    size = path.stat().st_size
    if size == rec["size"] and sha256_cached(path) == rec["sha256"]:
        return None
    named = rec.get("name")
    if named and named != path.name:
        if companion:
            return f"does not belong to {vouch} (it records {named}, {rec['size']} bytes)"
        return f"{vouch} belongs to another file ({named}, {rec['size']} bytes)"
    if size < rec["size"]:
        return f"truncated: {size} of {rec['size']} bytes (as {vouch} records)"
    return f"changed since conversion (its sha256 differs from the one {vouch} records)"


def verify_artifact(path: str | Path, cls: Any = None) -> dict[str, Any]:
    """Check ``path`` (and its companions) against its metadata before an engine opens it; returns the sidecar
    metadata (``{}`` without a sidecar). One :class:`EdgeposeError` line for anything that does not match.

    ``cls`` is the runtime class (for the format and the companion suffixes); by default the one for the suffix.
    """
    path = Path(path)
    if cls is None:
        cls = runtime_for(path)
    declared = tuple(getattr(cls, "companions", ()) or ())
    side = sidecar_path(path)
    if side.is_file():
        meta = _parse_json(side.read_bytes(), side)
        fmt = meta.get("format")
        if cls is not None and fmt and cls.format and fmt != cls.format:
            raise EdgeposeError(f"{path}: sidecar {side.name} belongs to another file (a {fmt} artifact; this is "
                                f"a {cls.format} file)")  # fmt: skip
        if meta.get("file") is not None:
            why = _mismatch(path, meta["file"], f"sidecar {side.name}")
            if why:
                raise EdgeposeError(f"{path}: {why}")
        companions = meta.get("companions") or {}
    elif declared:  # no sidecar: the embedded copy vouches for the companions
        meta, companions = {}, (read_embedded(path) or {}).get("companions") or {}
    else:
        return {}
    if not isinstance(companions, dict) or not set(companions) <= set(declared):
        raise EdgeposeError(f"{path}: its metadata holds a damaged companion record")
    for suffix, rec in companions.items():
        why = _mismatch(path.with_suffix(suffix), rec, path.name, companion=True)
        if why:
            raise EdgeposeError(f"{path.with_suffix(suffix)}: {why}")
    return meta
