"""The ONNX Runtime quantisation settings of every ONNX INT8 model, written once: the plain artifact
(``quantize_static``, :mod:`.convert`) and every mixed-precision candidate (``QDQQuantizer``, :mod:`.mixed`)
take them from here, so that with no layer excluded the two give the same model (a test checks it).

QDQ format, per-channel symmetric int8 weights, asymmetric uint8 activations, MinMax calibration; the final 1x1
conv (K heatmaps out) stays float: heatmap peaks need the resolution, it costs ~0.3 % of the MACs, and ONNX
Runtime 1.23's fused int8 kernel for it (QLinearConv, K=17) returned wrong values at every 16th column of the
last channel on this AVX-512 machine (SNR 20 dB instead of 58 dB).

Activations are uint8, not int8: the same 256-level asymmetric grid (a zero point of its own), but ONNX Runtime's
x86 CPU provider fuses a convolution into its int8 kernel (QLinearConv) with uint8 activations; int8 Q/DQ pairs are
first rewritten to uint8 by a graph pass (QDQS8ToU8Transformer), which left the pairs at the ten residual
connections (one DequantizeLinear feeding the next block's conv and the Add) in int8, and the 15 convolutions
beside them ran in float between Q/DQ pairs (seen in ONNX Runtime's profile and its optimised graph). The demo
model's INT8 ONNX alone, 2 threads, ONNX Runtime 1.23 on AVX-512 VNNI: 12.1 ms with int8 activations, 9.8 ms
with uint8, 6.5 ms with uint8 and the head's 2x2 form (8.1 ms in benchmarks/head_forms.py's interleaved run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...export import INPUT_NAME, OUTPUT_NAME

PER_CHANNEL = True
REDUCE_RANGE = False
EXTRA_OPTIONS = {"ActivationSymmetric": False, "WeightSymmetric": True}
# what the metadata says of these settings (``conversion`` of the INT8 artifact)
DETAILS = {"format": "QDQ", "per_channel": PER_CHANNEL, "activations": "uint8 asymmetric",
           "weights": "int8 symmetric", "calibration": "MinMax"}  # fmt: skip


def quant_types() -> tuple[Any, Any]:
    """(weight type, activation type): ``QuantType.QInt8`` weights, ``QuantType.QUInt8`` activations (module doc)."""
    from onnxruntime.quantization import QuantType

    return QuantType.QInt8, QuantType.QUInt8


def calibration_method() -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return CalibrationMethod.MinMax


# The range options accuracy control tries before keeping any layer in float (``ranges=`` in the registration),
# cheapest first: name -> (ONNX Runtime CalibrationMethod, create_calibrator's extra_options, what it is). The
# first is the plain artifact's. Percentile and Entropy clip the tails MinMax keeps whole (ORT's defaults: 2048
# and 128 histogram bins); asymmetric, as the activations are.
RANGES = {
    "minmax": ("MinMax", {}, "ONNX Runtime CalibrationMethod.MinMax (the plain artifact's)"),
    "percentile": ("Percentile", {"percentile": 99.999, "symmetric": False},
                   "ONNX Runtime CalibrationMethod.Percentile, CalibPercentile 99.999, asymmetric"),
    "entropy": ("Entropy", {"symmetric": False}, "ONNX Runtime CalibrationMethod.Entropy (KL), asymmetric"),
}  # fmt: skip


def range_method(name: str) -> tuple[Any, dict[str, Any]]:
    """(CalibrationMethod, calibrator extra_options) of the range option ``name`` (:data:`RANGES`)."""
    from onnxruntime.quantization import CalibrationMethod

    method, extra, _ = RANGES[name]
    return getattr(CalibrationMethod, method), dict(extra)


def static_options() -> dict[str, Any]:
    """The keyword arguments of ``quantize_static`` (besides files, reader and excluded nodes)."""
    from onnxruntime.quantization import QuantFormat

    weights, activations = quant_types()
    return {"quant_format": QuantFormat.QDQ, "per_channel": PER_CHANNEL, "reduce_range": REDUCE_RANGE,
            "activation_type": activations, "weight_type": weights, "calibrate_method": calibration_method(),
            "extra_options": dict(EXTRA_OPTIONS)}  # fmt: skip


def float_head(src: Path) -> list[str]:
    """The nodes kept in float in every ONNX INT8 model: the one producing the heatmaps (see the module doc)."""
    import onnx

    graph = onnx.load(str(src), load_external_data=False).graph
    return [n.name for n in graph.node if OUTPUT_NAME in n.output]


def pre_process(src: Path, dst: Path) -> None:
    """ONNX Runtime's ``quant_pre_process`` (shape inference and graph optimisation) before calibration; the
    caller wraps it in its own :func:`~edgepose.converters.base.quiet`."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


class Reader:
    """ONNX Runtime's CalibrationDataReader protocol over the calibration batch, ``batch_size`` at a time."""

    def __init__(self, batch: np.ndarray, batch_size: int):
        self.batch, self.bs, self.i = batch, batch_size, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.batch):
            return None
        x = self.batch[self.i : self.i + self.bs]
        self.i += self.bs
        return {INPUT_NAME: np.ascontiguousarray(x)}

    def rewind(self) -> None:
        self.i = 0
