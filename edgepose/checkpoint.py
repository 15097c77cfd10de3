"""Finding, downloading and strictly loading mmpose checkpoints (torch is imported lazily)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import files
from .errors import EdgeposeError
from .spec import checkpoint_hash_from_name, spec_for_checkpoint

PACKAGE_PREFIX = "package:"
ASSETS = Path(__file__).resolve().parent / "assets"
log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where downloaded checkpoints live (``$EDGEPOSE_CACHE/checkpoints``, default ``~/.cache/edgepose``)."""
    return files.cache_dir("checkpoints")


sha256_of = files.sha256_of


def is_url(s: str) -> bool:
    return s.startswith(("http://", "https://", "file://"))


def resolve_checkpoint(source: str | Path, progress: bool = True, sha256: str | None = None) -> Path:
    """Turn a path, a ``package:`` name or a URL into a local file (downloading URLs into the cache).

    ``sha256`` (full hash or a prefix) is checked for every kind of source; a URL, and a local file named like a
    zoo model's published checkpoint, is also checked against the prefix mmcv puts in its file name.
    """
    source = str(source)
    if source.startswith(PACKAGE_PREFIX):
        path = ASSETS / source[len(PACKAGE_PREFIX) :]
        if not path.is_file():
            raise EdgeposeError(f"{path}: bundled checkpoint is missing from this installation")
    elif source.startswith("file://"):  # a local file: read where it is, never copied into the cache
        from urllib.parse import unquote, urlparse

        path = Path(unquote(urlparse(source).path))
        if not path.is_file():
            raise EdgeposeError(f"{source}: checkpoint file not found")
        if not sha256 and (prefix := checkpoint_hash_from_name(path.name)):  # as a download of it would be
            _check_hash(path, prefix, source)
    elif is_url(source):
        return download_checkpoint(source, progress=progress, sha256=sha256)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise EdgeposeError(f"{path}: checkpoint file not found")
    if sha256:
        _check_hash(path, _norm_hash(sha256), str(path))
    elif spec_for_checkpoint(path.name) is not None and (prefix := checkpoint_hash_from_name(path.name)):
        _check_hash(path, prefix, f"{path} (named like the published {spec_for_checkpoint(path.name).name} file)")
    return path


def check_sha256(path: str | Path, sha256: str) -> str:
    """Check ``path`` against ``sha256`` (full hash or prefix, as ``--sha256`` takes it); returns the full hash."""
    path = Path(path)
    if not path.is_file():
        raise EdgeposeError(f"{path}: file not found")
    return _check_hash(path, _norm_hash(sha256), str(path))


def _norm_hash(value: str) -> str:
    h = value.strip().lower()
    if not (4 <= len(h) <= 64 and all(c in "0123456789abcdef" for c in h)):
        raise EdgeposeError(f"--sha256 {value!r}: expected a hex sha256 (or a prefix of at least 4 digits)")
    return h


def _check_hash(path: Path, expected: str, what: str) -> str:
    actual = files.sha256_cached(path)
    if not actual.startswith(expected):
        raise EdgeposeError(f"{what}: sha256 {actual[:12]}... does not match the expected {expected[:12]}...")
    return actual


def url_cache_path(url: str, root: Path | None = None) -> Path:
    """The cache file of ``url``: keyed by the whole URL, so two URLs with one file name never share a file."""
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return (root or cache_dir()) / key / url.rsplit("/", 1)[-1]


def download_checkpoint(
    url: str, dest_dir: Path | None = None, progress: bool = True, sha256: str | None = None
) -> Path:
    """Download ``url`` into the cache once (``torch.hub.download_url_to_file``: temp file, hash, rename).

    The expected hash is ``sha256`` when given, else the prefix in the file name (mmcv's convention). The
    sha256 of every download is stored beside it (``<file>.sha256``) and re-checked each time the cached file
    is used, so a corrupted or replaced cache file is never trusted; a mismatch downloads again.
    """
    name = url.rsplit("/", 1)[-1]
    expected = _norm_hash(sha256) if sha256 else checkpoint_hash_from_name(name)
    dest = (dest_dir / name) if dest_dir is not None else url_cache_path(url)
    record = dest.with_name(dest.name + ".sha256")
    if dest.is_file():
        recorded = record.read_text().strip() if record.is_file() else ""
        actual = sha256_of(dest)
        if recorded == actual and (not expected or actual.startswith(expected)):
            return dest
        log.warning("%s: cached file does not match its recorded sha256; downloading it again", dest)
        dest.unlink()
    try:
        from torch.hub import download_url_to_file
    except ImportError:
        raise EdgeposeError(f"{url}: downloading a checkpoint needs torch: pip install 'edgepose[torch]'") from None
    made = [d for d in (dest.parent, *dest.parent.parents) if not d.exists()]  # folders this download makes
    staging = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".download-"))
        part = staging / name
        download_url_to_file(url, str(part), hash_prefix=expected, progress=progress)
        # A download is cached only once it loads: a cut-off transfer (the server announced more than it sent),
        # a pickle that would run code, or non-finite weights must not be served from the cache ever after.
        read_state_dict(part, source=url)
        os.chmod(part, files.normal_mode())  # torch.hub's temp file is private (0600)
        files.atomic_write(record, sha256_of(part) + "\n")
        os.replace(part, dest)
    except RuntimeError as e:  # torch.hub's hash check (it has removed the partial file)
        if "invalid hash value" not in str(e):
            raise
        raise EdgeposeError(
            f"{url}: sha256 does not match the expected prefix {expected}; refusing the download"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise EdgeposeError(
            f"{url}: cannot download checkpoint ({reason}); download it elsewhere and pass --checkpoint PATH"
        ) from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if not dest.is_file():
            record.unlink(missing_ok=True)
            for d in made:  # innermost first; only folders this download made, and only when empty
                with contextlib.suppress(OSError):
                    d.rmdir()
    return dest


def read_state_dict(path: str | Path, source: str | None = None) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``) and unwrap ``{'meta', 'state_dict'}``; refuse a
    checkpoint whose weights hold NaN or infinity, naming the first such tensor. ``source`` names the file in
    errors (a URL being downloaded)."""
    import warnings

    import torch

    path = Path(path)
    where = source or path
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the reason below says it all
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated / foreign / code-carrying files
        raise EdgeposeError(f"{where}: {load_failure(path, e)}") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise EdgeposeError(f"{where}: checkpoint holds no state_dict (got {type(obj).__name__})")
    state = dict(obj)
    # Checkpoints saved from DataParallel/DDP prefix every key with "module."
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise EdgeposeError(f"{where}: entry {bad[0]!r} is not a tensor")
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            n = int((~torch.isfinite(v)).sum())
            raise EdgeposeError(f"{where}: tensor {k!r} holds {n} NaN or infinite value(s) of {v.numel()}: the "
                                "weights are broken (a diverged training run?); refusing to run them")  # fmt: skip
    return state


def load_failure(path: Path, exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused ``path``, in edgepose's words.

    torch's own messages are long, cut badly on one line, and advise ``weights_only=False``, which would run
    whatever code the file carries: edgepose never says that.
    """
    import re

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        return f"cannot read the file ({e.strerror})"
    text = str(exc)
    if size == 0:
        return "the file is empty (0 bytes): not a PyTorch checkpoint"
    if "GLOBAL" in text or "global" in text.lower() and "unsupported" in text.lower():
        m = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" ({m.group(1)})" if m else ""
        return (f"refused: it holds Python objects beyond tensors{what}; edgepose loads tensors only and never "
                "runs code from a checkpoint")  # fmt: skip
    if head[:2] == b"PK":
        return "damaged or truncated PyTorch checkpoint (its zip archive cannot be read)"
    if head[:1] == b"\x80":  # a pickle (protocol 2 and up)
        if "Unsupported operand" in text:
            return ("refused: a pickle that torch.save did not write (it needs a general unpickler, which can run "
                    "code; edgepose loads tensors only)")  # fmt: skip
        return "damaged or truncated PyTorch checkpoint (legacy pickle format)"
    if head[:2] == b"\x1f\x8b":
        return "a gzip file, not a PyTorch checkpoint (unpack it first)"
    return "not a PyTorch checkpoint (neither a zip archive nor a pickle)"


def check_state_dict(model, state: Mapping[str, Any], source: str = "checkpoint", limit: int = 5) -> None:
    """Fail naming the first missing, unexpected and mis-shaped keys; pass silently when all match."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {list(state[k].shape)} (model expects {list(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {', '.join(missing[:limit])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {', '.join(unexpected[:limit])}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {'; '.join(shapes[:limit])}")
    if problems:
        hint = ""
        w = state.get("keypoint_head.final_layer.weight")
        ref = expected.get("keypoint_head.final_layer.weight")
        k_model = ref.shape[0] if ref is not None else None
        if ref is None and w is not None:
            hint = " [a pose checkpoint (keypoint_head.*), the model is a detector]"
        elif ref is not None and any(k.startswith("bbox_head.") for k in state):
            hint = " [a detector checkpoint (bbox_head.*), the model is a pose model]"
        elif w is not None and w.shape[0] != k_model:
            hint = f" [checkpoint has {w.shape[0]} keypoints, model expects {k_model}]"
        raise EdgeposeError(f"{source}: does not match the model: {' | '.join(problems)}{hint}")


def load_state_dict_strict(model, path: str | Path, sha256: str | None = None) -> None:
    """Load ``path`` into ``model`` with every key and shape checked; optionally verify a full sha256."""
    if sha256 and sha256_of(path) != sha256:
        raise EdgeposeError(f"{path}: sha256 does not match the recorded {sha256[:12]}...")
    state = read_state_dict(path)
    check_state_dict(model, state, source=str(path))
    model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in state.items()}, strict=True)


def save_mmpose_checkpoint(model_or_state, path: str | Path, meta: dict | None = None, half: bool = False) -> Path:
    """Save in mmpose's published layout ``{'meta': ..., 'state_dict': ...}``, atomically."""
    import torch

    state = model_or_state if isinstance(model_or_state, Mapping) else model_or_state.state_dict()
    if half:
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with files.atomic_path(path) as tmp:
        torch.save({"meta": dict(meta or {}), "state_dict": state}, tmp)
    return path
