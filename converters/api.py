"""``convert()``: a checkpoint to checked artifacts, one call (what ``edgepose convert`` runs).

Steps: load the checkpoint strictly -> export ONNX once per head form needed (the input of every other target;
:mod:`.transforms` rewrites the head before export, per target and precision) -> each target makes
its precisions in a temp folder inside ``out`` -> each artifact runs through its edgepose runtime on held-out
crops and is compared with PyTorch (:mod:`.parity`) -> metadata (sidecar + embedded) -> if every precision
is within tolerance (or ``allow_parity_failure``), the files are moved into ``out``; otherwise nothing is
written and the call raises :class:`EdgeposeError` with one line.

Reproducible: the same inputs give byte-identical artifact files. The metadata embedded in them holds no
date and no timing (those are in the sidecar only), and the converters keep no process-wide name counters.
The sidecar also records each file's size and sha256, which every load checks (:mod:`edgepose.artifact`);
the embedded copy records the companion files' (an OpenVINO ``.bin``). SIGTERM, like Ctrl-C, removes the
temporary folder; the final moves put companions first and the main file last, and undo themselves when one
fails. (Over 400 lines: the one conversion sequence and its metadata, kept in the order the steps run.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgepose import __version__
from edgepose.calibration import CalibrationSet, check_calibration, read_calibration
from edgepose.errors import EdgeposeError, raise_if_terminated, terminate_as_interrupt
from edgepose.files import check_writable, staging_dir
from edgepose.processing import INPUT_FLOAT, INPUT_UINT8
from edgepose.runtimes.artifact import FORMAT_VERSION, file_record, sidecar_path
from edgepose.spec import DEFAULT_MODEL, ModelSpec, get_spec

from . import export, transforms
from . import targets as _targets  # noqa: F401  (registers every target folder in converters/targets/)
from .base import PRECISIONS, TARGETS, Context, Converted, Timer, quiet, require, version_of
from .int8 import distill, health
from .int8.check import MAX_FLOAT, apply_task, check_int8
from .int8.control import ControlOptions, check_control_options, control_for
from .metadata import embed_metadata, write_sidecar
from .outputs import move_into_place, planned_outputs
from .parity import TOLERANCES, format_table
from .tasks import Task, task_for

log = logging.getLogger(__name__)

NUM_CALIB = 100
NUM_PARITY = 16
INPUTS = {"float": INPUT_FLOAT, "uint8": INPUT_UINT8}  # --input choices -> metadata input.kind


@dataclass
class ArtifactResult:
    target: str
    precision: str
    path: Path  # final location (inside out) once written
    files: list[Path]
    parity: dict[str, Any]
    failed: list[str]
    seconds: float
    size_bytes: int
    metadata: dict[str, Any]

    @property
    def passed(self) -> bool:
        return not self.failed


@dataclass
class ConversionResult:
    model: str
    out_dir: Path
    artifacts: list[ArtifactResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    written: bool = False

    def table(self) -> str:
        rows = [{"artifact": a.path.name, "precision": a.precision, "size_mb": a.size_bytes / 1e6,
                 "parity": a.parity, "failed": a.failed} for a in self.artifacts]  # fmt: skip
        return format_table(rows)


@dataclass
class ConvertOptions:
    """What one conversion is asked for: :func:`convert`'s arguments (see there), in its order."""

    model: str | ModelSpec | None = None
    checkpoint: str | Path | None = None
    targets: str | Sequence[str] = "tflite"
    precisions: str | Sequence[str] = PRECISIONS
    calib: str | Path | None = None
    num_calib: int = NUM_CALIB
    num_parity: int = NUM_PARITY
    dynamic_batch: bool = False
    int8_io: bool = False
    input: str = "float"  # the CLI's --input: "float" or "uint8"
    allow_parity_failure: bool = False
    out: str | Path | None = None
    threads: int | None = None
    progress: bool = True
    reference_accuracy: bool = True
    sha256: str | None = None
    head: str = transforms.AUTO
    max_drop: float | None = None
    control: ControlOptions | None = None
    allow_poor_calib: bool = False  # convert a set the calibration health check calls unrepresentative
    max_float: float = MAX_FLOAT  # --max-float: the share of the MACs accuracy control may keep in float


def parse_list(value: str | Sequence[str] | None, allowed: Sequence[str], what: str, all_ok: bool = False) -> list[str]:
    """``"a,b"`` or a list -> checked list in ``allowed`` order; ``"all"`` -> everything."""
    if value is None:
        return list(allowed)
    items = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    if all_ok and "all" in items:
        return list(allowed)
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise EdgeposeError(f"unknown {what} {bad[0] if bad else '(empty)'!r}; choose from {', '.join(allowed)}")
    return [a for a in allowed if a in items]


def _logger(progress: bool) -> Callable[[str], None]:
    """Progress lines with the seconds since the start, through logging (the CLI shows INFO)."""
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        if progress:
            log.info("[%6.1fs] %s", time.perf_counter() - t0, msg)

    return say


def _calibration(spec: ModelSpec, calib: str | Path | None, need_int8: bool, task: Task) -> CalibrationSet | None:
    if calib is not None:
        return read_calibration(calib, spec)
    try:  # without INT8 the set only gives the parity crops: never make one just for that
        path = task.default_calibration(spec, need_int8)
    except EdgeposeError:
        if need_int8:
            raise
        return None
    if need_int8:
        msg = (
            f"INT8 is calibrated on the bundled synthetic set {path.name}; calibrating on your own images is "
            f"better: edgepose calibrate --model {spec.name} --images DIR --out FILE.npz, then --calib FILE.npz"
        )
        log.warning("%s", msg)
    return read_calibration(path, spec)


def _volatile(c: Converted) -> tuple[dict[str, Any], dict[str, Any]]:
    """(details without timings, the timings): a wall-clock figure never goes inside an artifact file."""
    details = {k: v for k, v in c.details.items() if "seconds" not in k}
    timings = {k: v for k, v in c.details.items() if "seconds" in k}
    timings["seconds"] = round(c.seconds, 2)
    return details, timings


def _base_metadata(spec: ModelSpec, c: Converted, source: dict, dynamic_batch: bool, kind: str) -> dict[str, Any]:
    """The metadata embedded in the artifact: facts only, nothing that changes from one run to the next."""
    tools = {"edgepose": __version__, "python": platform.python_version(), "torch": version_of("torch"),
             "onnx": version_of("onnx"), **c.tools}  # fmt: skip
    return {
        "format_version": FORMAT_VERSION,
        "format": c.target,
        "precision": c.precision,
        "model": spec.to_dict(),
        "batch": c.input["shape"][0] if c.input.get("shape") else (None if dynamic_batch else 1),
        "decode": "default",
        "layout": {**c.layout, "input": "NHWC"} if kind == INPUT_UINT8 else c.layout,
        "input": {**c.input, "kind": kind},
        "output": c.output,
        "tools": tools,
        "source": source,
        "conversion": {
            **_volatile(c)[0],
            "opset": export.OPSET,
            "dynamic_batch": dynamic_batch,
        },  # fmt: skip
    }


def _sidecar_metadata(meta: dict[str, Any], c: Converted) -> dict[str, Any]:
    """The sidecar: the embedded metadata plus the date, the timings and the main file's size and sha256
    (which the embedded copy cannot hold: it would change the file it describes)."""
    side = dict(meta)
    side["conversion"] = {**meta["conversion"], **_volatile(c)[1]}
    side["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    side["file"] = file_record(c.path)
    return side


def convert(
    model: str | None = None,
    checkpoint: str | Path | None = None,
    targets: str | Sequence[str] = "tflite",
    precisions: str | Sequence[str] = PRECISIONS,
    calib: str | Path | None = None,
    num_calib: int = NUM_CALIB,
    num_parity: int = NUM_PARITY,
    dynamic_batch: bool = False,
    int8_io: bool = False,
    input: str = "float",  # noqa: A002 - the CLI's --input
    allow_parity_failure: bool = False,
    out: str | Path | None = None,
    threads: int | None = None,
    progress: bool = True,
    reference_accuracy: bool = True,
    sha256: str | None = None,
    head: str = transforms.AUTO,
    max_drop: float | None = None,
    control: ControlOptions | None = None,
    allow_poor_calib: bool = False,
    max_float: float = MAX_FLOAT,
) -> ConversionResult:
    """Convert ``model`` (default: the demo model) to ``targets`` x ``precisions``; see the module doc.

    ``sha256`` (full or prefix) is the checkpoint's expected hash; a checkpoint named like a zoo model's
    published file picks that model when ``model`` is not given. SIGTERM cleans up like Ctrl-C.

    ``head``: the form the deconvolution head is exported in (:mod:`.transforms`): ``"auto"`` (each target's
    measured fastest per precision), ``"deconv"`` (no rewrite), ``"subpixel2x2"`` or ``"subpixel3x3"``.

    INT8 (:mod:`.int8`): each artifact is scored on a control split of evaluation data (``control``; the
    demo model's: its synthetic val split) and fails beyond a drop of 0.03 in the model's metric; with
    ``max_drop``, layers are kept in float until the drop is within it, or the call fails writing nothing;
    never more than ``max_float`` of the model's MACs (default 0.2): past it the call fails too.
    """
    opts = ConvertOptions(model, checkpoint, targets, precisions, calib, num_calib, num_parity, dynamic_batch, int8_io,
                          input, allow_parity_failure, out, threads, progress, reference_accuracy, sha256, head,
                          max_drop, control, allow_poor_calib, max_float)  # fmt: skip
    with terminate_as_interrupt():
        return _convert(opts)


def _plan(target_names: list[str], precs: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """target -> the asked precisions it offers, and a note for each it does not; fails when nothing is left."""
    plan: dict[str, list[str]] = {}
    notes: list[str] = []
    for t in target_names:
        ok = [p for p in precs if p in TARGETS[t].precisions]
        skipped = [p for p in precs if p not in ok]
        if skipped:
            notes.append(f"{t}: {', '.join(skipped)} not offered (choose from {', '.join(TARGETS[t].precisions)})")
        if ok:
            plan[t] = ok
    if not plan:
        raise EdgeposeError(f"nothing to convert: {'; '.join(notes)}")
    return plan, notes


def _convert(o: ConvertOptions) -> ConversionResult:
    say = _logger(o.progress)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before anything imports TensorFlow (NNCF does, too)
    target_names = parse_list(o.targets, list(TARGETS), "target", all_ok=True)
    precs = parse_list(o.precisions, PRECISIONS, "precision")
    head = transforms.check_form(o.head, allow_auto=True)
    kind = INPUTS.get(str(o.input).lower()) or (o.input if o.input in INPUTS.values() else None)
    if kind is None:
        raise EdgeposeError(f"--input {o.input}: choose {' or '.join(INPUTS)}")
    plan, notes = _plan(target_names, precs)
    if o.num_calib < 1 or o.num_parity < 1:
        raise EdgeposeError("--num-calib and the number of parity crops must be at least 1")
    require("torch", "onnx", target="ONNX export")
    for t in plan:
        require(*TARGETS[t].requires, target=t)

    from edgepose.checkpoint import resolve_checkpoint, sha256_of
    from edgepose.models import load_model
    from edgepose.runtimes.open import model_for_checkpoint

    if isinstance(o.model, ModelSpec):
        spec = o.model
    else:
        spec = model_for_checkpoint(o.model, str(o.checkpoint) if o.checkpoint else None) if o.checkpoint else get_spec(
            o.model or DEFAULT_MODEL)  # fmt: skip
    task = task_for(spec)  # every step that depends on what the model computes asks it (converters/tasks.py)
    if not task.rewrites_head and head not in (transforms.AUTO, "deconv"):
        raise EdgeposeError(f"--head {head}: model {spec.name} ({spec.task}) has no deconvolution head to rewrite; "
                            "leave --head out")  # fmt: skip
    out_dir = Path(o.out or Path("artifacts") / spec.name)
    check_writable(out_dir, "--out", folder=True)
    for f in planned_outputs(out_dir, spec.name, plan, "_u8in" if kind == INPUT_UINT8 else ""):
        if f.is_dir():
            raise EdgeposeError(f"{f}: is a directory, where convert must write a file")
    source_ckpt = str(o.checkpoint or spec.checkpoint)
    need_int8 = any("int8" in p for p in plan.values())
    check_control_options(spec, o.control, need_int8, o.max_drop, kind)  # before any download or work
    if not (isinstance(o.max_float, (int, float)) and 0.0 <= float(o.max_float) <= 1.0):
        raise EdgeposeError(f"max_float {o.max_float!r}: a share of the model's MACs between 0 and 1")
    ckpt_path = resolve_checkpoint(source_ckpt, progress=o.progress, sha256=o.sha256)  # a wrong file fails first
    if str(o.calib) == "distill":  # image-free: distilled from the BatchNorm statistics (cached); parity crops only
        cset = distill.cached_distilled_set(spec, o.checkpoint, sha256_of(ckpt_path)) if need_int8 else None
    else:
        cset = _calibration(spec, o.calib, need_int8, task)
    if need_int8 and cset is not None:  # a degenerate set is refused before any work
        check_calibration(cset, o.num_calib, spec)
    need_control = need_int8 or task.every_precision  # a detector's every artifact is scored on the control split
    if need_control and not need_int8 and o.max_drop is not None:
        notes.append("--max-drop applies to INT8 artifacts only; none asked for")
    control_cs = control_for(spec, o.control, cset, need_control, o.max_drop, notes, make=task.control,
                             default_size=task.control_images)
    if o.int8_io and "tflite" not in plan:
        notes.append("--int8-io applies to TFLite only; ONNX and OpenVINO keep float input/output")

    result = ConversionResult(spec.name, out_dir, notes=notes)
    with Timer() as t_load:
        torch_model = load_model(spec, str(o.checkpoint) if o.checkpoint else None, progress=o.progress)
    source = {"checkpoint": source_ckpt, "sha256": sha256_of(ckpt_path)}
    say(f"{spec.name}: checkpoint {Path(source_ckpt).name} loaded in {t_load.seconds:.1f} s")
    result.timings["load_checkpoint"] = t_load.seconds
    if control_cs is not None:
        with Timer() as t:
            control_cs.set_reference(torch_model, source["sha256"])
        say(f"control split: {control_cs.info['num_images']} images, {control_cs.info['num_instances']} instances; "
            f"PyTorch {control_cs.metric} {control_cs.reference:.4f} ({t.seconds:.1f} s)")  # fmt: skip
    calib_health = None
    if need_int8 and cset is not None:  # before any quantisation: does the set look like the training data?
        calib_health = health.assess(torch_model, spec, cset.crops[:o.num_calib], getattr(control_cs, "crops", None))
        say(calib_health.table())
        health.enforce(calib_health, str(cset.path.name if cset.path else "calibration set"), o.allow_poor_calib,
                       cset.meta.get("source"))

    calib_batch = cset.calibration_batch(spec, o.num_calib) if (cset is not None and need_int8) else np.zeros((0,))
    calib_crops = cset.crops[:o.num_calib] if (cset is not None and need_int8) else np.zeros((0,), np.uint8)
    if cset is not None and len(cset.holdout):
        parity_crops, parity_from = cset.holdout[:o.num_parity], f"holdout crops of {cset.path.name}"
    else:
        parity_crops, parity_from = task.parity_frames(spec, o.num_parity), task.parity_from
        if cset is not None and o.calib:  # the user's own set, without a holdout: say what parity runs on instead
            log.warning("%s holds no holdout crops: the parity check runs on %d %s", o.calib, o.num_parity, parity_from)
    from edgepose.processing import normalize

    parity_inputs = normalize(parity_crops, spec.mean, spec.std)  # what PyTorch takes
    artifact_inputs = parity_crops if kind == INPUT_UINT8 else parity_inputs  # what the artifacts take
    calib_info = None
    if need_int8 and cset is not None:
        calib_info = {"file": cset.path.name if cset.path else None, "bundled": o.calib is None,
                      "sha256": sha256_of(cset.path) if cset.path else None, "num": int(len(calib_batch)),
                      "source": cset.meta.get("source"), "seed": cset.meta.get("seed"),
                      "health": calib_health.summary()}  # fmt: skip

    made_out = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        workdir = staging_dir(out_dir, "convert")  # and a killed run's stale one goes
    except OSError as e:
        raise EdgeposeError(f"{out_dir}: cannot create the output folder ({e.strerror})") from None
    try:
        ctx = Context(spec, torch_model, workdir / "export.onnx", workdir, calib_batch.astype(np.float32),
                      o.dynamic_batch, o.int8_io, spec.name, say, input_kind=kind, calib_crops=calib_crops,
                      keep_work=o.max_drop is not None)  # fmt: skip
        forms = _head_forms(plan, head if task.rewrites_head else "deconv")
        exports: dict[str, Context] = {}  # one ONNX export per head form, shared by the targets that use it
        for form in dict.fromkeys(f for by_prec in forms.values() for f in by_prec.values()):
            with Timer() as t:
                exports[form] = _export_form(ctx, torch_model, form, task)
            result.timings["onnx_export"] = result.timings.get("onnx_export", 0.0) + t.seconds
            how = f"{form} head" if task.rewrites_head else (", ".join(task.export_rewrites) or "as it is")
            say(f"onnx: exported ({how}) and checked in {t.seconds:.1f} s (opset {export.OPSET})")

        import torch

        with torch.inference_mode():  # every artifact is checked against the ORIGINAL model, never the rewrite
            reference = torch_model(torch.from_numpy(parity_inputs)).numpy()

        ref_acc = None
        if o.reference_accuracy:
            with Timer() as t:
                ref_acc = task.reference_accuracy(spec, torch_model, source["sha256"])
            if ref_acc:
                result.timings["reference_accuracy"] = t.seconds
                say(f"reference: PyTorch {ref_acc['metric']} {ref_acc['value']:.4f} on {ref_acc['dataset']} "
                    f"({ref_acc['num_images']} images), recorded in every artifact")  # fmt: skip

        converted: list[Converted] = []
        for name, ps in plan.items():
            with Timer() as t:
                converted += _run_target_by_form(name, exports, forms[name], ps, list(task.export_rewrites))
            result.timings[name] = t.seconds
            say(f"{name}: {', '.join(ps)} done in {t.seconds:.1f} s")

        for c in converted:
            meta = _base_metadata(spec, c, source, o.dynamic_batch, kind)
            app = task.app_metadata(spec, kind or INPUT_FLOAT)
            if app:  # what an app needs to run it without edgepose (a detector: letterbox, output decoding)
                meta["app"] = _app_io(app, meta)
            if c.precision == "int8" and calib_info:
                meta["calibration"] = calib_info
            if ref_acc:
                meta["reference_accuracy"] = ref_acc
            scored = None
            # the task metric on the control split (INT8; a detector's every artifact); --max-drop: accuracy control
            if control_cs is not None and (c.precision == "int8" or task.every_precision):
                write_sidecar(c.path, meta)  # the runtime reads layout and quantisation from it
                with Timer() as t:
                    scored = check_int8(c, exports[c.details["head"]], control_cs,
                                        o.max_drop if c.precision == "int8" else None, o.threads, o.max_float,
                                        calib_health.verdict if calib_health else None)  # fmt: skip
                key = f"task_{c.target}" if c.precision == "int8" else f"task_{c.target}_{c.precision}"
                result.timings[key] = t.seconds
            if c.extra_files:  # the embedded copy vouches for the companions (it cannot hash its own file)
                meta["companions"] = {f.suffix: file_record(f) for f in c.extra_files}
            write_sidecar(c.path, meta)  # the runtime reads layout and quantisation from it
            with Timer() as t:
                figures = _run_parity(c.path, artifact_inputs, reference, o.threads,
                                      lambda ref, out: task.compare(ref, out, spec))  # fmt: skip
            failed = task.check(figures, c.precision)
            latency, waived = None, []
            if scored:  # the control drop beside the tensor parity; the latency (a timing) in the sidecar only
                if o.max_drop is not None and c.precision == "int8":  # the user's budget on real data decides:
                    waived, failed = failed, []  # tensor figures inform
                failed += apply_task(meta, scored)
                latency = (meta.get("accuracy_control") or {}).pop("latency", None)
            inputs = parity_from + (" (fed as uint8 crops)" if kind == INPUT_UINT8 else "")
            meta["parity"] = {**figures, "inputs": inputs, "tolerance": task.tolerance(c.precision),
                              "passed": not failed, "failed": failed, **({"task": scored["task"]} if scored else {}),
                              **({"outside_tensor_tolerance": waived, "acceptance": "--max-drop on the control "
                                  "split"} if waived else {})}  # fmt: skip
            embed_metadata(c.path, meta)
            meta = _sidecar_metadata(meta, c)
            if latency:
                meta["accuracy_control"] = {**meta["accuracy_control"], "latency": latency}
            write_sidecar(c.path, meta)
            files = [*c.extra_files, sidecar_path(c.path), c.path]
            size = sum(f.stat().st_size for f in files if f != sidecar_path(c.path))
            result.artifacts.append(ArtifactResult(c.target, c.precision, out_dir / c.path.name,
                                                   [out_dir / f.name for f in files], meta["parity"], failed,
                                                   c.seconds, size, meta))  # fmt: skip
            result.timings[f"parity_{c.target}_{c.precision}"] = t.seconds
            status = "ok" if not failed else "OUT OF TOLERANCE: " + "; ".join(failed)
            if waived:
                status += f"; tensor figures outside the INT8 tolerance ({'; '.join(waived)}), --max-drop decides"
            say(f"{c.path.name}: parity SNR {figures['snr_db']:.1f} dB, rel {figures['rel_max_err']:.1e} ({status})"
                + _default_note(figures))

        result.notes += list(dict.fromkeys(ctx.notes))
        bad = [a for a in result.artifacts if a.failed]
        if bad and not o.allow_parity_failure:
            first = bad[0]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise EdgeposeError(
                f"{first.path.name}: parity against PyTorch out of tolerance: {'; '.join(first.failed)}{more}; "
                "nothing written (--allow-parity-failure keeps the artifacts)"
            )
        raise_if_terminated()  # a SIGTERM a library swallowed still stops the run before anything is written
        move_into_place(converted, out_dir)
        result.written = True
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if made_out and not result.written:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # only if empty
    return result


def _app_io(app: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """The ``app`` block with this very file's input and output: tensor names, shapes, layouts and dtypes as the
    engine reports them (a TFLite artifact is NHWC in and out, its names are onnx2tf's; an INT8-I/O file's
    tensors carry their quantisation), not the exported ONNX graph's."""
    for side in ("input", "output"):
        real, block = meta.get(side), app.get(side)
        if not isinstance(real, dict) or not isinstance(block, dict):
            continue
        for key in ("name", "shape", "dtype"):
            if real.get(key) is not None:
                block[key] = real[key]
        layout = (meta.get("layout") or {}).get(side)
        if layout:
            block["layout"] = layout
        if real.get("quantization"):
            block["quantization"] = real["quantization"]
    return app


def _default_note(figures: dict[str, Any]) -> str:
    d = figures.get("default")
    if not d or d.get("same_as_checked"):
        return ""
    return (f"; checked in {figures['precision_used']}, the engine's default runs {d['precision_used']}: "
            f"SNR {d['snr_db']:.1f} dB, rel {d['rel_max_err']:.1e}")


def _head_forms(plan: dict[str, list[str]], head: str) -> dict[str, dict[str, str]]:
    """target -> precision -> head form: ``head`` itself, or for ``"auto"`` what each target declares."""
    if head != transforms.AUTO:
        return {t: {p: head for p in ps} for t, ps in plan.items()}
    return {t: {p: TARGETS[t].head_forms.get(p, "deconv") for p in ps} for t, ps in plan.items()}


def _export_form(ctx: Context, torch_model: Any, form: str, task: Task) -> Context:
    """The context of one head form: the (rewritten) model and its own ONNX export in the work dir (the task's
    own exact rewrite first, where it has one: the detector's)."""
    model = transforms.rewrite_head(torch_model, form)
    if task.export_rewrite is not None:
        model = task.export_rewrite(model)
    path = ctx.onnx_path if form == "deconv" else ctx.workdir / f"export_{form}.onnx"
    export.export_onnx(model, ctx.spec, path, dynamic_batch=ctx.dynamic_batch, input_kind=ctx.input_kind,
                       plain_names=task.plain_node_names)
    return replace(ctx, model=model, onnx_path=path)


def _run_target_by_form(
    name: str, exports: dict[str, Context], forms: dict[str, str], ps: list[str], task_rewrites: list[str] | None = None
) -> list[Converted]:
    """Run target ``name`` once per head form its precisions need; each artifact's metadata names the rewrite."""
    out: list[Converted] = []
    for form in dict.fromkeys(forms[p] for p in ps):
        for c in _run_target(name, exports[form], [p for p in ps if forms[p] == form]):
            c.details["head"] = form
            c.details["graph_rewrites"] = [*transforms.REWRITES[form], *(task_rewrites or []),
                                           *c.details.get("graph_rewrites", [])]  # fmt: skip
            out.append(c)
    return sorted(out, key=lambda c: ps.index(c.precision))


def _run_target(name: str, ctx: Context, precisions: list[str]) -> list[Converted]:
    """One target's conversion; an unexpected crash becomes one line (``EDGEPOSE_DEBUG=1`` keeps the traceback)."""
    try:
        return TARGETS[name].convert(ctx, precisions)
    except EdgeposeError:
        raise
    except Exception as e:
        if os.environ.get("EDGEPOSE_DEBUG"):
            raise
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise EdgeposeError(f"{name} conversion failed: {type(e).__name__}: {first}") from None


def _run_parity(path: Path, inputs: np.ndarray, reference: np.ndarray, threads: int | None,
                compare: Callable[[np.ndarray, np.ndarray], dict[str, Any]]) -> dict[str, Any]:
    """Parity figures of the artifact computing in float32 where its engine can be told to (the figures the
    tolerance checks; OpenVINO's ``inference_precision="f32"``), and, under ``"default"``, the figures of the
    engine's own default precision (bf16 on AMX CPUs for OpenVINO) when that differs: what users get."""
    from edgepose.runtimes import load_runtime, runtime_for

    cls = runtime_for(path)
    strict = dict(cls.strict_options) if cls is not None else {}
    with quiet(f"running {path.name}"):
        rt = load_runtime(path, threads=threads, **strict)
        figures = compare(reference, rt(inputs))
    figures.update(precision_used=rt.precision_used, runtime_options=strict)
    if strict:
        with quiet(f"running {path.name} at the engine's default precision"):
            rt = load_runtime(path, threads=threads)
            same = rt.precision_used == figures["precision_used"]
            figures["default"] = {"precision_used": rt.precision_used, "same_as_checked": same,
                                  **({} if same else compare(reference, rt(inputs)))}  # fmt: skip
    return figures


__all__ = ["convert", "ConvertOptions", "ConversionResult", "ArtifactResult", "TOLERANCES", "NUM_CALIB", "NUM_PARITY"]
