"""The remote's environment for ``edgepose bench --remote``: the agent script it runs, and the edgepose wheel of this
checkout (with the source hash that says when the remote venv's copy is stale)."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ...errors import EdgeposeError
from ..data import one_line

log = logging.getLogger(__name__)


def agent_source() -> str:
    return (Path(__file__).with_name("agent.py")).read_text()


def source_root() -> Path | None:
    """This edgepose's source checkout (pyproject.toml beside the package), or None for an installed wheel."""
    root = Path(__file__).resolve().parents[3]  # edgepose/bench/remote/env.py
    py = root / "pyproject.toml"
    return root if py.is_file() and re.search(r'^name\s*=\s*"edgepose"', py.read_text(), re.M) else None


def _source_files(root: Path) -> list[Path]:
    text = (root / "pyproject.toml").read_text()
    m = re.search(r"^package-dir\s*=\s*\{(.*?)\}", text, re.M)
    dirs = sorted({d.split("/")[0] for d in re.findall(r'=\s*"([^"]+)"', m.group(1) if m else "")} | {"edgepose"})
    files = [root / "pyproject.toml"] + [f for f in (root / "README.md", root / "LICENSE") if f.is_file()]
    for d in dirs:
        files += sorted(f for f in (root / d).rglob("*") if f.is_file() and "__pycache__" not in f.parts
                        and f.suffix != ".pyc" and ".egg-info" not in str(f))  # fmt: skip
    return files


def source_stamp() -> str:
    """What the remote venv's edgepose must be: this checkout's source hash, or the installed version."""
    from ... import __version__

    root = source_root()
    if root is None:
        return f"edgepose-{__version__}"
    h = hashlib.sha256()
    for f in _source_files(root):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return f"edgepose-{__version__}-src-{h.hexdigest()[:16]}"


def build_wheel(dest: Path) -> Path | None:
    """``pip wheel --no-deps`` of this checkout, from a clean copy (the checkout stays untouched); None when
    edgepose is installed without its source."""
    root = source_root()
    if root is None:
        return None
    src, out = dest / "src", dest / "wheel"
    shutil.rmtree(src, ignore_errors=True)
    for f in _source_files(root):
        (src / f.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, src / f.relative_to(root))
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)]
    try:
        import setuptools  # noqa: F401 - with it here, no build environment needs downloading

        cmd[4:4] = ["--no-build-isolation"]
    except ImportError:
        pass
    log.info("building the edgepose wheel (pip wheel --no-deps) ...")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    wheels = sorted(out.glob("edgepose-*.whl"))
    if r.returncode != 0 or not wheels:
        raise EdgeposeError(f"pip wheel of {root} failed: {one_line(Exception(r.stderr or r.stdout))}")
    return wheels[-1]
