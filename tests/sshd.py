"""A real OpenSSH server on 127.0.0.1 for the ``edgepose bench --remote`` tests, all its files in one folder.

Host key and a throwaway user key made with ssh-keygen, public-key login only, its own sshd_config (``-f``),
``-D -e`` in the foreground (a child of the test), and a client config file (``ssh -F``) with its own
known_hosts. Needs /usr/sbin/sshd (Debian: ``apt-get install openssh-server``; .ci/run installs it).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
# the client config's host alias for the server; its sessions get EDGEPOSE_TEST_LITE=1 (SetEnv/AcceptEnv), which
# the tests' lite-only Python wrapper reads, so that one host can look like a Pi with edgepose[lite] alone
ALIAS = "edgepose-test"
BAD_KEY_ALIAS = "edgepose-test-badkey"  # the same server, offering a key it does not know


def unavailable() -> str | None:
    """Why no test sshd can run here, or None."""
    if not os.path.isfile(SSHD):
        return f"{SSHD} not installed (Debian: apt-get install openssh-server)"
    if not (shutil.which("ssh") and shutil.which("ssh-keygen")):
        return "the OpenSSH client (ssh, ssh-keygen) is not installed"
    if os.geteuid() != 0:
        return "the test sshd runs as root (it must be able to log in as the current user)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestSshd:
    """``with TestSshd(tmp) as srv:`` srv.config (client -F file), srv.port, srv.user, srv.alias."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.port = free_port()
        self.user = getpass.getuser()
        self.alias = ALIAS
        self.proc: subprocess.Popen | None = None

    def keygen(self, name: str) -> Path:
        key = self.root / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"edgepose-test-{name}", "-f", str(key)],
                       check=True, capture_output=True)  # fmt: skip
        return key

    def __enter__(self) -> TestSshd:
        r = self.root
        r.mkdir(parents=True, exist_ok=True)
        host_key, user_key, other_key = self.keygen("host_key"), self.keygen("user_key"), self.keygen("unknown_key")
        (r / "authorized_keys").write_text(Path(f"{user_key}.pub").read_text())
        (r / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {r / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {r / 'authorized_keys'}\nStrictModes no\nPubkeyAuthentication yes\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "UsePAM no\nPrintMotd no\nLogLevel ERROR\nMaxStartups 50\nAcceptEnv EDGEPOSE_TEST_*\n"
        )  # fmt: skip
        host = (f"  HostName 127.0.0.1\n  Port {self.port}\n  User {self.user}\n  IdentitiesOnly yes\n"
                f"  UserKnownHostsFile {r / 'known_hosts'}\n  GlobalKnownHostsFile /dev/null\n"
                "  StrictHostKeyChecking accept-new\n")  # fmt: skip
        (r / "ssh_config").write_text(
            f"Host {ALIAS}\n{host}  IdentityFile {user_key}\n  SetEnv EDGEPOSE_TEST_LITE=1\n\n"
            f"Host {BAD_KEY_ALIAS}\n{host}  IdentityFile {other_key}\n\n"
            f"Host 127.0.0.1\n  User {self.user}\n  IdentityFile {user_key}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {r / 'known_hosts'}\n  GlobalKnownHostsFile /dev/null\n"
            "  StrictHostKeyChecking accept-new\n"
        )  # fmt: skip
        self.config = r / "ssh_config"
        os.makedirs("/run/sshd", exist_ok=True)  # privilege separation folder (made by the service, not here)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(r / "sshd_config")], stdout=subprocess.DEVNULL,
                                     stderr=open(r / "sshd.log", "wb"))  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(r / 'sshd.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("sshd did not start listening within 20 s")

    def ssh(self, *command: str, alias: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", "-F", str(self.config), "-o", "BatchMode=yes", alias or self.alias, *command],
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
