"""PyTorch runtime: a checkpoint (``.pth``) through the plain-PyTorch model, on CPU or a CUDA GPU.

On CUDA it can compute in fp16 (model and input ``.half()``) or bf16 (autocast), use channels-last memory,
replay one CUDA graph per batch size, or go through ``torch.compile``; :meth:`info` reports the device it
really ran on (``torch.cuda.get_device_name``), the precision computed in, and a fallback when one happened.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import EdgeposeError
from ...spec import DEFAULT_MODEL, get_spec
from ..base import Runtime, RuntimeOptions, register_runtime
from ..devices import cuda_index, resolve_device

PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass
class TorchOptions(RuntimeOptions):
    model: str | None = None  # spec name; default the demo model
    source: str | None = None  # the path/URL the checkpoint came from (the spec's own is hash-checked)
    precision: str = "fp32"  # "fp32", "fp16", "bf16"
    channels_last: bool = False
    cuda_graphs: bool = False
    compile: bool | str = False  # False, True, or a torch.compile mode


@register_runtime
class TorchRuntime(Runtime):
    """Options (:class:`TorchOptions`): ``precision`` "fp16" is ``.half()`` on CUDA / autocast on CPU, "bf16"
    autocast; ``cuda_graphs`` (CUDA only) captures one graph per batch size."""

    engine = "torch"
    format = "pytorch"
    label = "PyTorch"
    suffixes = (".pth", ".pt")
    modules = ("torch",)
    distributions = ("torch",)
    install = "torch"
    color = "#222222"
    Options = TorchOptions

    @classmethod
    def devices(cls) -> list[str]:
        from ..devices import torch_cuda_available

        return ["cpu"] + (["cuda"] if torch_cuda_available() else [])

    @classmethod
    def has_device(cls, device: str) -> bool:
        from ..devices import cuda_index, torch_cuda_available

        if device == "cpu":
            return True
        if not torch_cuda_available() or device.startswith("tensorrt"):
            return False
        import torch

        return cuda_index(device) < torch.cuda.device_count()

    @classmethod
    def device_problem(cls, device: str) -> str:
        from ..devices import cuda_report

        if device.startswith("tensorrt"):
            return f"--device {device}: TensorRT is an onnxruntime provider; the torch runtime takes cuda"
        return f"--device {device}: no CUDA device available ({cuda_report()})"

    def _load(self) -> None:
        _, torch = self.import_engine()
        from ...models import load_model

        self._torch = torch
        self.spec = get_spec(self.options.model or DEFAULT_MODEL)
        if self.threads:
            torch.set_num_threads(self.threads)
        self.choice = resolve_device(self.device, self.engine, self.options.allow_fallback)
        if self.choice.device.startswith("gpu"):  # "gpu" is a synonym of cuda for torch
            self.choice.device = f"cuda:{cuda_index(self.choice.device)}"
        self.device = self.choice.device
        self.dev = torch.device(self.device)
        self.on_cuda = self.dev.type == "cuda"
        self.compute_precision = str(self.options.precision or "fp32").lower()
        if self.compute_precision not in PRECISIONS:
            raise EdgeposeError(f"{self.path}: precision {self.compute_precision!r} not one of {', '.join(PRECISIONS)}")
        self.channels_last = bool(self.options.channels_last)
        self.notes: list[str] = []
        self.use_graphs = bool(self.options.cuda_graphs)
        if self.use_graphs and not self.on_cuda:
            self.use_graphs = False
            self.notes.append("cuda_graphs ignored: not on a CUDA device")
        model = load_model(self.spec, self.options.source or str(self.path), progress=False).eval()
        model = model.to(self.dev)
        # fp16 on CUDA: the whole model in half (what TensorRT FP16 does); elsewhere autocast keeps BN in fp32
        self.half_model = self.compute_precision == "fp16" and self.on_cuda
        if self.half_model:
            model = model.half()
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self._fn = model
        compile_mode = self.options.compile
        if compile_mode:
            kw = {} if compile_mode is True else {"mode": str(compile_mode)}
            self._fn = torch.compile(model, **kw)
        self._graphs: dict[tuple[int, ...], tuple[Any, Any, Any]] = {}
        self.metadata = {"model": self.spec.to_dict(), "precision": "fp32", "format": "pytorch"}
        self.precision_used = self.compute_precision
        if self.on_cuda and self.compute_precision == "fp32":  # cuDNN convolutions use TF32 unless told not to
            from ..devices import tf32_or_fp32

            self.precision_used = tf32_or_fp32(self.dev.index or 0, bool(torch.backends.cudnn.allow_tf32))

    # ----------------------------------------------------------------------------------------- forward
    def _autocast(self):
        torch = self._torch
        if self.compute_precision == "fp32" or self.half_model:
            import contextlib

            return contextlib.nullcontext()
        dtype = torch.float16 if self.compute_precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.dev.type, dtype=dtype)

    def _prepare(self, x):
        torch = self._torch
        if self.half_model:
            x = x.half()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _forward(self, x):
        with self._autocast():
            return self._fn(self._prepare(x))

    def _graph_for(self, shape: tuple[int, ...]):
        """Capture (once per input shape) a CUDA graph of the forward pass on static input/output tensors."""
        torch = self._torch
        if shape not in self._graphs:
            static_in = torch.zeros(shape, dtype=torch.float32, device=self.dev)
            stream = torch.cuda.Stream(self.dev)
            stream.wait_stream(torch.cuda.current_stream(self.dev))
            with torch.cuda.stream(stream), torch.inference_mode():
                for _ in range(3):  # warm-up outside the graph (cuDNN picks its algorithms here)
                    self._forward(static_in)
            torch.cuda.current_stream(self.dev).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(graph):
                static_out = self._forward(static_in)
            self._graphs[shape] = (graph, static_in, static_out)
        return self._graphs[shape]

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(batch)
        with torch.inference_mode():
            if self.use_graphs:
                graph, static_in, static_out = self._graph_for(tuple(batch.shape))
                static_in.copy_(x, non_blocking=False)
                graph.replay()
                out = static_out
            else:
                out = self._forward(x.to(self.dev) if self.on_cuda else x)
            return out.float().cpu().numpy()

    def info(self) -> dict:
        d = super().info()
        torch = self._torch
        d.update(self.choice.info())
        d["version"] = torch.__version__
        if self.on_cuda:
            d["device_name"] = torch.cuda.get_device_name(self.dev)
            d["cuda"] = torch.version.cuda
            d["cudnn"] = torch.backends.cudnn.version()
        else:
            d["device_name"] = platform.processor() or platform.machine()
        d["precision_used"] = self.precision_used
        d.update(channels_last=self.channels_last, cuda_graphs=self.use_graphs,
                 compile=self.options.compile or False, notes=self.notes)  # fmt: skip
        return d
