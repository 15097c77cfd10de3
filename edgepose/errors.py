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


_PENDING: list[int] = []  # signals raised as Terminated inside the block (a library may have swallowed one)


def raise_if_terminated() -> None:
    """Raise :class:`Terminated` again if a signal arrived in a ``terminate_as_interrupt`` block and the exception
    was swallowed on its way up (a library's broad ``except``, TensorFlow's and onnx2tf's among them): long jobs call
    this before anything irreversible, such as moving files into place."""
    if _PENDING:
        raise Terminated(_PENDING[-1])


@contextlib.contextmanager
def terminate_as_interrupt(signals: tuple[int, ...] = (signal.SIGTERM,)) -> Iterator[None]:
    """Within the block, ``signals`` raise :class:`Terminated` (a KeyboardInterrupt) instead of killing the
    process outright; the previous handlers come back afterwards. Outside the main thread (where Python
    cannot install handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        _PENDING.append(signum)
        raise Terminated(signum)

    previous = {}
    _PENDING.clear()
    try:
        for s in signals:
            previous[s] = signal.signal(s, handler)
        yield
        raise_if_terminated()
    finally:
        _PENDING.clear()
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
