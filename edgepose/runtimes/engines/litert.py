"""LiteRT (TFLite): ``.tflite`` artifacts through ai-edge-litert, else tflite-runtime, else tf.lite.

Artifacts made by edgepose are NHWC inside (onnx2tf's layout); this runtime takes and returns NCHW like
every other one, and quantises an int8/uint8 input and dequantises an int8/uint8 output with the scale and
zero point of the tensors themselves. XNNPACK is on by default (option ``xnnpack=False`` turns it off).

An FP16 artifact stores float16 weights and computes in float32: the DEQUANTIZE ops (built-in kernels) and
XNNPACK both widen the weights once and run float32 kernels (XNNPACK computes in fp16 only when forced or when
the model carries reduced-precision metadata, which edgepose's files do not); ``precision_used`` says "fp32"
and tests/test_convert.py checks it (XNNPACK's output equals the built-in float32 kernels' within 1e-5).
An artifact made with ``--input uint8`` takes the crop's uint8 RGB bytes as they are.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import EdgeposeError
from ...processing import INPUT_UINT8
from ..artifact import KEY, input_kind, read_metadata
from ..base import Runtime, RuntimeOptions, register_runtime
from ..io import dequantize, from_layout, quantize


def interpreter_module() -> tuple[Any, str, str]:
    """(interpreter module, package name, version) of the first TFLite interpreter that imports."""
    name, mod = LiteRtRuntime.import_engine()
    if name == "tensorflow":  # the full TensorFlow (workstation): its tf.lite
        return mod.lite, "tensorflow", mod.__version__
    top = importlib.import_module(name.split(".")[0])
    return mod, top.__name__.replace("_", "-"), getattr(top, "__version__", "")


def _quant(detail: dict[str, Any]) -> tuple[float, int] | None:
    scale, zero = detail.get("quantization", (0.0, 0))
    return (float(scale), int(zero)) if scale else None


@dataclass
class LiteRtOptions(RuntimeOptions):
    xnnpack: bool = True  # the XNNPACK delegate (LiteRT's default CPU path)


@register_runtime
class LiteRtRuntime(Runtime):
    engine = "litert"
    format = "tflite"
    label = "TFLite"
    suffixes = (".tflite",)
    modules = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow")
    distributions = ("ai-edge-litert", "tflite-runtime", "tensorflow")
    install = "lite"
    color = "#ff7f0e"
    Options = LiteRtOptions

    @classmethod
    def read_embedded(cls, path):
        from ..artifact import tflite_metadata_entries

        return tflite_metadata_entries(path).get(KEY)

    def _load(self) -> None:
        mod, self.package, self.version = interpreter_module()
        from ..devices import resolve_device

        self.choice = resolve_device(self.device, self.engine, self.options.allow_fallback)
        self.device = self.choice.device
        self.metadata = read_metadata(self.path)
        from ..artifact import tflite_problem

        problem = tflite_problem(self.path)  # LiteRT reads a damaged flatbuffer out of bounds (SIGSEGV)
        if problem:
            raise EdgeposeError(f"{self.path}: {problem}")
        kwargs: dict[str, Any] = {"model_path": str(self.path), "num_threads": self.threads or None}
        if not self.options.xnnpack:
            kwargs["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self.interpreter = mod.Interpreter(**kwargs)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise EdgeposeError(f"{self.path}: LiteRT cannot load it ({str(e).splitlines()[0][:200]})") from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        layout = self.metadata.get("layout") or {}
        guess = "NHWC" if self.input["shape"][-1] == 3 and self.input["shape"][1] != 3 else "NCHW"
        self.layout_in = layout.get("input", guess)
        self.layout_out = layout.get("output", guess)
        signature = self.input.get("shape_signature", self.input["shape"])
        self.batch_size = None if signature[0] == -1 else int(self.input["shape"][0])
        self.precision = self.metadata.get("precision", "fp32")
        self.input_kind = input_kind(self.metadata, self.path)
        if self.input_kind == INPUT_UINT8 and np.dtype(self.input["dtype"]) != np.uint8:
            raise EdgeposeError(f"{self.path}: metadata says uint8 input but the input tensor is "
                                f"{np.dtype(self.input['dtype']).name}")  # fmt: skip
        self.precision_used = "fp32"  # float ops (fp16 weights widened; an INT8 graph's float ends) in float32
        self._shape = tuple(self.input["shape"])

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        x = self._engine_input(batch, self.layout_in)
        if x.shape != self._shape:  # dynamic batch: resize once per new batch size
            self.interpreter.resize_tensor_input(self.input["index"], list(x.shape))
            self.interpreter.allocate_tensors()
            self.input = self.interpreter.get_input_details()[0]
            self.output = self.interpreter.get_output_details()[0]
            self._shape = x.shape
        q = _quant(self.input)
        if self.input["dtype"] != np.float32 and self.input_kind != INPUT_UINT8:
            if q is None:
                raise EdgeposeError(f"{self.path}: integer input without quantisation parameters")
            x = quantize(x, q[0], q[1], np.dtype(self.input["dtype"]).name)
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        q = _quant(self.output)
        if self.output["dtype"] != np.float32 and q is not None:
            y = dequantize(y, q[0], q[1])
        return from_layout(np.asarray(y, dtype=np.float32), self.layout_out)

    def raw_input(self) -> tuple[str, tuple[int | None, ...], str]:
        signature = self.input.get("shape_signature", self.input["shape"])
        shape = tuple(None if int(d) < 0 else int(s) for d, s in zip(signature, self.input["shape"]))
        return str(self.input["name"]), shape, np.dtype(self.input["dtype"]).name

    def run_raw(self, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
        q = _quant(self.input)
        if np.dtype(self.input["dtype"]) != x.dtype:
            if q is None or x.dtype != np.float32:
                raise EdgeposeError(f"{self.path}: takes {np.dtype(self.input['dtype']).name} "
                                    f"{list(self.input['shape'])}, got {x.dtype} {list(x.shape)}")  # fmt: skip
            x = quantize(x, q[0], q[1], np.dtype(self.input["dtype"]).name)
        if tuple(x.shape) != tuple(self.input["shape"]):
            raise EdgeposeError(f"{self.path}: takes an input of shape {list(self.input['shape'])}, "
                                f"got {list(x.shape)}")  # fmt: skip
        self.interpreter.set_tensor(self.input["index"], np.ascontiguousarray(x))
        self.interpreter.invoke()
        outs = []
        for d in self.interpreter.get_output_details():
            y = self.interpreter.get_tensor(d["index"])
            q = _quant(d)
            outs.append((str(d["name"]), dequantize(y, *q) if q is not None and y.dtype != np.float32 else y.copy()))
        return outs

    def info(self) -> dict[str, Any]:
        d = super().info()
        d.update(version=self.version, package=self.package, xnnpack=self.options.xnnpack)
        d.update(self.choice.info())
        return d
