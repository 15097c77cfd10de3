"""ONNX Runtime: ``.onnx`` artifacts (CPU execution provider; GPU providers plug into :meth:`providers`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import EdgeposeError
from ..artifact import KEY, input_kind, read_metadata
from ..base import Runtime, RuntimeOptions, register_runtime
from ..devices import DeviceChoice
from ..io import from_layout

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
              "tensor(int8)": "int8", "tensor(double)": "float64"}  # fmt: skip


@dataclass
class OnnxRuntimeOptions(RuntimeOptions):
    graph_optimization: str = "all"  # "all", "basic" or "disable"
    providers: list | None = None  # explicit execution providers, asked for as given
    # the intra-op threads stop spinning when a call returns (ONNX Runtime's session.force_spinning_stop); False:
    # they spin on for a while, as ONNX Runtime's default does
    stop_spinning: bool = True


# Why stop_spinning: ONNX Runtime gives every session its own intra-op thread pool, whose threads spin for a while
# after a call returns. Two sessions called in turn (the frame loop's detector and pose model) then compete: the
# first one's threads still spin on the cores while the second computes. Measured on this 2-core VM (INT8 pose
# model and detector, 2 threads each, called in turn; benchmarks/ort_sessions.py): detector 4.1 -> 9.6 ms and
# pose 6.5 -> 12.2 ms against each alone; with the spinning stopped after each call 4.8 / 6.7 ms, and each alone
# unchanged (spinning off altogether, session.intra_op.allow_spinning=0, cost 26 % alone; ONNX Runtime's
# process-wide pool helps as much but, once made, every later session of the process must use it, ONNX Runtime's
# own quantisation tools' included).


@register_runtime
class OnnxRuntime(Runtime):
    engine = "onnxruntime"
    format = "onnx"
    label = "ONNX"
    suffixes = (".onnx",)
    modules = ("onnxruntime",)
    distributions = ("onnxruntime", "onnxruntime-gpu", "onnx")
    install = "onnx"
    color = "#1f77b4"
    Options = OnnxRuntimeOptions

    @classmethod
    def devices(cls) -> list[str]:
        from ..devices import ort_providers

        got = ort_providers() or []
        return ["cpu"] + [d for d, p in (("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider"))
                          if p in got]  # fmt: skip

    @classmethod
    def has_device(cls, device: str) -> bool:
        from ..devices import ort_providers

        want = "TensorrtExecutionProvider" if device.startswith("tensorrt") else "CUDAExecutionProvider"
        return device == "cpu" or want in (ort_providers() or [])

    @classmethod
    def device_problem(cls, device: str) -> str:
        from ..devices import cuda_report

        return f"--device {device}: no CUDA device available ({cuda_report()})"

    @classmethod
    def read_embedded(cls, path):
        try:
            import onnx
        except ImportError:
            return None  # device side without the onnx package: sidecar only
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # protobuf raises DecodeError and friends
            raise EdgeposeError(f"{path}: not a readable ONNX model ({str(e).splitlines()[0][:200]})") from None
        return next((p.value for p in model.metadata_props if p.key == KEY), None)

    def providers(self) -> list[Any]:
        """The execution providers for ``self.device``; the one place a new device is added.

        ``options.providers`` overrides the list (asked for as given: a missing one shows as a fallback).
        """
        from ..devices import ort_provider_list, resolve_device

        if self.options.providers:
            self.choice = DeviceChoice(str(self.device), str(self.device))
            return list(self.options.providers)
        self.choice = resolve_device(self.device, self.engine, self.options.allow_fallback)
        return ort_provider_list(self.choice.device)

    def _load(self) -> None:
        _, ort = self.import_engine()
        self._ort = ort
        self.metadata = read_metadata(self.path)
        so = ort.SessionOptions()
        if self.threads:
            so.intra_op_num_threads = int(self.threads)
            so.inter_op_num_threads = 1
        if self.options.stop_spinning:
            so.add_session_config_entry("session.force_spinning_stop", "1")
        level = self.options.graph_optimization
        if level not in ("all", "basic", "disable"):
            raise EdgeposeError(f"graph_optimization {level!r}: choose all, basic or disable")
        so.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[level]
        so.log_severity_level = 3
        try:
            asked = self.providers()
            self.session = ort.InferenceSession(str(self.path), so, providers=asked)
        except EdgeposeError:
            raise
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise EdgeposeError(f"{self.path}: ONNX Runtime cannot load it ({str(e).splitlines()[0][:200]})") from None
        self._check_providers(asked)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        self.layout = self.metadata.get("layout", {}).get("input", "NCHW")
        self.batch_size = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.precision = self.metadata.get("precision", "fp32")
        self.input_kind = input_kind(self.metadata, self.path)
        # the CPU provider computes float ops in float32 (an INT8 QDQ graph's float parts, an FP16 graph's ops
        # too: its optimiser casts the fp16 weights back); CUDA's cuDNN convolutions may use TF32 tensor cores
        # on Ampere and newer (provider option use_tf32, on by default)
        self.precision_used = self._float_precision()

    def _float_precision(self) -> str:
        from ..devices import cuda_index, tf32_or_fp32

        if self.device == "cpu":  # an FP16 file too: the CPU graph optimiser folds its weights back to float32
            return "fp32"
        if self.precision == "fp16":
            return "fp16"
        opts = self.session.get_provider_options()
        gpu = opts.get("CUDAExecutionProvider") or opts.get("TensorrtExecutionProvider") or {}
        allowed = str(gpu.get("use_tf32", gpu.get("trt_use_tf32", "1"))) != "0"
        return tf32_or_fp32(cuda_index(self.device), allowed)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run([self.output_name], {self.input_name: self._engine_input(batch, self.layout)})[0]
        return from_layout(out, self.metadata.get("layout", {}).get("output", "NCHW"))

    def raw_input(self) -> tuple[str, tuple[int | None, ...], str]:
        inp = self.session.get_inputs()[0]
        shape = tuple(d if isinstance(d, int) and d > 0 else None for d in inp.shape)
        return inp.name, shape, _ORT_TYPES.get(inp.type, inp.type)

    def run_raw(self, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
        names = [o.name for o in self.session.get_outputs()]
        try:
            outs = self.session.run(names, {self.input_name: x})
        except Exception as e:  # onnxruntime's own error types
            raise EdgeposeError(f"{self.path}: ONNX Runtime cannot run it on a {x.dtype} {list(x.shape)} input "
                                f"({str(e).splitlines()[0][:200]})") from None  # fmt: skip
        return list(zip(names, (np.asarray(o) for o in outs)))

    def _check_providers(self, asked: list[Any]) -> None:
        """ORT drops a provider it cannot load with only a warning: the session's own list decides the device."""
        from ..devices import ort_device, provider_fallback

        got = self.session.get_providers()
        reason = provider_fallback(asked, got)
        requested = self.choice.requested
        if reason and not self.options.allow_fallback:
            raise EdgeposeError(f"{self.path}: --device {requested}: {reason}; pass --allow-fallback to run anyway")
        self.choice = DeviceChoice(requested, ort_device(got, requested), reason or self.choice.fallback)
        self.device = self.choice.device

    def info(self) -> dict[str, Any]:
        d = super().info()
        d.update(version=self._ort.__version__, providers=self.session.get_providers(),
                 stop_spinning=bool(self.options.stop_spinning))  # fmt: skip
        d.update(self.choice.info())
        return d
