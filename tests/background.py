"""Long, self-contained jobs of the suite run in the background, overlapping the rest of it.

A few checks spend minutes in one process that needs nothing from the tests but its inputs: the second
conversion of the reproducibility check, the ``--input uint8`` conversion, the emulated-ARM check (one core of
qemu). Each is started as soon as its inputs exist (the session start, or the end of the shared demo
conversion) at the lowest CPU priority (``nice 19``: it takes only what the foreground tests leave idle), and
the tests that read it are moved to the end of the session (``@pytest.mark.background``), where they wait for
it. Running one such test alone behaves as before: its job starts, and the test waits for it.

A job's result is the same ``CompletedProcess`` (returncode, stdout, stderr as text) that ``subprocess.run``
gives, so a test does not care where its job ran. Jobs left running when the session ends are killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

_JOBS: dict[str, Job] = {}
_DIRS: list[Path] = []


def workdir(name: str) -> Path:
    """A fresh folder for a job's outputs, removed when the session ends."""
    d = Path(tempfile.mkdtemp(prefix=f"edgepose-test-bg-{name}-"))
    _DIRS.append(d)
    return d


class Job:
    def __init__(self, name: str, cmd: list[str], cwd: str | Path | None = None, env: dict | None = None):
        self.name, self.cmd = name, cmd
        self.dir = workdir(f"{name}-log")
        self._out = open(self.dir / "stdout", "wb")  # noqa: SIM115 - closed in result()
        self._err = open(self.dir / "stderr", "wb")  # noqa: SIM115
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, preexec_fn=lambda: os.nice(19),
                                     start_new_session=True)  # fmt: skip
        self._result: subprocess.CompletedProcess | None = None

    def result(self, timeout: float) -> subprocess.CompletedProcess:
        if self._result is None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
            finally:
                self._out.close()
                self._err.close()
            self._result = subprocess.CompletedProcess(
                self.cmd, self.proc.returncode, (self.dir / "stdout").read_text(errors="replace"),
                (self.dir / "stderr").read_text(errors="replace"))  # fmt: skip
        return self._result

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


def start(name: str, cmd: list[str], **kwargs) -> Job:
    """Start ``cmd`` as background job ``name`` (once: a second call returns the running job)."""
    if name not in _JOBS:
        _JOBS[name] = Job(name, cmd, **kwargs)
    return _JOBS[name]


def started(name: str) -> bool:
    return name in _JOBS


def result(name: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    return _JOBS[name].result(timeout)


def job(name: str) -> Job:
    return _JOBS[name]


def stop_all() -> None:
    """Kill what still runs and remove every job folder (the session is over)."""
    for j in _JOBS.values():
        j.kill()
        for f in (j._out, j._err):
            f.close()
    for d in _DIRS:
        shutil.rmtree(d, ignore_errors=True)
