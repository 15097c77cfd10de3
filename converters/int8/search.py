"""Mixed-precision INT8 models (some layers kept in float), one builder per target, and :func:`check_int8`:
the task-metric check of every INT8 artifact and, under ``--max-drop``, the accuracy-control loop.

* ONNX: ONNX Runtime's own pieces of ``quantize_static``, calibrated once (``create_calibrator``, MinMax) and
  re-quantised per layer set (``QDQQuantizer`` with ``nodes_to_exclude``); with no layer excluded the result
  is ``quantize_static``'s (a test checks it).
* TFLite: ``tf.lite.experimental.QuantizationDebugger`` calibrates once (the converter's calibrate-only mode)
  and ``get_nondebug_quantized_model()`` re-quantises with ``QuantizationDebugOptions(denylisted_nodes=...)``;
  with no layer denylisted it is the plain converter's model.
* OpenVINO: ``nncf.quantize`` (as the plain artifact) with an ``IgnoredScope`` naming, for each layer kept in
  float, the compute ops producing it and the ops its ``FakeQuantize`` feeds. With ``--openvino-control nncf``:
  NNCF's own ``nncf.quantize_with_accuracy_control`` instead, its validation function returning the control
  metric and one value per image (mean OKS or PCK), so that NNCF ranks its quantiser groups by real metric
  differences.

The search (all three targets): layers ranked by the quantisation noise each adds (:mod:`.layers`), the top
``confirm_top`` confirmed one by one on the output heatmaps, then the worst ``k`` kept in float for growing ``k``
(:func:`.accuracy.restore`), every candidate scored on the control split by the runtime edgepose ships. NNCF's
method re-ranks every remaining quantiser group on the control images after each step that did not help
(measured on the hard case of ``benchmarks/int8_control.py``: ~2 min per ranking pass on 2 cores), and its own
validation runs the model as NNCF compiles it, so its reached drop can differ from the shipped runtime's: the
result is re-scored here and fails like the search does when over budget.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgepose.errors import EdgeposeError

from . import layers as L
from .accuracy import DEFAULT_TASK_BUDGET, ControlSet, latency, restore
from .base import Context, Converted, quiet

log = logging.getLogger(__name__)
NNCF_RANKING_IMAGES = 25  # NNCF ranks each quantiser group on the control images that lose the most, this many


class OnnxMixed:
    """ORT QDQ models of one calibration, any set of nodes left in float (see the module doc)."""

    def __init__(self, src: Path, calib: np.ndarray, workdir: Path, batch_size: int = 1):
        import onnx
        from onnxruntime.quantization import CalibrationMethod, create_calibrator
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
        from onnxruntime.quantization.shape_inference import quant_pre_process

        from .export import OUTPUT_NAME
        from .targets.onnx import _Reader

        self.pre = workdir / "mixed.pre.onnx"
        self.op_types = list(set(list(QLinearOpsRegistry) + list(QDQRegistry)))
        graph = onnx.load(str(src), load_external_data=False).graph
        self.head = [n.name for n in graph.node if OUTPUT_NAME in n.output]  # float in every build (quantize_onnx)
        with quiet("ONNX calibration"):
            quant_pre_process(str(src), str(self.pre), skip_symbolic_shape=True)
            cal = create_calibrator(self.pre, self.op_types, augmented_model_path=str(workdir / "mixed.aug.onnx"),
                                    calibrate_method=CalibrationMethod.MinMax, extra_options={})  # fmt: skip
            cal.collect_data(_Reader(calib, batch_size))
            self.ranges = cal.compute_data()
        del cal

    def build(self, float_nodes: list[str], dst: Path) -> Path:
        from onnxruntime.quantization import QuantType
        from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
        from onnxruntime.quantization.quant_utils import load_model_with_shape_infer, update_opset_version

        with quiet("ONNX INT8 quantisation"):
            model = update_opset_version(load_model_with_shape_infer(self.pre), QuantType.QInt8)
            q = QDQQuantizer(model, True, False, QuantType.QInt8, QuantType.QInt8, self.ranges, [],
                             self.head + list(float_nodes), self.op_types,
                             {"ActivationSymmetric": False, "WeightSymmetric": True})  # fmt: skip
            q.quantize_model()
            q.model.save_model_to_file(str(dst), False)
        return dst


class TfliteMixed:
    """TFLite INT8 models of one calibration, any set of ops (output tensor names) left in float."""

    def __init__(self, saved_model: Path, calib_nchw: np.ndarray, plain: bytes | None = None):
        from .targets.tflite import _import_tf

        tf = _import_tf()
        self.tf = tf
        self.groups = L.tflite_float_groups(plain) if plain is not None else {}
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
        """What is denylisted for ``layers``: each with its group (:func:`.layers.tflite_float_groups`)."""
        return list(dict.fromkeys(o for la in layers for o in self.groups.get(la, [la])))

    def build(self, layers: list[str], dst: Path) -> Path:
        opts = self.tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=self.ops(layers) or None)
        with quiet("TFLite INT8 quantisation"):
            self.debugger.options = opts
            dst.write_bytes(self.debugger.get_nondebug_quantized_model())
        return dst


class OpenvinoMixed:
    """NNCF INT8 IRs made as the plain artifact is (``quantize_nncf``, same calibration), any layers in float:
    a layer (an op whose output is fake-quantised, named as in the per-layer report) maps to the ops NNCF
    leaves unquantised for it (:func:`.layers.openvino_float_ops`)."""

    def __init__(self, src: Path, calib: np.ndarray, plain_ir: Path, dynamic_batch: bool):
        import openvino as ov

        self.ov, self.core, self.src, self.calib, self.dynamic_batch = ov, ov.Core(), src, calib, dynamic_batch
        names = {op.get_friendly_name() for op in self.core.read_model(str(src)).get_ordered_ops()}
        self.compute = {k: [o for o in v if o in names]
                        for k, v in L.openvino_float_ops(self.core.read_model(str(plain_ir))).items()}  # fmt: skip

    def ops(self, layers: list[str]) -> list[str]:
        """The ops NNCF leaves unquantised for ``layers`` (in order, each once)."""
        return list(dict.fromkeys(o for la in layers for o in self.compute.get(la, [])))

    def build(self, layers: list[str], dst: Path) -> Path:
        from .targets.openvino import quantize_nncf, stable_names

        q, _ = quantize_nncf(self.core.read_model(str(self.src)), self.calib, self.dynamic_batch, self.ops(layers))
        with quiet("OpenVINO save_model"):
            self.ov.save_model(stable_names(q), str(dst), compress_to_fp16=False)
        return dst


def _candidate(c: Converted, workdir: Path, k: int) -> Path:
    """A work path for a candidate model, with the artifact's sidecar beside it (the runtime reads it)."""
    from edgepose.artifact import sidecar_path

    dst = workdir / f"{c.path.stem}.mixed{k}{c.path.suffix}"
    if sidecar_path(c.path).is_file():
        shutil.copyfile(sidecar_path(c.path), sidecar_path(dst))
    return dst


def _heatmap_error(path: Path, x: np.ndarray, ref: np.ndarray, threads: int | None) -> float:
    from edgepose.runtimes import load_runtime

    with quiet(f"running {path.name}"):
        out = load_runtime(path, threads=threads)(x)
    return float(((out.astype(np.float64) - ref) ** 2).sum())


def _rank(c: Converted, graph: L.Graph, control: ControlSet, x: np.ndarray, ref: np.ndarray, build: Callable,
          threads: int | None, say: Callable[[str], None]) -> tuple[list[str], list[dict]]:  # fmt: skip
    """Layers by the noise they add, the top ``control.confirm_top`` confirmed one at a time on the output."""
    layers = L.measure(graph, x)
    order = L.ranked(layers)
    e0 = _heatmap_error(c.path, x, ref, threads)
    confirmed = []
    top = control.confirm_top
    for i, layer in enumerate(order[:top]):
        path = build([layer.name], c.path.parent / f"{c.path.stem}.one{i}{c.path.suffix}")
        layer.removed = (e0 - _heatmap_error(path, x, ref, threads)) / e0 if e0 > 0 else 0.0
        for f in (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,):
            f.unlink(missing_ok=True)
        confirmed.append(layer)
    say(f"{c.target} int8: ranked {len(order)} layers; the top {len(confirmed)} confirmed one by one on the output")
    helpful = sorted((la for la in confirmed if la.removed > 0), key=lambda la: -la.removed)
    useless = [la for la in confirmed if la.removed <= 0]
    final = helpful + order[top:] + useless
    return [la.name for la in final], L.layer_dicts(final)


def _score(control: ControlSet, threads: int | None) -> Callable[[Path], float]:
    from edgepose.runtimes import load_runtime

    def score(path: Path) -> float:
        with quiet(f"running {path.name}"):
            rt = load_runtime(path, threads=threads)
        return control.evaluate(rt)[0]

    return score


def _restore_search(c: Converted, ctx: Context, control: ControlSet, budget: float, plain_drop: float,
                    threads: int | None) -> tuple[dict, Path]:  # fmt: skip
    x = control.inputs[: control.rank_crops]
    ref = control.reference_heatmaps(x)
    if c.target == "openvino":
        ctx.log("openvino int8: ranking layers; each candidate is NNCF-quantised with those layers left out")
        builder = OpenvinoMixed(ctx.onnx_path, ctx.calib, c.path, ctx.dynamic_batch)
        graph = L.openvino_graph(c.path, ctx.onnx_path, threads)
    elif c.target == "onnx":
        ctx.log("onnx int8: calibrating once for the mixed-precision search")
        builder = OnnxMixed(ctx.onnx_path, ctx.calib, ctx.workdir, 1 if not ctx.dynamic_batch else 8)
        graph = L.onnx_graph(c.path, ctx.onnx_path, threads)
    else:
        if ctx.int8_io:
            raise EdgeposeError("--max-drop with --int8-io is not supported for TFLite; drop one of them")
        saved = ctx.workdir / "tflite_work" / "saved_model"
        ctx.log("tflite int8: calibrating once (QuantizationDebugger) for the mixed-precision search")
        builder = TfliteMixed(saved, ctx.calib, c.path.read_bytes())
        fp32 = ctx.workdir / "mixed_reference_fp32.tflite"
        from .targets.tflite import tflite_from_saved_model

        fp32.write_bytes(tflite_from_saved_model(saved, "fp32"))
        graph = L.tflite_graph(c.path.read_bytes(), fp32.read_bytes(), threads)
    float_ops = getattr(builder, "ops", None)  # TFLite, OpenVINO: a layer's float group is more than itself
    names, report = _rank(c, graph, control, x, ref, builder.build, threads, ctx.log)
    counter = iter(range(10**6))
    found = restore(c.target, control, budget, plain_drop, names,
                    lambda layers: builder.build(layers, _candidate(c, ctx.workdir, next(counter))),
                    _score(control, threads), ctx.log)  # fmt: skip
    chosen = set(found["float_layers"])
    found["ranking"] = [r for r in report if r["name"] in chosen] + [
        r for r in report[: control.confirm_top] if r["name"] not in chosen]  # fmt: skip
    if float_ops is not None:  # what the quantiser was told to leave in float for those layers
        found["float_ops"] = float_ops(found["float_layers"])
    return found, found["path"]


def _restore_nncf(c: Converted, ctx: Context, control: ControlSet, budget: float,
                  threads: int | None) -> tuple[dict, Path]:  # fmt: skip
    import openvino as ov

    with quiet("importing NNCF"):
        import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    logging.getLogger("nncf").setLevel(logging.ERROR)
    core = ov.Core()
    items = [ctx.calib[i : i + 1] for i in range(len(ctx.calib))]

    def validate(compiled: Any, data: Any) -> tuple[float, list[float]]:
        images = [int(i) for i in data]
        return control.score_images(lambda x: np.concatenate([compiled(x[i : i + 1])[0] for i in range(len(x))]),
                                    images)  # fmt: skip

    ctx.log(f"openvino int8: nncf.quantize_with_accuracy_control (max drop {budget:g} on {len(control.images)} "
            f"images; NNCF re-ranks its quantiser groups after every step that does not help: minutes per pass)")
    with quiet("NNCF accuracy control"):
        q = nncf.quantize_with_accuracy_control(
            core.read_model(str(ctx.onnx_path)), nncf.Dataset(items), nncf.Dataset(list(range(len(control.images)))),
            validate, max_drop=budget, drop_type=nncf.DropType.ABSOLUTE, preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(items), fast_bias_correction=True,
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                num_ranking_workers=1, ranking_subset_size=min(len(control.images), NNCF_RANKING_IMAGES)))
    dst = _candidate(c, ctx.workdir, 0)
    with quiet("OpenVINO save_model"):
        ov.save_model(q, str(dst), compress_to_fp16=False)
    plain_ops = L.openvino_quantized_ops(core.read_model(str(c.path)))
    float_layers = sorted(plain_ops - L.openvino_quantized_ops(core.read_model(str(dst))))
    value = _score(control, threads)(dst)
    drop = float(control.reference - value)
    if drop > budget + 1e-12:
        raise EdgeposeError(f"openvino int8: best {control.metric} drop reached on the control split {drop:.4f} "
                            f"({len(float_layers)} op(s) in float, NNCF's accuracy control; scored with the "
                            f"OpenVINO runtime edgepose ships) > budget {budget:g}; nothing written")  # fmt: skip
    return {"path": dst, "float_layers": float_layers, "drop": drop, "value": value, "steps": []}, dst


def check_int8(c: Converted, ctx: Context, control: ControlSet, max_drop: float | None,
               threads: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Score ``c`` on the control split; with ``max_drop``, restore float layers until its drop is within it
    (the artifact file is replaced in place). Returns ``{"task": ..., "accuracy_control": ... | None}``."""
    score = _score(control, threads)
    value = score(c.path)
    drop = float(control.reference - value)
    ctx.log(f"{c.path.name}: control {control.metric} {value:.4f} (PyTorch {control.reference:.4f}, "
            f"drop {drop:+.4f})")  # fmt: skip
    budget = DEFAULT_TASK_BUDGET if max_drop is None else float(max_drop)
    plain = {control.metric: value, "drop": drop}
    out: dict[str, Any] = {"accuracy_control": None}
    if max_drop is not None:
        ctrl: dict[str, Any] = {"max_drop": budget, "metric": control.metric, "control": control.info,
                                "plain": plain, "float_layers": [], "method": "none needed: plain INT8 within budget"}
        if drop > budget + 1e-12 and budget < 0 and not (c.target == "openvino" and control.openvino == "nncf"):
            raise EdgeposeError(f"{c.target} int8: best {control.metric} drop reached on the control split {drop:.4f} "
                                f"(plain INT8) > budget {budget:g} (a negative budget asks for better than float); "
                                "nothing written")  # fmt: skip
        if drop > budget + 1e-12:
            if c.target == "openvino" and control.openvino == "nncf":
                found, path = _restore_nncf(c, ctx, control, budget, threads)
                ctrl["method"] = "nncf.quantize_with_accuracy_control (per-image OKS/PCK values)"
            else:
                found, path = _restore_search(c, ctx, control, budget, drop, threads)
                ctrl["method"] = ("layers ranked by added quantisation noise, top confirmed on the output, "
                                  "worst k kept in float for growing k, re-scored on the control split")
                if c.target == "openvino":
                    ctrl["method"] += " (candidates: nncf.quantize, IgnoredScope: the ops making and reading them)"
                if "float_ops" in found:
                    ctrl["float_ops"] = found["float_ops"]
                ctrl["steps"], ctrl["ranking"] = found["steps"], found["ranking"]
                ctrl["search"] = {"rank_crops": int(min(control.rank_crops, len(control.crops))),
                                  "confirm_top": int(control.confirm_top)}
            ctrl["latency"] = latency(c.path, path, control.inputs, threads=threads)
            for f in c.extra_files:  # OpenVINO: the .bin goes with the .xml
                os.replace(path.with_suffix(f.suffix), f)
            os.replace(path, c.path)
            value, drop = found["value"], found["drop"]
            ctrl["float_layers"] = list(found["float_layers"])
        ctrl["reached"] = {control.metric: value, "drop": drop}
        out["accuracy_control"] = ctrl
    out["task"] = {"metric": control.metric, "reference": control.reference, "value": value, "drop": drop,
                   "max_drop": budget, "passed": bool(drop <= budget + 1e-12), "control": control.info}  # fmt: skip
    return out


__all__ = ["OnnxMixed", "OpenvinoMixed", "TfliteMixed", "check_int8"]
