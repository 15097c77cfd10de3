"""The one exception type that the CLI turns into a one-line error and a non-zero exit, and the interruption
that a termination signal becomes."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class EdgeposeError(Exception):
    """A user-facing error: the message names the file or option and what is wrong with it."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) as an interruption: ``finally`` blocks run and temporary files go, as on Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


@contextlib.contextmanager
def terminate_as_interrupt(signals: tuple[int, ...] = (signal.SIGTERM,)) -> Iterator[None]:
    """Within the block, ``signals`` raise :class:`Terminated` (a KeyboardInterrupt) instead of killing the
    process outright; the previous handlers come back afterwards. Outside the main thread (where Python
    cannot install handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(signum)

    previous = {}
    try:
        for s in signals:
            previous[s] = signal.signal(s, handler)
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
