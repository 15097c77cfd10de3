"""The system OpenSSH client, driven through subprocess for ``edgepose bench --remote``.

Everything goes through ``ssh`` itself, so ``~/.ssh/config`` host aliases, ``ProxyJump``, the agent and
known_hosts work as they do in a terminal; ``BatchMode=yes`` makes a missing key fail instead of prompting.
Files travel as one tar stream into ``tar -x`` on the remote (no sftp subsystem needed). Every call has its own
timeout; every failure becomes one :class:`RemoteError` line naming the host and what went wrong.
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import EdgeposeError

log = logging.getLogger(__name__)

# Always first: "first value wins" for ssh options, and a prompt must never wait for a password.
BASE_OPTIONS = ("BatchMode=yes",)
# After the user's own -o options (theirs win): give up on a dead network instead of hanging.
DEFAULT_OPTIONS = ("ConnectTimeout=15", "ServerAliveInterval=15", "ServerAliveCountMax=4", "LogLevel=ERROR")


class RemoteError(EdgeposeError):
    """One host failed (unreachable, key refused, no Python, disk full, remote crash): one line, host named."""


@dataclass
class Target:
    """Where to bench: ``[ssh://][user@]host[:port]`` or a ``~/.ssh/config`` alias."""

    text: str
    host: str
    user: str | None = None
    port: int | None = None

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def __str__(self) -> str:
        return self.text


def parse_target(text: str) -> Target:
    """``ssh://user@host:port``, ``user@host:port``, ``user@[::1]:22``, ``host`` or an ssh config alias."""
    raw = text.strip()
    rest = raw[len("ssh://") :] if raw.lower().startswith("ssh://") else raw
    rest = rest.rstrip("/")
    user, _, hostport = rest.rpartition("@")
    port = None
    m = re.fullmatch(r"\[([^\]]+)\](?::(\w*))?", hostport) or re.fullmatch(r"([^:\[\]/\s]+)(?::(\w*))?", hostport)
    if not m or not m.group(1) or (user and not re.fullmatch(r"[^\s@:/]+", user)):
        raise EdgeposeError(f"--remote {text}: expected [ssh://][user@]host[:port] or an ssh config host alias")
    if m.group(2) is not None:
        if not m.group(2).isdigit() or not 0 < int(m.group(2)) < 65536:
            raise EdgeposeError(f"--remote {text}: port {m.group(2)!r} is not a number from 1 to 65535")
        port = int(m.group(2))
    return Target(raw, m.group(1), user or None, port)


def remote_path(path: str) -> str:
    """A remote path for ``sh``: quoted, with a leading ``~`` left to the remote's $HOME."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


# What ssh prints (exit status 255) when it cannot get a session, and the line edgepose says instead.
SSH_FAILURES = (
    (r"Permission denied|Too many authentication failures|no mutual signature|Authentication failed",
     "the key was refused (ssh runs with BatchMode=yes: no password prompts; load the key with ssh-add or name it "
     "with IdentityFile in ~/.ssh/config)"),
    (r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED",
     "the host key is unknown or changed: connect once with plain ssh to check and accept it"),
    (r"Connection refused|Connection timed out|timed out|No route to host|Network is unreachable|"
     r"Could not resolve hostname|Name or service not known|Connection closed by|Connection reset|"
     r"kex_exchange_identification|Broken pipe|UNKNOWN port",
     "unreachable"),
)  # fmt: skip


class _Deadline:
    """Kill a process when ``seconds`` pass; ``fired`` says whether it did."""

    def __init__(self, proc: subprocess.Popen, seconds: float):
        self.fired = False
        self.timer = threading.Timer(seconds, self._kill, args=(proc,))
        self.timer.daemon = True
        self.timer.start()

    def _kill(self, proc: subprocess.Popen) -> None:
        self.fired = True
        proc.kill()

    def cancel(self) -> None:
        self.timer.cancel()


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


@dataclass
class Ssh:
    """One remote host; ``run``/``stream``/``push_tar`` return what the remote command said, or raise one line."""

    target: Target
    config: str | None = None  # -F FILE
    options: list[str] = field(default_factory=list)  # -o KEY=VALUE (the user's; they win over the defaults)
    ssh: str = "ssh"

    def argv(self, command: str) -> list[str]:
        cmd = [self.ssh, "-T"]
        if self.config:
            cmd += ["-F", self.config]
        for opt in (*BASE_OPTIONS, *self.options, *DEFAULT_OPTIONS):
            cmd += ["-o", opt]
        if self.target.port:
            cmd += ["-p", str(self.target.port)]
        # the command as one `sh -c` argument: the login shell only sees a quoted word
        return cmd + ["--", self.target.destination, "sh -c " + shlex.quote(command)]

    def fail(self, what: str, rc: int | None, err: str) -> RemoteError:
        """The one line for a failed call: ssh's own failures by kind, else the remote command's last words."""
        last = _last_line(err)
        if rc == 255:
            for pattern, meaning in SSH_FAILURES:
                if re.search(pattern, err, re.IGNORECASE):
                    return RemoteError(f"{self.target}: {meaning} ({last})")
            return RemoteError(f"{self.target}: ssh failed during {what} ({last or 'exit status 255'})")
        full = re.search(r"No space left on device|Disk quota exceeded|Wrote only \d+ of \d+ bytes", err)
        if full:  # GNU tar says "Wrote only N of M bytes" for a short write
            return RemoteError(f"{self.target}: no space left on the remote disk during {what} ({full.group(0)})")
        return RemoteError(f"{self.target}: {what} failed (exit status {rc}{': ' + last if last else ''})")

    def run(self, command: str, what: str, timeout: float = 120, check: bool = True,
            new_session: bool = False) -> subprocess.CompletedProcess:  # fmt: skip
        """Run ``command`` (POSIX sh) on the remote; output captured."""
        log.debug("ssh %s: %s", self.target, command)
        try:
            r = subprocess.run(self.argv(command), capture_output=True, text=True, errors="replace",
                               timeout=timeout, stdin=subprocess.DEVNULL, start_new_session=new_session)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{self.target}: {what} timed out after {timeout:.0f} s") from None
        except FileNotFoundError:
            raise RemoteError(f"no OpenSSH client ({self.ssh}) on this machine: install openssh-client") from None
        if check and r.returncode != 0:
            raise self.fail(what, r.returncode, r.stderr)
        return r

    def stream(self, command: str, what: str, timeout: float, on_line: Callable[[str], None],
               keep: int = 20) -> tuple[int, str, list[str]]:  # fmt: skip
        """Run ``command``, passing each stderr line to ``on_line`` as it comes; (rc, stdout, last stderr lines)."""
        log.debug("ssh %s: %s", self.target, command)
        try:
            proc = subprocess.Popen(self.argv(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1)  # fmt: skip
        except FileNotFoundError:
            raise RemoteError(f"no OpenSSH client ({self.ssh}) on this machine: install openssh-client") from None
        tail: list[str] = []
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        timer = _Deadline(proc, timeout)
        try:
            for line in proc.stderr:  # type: ignore[union-attr]
                line = line.rstrip("\r\n")
                tail = (tail + [line])[-keep:]
                on_line(line)
            rc = proc.wait()
            reader.join()
        finally:
            timer.cancel()
            if proc.poll() is None:  # Ctrl-C or an error here: do not leave the ssh client behind
                proc.kill()
                proc.wait()
        if timer.fired:
            raise RemoteError(f"{self.target}: {what} timed out after {timeout:.0f} s")
        return rc, "".join(out), tail

    def push_tar(self, files: Iterable[tuple[Path, str]], dest: str, what: str, timeout: float) -> None:
        """Send local files (path, name in ``dest``) as one tar stream, unpacked by ``tar -x`` in ``dest``."""
        cmd = f"tar -xf - -C {shlex.quote(dest)}"
        try:
            proc = subprocess.Popen(self.argv(cmd), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)  # fmt: skip
        except FileNotFoundError:
            raise RemoteError(f"no OpenSSH client ({self.ssh}) on this machine: install openssh-client") from None
        err: list[bytes] = []
        reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        timer = _Deadline(proc, timeout)
        broken = False
        try:
            with tarfile.open(fileobj=proc.stdin, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for path, name in files:
                    info = tar.gettarinfo(str(path), arcname=name)
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
        except (BrokenPipeError, ConnectionResetError):
            broken = True  # the remote side went away; its stderr says why
        finally:
            try:
                proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
            rc = proc.wait()
            timer.cancel()
            reader.join()
        text = b"".join(err).decode(errors="replace")
        if rc != 0 or broken:
            if timer.fired:
                raise RemoteError(f"{self.target}: {what} timed out after {timeout:.0f} s")
            raise self.fail(what, rc, text)
