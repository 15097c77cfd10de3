"""``edgepose convert`` failures leave nothing behind; the lighter options (dynamic batch, int8 I/O)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from edgepose.cli import main  # noqa: E402

CONVERT = ["convert", "--no-reference-accuracy"]  # the recorded reference is tested in test_convert.py


def _files(d):
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*")) if d.exists() else []


def test_bad_calibration_file_fails_with_one_line_and_writes_nothing(tmp_path, capsys, demo_checkpoint):
    bad = tmp_path / "calib.npz"
    bad.write_bytes(b"this is not an npz file")
    out = tmp_path / "out"
    rc = main([*CONVERT, "--checkpoint", str(demo_checkpoint), "--target", "onnx", "--precision", "int8",
               "--calib", str(bad), "--out", str(out), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith(f"edgepose: error: {bad}: not a calibration file")
    assert not any(p.is_file() for p in out.rglob("*")) if out.exists() else True


def test_failure_midway_leaves_no_artifact(tmp_path, capsys, monkeypatch, demo_checkpoint):
    """fp32 ONNX is made, then INT8 quantisation breaks: neither file (nor the temp folder) is left."""
    from edgepose.converters.targets.onnx import convert as onnx_target

    def broken(*args, **kwargs):
        raise RuntimeError("simulated crash in the quantiser")

    monkeypatch.setattr(onnx_target, "quantize_onnx", broken)
    out = tmp_path / "out"
    rc = main([*CONVERT, "--checkpoint", str(demo_checkpoint), "--target", "onnx", "--precision", "fp32,int8",
               "--num-calib", "4", "--out", str(out), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1] == "edgepose: error: onnx conversion failed: RuntimeError: simulated crash in the quantiser"
    assert _files(out) == []


def test_parity_failure_fails_unless_allowed(tmp_path, capsys, monkeypatch, demo_checkpoint):
    from edgepose.converters import parity

    monkeypatch.setitem(parity.TOLERANCES, "fp32", parity.Tolerance(max_rel_err=0.0))
    out = tmp_path / "out"
    args = [*CONVERT, "--checkpoint", str(demo_checkpoint), "--target", "onnx", "--precision", "fp32",
            "--out", str(out), "--quiet"]  # fmt: skip
    rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("edgepose: error: demo_coco_256x192_fp32.onnx: parity against PyTorch out of tolerance")
    assert _files(out) == []
    assert main(args + ["--allow-parity-failure"]) == 0
    assert _files(out) == ["demo_coco_256x192_fp32.onnx", "demo_coco_256x192_fp32.onnx.json"]


def test_unknown_target_and_missing_default_precision(capsys, monkeypatch):
    import dataclasses

    from edgepose.converters.base import TARGETS

    assert main(["convert", "--target", "coreml"]) == 2
    assert "unknown target 'coreml'" in capsys.readouterr().err
    # a target that does not offer a precision (every registered one offers all three today)
    monkeypatch.setitem(TARGETS, "onnx", dataclasses.replace(TARGETS["onnx"], precisions=("fp32", "int8")))
    assert main(["convert", "--target", "onnx", "--precision", "fp16"]) == 2
    assert "nothing to convert: onnx: fp16 not offered" in capsys.readouterr().err


def test_head_option_rewrites_the_exported_graph(tmp_path, capsys, demo_checkpoint):
    """--head deconv keeps ConvTranspose; --head subpixel3x3 has none; metadata says which; parity holds."""
    import json

    import onnx
    from edgepose.converters.transforms import REWRITES

    for head in ("deconv", "subpixel3x3"):
        out = tmp_path / head
        assert main(["convert", "--checkpoint", str(demo_checkpoint), "--target", "onnx", "--precision", "fp32",
                     "--head", head, "--out", str(out), "--quiet"]) == 0  # fmt: skip
        path = out / "demo_coco_256x192_fp32.onnx"
        ops = [n.op_type for n in onnx.load(str(path)).graph.node]
        assert ("ConvTranspose" in ops) == (head == "deconv") and ops.count("DepthToSpace") == 3 * (head != "deconv")
        meta = json.loads((out / (path.name + ".json")).read_text())
        assert meta["conversion"]["head"] == head and meta["conversion"]["graph_rewrites"] == REWRITES[head]
        assert meta["parity"]["passed"] and meta["parity"]["rel_max_err"] <= 1e-4
    capsys.readouterr()
    assert main(["convert", "--target", "onnx", "--head", "pixelshuffle"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["edgepose: error: unknown head form 'pixelshuffle'; choose from auto, deconv, subpixel2x2, "
                   "subpixel3x3"]


def test_parity_reference_is_the_original_model_not_the_rewrite(tmp_path, capsys, monkeypatch, demo_checkpoint):
    """A wrong rewrite (one folded kernel perturbed) is caught: parity compares with the unrewritten model."""
    import torch
    from edgepose.converters import transforms

    original = transforms.rewrite_head

    def wrong(model, form):
        new = original(model, form)
        if form != "deconv":
            with torch.no_grad():
                next(m for m in new.keypoint_head.modules() if isinstance(m, torch.nn.Conv2d)).weight.mul_(1.5)
        return new

    monkeypatch.setattr(transforms, "rewrite_head", wrong)
    out = tmp_path / "out"
    rc = main(["convert", "--checkpoint", str(demo_checkpoint), "--target", "onnx", "--precision", "fp32",
               "--head", "subpixel2x2", "--out", str(out), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "parity against PyTorch out of tolerance" in err
    assert _files(out) == []


def test_dynamic_batch_onnx_and_openvino(tmp_path, demo_checkpoint):
    pytest.importorskip("openvino")
    import torch
    from edgepose.converters.api import convert

    from edgepose.models import load_model
    from edgepose.runtimes import load_runtime, runtime_for

    res = convert(checkpoint=str(demo_checkpoint), reference_accuracy=False,
                  targets="onnx,openvino", precisions="fp32", dynamic_batch=True,
                  out=tmp_path, progress=False)  # fmt: skip
    x = np.random.default_rng(0).standard_normal((3, 3, 256, 192)).astype(np.float32)
    with torch.inference_mode():
        ref = load_model("demo_coco_256x192", str(demo_checkpoint), progress=False)(torch.from_numpy(x)).numpy()
    for a in res.artifacts:
        rt = load_runtime(a.path, **runtime_for(a.path).strict_options)  # OpenVINO in f32, not its default bf16
        assert rt.batch_size is None and a.metadata["batch"] is None
        assert a.metadata["input"]["shape"][0] is None
        out = rt(x)
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


def test_tflite_int8_io(tmp_path, demo_checkpoint):
    """--int8-io: int8 tensors at both ends, their scale/zero point in the metadata, the runtime (de)quantises."""
    pytest.importorskip("onnx2tf")
    import torch
    from edgepose.converters.api import convert
    from edgepose.converters.int8.control import ControlOptions

    from edgepose.models import load_model
    from edgepose.runtimes import load_runtime

    res = convert(checkpoint=str(demo_checkpoint), reference_accuracy=False,
                  targets="tflite", precisions="int8", int8_io=True, num_calib=8,
                  out=tmp_path, progress=False, control=ControlOptions(size=10))  # fmt: skip
    [a] = res.artifacts
    meta = a.metadata
    for end in ("input", "output"):
        assert meta[end]["dtype"] == "int8"
        q = meta[end]["quantization"]
        assert q["scale"] > 0 and -128 <= q["zero_point"] <= 127
    # the input scale must cover the normalised pixel range seen in calibration (about -2.1 .. 2.7)
    qi = meta["input"]["quantization"]
    lo, hi = (-128 - qi["zero_point"]) * qi["scale"], (127 - qi["zero_point"]) * qi["scale"]
    assert lo < -1.5 and hi > 2.0
    rt = load_runtime(a.path)
    x = rt_input = np.random.default_rng(1).uniform(-2, 2.5, (2, 3, 256, 192)).astype(np.float32)
    with torch.inference_mode():
        ref = load_model("demo_coco_256x192", str(demo_checkpoint), progress=False)(torch.from_numpy(x)).numpy()
    out = rt(rt_input)
    assert out.dtype == np.float32 and out.shape == ref.shape
    snr = 10 * np.log10((ref.astype(np.float64) ** 2).sum() / ((out - ref).astype(np.float64) ** 2).sum())
    assert snr >= 10, snr  # random inputs, not the calibration distribution: a looser bound


def test_missing_converter_dependency_names_the_install_command(tmp_path):
    """With onnx2tf unimportable (a meta-path blocker in a subprocess), the error says what to install."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "onnx2tf":
                    raise ImportError("blocked for this test")
        sys.meta_path.insert(0, Block())
        from edgepose.cli import main
        raise SystemExit(main(["convert", "--no-reference-accuracy", "--target", "tflite",
                               "--checkpoint", "{tmp_path}/x.pth",
                               "--out", "{tmp_path}/out"]))
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (
        "edgepose: error: conversion for tflite needs the 'onnx2tf' package: pip install 'edgepose[convert]'"
    )
    assert not (tmp_path / "out").exists()
