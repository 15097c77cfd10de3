"""``edgepose bench``: every artifact's accuracy and speed, side by side, on the machine at hand.

This file re-exports the public faces; the package, in import order: ``config`` (:class:`BenchConfig`, the
accuracy budgets), ``data`` (artifacts, evaluation data, the timing sample), ``timing`` (the one timing
loop), ``machine`` (machine facts, RSS), ``int8``, ``row`` (one row), ``batch`` (batched sweep),
``isolate`` (each row in a child process), ``report`` (:class:`BenchReport`; console, Markdown, JSON),
``plot`` (accuracy against latency), ``ray`` (accuracy rows on Ray), ``run`` (:func:`run_bench`,
:func:`finish`), ``remote/`` (the same bench on another machine over SSH).
"""

from __future__ import annotations

from .config import DEFAULT_MAX_DROP, SCHEMA, BenchConfig, max_drop_for
from .report import BenchReport
from .row import BenchRow
from .run import BenchInterrupted, finish, run_bench

__all__ = ["BenchConfig", "BenchInterrupted", "BenchReport", "BenchRow", "DEFAULT_MAX_DROP", "SCHEMA", "finish",
           "max_drop_for", "run_bench"]  # fmt: skip
