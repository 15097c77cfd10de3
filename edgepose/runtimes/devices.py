"""Device requests shared by every runtime: what ``--device`` names, whether this machine has it, and fallbacks.

A device request is ``cpu``, ``cuda`` / ``cuda:N`` (an NVIDIA GPU through PyTorch CUDA or ONNX Runtime's
CUDAExecutionProvider), ``tensorrt`` (ONNX Runtime's TensorrtExecutionProvider, CUDA after it) or ``gpu``
(OpenVINO's GPU plugin; a synonym of ``cuda`` for the other engines). A request the machine cannot serve fails
with one line (:class:`EdgeposeError`) unless ``allow_fallback`` is set, in which case the runtime runs on CPU and
says so: ``info()["device"] == "cpu"`` and ``info()["fallback"]`` holds the reason. Engines that fall back on
their own (ONNX Runtime drops a provider it cannot load, silently) are checked after loading with
:func:`provider_fallback`, so a CPU run is never reported as a GPU result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import EdgeposeError
from .registry import RUNTIMES

_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?|tensorrt(:\d+)?|gpu(\.\d+)?)$")
ORT_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


@dataclass
class DeviceChoice:
    """The outcome of a device request: ``device`` is what will run, ``fallback`` why it is not what was asked."""

    requested: str
    device: str
    fallback: str | None = None

    def info(self) -> dict[str, Any]:
        return {"device": self.device, "requested_device": self.requested, "fallback": self.fallback}


def normalize_device(device: str | None) -> str:
    """Lower-case and validate a ``--device`` value; one clear line for a name that means nothing."""
    d = (device or "cpu").strip().lower()
    if not _DEVICE_RE.match(d):
        raise EdgeposeError(f"--device {device}: unknown device (use cpu, cuda, cuda:N, tensorrt or gpu)")
    return d


def is_gpu(device: str | None) -> bool:
    return normalize_device(device) != "cpu"


def cuda_index(device: str) -> int:
    """``cuda:N`` / ``tensorrt:N`` / ``gpu.N`` -> N (0 when not given)."""
    m = re.search(r"[:.](\d+)$", device)
    return int(m.group(1)) if m else 0


# ---------------------------------------------------------------------------------------- what is here
def torch_cuda_available() -> bool | None:
    """``torch.cuda.is_available()``; ``None`` when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver reads as "no CUDA"
        return False


def ort_providers() -> list[str] | None:
    """``onnxruntime.get_available_providers()``; ``None`` when onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    return list(ort.get_available_providers())


def openvino_devices() -> list[str] | None:
    """``openvino.Core().available_devices``; ``None`` when openvino is not installed."""
    try:
        import openvino as ov
    except ImportError:
        return None
    try:
        return list(ov.Core().available_devices)
    except Exception:  # noqa: BLE001
        return []


def cuda_capability(index: int = 0) -> tuple[int, int] | None:
    """The compute capability of CUDA GPU ``index`` (torch, else ``nvidia-smi``); ``None`` when unknown."""
    try:
        import torch

        if torch.cuda.is_available():
            return tuple(torch.cuda.get_device_capability(index))
    except Exception:  # noqa: BLE001 - torch absent or a broken driver: ask nvidia-smi
        pass
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", f"--id={index}", "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
        major, minor = out.split(".")
        return int(major), int(minor)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def tf32_or_fp32(index: int, allowed: bool) -> str:
    """What float32 convolutions compute in on CUDA GPU ``index``: "tf32" where TF32 is allowed and the GPU
    has it (Ampere, compute capability 8.0, and newer), "fp32" where not, "fp32 or tf32" when unknown."""
    if not allowed:
        return "fp32"
    cap = cuda_capability(index)
    return "fp32 or tf32" if cap is None else ("tf32" if cap >= (8, 0) else "fp32")


def cuda_report() -> str:
    """Why there is (or is not) a GPU, for error lines: torch's view and onnxruntime's providers."""
    parts = []
    t = torch_cuda_available()
    parts.append("torch not installed" if t is None else f"torch.cuda.is_available() is {t}")
    p = ort_providers()
    parts.append("onnxruntime not installed" if p is None else f"onnxruntime providers: {p}")
    return "; ".join(parts)


def _runtime(engine: str):
    if engine not in RUNTIMES:
        raise EdgeposeError(f"unknown engine {engine!r} (known: {', '.join(RUNTIMES)})")
    return RUNTIMES[engine]


def engine_has(engine: str, device: str) -> bool:
    """Whether ``engine`` can run on ``device`` on this machine (``cpu`` always); the engine decides."""
    device = normalize_device(device)
    return device == "cpu" or _runtime(engine).has_device(device)


def any_gpu() -> bool:
    """Whether any installed engine can use a CUDA GPU (the command-level check of ``--device cuda``)."""
    return bool(torch_cuda_available()) or any(p in (ort_providers() or []) for p in ORT_GPU_PROVIDERS)


def no_device_message(device: str, engine: str | None = None) -> str:
    """The one line for a device request that cannot be served (the engine's own words when one is named)."""
    if engine is not None:
        return _runtime(engine).device_problem(device)
    what = "no CUDA device available" if not device.startswith("gpu") else "no GPU device available"
    return f"--device {device}: {what} ({cuda_report()})"


def require_device(device: str | None, allow_fallback: bool = False) -> DeviceChoice:
    """Command-level check: fail at once for a GPU request on a machine without one (unless falling back)."""
    d = normalize_device(device)
    if d == "cpu":
        return DeviceChoice(d, "cpu")
    have = any(x.startswith("GPU") for x in (openvino_devices() or [])) if d.startswith("gpu") else False
    if have or any_gpu():
        return DeviceChoice(d, d)
    msg = no_device_message(d)
    if not allow_fallback:
        raise EdgeposeError(msg + "; pass --allow-fallback to run on CPU instead")
    return DeviceChoice(d, "cpu", msg.split(": ", 1)[1])


def resolve_device(device: str | None, engine: str, allow_fallback: bool = False) -> DeviceChoice:
    """What ``engine`` will run on for the request ``device``; raises unless the fallback is allowed."""
    try:
        d = normalize_device(device)
    except EdgeposeError:
        raise EdgeposeError(f"device {device!r} is not supported by the {engine} runtime "
                            "(use cpu, cuda, cuda:N, tensorrt or gpu)") from None  # fmt: skip
    if d == "cpu" or engine_has(engine, d):
        return DeviceChoice(d, d)
    msg = no_device_message(d, engine)
    if not allow_fallback:
        raise EdgeposeError(msg + "; pass --allow-fallback to run on CPU instead")
    return DeviceChoice(d, "cpu", msg.split(": ", 1)[1])


# ------------------------------------------------------------------------------------- onnxruntime
def ort_provider_list(device: str) -> list[Any]:
    """Execution providers to ask ONNX Runtime for, best first (CPU last, so every node has a home)."""
    d = normalize_device(device)
    if d == "cpu":
        return ["CPUExecutionProvider"]
    opts = {"device_id": cuda_index(d)}
    providers: list[Any] = []
    if d.startswith("tensorrt"):
        providers.append(("TensorrtExecutionProvider", dict(opts)))
    providers.append(("CUDAExecutionProvider", dict(opts)))
    providers.append("CPUExecutionProvider")
    return providers


def provider_fallback(asked: list[Any], got: list[str]) -> str | None:
    """The reason the session does not run on the first GPU provider asked for, or ``None`` when it does.

    ONNX Runtime drops a provider it cannot load (not built in, CUDA/cuDNN libraries missing) with only a
    warning, so the session's own list is the truth.
    """
    names = [p[0] if isinstance(p, (tuple, list)) else p for p in asked]
    wanted = [n for n in names if n != "CPUExecutionProvider"]
    if not wanted:
        return None
    missing = [n for n in wanted if n not in got]
    if wanted[0] in got and not missing:
        return None
    if any(n in got for n in wanted):
        return f"onnxruntime dropped {missing} (session providers: {got})"
    return f"onnxruntime fell back to CPU: asked for {wanted}, the session has {got}"


def ort_device(got: list[str], requested: str) -> str:
    """The device an ONNX Runtime session really runs on, from its providers."""
    if "TensorrtExecutionProvider" in got:
        return f"tensorrt:{cuda_index(requested)}"
    if "CUDAExecutionProvider" in got:
        return f"cuda:{cuda_index(requested)}"
    return "cpu"


# ----------------------------------------------------------------------------------------- openvino
def openvino_device_name(device: str, available: list[str]) -> str:
    """The OpenVINO device string for a request (``cpu`` -> CPU, ``gpu``/``cuda`` -> GPU[.N])."""
    d = normalize_device(device)
    if d == "cpu":
        return "CPU"
    gpus = [x for x in available if x.startswith("GPU")]
    n = cuda_index(d)
    name = "GPU" if n == 0 and "GPU" in gpus else f"GPU.{n}"
    return name if name in gpus else (gpus[0] if gpus and n == 0 else name)
