"""Each bench row in a process of its own, so that an engine that crashes (a segfault in native code) or
hangs on one artifact cannot take the other rows, or the report, down with it.

The child measures the row exactly as in-process (:func:`edgepose.bench.row.bench_row`), tells the parent
which stage it is in (importing the engine, loading, running) and sends back ``BenchRow.to_dict()``. When it
dies instead, the row fails with ``engine crashed (signal 11, SIGSEGV) loading X``. Children come from a
fork server (a clean, single-threaded process that has imported edgepose once) where the platform has one,
else they are spawned. Imports the parent has blocked (``sys.modules[name] = None``: "engine not
installed") are blocked in the child too, so that the child sees the engines the parent sees.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import runtimes
from ..errors import EdgeposeError
from ..runtimes.artifact import verify_artifact
from .row import BenchRow, bench_row, options_tag, reference_row

log = logging.getLogger(__name__)

__all__ = ["run_isolated"]

_STAGES = {"prepare": "importing the engine for", "load": "loading", "run": "running"}


# start methods in order of preference; one that failed to start a child is not tried again in this process
_METHODS = ("forkserver", "fork", "spawn")
_broken: set[str] = set()


def _context(method: str):
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload([__name__])
    return ctx


def _start(target, args: tuple, name: str):
    """Start the child with the first start method that works here; ``None`` when none does.

    The fork server and spawn exec a new interpreter: where that fails (a qemu user-mode chroot without
    binfmt_misc cannot exec the guest's binaries, a sandbox without /dev/shm) fork is tried, then the row runs
    in this process (not isolated, said in a warning)."""
    for method in _METHODS:
        if method in _broken or method not in mp.get_all_start_methods():
            continue
        ctx = _context(method)
        receiver, sender = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=target, args=(sender, *args), name=name, daemon=True)
        try:
            proc.start()
        except (OSError, EOFError) as e:  # BrokenPipeError is an OSError
            receiver.close()
            sender.close()
            _broken.add(method)
            log.warning("bench: cannot start a row's process with %s (%s); trying the next start method", method,
                        e.__class__.__name__)  # fmt: skip
            continue
        sender.close()
        return proc, receiver
    return None


@contextlib.contextmanager
def _signals_deferred(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Within the block, ``signals`` are noted instead of handled; the first one noted is raised again (to the
    handler that was in place) when the block ends. Outside the main thread (no handlers there) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: noted.append(signum)) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        if noted:
            signal.raise_signal(noted[0])


def run_isolated(cfg: Any, spec: Any, path: Path, data: Any, sample: Any, reference: bool = False,
                 source: str | None = None, **runtime_options: Any) -> BenchRow:  # fmt: skip
    """One bench row (an artifact, or with ``reference`` the PyTorch checkpoint ``source``) in a child process;
    ``runtime_options`` go to the runtime, as :func:`~edgepose.bench.row.bench_row` takes them."""
    blocked = sorted(k for k, v in list(sys.modules.items()) if v is None and "." not in k)
    level = logging.getLogger("edgepose").getEffectiveLevel()
    args = (cfg, spec, Path(path), data, sample, reference, source, blocked, level, runtime_options)
    proc = receiver = None
    stage, result = "prepare", None
    try:
        with _signals_deferred():  # a start cut short by Ctrl-C leaves a child that prints the fork server's traceback
            started = _start(_child, args, f"edgepose-bench-{Path(path).name}")
            if started is not None:
                proc, receiver = started
        if proc is None:
            log.warning("bench: no way to start a child process here: %s runs in this process (a crash of its "
                        "engine ends the bench)", Path(source if reference and source else path).name)  # fmt: skip
            return _in_process(cfg, spec, Path(path), data, sample, reference, source, runtime_options)
        while True:
            try:
                kind, value = receiver.recv()
            except (EOFError, OSError):
                break
            if kind == "stage":
                stage = value
            elif kind == "row":
                result = value
        proc.join()
    finally:
        if proc is not None and proc.is_alive():  # interrupted (Ctrl-C, SIGTERM): take the child down with us
            proc.kill()
            proc.join(10)
        if receiver is not None:
            receiver.close()
    if result is not None:
        return BenchRow(**result)
    name = Path(source).name if reference and source else Path(path).name
    row = BenchRow(name, str(source if reference else path), reference=reference)
    if reference:
        row.engine, row.format, row.precision = "torch", "pytorch", "fp32"
    elif runtime_options:  # named as bench_row names such a row
        row.runtime_options = dict(runtime_options)
        row.name += options_tag(runtime_options)
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            sig = f"signal {-code}, {signal.Signals(-code).name}"
        except ValueError:
            sig = f"signal {-code}"
        row.status, row.error = "failed", f"engine crashed ({sig}) {_STAGES[stage]} {name}"
    else:
        row.status, row.error = "failed", f"the row's process ended with status {code} {_STAGES[stage]} {name}"
    return row


def _child(conn, cfg, spec, path: Path, data, sample, reference: bool, source, blocked: list[str], level: int,
           runtime_options: dict[str, Any]):  # fmt: skip
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the whole group: the parent decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # (a forked child inherits the CLI's handler: no traceback here)
    for name in blocked:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    logger = logging.getLogger("edgepose")
    if not logger.handlers:  # what the CLI shows, as the CLI shows it (bench may not import the CLI)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_LikeTheCli())
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(level)
    load = runtimes.load_runtime

    def load_and_tell(*args, **kwargs):  # the stages, for the message should the engine crash
        conn.send(("stage", "load"))
        rt = load(*args, **kwargs)
        conn.send(("stage", "run"))
        return rt

    runtimes.load_runtime = load_and_tell
    try:
        if reference:
            row = reference_row(cfg, spec, source, data, sample)
        else:
            row = _checked_row(cfg, spec, path, data, sample, bench_row, runtime_options)
        conn.send(("row", row.to_dict()))
    finally:
        conn.close()


def _in_process(cfg, spec, path: Path, data, sample, reference: bool, source, runtime_options) -> BenchRow:
    if reference:
        return reference_row(cfg, spec, source, data, sample)
    return _checked_row(cfg, spec, path, data, sample, bench_row, runtime_options)


class _LikeTheCli(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        return f"edgepose: warning: {msg}" if record.levelno >= logging.WARNING else msg


def _checked_row(cfg, spec, path: Path, data, sample, bench_row, runtime_options: dict[str, Any]) -> BenchRow:
    """The artifact's integrity is checked before the row's clock starts (hashing is not load time)."""
    try:
        verify_artifact(path)
    except EdgeposeError as e:
        return BenchRow(path.name, str(path)).fail(e)
    return bench_row(cfg, spec, path, data, sample, **runtime_options)
