"""Finding, downloading and strictly loading mmpose checkpoints (torch is imported lazily)."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import EdgeposeError
from .spec import checkpoint_hash_from_name

PACKAGE_PREFIX = "package:"
ASSETS = Path(__file__).resolve().parent / "assets"


def cache_dir() -> Path:
    """Where downloaded checkpoints live (``$EDGEPOSE_CACHE`` or ``~/.cache/edgepose``)."""
    root = os.environ.get("EDGEPOSE_CACHE") or Path.home() / ".cache" / "edgepose"
    return Path(root) / "checkpoints"


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_url(s: str) -> bool:
    return s.startswith(("http://", "https://", "file://"))


def resolve_checkpoint(source: str | Path, progress: bool = True) -> Path:
    """Turn a path, a ``package:`` name or a URL into a local file (downloading URLs into the cache)."""
    source = str(source)
    if source.startswith(PACKAGE_PREFIX):
        path = ASSETS / source[len(PACKAGE_PREFIX) :]
        if not path.is_file():
            raise EdgeposeError(f"{path}: bundled checkpoint is missing from this installation")
        return path
    if is_url(source):
        return download_checkpoint(source, progress=progress)
    path = Path(source).expanduser()
    if not path.is_file():
        raise EdgeposeError(f"{path}: checkpoint file not found")
    return path


def download_checkpoint(url: str, dest_dir: Path | None = None, progress: bool = True) -> Path:
    """Download ``url`` into the cache once; verify the sha256 prefix that mmcv puts in the file name.

    The file is written to a temporary name and moved into place only after the hash matched, so an
    interrupted or corrupted download never leaves a file that a later run would trust.
    """
    dest_dir = dest_dir or cache_dir()
    name = url.rsplit("/", 1)[-1]
    dest = dest_dir / name
    expected = checkpoint_hash_from_name(name)
    if dest.is_file():
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                resp = urllib.request.urlopen(url, timeout=30)
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                raise EdgeposeError(
                    f"{url}: cannot download checkpoint ({reason}); "
                    "download it elsewhere and pass --checkpoint PATH"
                ) from None
            total = int(resp.headers.get("Content-Length") or 0)
            _copy_with_progress(resp, out, total, name if progress else None)
        if expected:
            actual = sha256_of(tmp)
            if not actual.startswith(expected):
                raise EdgeposeError(
                    f"{url}: sha256 {actual[:8]}... does not match the prefix {expected} in the file name; "
                    "refusing the download"
                )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _copy_with_progress(src, dst, total: int, label: str | None) -> None:
    bar = None
    if label:
        try:
            from tqdm import tqdm

            bar = tqdm(total=total or None, unit="B", unit_scale=True, desc=label, file=sys.stderr)
        except ImportError:
            pass
    while block := src.read(1 << 16):
        dst.write(block)
        if bar is not None:
            bar.update(len(block))
    if bar is not None:
        bar.close()


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``) and unwrap ``{'meta', 'state_dict'}``."""
    import torch

    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated / foreign files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgeposeError(f"{path}: not a readable PyTorch checkpoint ({first[:200]})") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise EdgeposeError(f"{path}: checkpoint holds no state_dict (got {type(obj).__name__})")
    state = dict(obj)
    # Checkpoints saved from DataParallel/DDP prefix every key with "module."
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise EdgeposeError(f"{path}: entry {bad[0]!r} is not a tensor")
    return state


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
        k_model = expected["keypoint_head.final_layer.weight"].shape[0]
        if w is not None and w.shape[0] != k_model:
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        torch.save({"meta": dict(meta or {}), "state_dict": state}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def copy_atomic(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
