"""OpenVINO: ``.xml`` (+ ``.bin``) IR artifacts on the CPU plugin.

The CPU plugin computes in bf16 (or f16 on ARM) where the hardware has it (AMX, AVX512-BF16): on this
project's x86 machine that runs FP32/FP16 IRs ~3x faster at ~42 dB SNR, and INT8 IRs' float parts ~10 %
faster with no measurable change. This runtime leaves that choice to the plugin by default (option
``inference_precision``: "auto" default, or "f32", "bf16", "f16" to ask for one) and reports the precision
the compiled model really uses (``INFERENCE_PRECISION_HINT`` read back from it) in ``precision_used`` and
:meth:`info`. ``strict_options`` (``inference_precision="f32"``) is what parity at conversion and
``edgepose bench --strict-precision`` use for float32 figures.

Besides the sync face (``__call__``), :meth:`OpenVinoRuntime.infer_async` queues a batch on OpenVINO's own
``AsyncInferQueue`` over the same compiled model and returns a future, so that a caller (edgepose's pipelined
eval) keeps the engine busy while it prepares the next batch.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import EdgeposeError
from ..artifact import KEY, input_kind, read_metadata
from ..base import Runtime, RuntimeOptions, register_runtime
from ..io import from_layout

HINTS = ("auto", "f32", "bf16", "f16")
_NORM = {"f32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16", "f16": "fp16", "float16": "fp16"}


def ov_reason(exc: BaseException) -> str:
    """The telling line of an OpenVINO exception (they start with source locations: 'Exception from
    src/inference/src/cpp/core.cpp:95:', 'Check ... failed at ...')."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    told = [ln for ln in lines if not ln.startswith(("Exception from ", "Check '")) and not ln.endswith(".cpp")]
    return ((told or lines or [type(exc).__name__])[-1])[:200]


def _ir_root(path):
    """The IR XML's root element; a file that is not an IR (or declares a DTD/entities) is refused."""
    import xml.etree.ElementTree as ET

    try:
        with open(path, "rb") as f:
            head = f.read(4096)
        if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
            raise EdgeposeError(f"{path}: not an OpenVINO IR file (it declares a DTD)")
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError, ValueError) as e:
        raise EdgeposeError(f"{path}: not a readable OpenVINO IR file ({e})") from None
    if root.tag != "net":
        raise EdgeposeError(f"{path}: not an OpenVINO IR file (root element <{root.tag[:40]}>, not <net>)")
    return root


def _weights_needed(path) -> int:
    """The end of the last weight blob the IR's Const layers point at (offset + size into the .bin)."""
    end = 0
    for data in _ir_root(path).iter("data"):
        try:
            end = max(end, int(data.get("offset", "")) + int(data.get("size", "")))
        except ValueError:
            continue
    return end


def _port_name(port, default: str) -> str:
    """A port's tensor name (OpenVINO raises on a port without one)."""
    try:
        return port.get_any_name()
    except RuntimeError:
        return default


@dataclass
class OpenVinoOptions(RuntimeOptions):
    inference_precision: str = "auto"  # "auto" (the plugin's own choice), "f32", "bf16" or "f16"
    config: dict | None = None  # extra plugin properties
    async_jobs: int = 0  # infer requests for infer_async (0: two calls of the largest size, <= 64)
    # an IR with a fixed batch is reshaped to a dynamic batch at load (``Model.reshape``), so that a batch of
    # persons goes in one call; an IR that cannot be reshaped keeps its batch (``info()`` says which and why)
    reshape_batch: bool = False


@register_runtime
class OpenVinoRuntime(Runtime):
    engine = "openvino"
    format = "openvino"
    label = "OpenVINO"
    suffixes = (".xml",)
    companions = (".bin",)
    modules = ("openvino",)
    distributions = ("openvino", "nncf")
    install = "openvino"
    color = "#2ca02c"
    Options = OpenVinoOptions
    strict_options = {"inference_precision": "f32"}

    @classmethod
    def devices(cls) -> list[str]:
        from ..devices import openvino_devices

        return ["cpu"] + (["gpu"] if any(d.startswith("GPU") for d in (openvino_devices() or [])) else [])

    @classmethod
    def has_device(cls, device: str) -> bool:
        return device == "cpu" or "gpu" in cls.devices()

    @classmethod
    def device_problem(cls, device: str) -> str:
        from ..devices import openvino_devices

        return f"--device {device}: OpenVINO has no GPU device (available: {openvino_devices()})"

    @classmethod
    def read_embedded(cls, path):
        node = _ir_root(path).find(f"rt_info/{KEY}")
        return None if node is None else node.get("value")

    def device_name(self) -> str:
        """The OpenVINO device for ``self.device`` ("GPU" when ``core.available_devices`` has one)."""
        from ..devices import openvino_device_name, openvino_devices, resolve_device

        self.choice = resolve_device(self.device, self.engine, self.options.allow_fallback)
        self.device = self.choice.device
        return openvino_device_name(self.device, openvino_devices() or [])

    def _load(self) -> None:
        _, ov = self.import_engine()
        self._ov = ov
        self.metadata = read_metadata(self.path)
        if not self.path.with_suffix(".bin").is_file():
            raise EdgeposeError(f"{self.path}: the weights file {self.path.with_suffix('.bin').name} is missing")
        needed = _weights_needed(self.path)
        have = self.path.with_suffix(".bin").stat().st_size
        if needed > have:
            raise EdgeposeError(f"{self.path.with_suffix('.bin')}: truncated: {have} bytes, the model's weights "
                                f"reach byte {needed}")  # fmt: skip
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
        except Exception as e:
            raise EdgeposeError(f"{self.path}: OpenVINO cannot read it ({ov_reason(e)})") from None
        self.batch_reshaped, self.reshape_problem = False, None
        if self.options.reshape_batch and model.inputs[0].get_partial_shape()[0].is_static:
            model = self._reshaped(core, model)
        config: dict[str, Any] = dict(self.options.config or {})
        hint = str(self.options.inference_precision).lower()
        if hint not in HINTS:
            raise EdgeposeError(f"inference_precision {hint!r}: choose {', '.join(HINTS)}")
        if hint != "auto":
            config["INFERENCE_PRECISION_HINT"] = hint
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        device = self.device_name()
        try:
            self.compiled = core.compile_model(model, device, config)
        except Exception as e:
            raise EdgeposeError(f"{self.path}: OpenVINO cannot compile it for {device} ({ov_reason(e)})") from None
        self.request = self.compiled.create_infer_request()
        self._queue, self.async_jobs = None, 0  # infer_async's AsyncInferQueue, made on first use
        used = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.inference_precision = used.to_string() if hasattr(used, "to_string") else str(used)  # "f32", "bf16"
        self.precision_used = _NORM.get(self.inference_precision, self.inference_precision)
        batch_dim = model.inputs[0].get_partial_shape()[0]
        self.batch_size = batch_dim.get_length() if batch_dim.is_static else None
        self.layout = self.metadata.get("layout", {}).get("input", "NCHW")
        self.precision = self.metadata.get("precision", "fp32")
        self.input_kind = input_kind(self.metadata, self.path)

    def _reshaped(self, core, model):
        """The model with its first input's batch made dynamic (``-1``); on failure (a Reshape with the batch
        written into the graph) the IR as it was, read again, and the reason kept for ``info()``."""
        dims = [-1] + [d.get_length() for d in list(model.inputs[0].get_partial_shape())[1:]]
        try:
            model.reshape({model.inputs[0].any_name: self._ov.PartialShape(dims)})
        except Exception as e:  # noqa: BLE001 - the engine's own exception types
            self.reshape_problem = ov_reason(e)
            return core.read_model(str(self.path))
        self.batch_reshaped = True
        return model

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        out = self.request.infer([self._engine_input(batch, self.layout)], share_inputs=True)
        return from_layout(np.array(out[0], copy=True), self.metadata.get("layout", {}).get("output", "NCHW"))

    def raw_input(self) -> tuple[str, tuple[int | None, ...], str]:
        port = self.compiled.inputs[0]
        shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
        return _port_name(port, "input"), shape, np.dtype(port.get_element_type().to_dtype()).name

    def run_raw(self, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
        try:
            res = self.request.infer([x])
        except Exception as e:
            raise EdgeposeError(f"{self.path}: OpenVINO cannot run it on a {x.dtype} {list(x.shape)} input "
                                f"({ov_reason(e)})") from None  # fmt: skip
        return [(_port_name(o, f"output{i}"), np.array(res[o], copy=True)) for i, o in enumerate(self.compiled.outputs)]

    def infer_async(self, batch: np.ndarray) -> Future:
        """Start inference of ``batch`` (what ``__call__`` takes) on the compiled model's ``AsyncInferQueue``;
        a future of what ``__call__`` would return. Blocks only while every request is busy. A batch larger
        than a fixed-batch artifact's goes as several requests, the last padded, as ``__call__`` does."""
        batch = self._check_input(batch)
        bs = self.batch_size
        if bs is None or len(batch) == bs:
            chunks = [(batch, len(batch))]
        else:
            chunks = []
            for i in range(0, len(batch), bs):
                chunk = batch[i : i + bs]
                n = len(chunk)
                if n < bs:
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - n, axis=0)])
                chunks.append((np.ascontiguousarray(chunk), n))
        # requests for two calls of this size in flight (a caller queues the next call while the engine runs),
        # at most 64; a larger call later grows the queue once the requests in flight are done
        want = self.options.async_jobs or min(64, max(2, 2 * len(chunks), self._optimal_requests()))
        if self._queue is None or want > self.async_jobs:
            if self._queue is not None:
                self._queue.wait_all()
            self._queue = self._ov.AsyncInferQueue(self.compiled, want)
            self._queue.set_callback(_request_done)
            self.async_jobs = want
        gather = _Gather(len(chunks), self.metadata.get("layout", {}).get("output", "NCHW"))
        for i, (chunk, n) in enumerate(chunks):
            x = self._engine_input(chunk, self.layout)
            self._queue.start_async([x], (gather, i, n, x), share_inputs=True)  # x kept alive in userdata
        return gather.future

    def _optimal_requests(self) -> int:
        try:
            return int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        except Exception:  # noqa: BLE001 - a plugin without the property
            return 1

    def info(self) -> dict[str, Any]:
        d = super().info()
        d.update(version=self._ov.get_version(), inference_precision=self.inference_precision,
                 inference_precision_asked=self.options.inference_precision)  # fmt: skip
        if self.options.reshape_batch:
            d.update(batch_reshaped=self.batch_reshaped, **({"batch_reshape_problem": self.reshape_problem}
                                                           if self.reshape_problem else {}))  # fmt: skip
        d.update(self.choice.info())
        return d


class _Gather:
    """The outputs of the requests of one ``infer_async`` call, put together in order into one future."""

    def __init__(self, parts: int, layout: str):
        self.future: Future = Future()
        self.parts: list[np.ndarray | None] = [None] * parts
        self.left, self.layout, self.lock = parts, layout, threading.Lock()

    def put(self, i: int, out: np.ndarray | None, error: BaseException | None = None) -> None:
        with self.lock:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
                return
            self.parts[i] = out
            self.left -= 1
            if self.left:
                return
        y = self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)
        self.future.set_result(from_layout(y, self.layout))


def _request_done(request: Any, userdata: tuple) -> None:
    """AsyncInferQueue callback (an OpenVINO thread): copy the output out of the request, which is reused."""
    gather, i, n, _ = userdata
    try:
        gather.put(i, np.array(request.get_output_tensor(0).data, copy=True)[:n])
    except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
        gather.put(i, None, e)
