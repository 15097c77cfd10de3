"""The desktop GPU path, checked on the CPU side: device requests, fallback reporting, batched inference.

Tests that need a CUDA device are skipped with a reason when there is none; ``tools/gpu_check.py`` is the
script that checks the GPU side (parity, timings) on a machine that has one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgepose.errors import EdgeposeError
from edgepose.runtimes import devices
from edgepose.spec import DEFAULT_MODEL, get_spec

SPEC = get_spec(DEFAULT_MODEL)


def _has_cuda() -> bool:
    return bool(devices.torch_cuda_available())


needs_cuda = pytest.mark.skipif(not _has_cuda(), reason="no CUDA device (torch.cuda.is_available() is False)")
needs_no_cuda = pytest.mark.skipif(devices.any_gpu(), reason="this machine has a CUDA device: nothing falls back")


@pytest.fixture(scope="module")
def onnx_dynamic(tmp_path_factory, demo_checkpoint) -> Path:
    """A dynamic-batch ONNX export of the demo checkpoint, with the sidecar metadata edgepose convert writes."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from edgepose.converters.export import export_onnx
    from edgepose.converters.metadata import write_sidecar

    from edgepose.models import load_model

    path = tmp_path_factory.mktemp("gpu_onnx") / f"{DEFAULT_MODEL}_fp32.onnx"
    export_onnx(load_model(SPEC, str(demo_checkpoint), progress=False), SPEC, path, dynamic_batch=True)
    write_sidecar(path, {"model": SPEC.to_dict(), "precision": "fp32", "format": "onnx", "batch": None,
                         "layout": {"input": "NCHW", "output": "NCHW"}})  # fmt: skip
    return path


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    """A smooth synthetic image (blobs and gradients, so heatmaps have clear peaks) and five person boxes."""
    rng = np.random.default_rng(3)
    h, w = 360, 480
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for _ in range(12):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, 60)
        img += rng.uniform(40, 200, 3) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
    img = np.clip(img + 0.2 * xx[..., None], 0, 255).astype(np.uint8)
    boxes = np.array([[20, 10, 120, 300], [150, 40, 90, 200], [260, 5, 200, 340], [0, 0, 480, 360],
                      [300, 200, 60, 80]], dtype=np.float32)  # fmt: skip
    return img, boxes


# --------------------------------------------------------------------------------------- device requests
def test_device_names_are_validated():
    assert devices.normalize_device("CUDA:1") == "cuda:1"
    assert devices.normalize_device(None) == "cpu"
    assert devices.cuda_index("cuda:3") == 3 and devices.cuda_index("cuda") == 0 and devices.cuda_index("gpu.1") == 1
    with pytest.raises(EdgeposeError, match="unknown device"):
        devices.normalize_device("npu")


def test_ort_provider_lists_put_the_gpu_first_and_cpu_last():
    assert devices.ort_provider_list("cpu") == ["CPUExecutionProvider"]
    cuda = devices.ort_provider_list("cuda:1")
    assert cuda == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    trt = [p[0] if isinstance(p, tuple) else p for p in devices.ort_provider_list("tensorrt")]
    assert trt == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_provider_fallback_compares_asked_with_got():
    asked = devices.ort_provider_list("cuda")
    assert devices.provider_fallback(asked, ["CUDAExecutionProvider", "CPUExecutionProvider"]) is None
    assert "fell back to CPU" in devices.provider_fallback(asked, ["CPUExecutionProvider"])
    trt = devices.ort_provider_list("tensorrt")
    assert "dropped ['TensorrtExecutionProvider']" in devices.provider_fallback(
        trt, ["CUDAExecutionProvider", "CPUExecutionProvider"])  # fmt: skip
    assert devices.provider_fallback(["CPUExecutionProvider"], ["CPUExecutionProvider"]) is None
    assert devices.ort_device(["CUDAExecutionProvider", "CPUExecutionProvider"], "cuda:1") == "cuda:1"
    assert devices.ort_device(["CPUExecutionProvider"], "cuda") == "cpu"


@needs_no_cuda
def test_cli_device_cuda_without_cuda_is_one_line_exit_2(capsys, tmp_path):
    from edgepose.cli import main

    (tmp_path / "x.onnx").write_bytes(b"")  # never opened: the device check comes first
    rc = main(["bench", "--device", "cuda", "--artifacts", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "--device cuda: no CUDA device available" in err[0]
    assert "torch.cuda.is_available() is False" in err[0] and "--allow-fallback" in err[0]


@needs_no_cuda
def test_runtime_device_cuda_without_cuda_raises_or_falls_back(demo_checkpoint):
    from edgepose.runtimes import load_runtime

    with pytest.raises(EdgeposeError, match="no CUDA device available"):
        load_runtime(demo_checkpoint, engine="torch", device="cuda")
    rt = load_runtime(demo_checkpoint, engine="torch", device="cuda", allow_fallback=True)
    info = rt.info()
    assert info["device"] == "cpu" and info["requested_device"] == "cuda"
    assert "no CUDA device available" in info["fallback"]


def test_ort_silent_provider_fallback_is_reported(onnx_dynamic):
    """CPU-only onnxruntime given CUDAExecutionProvider drops it with a warning: we must notice and say so."""
    import onnxruntime as ort

    from edgepose.runtimes import load_runtime

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider: it would not fall back")
    asked = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(EdgeposeError, match="fell back to CPU"):
        load_runtime(onnx_dynamic, device="cuda", providers=asked)
    rt = load_runtime(onnx_dynamic, device="cuda", providers=asked, allow_fallback=True)
    info = rt.info()
    assert info["providers"] == ["CPUExecutionProvider"]
    assert info["device"] == "cpu" and info["requested_device"] == "cuda"
    assert "fell back to CPU" in info["fallback"]


@needs_no_cuda
def test_bench_allow_fallback_runs_on_cpu_and_says_so(onnx_dynamic, demo_checkpoint, tmp_path, capsys):
    from edgepose.cli import main

    out = tmp_path / "b.json"
    rc = main(["bench", "--device", "cuda", "--allow-fallback", "--artifacts", str(onnx_dynamic),
               "--reference", str(demo_checkpoint), "--no-accuracy", "--runs", "2", "--warmup", "0",
               "--batch-sizes", "1,3", "--json", str(out), "--quiet"])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0
    assert "running on CPU (--allow-fallback)" in captured.err
    assert "FALLBACK" in captured.out
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 2
    for r in rows:
        assert r["status"] == "ok", r.get("error")
        assert r["device"] == "cpu" and "no CUDA device available" in r["fallback"]
        assert any("not cuda" in f for f in r["flags"])
        sweep = r["batch_sweep"]
        assert [b["batch"] for b in sweep] == [1, 3]
        for b in sweep:  # crops/s is the batch over the mean latency, by definition
            assert b["crops_per_s"] == pytest.approx(b["batch"] * 1000.0 / b["latency_mean_ms"])
            assert 0 <= b["pre_post_share_pct"] <= 100


# ------------------------------------------------------------------------------------ batched inference
def _per_box(pipe, rt, image, boxes):
    return np.concatenate([pipe(rt, image, boxes[i : i + 1]) for i in range(len(boxes))])


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_batched_pipeline_matches_batch_one_calls(engine, scene, demo_checkpoint, onnx_dynamic):
    from edgepose.processing import TopDownPipeline
    from edgepose.runtimes import load_runtime

    path = demo_checkpoint if engine == "torch" else onnx_dynamic
    rt = load_runtime(path, engine=engine, threads=1)
    assert rt.batch_size is None  # really one call for all crops
    image, boxes = scene
    pipe = TopDownPipeline(SPEC)  # flip test on: both passes batched
    batched = pipe(rt, image, boxes)
    single = _per_box(pipe, rt, image, boxes)
    assert batched.shape == (len(boxes), SPEC.num_keypoints, 3)
    np.testing.assert_allclose(batched[..., :2], single[..., :2], rtol=0, atol=1e-5)
    np.testing.assert_allclose(batched[..., 2], single[..., 2], rtol=1e-4, atol=1e-6)


def test_normalize_is_bit_identical_to_the_definition():
    """ToTensor (/255) then NormalizeTensor ((x - mean/255) / (std/255)), in float32, NCHW."""
    from edgepose.processing import normalize

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (4, 8, 6, 3), dtype=np.uint8)
    crops[0, 0, 0] = [0, 255, 128]
    mean, std = SPEC.mean, SPEC.std
    x = crops.astype(np.float32) / np.float32(255.0)
    m = (np.asarray(mean, np.float64) / 255.0).astype(np.float32)
    s = (np.asarray(std, np.float64) / 255.0).astype(np.float32)
    expect = ((x - m) / s).transpose(0, 3, 1, 2)
    got = normalize(crops, mean, std)
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == (4, 3, 8, 6)
    assert np.array_equal(got, expect)
    assert np.array_equal(normalize(crops.astype(np.float32), mean, std), expect)  # the non-uint8 path


def test_merge_flip_matches_mmpose_loop():
    """mmpose flip_back: swap each pair in turn, mirror W; shift_heatmap: columns 1.. take 0..W-2."""
    from edgepose.processing import merge_flip

    rng = np.random.default_rng(1)
    hm, fl = rng.random((2, 2, 17, 8, 6), dtype=np.float32)
    back = fl.copy()
    for a, b in SPEC.flip_pairs:
        back[:, [a, b]] = back[:, [b, a]].copy()
    back = back[..., ::-1].copy()
    shifted = back.copy()
    shifted[..., 1:] = back[..., :-1]
    assert np.array_equal(merge_flip(hm, fl, SPEC.flip_pairs, shift=True), (hm + shifted) * 0.5)
    assert np.array_equal(merge_flip(hm, fl, SPEC.flip_pairs, shift=False), (hm + back) * 0.5)


# -------------------------------------------------------------------------- reduced precision on CPU
@pytest.fixture(scope="module")
def crops_batch(scene) -> np.ndarray:
    from edgepose.processing import TopDownPipeline

    image, boxes = scene
    pipe = TopDownPipeline(SPEC)
    return pipe.preprocess(image, *pipe.boxes_to_center_scale(boxes))


@pytest.mark.parametrize(
    ("options", "rel_tol"),
    [
        ({"channels_last": True}, 1e-5),  # same arithmetic, other memory order: float32 summation order only
        # bf16 keeps 8 mantissa bits (2^-9 relative rounding per op) through ~55 conv layers: a few % of the peak
        ({"precision": "bf16"}, 0.10),
        ({"precision": "bf16", "channels_last": True}, 0.10),
        ({"precision": "fp16"}, 0.01),  # fp16 autocast: 11 mantissa bits, 8x finer than bf16
    ],
)
def test_torch_reduced_precision_paths_on_cpu(options, rel_tol, demo_checkpoint, crops_batch):
    """Heatmaps within ``rel_tol`` of the highest fp32 peak, and the argmax of clear peaks within one pixel."""
    import torch

    from edgepose.processing import get_max_preds
    from edgepose.runtimes import load_runtime

    ref = load_runtime(demo_checkpoint, engine="torch", threads=1)(crops_batch)
    try:
        rt = load_runtime(demo_checkpoint, engine="torch", threads=1, **options)
        out = rt(crops_batch)
    except RuntimeError as e:  # an old torch without this CPU autocast dtype
        pytest.skip(f"torch {torch.__version__} cannot run {options} on CPU: {e}")
    info = rt.info()
    assert info["precision_used"] == options.get("precision", "fp32")
    assert info["channels_last"] == bool(options.get("channels_last"))
    assert out.dtype == np.float32 and out.shape == ref.shape
    peak = float(np.abs(ref).max())
    err = float(np.abs(out - ref).max() / peak)
    assert err < rel_tol, f"{options}: max error {err:.3g} of the peak"
    if options.get("precision", "fp32") != "fp32":
        assert err > 0  # really computed in reduced precision
    a, _ = get_max_preds(ref)
    b, _ = get_max_preds(out)
    clear = ref.max(axis=(2, 3)) > 0.5 * peak  # joints with a clear peak (weak ones may move on noise)
    assert np.abs(a - b)[clear].max() <= 1.0


def test_torch_bad_precision_is_one_line(demo_checkpoint):
    from edgepose.runtimes import load_runtime

    with pytest.raises(EdgeposeError, match="precision 'int4'"):
        load_runtime(demo_checkpoint, engine="torch", precision="int4")


def test_cuda_graphs_request_on_cpu_is_noted(demo_checkpoint):
    from edgepose.runtimes import load_runtime

    rt = load_runtime(demo_checkpoint, engine="torch", cuda_graphs=True)
    assert rt.info()["cuda_graphs"] is False and "not on a CUDA device" in rt.info()["notes"][0]


# ------------------------------------------------------------------------------------------ CUDA only
@needs_cuda
@pytest.mark.parametrize("options", [{}, {"channels_last": True}, {"cuda_graphs": True}])
def test_cuda_fp32_matches_cpu(options, demo_checkpoint, crops_batch):
    import torch

    from edgepose.runtimes import load_runtime

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    ref = load_runtime(demo_checkpoint, engine="torch")(crops_batch)
    rt = load_runtime(demo_checkpoint, engine="torch", device="cuda", **options)
    out = rt(crops_batch)
    assert rt.info()["device"].startswith("cuda") and rt.info()["fallback"] is None
    peak = np.abs(ref).max()
    assert float(np.abs(out - ref).max() / peak) < 1e-4


@needs_cuda
def test_cuda_fp16_close_to_cpu(demo_checkpoint, crops_batch):
    from edgepose.runtimes import load_runtime

    ref = load_runtime(demo_checkpoint, engine="torch")(crops_batch)
    rt = load_runtime(demo_checkpoint, engine="torch", device="cuda", precision="fp16")
    out = rt(crops_batch)
    assert rt.info()["precision_used"] == "fp16"
    assert float(np.abs(out - ref).max() / np.abs(ref).max()) < 0.02
