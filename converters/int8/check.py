"""The INT8 acceptance check, format-free: every INT8 artifact is scored on the control split (:mod:`.control`);
its drop goes into the metadata beside the tensor parity (``parity.task``, :func:`apply_task`) and a drop beyond
the budget fails the conversion. With ``--max-drop X``, when plain INT8 misses the budget, layers go back to
float until it is met: through the layer search (:mod:`.search`), or the target's own method where one is asked
for (``ControlOptions.methods``; the target registers it as ``controls=``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgepose.errors import EdgeposeError

from ..base import TARGETS, Context, Converted
from .control import DEFAULT_TASK_BUDGET, SEARCH, ControlSet
from .search import best_drop_error, float_share_of, one_line, scorer, search

MAX_FLOAT = 0.2  # --max-float: the share of the model's MACs the accuracy control may keep in float


def check_int8(c: Converted, ctx: Context, control: ControlSet, max_drop: float | None,
               threads: int | None = None, max_float: float = MAX_FLOAT,
               health: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Score ``c`` on the control split; with ``max_drop``, restore float layers until its drop is within it
    (the artifact file is replaced in place), never past ``max_float`` of the model's MACs; any failure of the
    search ends it with one line (the best drop reached, ``health``: the calibration verdict), nothing written.
    Returns ``{"task": ..., "accuracy_control": ... | None}``."""
    value = scorer(control, threads)(c.path)
    drop = float(control.reference - value)
    ctx.log(f"{c.path.name}: control {control.metric} {value:.4f} (PyTorch {control.reference:.4f}, "
            f"drop {drop:+.4f})")  # fmt: skip
    # the control split's own budget where it has one (a detector's box AP: 0.01), else the INT8 default 0.03
    budget = getattr(control, "budget", DEFAULT_TASK_BUDGET) if max_drop is None else float(max_drop)
    plain = {control.metric: value, "drop": drop}
    out: dict[str, Any] = {"accuracy_control": None}
    if max_drop is not None:
        own = TARGETS[c.target].controls.get(control.methods.get(c.target, SEARCH))  # None: the layer search
        ctrl: dict[str, Any] = {"max_drop": budget, "metric": control.metric, "control": control.info,
                                "plain": plain, "float_layers": [], "method": "none needed: plain INT8 within budget"}
        if drop > budget + 1e-12 and budget < 0 and own is None:
            raise EdgeposeError(f"{c.target} int8: best {control.metric} drop reached on the control split {drop:.4f} "
                                f"(plain INT8) > budget {budget:g} (a negative budget asks for better than float); "
                                "nothing written")  # fmt: skip
        share = float_share_of(ctx.onnx_path)
        always = list(c.details.get("float_nodes") or [])  # float in every build of this target (a head conv)
        ctrl["max_float"] = float(max_float)
        ctrl["int8_macs_share"] = round(1.0 - share(always), 4)
        if drop > budget + 1e-12:
            if own is not None:
                try:
                    found = own(c, ctx, control, budget, threads)
                except Exception as e:  # noqa: BLE001 - the target's own search: its failure is one line too
                    msg = one_line(e)
                    if " drop reached on the control split " in msg:
                        raise EdgeposeError(msg + (f"; calibration health: {health}" if health else "")) from None
                    raise best_drop_error(c.target, control.metric, drop, [], budget, f"; the search failed: {msg}",
                                          max_float, share(always), health) from None  # fmt: skip
                ctrl["method"] = found["method"]
                used = share([*always, *(found.get("float_ops") or found["float_layers"])])
                if used > max_float + 1e-12:  # never float under an INT8 name
                    raise best_drop_error(c.target, control.metric, drop, [], budget,
                                          f"; the target's own method met it ({found['drop']:+.4f}) only with "
                                          f"{100 * used:.1f} % of the MACs in float", max_float, share(always),
                                          health) from None  # fmt: skip
                found["int8_macs_share"] = 1.0 - used
            else:
                found = search(c, ctx, control, budget, drop, threads, max_float, health)
                ctrl["method"] = found["method"]
                if "float_ops" in found:
                    ctrl["float_ops"] = found["float_ops"]
                ctrl["steps"], ctrl["ranking"] = found["steps"], found["ranking"]
                ctrl["search"] = {"rank_crops": int(min(control.rank_crops, len(control.crops))),
                                  "confirm_top": int(control.confirm_top)}
            ctrl["int8_macs_share"] = round(float(found["int8_macs_share"]), 4)
            if found.get("ranges"):  # the range options tried before any layer, and the one kept
                ctrl["ranges"] = found["ranges"]
            path = found["path"]
            ctrl["latency"] = latency(c.path, path, control.inputs, threads=threads)
            for f in c.extra_files:  # companions (a weights file) go with the main file
                os.replace(path.with_suffix(f.suffix), f)
            os.replace(path, c.path)
            value, drop = found["value"], found["drop"]
            ctrl["float_layers"] = list(found["float_layers"])
        ctrl["reached"] = {control.metric: value, "drop": drop}
        out["accuracy_control"] = ctrl
    out["task"] = {"metric": control.metric, "reference": control.reference, "value": value, "drop": drop,
                   "max_drop": budget, "passed": bool(drop <= budget + 1e-12), "control": control.info}  # fmt: skip
    return out


def apply_task(meta: dict[str, Any], task: dict[str, Any]) -> list[str]:
    """Put :func:`check_int8`'s result into an artifact's metadata; returns the failed
    criterion (a control drop beyond the budget), if any."""
    ctrl, t = task.get("accuracy_control"), task["task"]
    if ctrl is not None:
        meta["accuracy_control"] = ctrl
        conv = meta.setdefault("conversion", {})
        conv["float_layers"] = list(ctrl["float_layers"])
        rng = ctrl.get("ranges") or {}
        if rng.get("chosen") and rng.get("options") and rng["chosen"] != rng["options"][0]:
            conv["ranges"] = rng["chosen"]  # not the plain artifact's calibration: what accuracy control chose
        if "float_nodes" in conv:  # the nodes a target keeps in float in every build (a head conv)
            conv["float_nodes"] = list(dict.fromkeys([*conv["float_nodes"], *ctrl["float_layers"]]))
    if t["passed"]:
        return []
    return [f"{t['metric']} drop {t['drop']:.4f} on the control split ({t['control']['num_images']} images) "
            f"> {t['max_drop']:g}"]


def latency(plain: Path, controlled: Path, x: np.ndarray, runs: int = 20, threads: int | None = None) -> dict:
    """Median latency (ms, batch 1) of the plain and the controlled artifact, timed alternately in one process."""
    import time

    from edgepose.runtimes import load_runtime

    a, b = load_runtime(plain, threads=threads), load_runtime(controlled, threads=threads)
    x = np.ascontiguousarray(x[:1])
    for rt in (a, b):
        rt(x)
    ta, tb = [], []
    for _ in range(runs):
        for rt, t in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            rt(x)
            t.append((time.perf_counter() - t0) * 1e3)
    pa, pb = float(np.median(ta)), float(np.median(tb))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"plain_ms": round(pa, 3), "controlled_ms": round(pb, 3), "cost_pct": round(100 * (pb / pa - 1), 1),
            "runs": runs, "method": "median of alternating batch-1 calls, this machine at conversion",
            "loadavg_1min": load}  # fmt: skip


__all__ = ["check_int8", "apply_task", "latency"]
