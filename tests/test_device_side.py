"""The device side imports and runs with torch, TensorFlow and the other heavy engines absent."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.helpers import REPO

BLOCKED = ["torch", "tensorflow", "tf_keras", "keras", "onnx", "onnx2tf", "onnxruntime", "openvino", "nncf"]

BLOCKER = textwrap.dedent(
    f"""
    import sys, importlib.abc
    BLOCKED = {BLOCKED!r}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked for this test: {{name}}")
    sys.meta_path.insert(0, Block())
    """
)


def run_blocked(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_blocker_really_blocks():
    r = run_blocked("import torch")
    assert r.returncode != 0 and "blocked for this test: torch" in r.stderr


def test_device_side_modules_import_without_heavy_engines():
    r = run_blocked(
        """
        import importlib, pkgutil, sys
        import edgepose, edgepose.cli
        # every module of the device side, found by walking the package (edgepose.converters excluded)
        names = [m.name for m in pkgutil.walk_packages(edgepose.__path__, "edgepose.")
                 if not m.name.startswith("edgepose.converters") and m.name != "edgepose.__main__"]
        assert len(names) > 30, names
        torch_modules = {"edgepose.models"}  # the PyTorch model itself: only the torch runtime imports it
        for name in names:
            if name not in torch_modules:
                importlib.import_module(name)
        edgepose.cli.build_parser()  # imports every command module
        assert edgepose.cli.main(["models"]) == 0
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in %r)
        assert not heavy, heavy
        print("OK")
        """
        % BLOCKED
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "demo_coco_256x192" in r.stdout and r.stdout.strip().endswith("OK")


def test_torch_runtime_says_how_to_install_torch(tmp_path):
    import cv2
    import numpy as np

    ckpt = tmp_path / "x.pth"
    ckpt.write_bytes(b"0")
    cv2.imwrite(str(tmp_path / "i.png"), np.zeros((8, 8, 3), np.uint8))
    r = run_blocked(
        f"""
        from edgepose.cli import main
        raise SystemExit(main(["predict", "{tmp_path}/i.png", "--checkpoint", "{ckpt}", "--out", "{tmp_path}/o.png"]))
        """
    )
    assert r.returncode == 2
    assert r.stderr.strip() == "edgepose: error: the PyTorch runtime needs torch: pip install 'edgepose[torch]'"


@pytest.mark.parametrize("argv", [["models"], ["--help"]])
def test_console_script_runs(argv):
    exe = REPO / ".venv" / "bin" / "edgepose"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "edgepose"]
    r = subprocess.run(cmd + argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "coco_256x192" in r.stdout or "convert" in r.stdout or "models" in r.stdout
