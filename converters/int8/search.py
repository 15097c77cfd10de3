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
) -> dict[str, Any]:
    """Keep the first ``k`` of ``ranked`` in float for growing ``k`` until the control drop is within ``budget``.

    ``build(layers)`` writes the model with ``layers`` in float and returns its path; ``score(path)`` is its
    control value. Returns ``{"path", "float_layers", "drop", "value", "steps"}``; raises when no step meets
    the budget (the message gives the best drop reached).
    """
    steps: list[dict[str, Any]] = []
    best = {"drop": plain_drop, "float_layers": [], "path": None, "value": control.reference - plain_drop}
    sizes = growth(len(ranked))
    if len(sizes) > max_steps:  # the last step (every candidate in float) is always tried
        sizes = sizes[: max_steps - 1] + sizes[-1:]
    if budget < 0:
        sizes = []  # asking for better than float: keeping layers in float cannot give it
    for k in sizes:
        layers = ranked[:k]
        path = build(layers)
        value = score(path)
        drop = float(control.reference - value)
        steps.append({"float_layers": k, control.metric: value, "drop": drop})
        say(f"{target} int8: {k} layer(s) in float -> {control.metric} drop {drop:+.4f} (budget {budget:g})")
        if drop < best["drop"]:
            best = {"drop": drop, "float_layers": layers, "path": path, "value": value}
        if drop <= budget + 1e-12:
            return {**best, "path": path, "float_layers": layers, "drop": drop, "value": value, "steps": steps}
    why = " (a negative budget asks for better than float)" if budget < 0 else ""
    raise EdgeposeError(
        f"{target} int8: best {control.metric} drop reached on the control split {best['drop']:.4f} "
        f"({len(best['float_layers'])} layer(s) in float) > budget {budget:g}{why}; nothing written"
    )


def candidate_path(c: Converted, workdir: Path, k: int) -> Path:
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
           threads: int | None) -> dict[str, Any]:  # fmt: skip
    """The layer search for the INT8 artifact ``c``: :func:`restore`'s result plus ``ranking`` (and
    ``float_ops`` where the target's builder maps a layer to more ops) and ``method``."""
    target = TARGETS[c.target]
    if target.mixed is None or target.graph is None:
        raise EdgeposeError(f"--max-drop: the {c.target} target has no mixed-precision INT8 builder")
    x = control.inputs[: control.rank_crops]
    ref = control.reference_heatmaps(x)
    builder = target.mixed(c, ctx, threads)
    graph = target.graph(c.path, builder.float_model, threads)
    float_ops = getattr(builder, "ops", None)  # where a layer's float group is more than itself
    names, report = rank(c, graph, control, x, ref, builder.build, threads, ctx.log)
    counter = iter(range(10**6))
    found = restore(c.target, control, budget, plain_drop, names,
                    lambda layers: builder.build(layers, candidate_path(c, ctx.workdir, next(counter))),
                    scorer(control, threads), ctx.log)  # fmt: skip
    chosen = set(found["float_layers"])
    found["ranking"] = [r for r in report if r["name"] in chosen] + [
        r for r in report[: control.confirm_top] if r["name"] not in chosen]  # fmt: skip
    if float_ops is not None:  # what the quantiser was told to leave in float for those layers
        found["float_ops"] = float_ops(found["float_layers"])
    found["method"] = ("layers ranked by added quantisation noise, top confirmed on the output, worst k kept in "
                       "float for growing k, re-scored on the control split" + getattr(builder, "method_note", ""))
    return found


__all__ = ["growth", "restore", "search", "candidate_path", "scorer", "MAX_STEPS"]
