"""Session fixtures other tests can share: the demo checkpoint and ONE conversion of every target/precision."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

CONTROL_IMAGES = 30  # the INT8 task-metric check of the shared conversion: 30 val images keep it short
CONVERT_DEPS = ("torch", "onnx", "onnxruntime", "onnx2tf", "tensorflow", "openvino", "nncf")


def _require(*modules: str) -> None:
    for m in modules:
        pytest.importorskip(m)


@pytest.fixture(scope="session")
def demo_checkpoint(tmp_path_factory) -> Path:
    """The shipped demo weights when present, else a random model saved in mmpose's checkpoint layout.

    The random model keeps PyTorch's default initialisation (seeded): mmpose's head init (std 0.001) makes
    heatmaps of ~1e-9 that no INT8 scheme can represent, a degenerate case no trained model is in.
    """
    _require("torch")
    from edgepose.checkpoint import ASSETS, save_mmpose_checkpoint
    from edgepose.models import build_model
    from edgepose.spec import DEFAULT_MODEL, get_spec

    spec = get_spec(DEFAULT_MODEL)
    shipped = ASSETS / spec.checkpoint.split(":", 1)[-1]
    if shipped.is_file():
        return shipped
    path = tmp_path_factory.mktemp("demo_ckpt") / f"{DEFAULT_MODEL}_random.pth"
    import torch

    torch.manual_seed(0)
    return save_mmpose_checkpoint(build_model(spec), path)


@pytest.fixture(scope="session")
def demo_conversion(tmp_path_factory, demo_checkpoint):
    """``convert()`` of the demo model to every target and precision, with the network cut off.

    Returns the :class:`ConversionResult`; ``result.network_attempts`` lists any connection attempt
    (the conversion must make none). 32 calibration crops keep it to ~1-2 minutes on 2 cores.
    """
    _require(*CONVERT_DEPS)
    from edgepose.converters.api import convert
    from edgepose.converters.int8.control import ControlOptions

    from edgepose.spec import DEFAULT_MODEL

    attempts: list = []
    original = socket.socket.connect

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError(f"network disabled in tests (connect to {address})")

    out = tmp_path_factory.mktemp("demo_artifacts")
    socket.socket.connect = refuse
    try:
        result = convert(model=DEFAULT_MODEL, checkpoint=str(demo_checkpoint), targets="all",
                         precisions="fp32,fp16,int8", num_calib=32, out=out, progress=False,
                         control=ControlOptions(size=CONTROL_IMAGES))  # fmt: skip
    finally:
        socket.socket.connect = original
    result.network_attempts = attempts
    return result


@pytest.fixture(scope="session")
def demo_artifacts(demo_conversion) -> Path:
    """The folder holding the demo model's artifacts (``<model>_<precision>.{onnx,tflite,xml}`` + sidecars)."""
    return demo_conversion.out_dir


@pytest.fixture(scope="session")
def eval_models(tmp_path_factory, demo_checkpoint) -> dict[str, Path]:
    """The demo model as ONNX with a dynamic batch ("onnx"; "onnx_u8" taking uint8 NHWC crops), and as OpenVINO
    IR with a dynamic batch ("ov") and with batch 1 ("ov_b1"), each with the metadata sidecar convert writes; a
    few seconds, no calibration."""
    _require("torch", "onnx", "onnxruntime", "openvino")
    import openvino as ov
    from edgepose.converters.export import export_onnx
    from edgepose.converters.metadata import write_sidecar

    from edgepose.models import load_model
    from edgepose.spec import DEFAULT_MODEL, get_spec

    spec = get_spec(DEFAULT_MODEL)
    model = load_model(spec, str(demo_checkpoint), progress=False)
    d = tmp_path_factory.mktemp("eval_models")
    onnx_path = export_onnx(model.float().eval(), spec, d / f"{DEFAULT_MODEL}_fp32.onnx", dynamic_batch=True)
    meta = {"model": spec.to_dict(), "precision": "fp32", "batch": None, "layout": {"input": "NCHW", "output": "NCHW"}}
    write_sidecar(onnx_path, {**meta, "format": "onnx"})
    out = {"onnx": onnx_path}
    from edgepose.processing import INPUT_UINT8

    u8 = export_onnx(model.float().eval(), spec, d / f"{DEFAULT_MODEL}_fp32_u8in.onnx", dynamic_batch=True,
                     input_kind=INPUT_UINT8)  # fmt: skip
    write_sidecar(u8, {**meta, "format": "onnx", "layout": {"input": "NHWC", "output": "NCHW"},
                       "input": {"kind": INPUT_UINT8}})  # fmt: skip
    out["onnx_u8"] = u8
    for key, batch in (("ov", None), ("ov_b1", 1)):
        m = ov.convert_model(str(onnx_path))
        if batch:
            w, h = spec.input_size
            m.reshape([batch, 3, h, w])
        path = d / key / f"{DEFAULT_MODEL}_fp32.xml"
        path.parent.mkdir()
        ov.save_model(m, str(path), compress_to_fp16=False)
        write_sidecar(path, {**meta, "format": "openvino", "batch": batch})
        out[key] = path
    return out


@pytest.fixture(scope="session")
def val_subset(tmp_path_factory):
    """(spec, dataset) of the first 8 images of the demo model's synthetic val split (~16 persons)."""
    from edgepose.bench.data import EvalData, subset_dataset
    from edgepose.datasets import load_dataset
    from edgepose.evaluate import default_data
    from edgepose.spec import DEFAULT_MODEL, get_spec

    spec = get_spec(DEFAULT_MODEL)
    name, ann, images = default_data(spec)
    data = subset_dataset(EvalData(name, ann, images), 8, tmp_path_factory.mktemp("val_subset"))
    return spec, load_dataset(name, data.ann, data.images, spec)
