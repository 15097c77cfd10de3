"""The TFLite target's mixed-precision INT8 builder: ``tf.lite.experimental.QuantizationDebugger`` calibrates
once (the converter's calibrate-only mode) and ``get_nondebug_quantized_model()`` re-quantises with
``QuantizationDebugOptions(denylisted_nodes=...)``; with no layer denylisted it is the plain converter's model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgepose.errors import EdgeposeError

from ...base import Context, Converted, quiet
from .convert import import_tf, tflite_from_saved_model
from .graph import tflite_float_groups, tflite_macs


class TfliteMixed:
    """TFLite INT8 models of one calibration, any set of ops (output tensor names) left in float."""

    def __init__(self, saved_model: Path, calib_nchw: np.ndarray, plain: bytes | None = None):
        tf = import_tf()
        self.tf = tf
        self.groups = tflite_float_groups(plain) if plain is not None else {}
        self.macs = tflite_macs(plain) if plain is not None else {}
        data = np.ascontiguousarray(calib_nchw.transpose(0, 2, 3, 1))

        def representative():
            for i in range(len(data)):
                yield [data[i : i + 1]]

        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        with quiet("TFLite calibration (QuantizationDebugger)"):
            self.debugger = tf.lite.experimental.QuantizationDebugger(
                converter=conv, debug_dataset=lambda: ([data[i : i + 1]] for i in range(min(2, len(data)))),
                debug_options=tf.lite.experimental.QuantizationDebugOptions())  # fmt: skip

    def ops(self, layers: list[str]) -> list[str]:
        """What is denylisted for ``layers``: each with its group (:func:`.graph.tflite_float_groups`)."""
        return list(dict.fromkeys(o for la in layers for o in self.groups.get(la, [la])))

    def float_share(self, layers: list[str]) -> float | None:
        """The share of the model's MACs that ``layers`` (with their groups) take, counted on the TFLite graph
        (:func:`.graph.tflite_macs`); ``None`` where the plain model was not given (the ONNX count is used)."""
        total = sum(self.macs.values())
        return min(1.0, sum(self.macs.get(o, 0) for o in self.ops(layers)) / total) if total else None

    def build(self, layers: list[str], dst: Path) -> Path:
        opts = self.tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=self.ops(layers) or None)
        with quiet("TFLite INT8 quantisation"):
            self.debugger.options = opts
            dst.write_bytes(self.debugger.get_nondebug_quantized_model())
        return dst


def mixed(c: Converted, ctx: Context, threads: int | None = None) -> Any:
    """The builder the search asks for (registered in ``__init__``), with the FP32 file of the same SavedModel
    as the float model the graph reader compares with."""
    if ctx.int8_io:
        raise EdgeposeError("--max-drop with --int8-io is not supported for TFLite; drop one of them")
    saved = ctx.workdir / "tflite_work" / "saved_model"
    ctx.log("tflite int8: calibrating once (QuantizationDebugger) for the mixed-precision search")
    builder = TfliteMixed(saved, ctx.calib, c.path.read_bytes())
    builder.float_model = ctx.workdir / "mixed_reference_fp32.tflite"
    builder.float_model.write_bytes(tflite_from_saved_model(saved, "fp32"))
    return builder
