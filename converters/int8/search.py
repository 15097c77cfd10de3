"""The accuracy-control layer search (``--max-drop``), format-free: the target registered for the artifact
gives its mixed-precision builder (``mixed=``, ``targets/<name>/mixed.py``) and its graph reader (``graph=``,
``targets/<name>/graph.py``); layers are ranked by the quantisation noise each adds (:mod:`.ranking`), the top
``confirm_top`` confirmed one by one on the output heatmaps, then the worst ``k`` kept in float for growing ``k``
(:func:`restore`), every candidate scored on the control split by the runtime edgepose ships.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any, Callable

from edgepose.errors import EdgeposeError

from ..base import TARGETS, Context, Converted, quiet
from .control import ControlSet
from .ranking import rank

MAX_STEPS = 12  # re-scorings of the search at most (the last one keeps every candidate in float)


def growth(n: int) -> list[int]:
    """How many of the ranked layers are kept in float at each step: 1, 2, 3, 5, 8, 12, ... up to ``n``."""
    out, k = [], 1
    while k < n:
        out.append(k)
        k = max(k + 1, math.ceil(k * 1.5))
    return out + [n] if n else out


def restore(
    target: str,
    control: ControlSet,
    budget: float,
    plain_drop: float,
    ranked: list[str],
    build: Callable[[list[str]], Path],
    score: Callable[[Path], float],
    say: Callable[[str], None],
    max_steps: int = MAX_STEPS,
    float_share: Callable[[list[str]], float] | None = None,
    max_float: float = 1.0,
    health: str | None = None,
    note: str = "",
) -> dict[str, Any]:
    """Keep the first ``k`` of ``ranked`` in float for growing ``k`` until the control drop is within ``budget``.

    ``build(layers)`` writes the model with ``layers`` in float and returns its path; ``score(path)`` is its
    control value. ``float_share(layers)``: the share of the model's MACs those layers take; no candidate past
    ``max_float`` of them is built (the float cap). Returns ``{"path", "float_layers", "drop", "value", "steps",
    "int8_macs_share"}``; raises one line when no step meets the budget, or when a candidate fails to build or
    score (the search ends there): the best drop reached, how, and ``health`` (the calibration set's verdict).
    """
    share = float_share or (lambda layers: 0.0)
    steps: list[dict[str, Any]] = []
    best = {"drop": plain_drop, "float_layers": [], "path": None, "value": control.reference - plain_drop}
    within = next((k for k in range(len(ranked), 0, -1) if share(ranked[:k]) <= max_float + 1e-12), 0)
    capped = within < len(ranked)
    sizes = growth(within)
    if len(sizes) > max_steps:  # the last step (every candidate within the cap in float) is always tried
        sizes = sizes[: max_steps - 1] + sizes[-1:]
    if budget < 0:
        sizes = []  # asking for better than float: keeping layers in float cannot give it
    failed = ""
    for k in sizes:
        layers = ranked[:k]
        try:
            path = build(layers)
            value = float(score(path))
        except Exception as e:  # noqa: BLE001 - any failure of a candidate ends the search with its best
            failed = f"; the search ended at {k} layer(s) in float: {one_line(e)}"
            say(f"{target} int8: {k} layer(s) in float -> failed: {one_line(e)}")
            break
        drop = float(control.reference - value)
        macs = 1.0 - share(layers)
        steps.append({"float_layers": k, control.metric: value, "drop": drop, "int8_macs_share": round(macs, 4)})
        say(f"{target} int8: {k} layer(s) in float ({100 * macs:.1f} % of MACs INT8) -> {control.metric} drop "
            f"{drop:+.4f} (budget {budget:g})")  # fmt: skip
        if drop < best["drop"]:
            best = {"drop": drop, "float_layers": layers, "path": path, "value": value}
        if drop <= budget + 1e-12:
            return {**best, "path": path, "float_layers": layers, "drop": drop, "value": value, "steps": steps,
                    "int8_macs_share": macs}  # fmt: skip
    why = " (a negative budget asks for better than float)" if budget < 0 else ""
    raise best_drop_error(target, control.metric, best["drop"], best["float_layers"], budget,
                          note + why + failed, max_float if (capped or float_share) else None,
                          share(best["float_layers"]),
                          health)  # fmt: skip


def one_line(e: BaseException) -> str:
    """The first line of an error, short."""
    return ((str(e).strip().splitlines() or [type(e).__name__])[0])[:200]


def best_drop_error(target: str, metric: str, drop: float, float_layers: list[str], budget: float, why: str = "",
                    max_float: float | None = None, float_share: float = 0.0,
                    health: str | None = None) -> EdgeposeError:  # fmt: skip
    """The one line a search that does not meet its budget ends with (nothing is written)."""
    how = f"{len(float_layers)} layer(s) in float"
    if max_float is not None:
        how += f", {100 * (1 - float_share):.1f} % of MACs INT8; float cap {max_float:g} of the MACs (--max-float)"
    verdict = f"; calibration health: {health}" if health else ""
    return EdgeposeError(f"{target} int8: best {metric} drop reached on the control split {drop:.4f} ({how}) > "
                         f"budget {budget:g}{why}{verdict}; nothing written")  # fmt: skip


def candidate_path(c: Converted, workdir: Path, k: int | str) -> Path:
    """A work path for a candidate model, with the artifact's sidecar beside it (the runtime reads it)."""
    from edgepose.artifact import sidecar_path

    dst = workdir / f"{c.path.stem}.mixed{k}{c.path.suffix}"
    if sidecar_path(c.path).is_file():
        shutil.copyfile(sidecar_path(c.path), sidecar_path(dst))
    return dst


def scorer(control: ControlSet, threads: int | None) -> Callable[[Path], float]:
    """``score(path)``: the control value of an artifact, run as edgepose ships it."""
    from edgepose.runtimes import load_runtime

    def score(path: Path) -> float:
        with quiet(f"running {path.name}"):
            rt = load_runtime(path, threads=threads)
        return control.evaluate(rt)[0]

    return score


def search(c: Converted, ctx: Context, control: ControlSet, budget: float, plain_drop: float,
           threads: int | None, max_float: float = 1.0, health: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The layer search for the INT8 artifact ``c``: :func:`restore`'s result plus ``ranking`` (and
    ``float_ops`` where the target's builder maps a layer to more ops) and ``method``. Layers past
    ``max_float`` of the model's MACs (counted on ``ctx.onnx_path``, :mod:`.macs`) are never kept in float;
    any failure (the builder, the ranking, a candidate) ends it with the one-line best drop reached."""
    target = TARGETS[c.target]
    if target.mixed is None or target.graph is None:
        raise EdgeposeError(f"--max-drop: the {c.target} target has no mixed-precision INT8 builder")
    share = float_share_of(ctx.onnx_path)
    head: list[str] = []
    try:
        ranged = ranges_first(c, ctx, control, budget, plain_drop, threads, share)
        if ranged.get("found"):  # a range option met the budget with no layer in float
            return ranged["found"]
        c = ranged["c"]  # the INT8 model the layer search starts from (the best range option's)
        plain_drop = ranged["drop"]
        x = control.inputs[: control.rank_crops]
        ref = control.reference_heatmaps(x)
        builder = ranged.get("builder") or target.mixed(c, ctx, threads)
        graph = target.graph(c.path, builder.float_model, threads)
        float_ops = getattr(builder, "ops", None)  # where a layer's float group is more than itself
        head = list(getattr(builder, "head", []) or [])  # float in every build of this target
        own_share = getattr(builder, "float_share", None)  # a target that counts MACs on its own graph
        if own_share is not None and own_share([]) is not None:
            share = own_share
        names, report = rank(c, graph, control, x, ref, builder.build, threads, ctx.log)
    except EdgeposeError as e:
        if " drop reached on the control split " in str(e):
            raise
        raise best_drop_error(c.target, control.metric, plain_drop, [], budget,
                              f"; the search ended before any layer candidate: {one_line(e)}", max_float,
                              share(head), health) from None  # fmt: skip
    except Exception as e:  # noqa: BLE001 - the search ends with its best so far
        raise best_drop_error(c.target, control.metric, plain_drop, [], budget,
                              f"; the search ended before any layer candidate: {one_line(e)}", max_float,
                              share(head), health) from None  # fmt: skip
    counter = iter(range(10**6))
    found = restore(c.target, control, budget, plain_drop, names,
                    lambda layers: builder.build(layers, candidate_path(c, ctx.workdir, next(counter))),
                    scorer(control, threads), ctx.log, float_share=lambda layers: share([*head, *layers]),
                    max_float=max_float, health=health, note=ranges_note(ranged["record"]))  # fmt: skip
    found["ranges"] = ranged["record"]
    chosen = set(found["float_layers"])
    found["ranking"] = [r for r in report if r["name"] in chosen] + [
        r for r in report[: control.confirm_top] if r["name"] not in chosen]  # fmt: skip
    if float_ops is not None:  # what the quantiser was told to leave in float for those layers
        found["float_ops"] = float_ops(found["float_layers"])
    found["method"] = (f"range option {ranged['record']['chosen']}, then " if ranged["record"]["chosen"] else "") + (
                       "layers ranked by added quantisation noise, top confirmed on the output, worst k kept in "
                       "float for growing k within the float cap, re-scored on the control split"
                       + getattr(builder, "method_note", ""))  # fmt: skip
    return found


def ranges_first(c: Converted, ctx: Context, control: ControlSet, budget: float, plain_drop: float,
                 threads: int | None, share: Callable[[list[str]], float]) -> dict[str, Any]:  # fmt: skip
    """Before any layer goes to float: each of the target's own range options (``ranges=`` in its
    registration; the first is the plain artifact's), cheapest first, with no layer in float. Returns
    ``{"found"}`` (the first that meets ``budget``: :func:`restore`'s keys) or ``{"c", "drop", "builder",
    "record"}``: the INT8 model of the best option (by control drop) for the layer search to start from."""
    from dataclasses import replace

    options = list(TARGETS[c.target].ranges)
    record: dict[str, Any] = {"options": options, "tried": [], "chosen": options[0] if options else None}
    out: dict[str, Any] = {"c": c, "drop": plain_drop, "builder": None, "record": record}
    if not options:
        record["note"] = "the target offers no range option of its own: straight to layers"
        return out
    record["tried"].append({"ranges": options[0], "drop": plain_drop, "what": TARGETS[c.target].ranges[options[0]]})
    score = scorer(control, threads)
    for i, name in enumerate(options[1:]):
        try:
            builder = TARGETS[c.target].mixed(c, ctx, threads, ranges=name)
            path = builder.build([], candidate_path(c, ctx.workdir, f"r{i}"))
            value = float(score(path))
        except Exception as e:  # noqa: BLE001 - an option that fails is skipped, said and recorded
            ctx.log(f"{c.target} int8: ranges {name} -> failed: {one_line(e)}")
            record["tried"].append({"ranges": name, "failed": one_line(e)})
            continue
        drop = float(control.reference - value)
        record["tried"].append({"ranges": name, "drop": drop, "what": TARGETS[c.target].ranges[name]})
        ctx.log(f"{c.target} int8: ranges {name}, no layer in float -> {control.metric} drop {drop:+.4f} "
                f"(budget {budget:g})")  # fmt: skip
        if drop <= budget + 1e-12:
            record["chosen"] = name
            head = list(getattr(builder, "head", []) or [])
            out["found"] = {"path": path, "float_layers": [], "drop": drop, "value": value, "steps": [],
                            "ranking": [], "ranges": record, "int8_macs_share": 1.0 - share(head),
                            "method": f"range option {name} ({TARGETS[c.target].ranges[name]}), no layer in float"}
            return out
        if drop < out["drop"]:
            record["chosen"] = name
            out.update(c=replace(c, path=path), drop=drop, builder=builder)
    return out


def ranges_note(record: dict[str, Any]) -> str:
    """``; range options first: percentile +0.0707, entropy +0.0426`` (what a failed search tried before layers)."""
    tried = [f"{t['ranges']} " + (f"{t['drop']:+.4f}" if "drop" in t else "failed") for t in record["tried"][1:]]
    return f"; range options first: {', '.join(tried)}" if tried else ""


def float_share_of(onnx_path: Path) -> Callable[[list[str]], float]:
    """``share(layers)``: the share of the model's MACs (counted once on the ONNX export) those layers take."""
    from .macs import count

    return count(onnx_path).float_share


__all__ = ["growth", "restore", "search", "candidate_path", "scorer", "best_drop_error", "one_line", "float_share_of",
           "ranges_first",
           "MAX_STEPS"]
