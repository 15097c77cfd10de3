"""Artifact metadata: what every converted model file carries with it.

Each artifact (``.onnx``, ``.tflite``, ``.xml``+``.bin``) has a JSON sidecar ``<artifact>.json`` and, where the
format allows, the same JSON embedded in the file: ONNX ``metadata_props['edgepose']``, OpenVINO ``rt_info``
entry ``edgepose``, and a TFLite flatbuffer ``metadata`` entry named ``edgepose``. :func:`read_metadata` prefers
the sidecar and falls back to the embedded copy; it needs neither torch nor TensorFlow (the TFLite flatbuffer
and the OpenVINO XML are parsed here by hand, ONNX with the ``onnx`` package when it is installed).

The metadata dict (``FORMAT_VERSION`` 1)::

    format_version, format ("onnx" | "tflite" | "openvino"), precision ("fp32" | "fp16" | "int8"),
    model (ModelSpec.to_dict()), batch (int, or None when dynamic), decode ("default"),
    layout {"input": "NCHW"|"NHWC", "output": ...},
    input / output {"name", "shape", "dtype", "quantization": None | {"scale", "zero_point"}},
    tools {package: version}, source {"checkpoint", "sha256"}, calibration {...} (int8 only),
    parity {...} (figures against PyTorch, see edgepose.converters.parity), created (UTC ISO time)
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EdgeposeError

FORMAT_VERSION = 1
KEY = "edgepose"  # name of the embedded entry in every format
SUFFIX_FORMATS = {".onnx": "onnx", ".tflite": "tflite", ".xml": "openvino"}

__all__ = [
    "FORMAT_VERSION",
    "KEY",
    "sidecar_path",
    "read_metadata",
    "read_embedded",
    "write_sidecar",
    "write_metadata",
    "embed_metadata",
    "to_layout",
    "from_layout",
    "quantize",
    "dequantize",
]


def sidecar_path(path: str | Path) -> Path:
    """``model.tflite`` -> ``model.tflite.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


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
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None or not path.is_file():
        return None
    raw = {"onnx": _onnx_embedded, "tflite": _tflite_embedded, "openvino": _openvino_embedded}[fmt](path)
    return None if raw is None else _parse_json(raw, path)


def _parse_json(raw: bytes | str, source: Path) -> dict[str, Any]:
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise EdgeposeError(f"{source}: artifact metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise EdgeposeError(f"{source}: artifact metadata is not a JSON object")
    return meta


def _onnx_embedded(path: Path) -> str | None:
    try:
        import onnx
    except ImportError:
        return None  # device side without the onnx package: sidecar only
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise EdgeposeError(f"{path}: not a readable ONNX model ({str(e).splitlines()[0][:200]})") from None
    for prop in model.metadata_props:
        if prop.key == KEY:
            return prop.value
    return None


def _openvino_embedded(path: Path) -> str | None:
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise EdgeposeError(f"{path}: not a readable OpenVINO IR file ({e})") from None
    node = root.find(f"rt_info/{KEY}")
    return None if node is None else node.get("value")


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


def _tflite_embedded(path: Path) -> bytes | None:
    return tflite_metadata_entries(path).get(KEY)


# ----------------------------------------------------------------------------------------------- write
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _dumps(meta: dict[str, Any], indent: int | None = 2) -> str:
    return json.dumps(meta, indent=indent, sort_keys=False, default=_json_default)


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
    _atomic_write(side, (_dumps(meta) + "\n").encode())
    return side


def write_metadata(path: str | Path, meta: dict[str, Any], embed: bool = True) -> Path:
    """Write the sidecar and (``embed``) the embedded copy; returns the sidecar path."""
    if embed:
        embed_metadata(path, meta)
    return write_sidecar(path, meta)


def embed_metadata(path: str | Path, meta: dict[str, Any]) -> None:
    """Put ``meta`` inside the artifact file (replacing an earlier entry); needs that format's writer package."""
    path = Path(path)
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise EdgeposeError(f"{path}: cannot embed metadata in '{path.suffix}' files")
    text = _dumps(meta, indent=None)
    {"onnx": _embed_onnx, "tflite": _embed_tflite, "openvino": _embed_openvino}[fmt](path, text)


def _embed_onnx(path: Path, text: str) -> None:
    import onnx

    model = onnx.load(str(path))
    props = [p for p in model.metadata_props if p.key != KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    model.metadata_props.add(key=KEY, value=text)
    _atomic_write(path, model.SerializeToString())


def _embed_openvino(path: Path, text: str) -> None:
    """Add/replace ``<rt_info><edgepose value=.../></rt_info>`` in the IR XML (the .bin is untouched).

    Editing the XML keeps the weights byte for byte (re-saving through OpenVINO could re-encode them); the
    entry is what ``Model.get_rt_info('edgepose')`` returns once OpenVINO reads the file.
    """
    tree = ET.parse(path)
    root = tree.getroot()
    rt = root.find("rt_info")
    if rt is None:
        rt = ET.SubElement(root, "rt_info")
    for old in rt.findall(KEY):
        rt.remove(old)
    ET.SubElement(rt, KEY, {"value": text})
    _atomic_write(path, ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _tflite_schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            from tensorflow.lite.python import schema_py_generated as schema
        except ImportError:
            raise EdgeposeError(
                "writing TFLite metadata needs ai-edge-litert or tensorflow: pip install 'edgepose[convert]'"
            ) from None
    return schema


def _embed_tflite(path: Path, text: str) -> None:
    """Rebuild the flatbuffer with a ``metadata`` entry named ``edgepose`` pointing at a new buffer."""
    import flatbuffers

    schema = _tflite_schema()
    buf = path.read_bytes()
    model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    model.buffers = list(model.buffers or [])
    model.metadata = list(model.metadata or [])
    existing = [m for m in model.metadata if (m.name.decode() if isinstance(m.name, bytes) else m.name) == KEY]
    if existing:
        model.buffers[existing[0].buffer].data = data
    else:
        b = schema.BufferT()
        b.data = data
        model.buffers.append(b)
        m = schema.MetadataT()
        m.name = KEY
        m.buffer = len(model.buffers) - 1
        model.metadata.append(m)
    builder = flatbuffers.Builder(len(buf) + len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    _atomic_write(path, bytes(builder.Output()))


# ------------------------------------------------------------------------------- layout and quantisation
def to_layout(batch: np.ndarray, layout: str) -> np.ndarray:
    """An NCHW batch in the engine's layout ("NCHW" or "NHWC")."""
    return np.ascontiguousarray(batch.transpose(0, 2, 3, 1)) if layout == "NHWC" else batch


def from_layout(batch: np.ndarray, layout: str) -> np.ndarray:
    """An engine output in ``layout`` back to NCHW."""
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2)) if layout == "NHWC" else batch


_INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """Affine quantisation ``q = clip(round(x / scale) + zero_point)`` (TFLite's rule)."""
    lo, hi = _INT_RANGES[dtype]
    q = np.round(np.asarray(x, dtype=np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, lo, hi).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """``x = (q - zero_point) * scale`` as float32."""
    return ((np.asarray(q, dtype=np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)
