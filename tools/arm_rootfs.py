"""The emulated Raspberry Pi for tools/arm_check.py: a cached Debian bookworm arm64 userland with edgepose[lite].

Host side only (standard library): qemu-user-static + debootstrap from apt, ``debootstrap --foreign`` and the
rest of the packages unpacked with the host's ``dpkg-deb`` (binfmt_misc is not available, so nothing that
needs a second stage), a venv made by the emulated Python, aarch64 wheels downloaded on the host with clean
pip settings and installed offline inside. Every guest command runs as
``chroot ROOTFS /usr/bin/qemu-aarch64-static -cpu CPU ...`` (no mounts: nothing to clean up afterwards).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("EDGEPOSE_CACHE") or Path.home() / ".cache" / "edgepose")


# Bump when the way the rootfs is built changes: a cached rootfs with another stamp is rebuilt.
ROOTFS_VERSION = "edgepose-arm-rootfs/1 bookworm arm64 minbase python3 python3-pip venv"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
ROOTFS_PACKAGES = ("python3", "python3-pip")
GUEST_VENV = "/opt/edgepose-venv"
GUEST_WHEELS = "/opt/edgepose-wheels"
GUEST_WORK = "/tmp/edgepose-arm-check"
# ai-edge-litert publishes manylinux_2_27 aarch64 wheels, numpy manylinux_2_27/2_28, OpenCV manylinux2014:
# every tag a Debian bookworm (glibc 2.36) / Raspberry Pi OS 64-bit pip accepts, named explicitly.
PLATFORMS = (
    "manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64",
)  # fmt: skip
PY_VERSION = "3.11"  # Debian bookworm's Python, the one Raspberry Pi OS 64-bit (bookworm) ships

# qemu 7.2 gives an aarch64 guest no /proc/cpuinfo nor /sys cpu lists; cpuinfo (XNNPACK) then fails to
# initialise and LiteRT silently runs without XNNPACK. The chroot gets these files, describing the CPU model
# that qemu emulates (-cpu), as a Raspberry Pi 5 (Cortex-A76) or 4 (Cortex-A72) shows them.
CPUS = {
    "cortex-a76": ("0x4", "0xd0b", "1", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                   "asimdrdm lrcpc dcpop asimddp", "Raspberry Pi 5 Model B (emulated Cortex-A76)"),
    "cortex-a72": ("0x0", "0xd08", "3", "fp asimd evtstrm crc32 cpuid", "Raspberry Pi 4 Model B (emulated Cortex-A72)"),
}  # fmt: skip
NUM_CPUS = 4

class Unavailable(Exception):
    """The check cannot run on this machine (exit 77): not root, tools or network missing."""


class CheckError(Exception):
    """Something failed that should not (exit 2 for bad input, or 1 from the caller)."""


# --------------------------------------------------------------------------------------------- helpers
_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[arm-check {time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], what: str, env: dict[str, str] | None = None, timeout: float = 1800,
        stream_prefix: str | None = None, unavailable_if: tuple[str, ...] = ()) -> str:  # fmt: skip
    """Run ``cmd``; its output is returned (and echoed with ``stream_prefix`` when given)."""
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1
    )
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if stream_prefix is not None:
            print(f"{stream_prefix}{line.rstrip()}", file=sys.stderr, flush=True)
        if time.monotonic() > deadline:
            proc.kill()
            raise CheckError(f"{what}: timed out after {timeout:.0f} s")
    rc = proc.wait()
    text = "".join(lines)
    if rc != 0:
        tail = "\n".join(text.strip().splitlines()[-15:])
        if any(re.search(p, text, re.I) for p in unavailable_if):
            raise Unavailable(f"{what} failed (network?): {tail.splitlines()[-1] if tail else rc}")
        raise CheckError(f"{what} failed with exit status {rc}:\n{tail}")
    return text


def clean_env(**extra: str) -> dict[str, str]:
    """No PIP_* variables, no pip.conf, no virtualenv: host pip settings must not leak into either pip."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    # trust and proxy settings are the network's, not pip's choices: a TLS-intercepting proxy needs its CA
    for key in ("PIP_CERT", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY",
                "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    env.update(extra)
    return env


def reachable(url: str, timeout: float = 20) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (fixed https/http URLs)
            return r.status < 400
    except Exception:
        return False


@contextlib.contextmanager
def file_lock(path: Path):
    """One arm check per rootfs at a time (the rootfs and its venv are shared state)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another arm check holding {path} ...")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ host tools
def ensure_host_tools() -> None:
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise Unavailable(f"the ARM check runs on an x86-64 Linux host (this is {platform.machine()})")
    if os.geteuid() != 0:
        raise Unavailable("the ARM check needs root (debootstrap and chroot)")
    if shutil.which("qemu-aarch64-static") and shutil.which("debootstrap") and shutil.which("dpkg-deb"):
        return
    if not shutil.which("apt-get"):
        raise Unavailable("qemu-aarch64-static/debootstrap missing and no apt-get to install them")
    log("installing qemu-user-static and debootstrap with apt-get ...")
    net = ("Could not resolve", "Failed to fetch", "Temporary failure", "Unable to locate", "Unable to fetch")
    env = clean_env(DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-q"], "apt-get update", env=env, unavailable_if=net)
    run(["apt-get", "install", "-y", "-q", "qemu-user-static", "debootstrap"], "apt-get install", env=env,
        unavailable_if=net)  # fmt: skip
    if not shutil.which("qemu-aarch64-static"):
        raise Unavailable("apt-get installed qemu-user-static but qemu-aarch64-static is not on PATH")


# ------------------------------------------------------------------------------------------------ rootfs
def chroot_cmd(rootfs: Path, cpu: str, *args: str) -> list[str]:
    return ["chroot", str(rootfs), "/usr/bin/qemu-aarch64-static", "-cpu", cpu, *args]


def guest_env() -> dict[str, str]:
    return clean_env(HOME="/root", EDGEPOSE_CACHE=f"{GUEST_WORK}/cache", PYTHONUNBUFFERED="1")


def _extract_deb(deb: Path, root: Path) -> None:
    """Unpack a .deb with the host's dpkg-deb, keeping the usr-merged /lib -> usr/lib symlinks."""
    p1 = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    p2 = subprocess.run(["tar", "-x", "--keep-directory-symlink", "-C", str(root)], stdin=p1.stdout,
                        capture_output=True, text=True)  # fmt: skip
    assert p1.stdout is not None
    p1.stdout.close()
    if p1.wait() != 0 or p2.returncode != 0:
        raise CheckError(f"{deb}: cannot unpack ({p2.stderr.strip()[-300:]})")


def build_rootfs(rootfs: Path, mirror: str) -> None:
    """debootstrap --foreign, unpack the rest with dpkg-deb, put qemu in, make the venv; atomically."""
    if not reachable(f"{mirror}/dists/{SUITE}/Release"):
        raise Unavailable(f"Debian mirror {mirror} is not reachable (needed once to build the ARM rootfs)")
    tmp = rootfs.parent / f".{rootfs.name}.build-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        log(f"debootstrap --foreign --arch=arm64 {SUITE} (first build: about a minute) ...")
        run(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase",
             f"--include={','.join(ROOTFS_PACKAGES)}", SUITE, str(tmp), mirror], "debootstrap",
            env=clean_env(), timeout=1800,
            unavailable_if=("Failed getting release file", "Couldn't download"))  # fmt: skip
        # The second stage would run arm64 maintainer scripts, which needs binfmt_misc; the packages a Python
        # userland needs work unpacked, so unpack what the first stage only downloaded.
        debpaths = dict(
            line.split()[:2] for line in (tmp / "debootstrap" / "debpaths").read_text().splitlines() if line.strip()
        )
        base = (tmp / "debootstrap" / "base").read_text().split()
        log(f"unpacking {len(base)} packages (python3, pip and their libraries) with dpkg-deb ...")
        for pkg in base:
            _extract_deb(tmp / debpaths[pkg].lstrip("/"), tmp)
        shutil.copy2(shutil.which("qemu-aarch64-static") or "/usr/bin/qemu-aarch64-static", tmp / "usr/bin")
        proc = tmp / "proc"
        if proc.is_symlink() or proc.is_file():
            proc.unlink()
        proc.mkdir(exist_ok=True)
        (tmp / "etc" / "resolv.conf").unlink(missing_ok=True)
        write_cpu_files(tmp, "cortex-a76")
        make_venv(tmp, "cortex-a76")
        (tmp / ".edgepose-stamp").write_text(ROOTFS_VERSION + "\n")
        if rootfs.exists():
            shutil.rmtree(rootfs)
        os.replace(tmp, rootfs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def make_venv(rootfs: Path, cpu: str) -> None:
    """A fresh venv made by the emulated python3 (Debian's pip is reached through the system site-packages)."""
    log(f"making the venv {GUEST_VENV} with the emulated python3 ...")
    shutil.rmtree(rootfs / GUEST_VENV.lstrip("/"), ignore_errors=True)
    run(chroot_cmd(rootfs, cpu, "/usr/bin/python3", "-m", "venv", "--without-pip", "--system-site-packages",
                   GUEST_VENV), "venv in the rootfs", env=guest_env())  # fmt: skip


def ensure_rootfs(rootfs: Path, mirror: str, rebuild: bool) -> None:
    stamp = rootfs / ".edgepose-stamp"
    if not rebuild and stamp.is_file() and stamp.read_text().strip() == ROOTFS_VERSION:
        log(f"reusing the ARM rootfs {rootfs}")
        return
    if rootfs.exists():
        log(f"rebuilding {rootfs} ({'--rebuild' if rebuild else 'old or unfinished build'})")
    build_rootfs(rootfs, mirror)
    log(f"ARM rootfs ready: {rootfs}")


def write_cpu_files(rootfs: Path, cpu: str) -> None:
    """/proc/cpuinfo and /sys/devices/system/cpu/{possible,present,online} as the emulated board shows them."""
    variant, part, rev, features, model = CPUS[cpu]
    blocks = [
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: {variant}\nCPU part\t: {part}\nCPU revision\t: {rev}\n"
        for i in range(NUM_CPUS)
    ]
    (rootfs / "proc").mkdir(exist_ok=True)
    (rootfs / "proc" / "cpuinfo").write_text("\n".join(blocks) + f"\nModel\t\t: {model}\n")
    sysdir = rootfs / "sys" / "devices" / "system" / "cpu"
    sysdir.mkdir(parents=True, exist_ok=True)
    for name in ("possible", "present", "online"):
        (sysdir / name).write_text(f"0-{NUM_CPUS - 1}\n")


# ------------------------------------------------------------------------------------------------ wheels
def lite_requirements() -> list[str]:
    """edgepose's core dependencies plus its ``lite`` group, read from pyproject.toml."""
    text = (REPO / "pyproject.toml").read_text()
    try:
        import tomllib

        data = tomllib.loads(text)
        return list(data["project"]["dependencies"]) + list(data["project"]["optional-dependencies"]["lite"])
    except ImportError:  # Python < 3.11: the two lists are simple enough to read by pattern
        reqs = []
        for key in (r"^dependencies\s*=\s*\[", r"^lite\s*=\s*\["):
            m = re.search(key + r"(.*?)^\]", text, re.S | re.M)
            reqs += re.findall(r'"([^"]+)"', m.group(1)) if m else []
        return reqs


def package_dirs() -> list[str]:
    """The source folders of the wheel: the values of pyproject's ``[tool.setuptools] package-dir``."""
    text = (REPO / "pyproject.toml").read_text()
    m = re.search(r"^package-dir\s*=\s*\{(.*?)\}", text, re.M)
    dirs = re.findall(r'=\s*"([^"]+)"', m.group(1)) if m else []
    return sorted({d.split("/")[0] for d in dirs if (REPO / d).is_dir()} | {"edgepose"})


def build_edgepose_wheel(dest: Path) -> Path:
    """A wheel of this checkout (working tree as it is), built from a clean copy so the repo stays untouched."""
    with tempfile.TemporaryDirectory(prefix="edgepose-src-") as src:
        ign = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        for name in package_dirs():
            shutil.copytree(REPO / name, Path(src) / name, ignore=ign)
        for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
            if (REPO / name).is_file():
                shutil.copy2(REPO / name, Path(src) / name)
        for old in dest.glob("edgepose-*.whl"):
            old.unlink()
        run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
             "-w", str(dest), src], "building the edgepose wheel", env=clean_env())  # fmt: skip
    wheels = list(dest.glob("edgepose-*.whl"))
    if len(wheels) != 1:
        raise CheckError(f"expected one edgepose wheel in {dest}, found {wheels}")
    return wheels[0]


def _req_name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip()


def host_version(dist: str) -> str | None:
    """The version of ``dist`` in this (host) Python; OpenCV's headless wheel stands for the GUI one."""
    from importlib import metadata

    for name in (dist, "opencv-python") if dist == "opencv-python-headless" else (dist,):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def pinned_requirements(versions: str) -> list[str]:
    """The lite requirements; with ``versions="host"`` each pinned to the host's installed version.

    Pinning isolates the architecture: OpenCV 5.0's ``warpAffine`` rounds differently from 4.x (up to 5 grey
    levels on ~8 % of crop pixels, on x86 as on ARM), which moves keypoints; ``"latest"`` installs what a
    fresh ``pip install "edgepose[lite]"`` on a Pi gets today.
    """
    reqs = lite_requirements()
    if versions != "host":
        return reqs
    out = []
    for r in reqs:
        name, ver = _req_name(r), host_version(_req_name(r))
        out.append(f"{name}=={ver}" if ver else r)
    return out


def ensure_wheels(refresh: bool, versions: str = "host") -> tuple[Path, list[str]]:
    """aarch64 wheels of the lite requirements, downloaded once per requirement set (cached)."""
    reqs = pinned_requirements(versions)
    key = hashlib.sha256(json.dumps([reqs, PLATFORMS, PY_VERSION]).encode()).hexdigest()[:12]
    wdir = CACHE / "arm-wheels" / key
    stamp = wdir / ".complete"
    if refresh or not stamp.is_file():
        if not reachable("https://pypi.org/simple/ai-edge-litert/"):
            raise Unavailable("PyPI is not reachable (needed once to download the aarch64 wheels)")
        tmp = wdir.parent / f".{key}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        log(f"downloading aarch64 cp311 wheels of {', '.join(reqs)} ...")
        cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version", PY_VERSION,
               "--implementation", "cp", "--abi", "cp" + PY_VERSION.replace(".", ""), "-d", str(tmp), "-q"]  # fmt: skip
        for plat in PLATFORMS:
            cmd += ["--platform", plat]
        run(cmd + reqs, "pip download (aarch64)", env=clean_env(), unavailable_if=("Network is unreachable",
            "Max retries exceeded", "Temporary failure in name resolution"))  # fmt: skip
        (tmp / ".complete").write_text(json.dumps(reqs) + "\n")
        shutil.rmtree(wdir, ignore_errors=True)
        os.replace(tmp, wdir)
    else:
        log(f"reusing the aarch64 wheels in {wdir}")
    return wdir, reqs


def install_in_rootfs(rootfs: Path, cpu: str, wheel_dir: Path, edgepose_wheel: Path, reqs: list[str]) -> str:
    """``pip install --no-index "edgepose[lite]"`` with the emulated pip; returns ``pip check``'s verdict."""
    gw = rootfs / GUEST_WHEELS.lstrip("/")
    shutil.rmtree(gw, ignore_errors=True)
    gw.mkdir(parents=True)
    for whl in [*wheel_dir.glob("*.whl"), edgepose_wheel]:
        os.link(whl, gw / whl.name) if whl.stat().st_dev == gw.stat().st_dev else shutil.copy2(whl, gw)
    venv = rootfs / GUEST_VENV.lstrip("/")
    stamp, installed = venv / ".edgepose-wheels", venv / ".edgepose-installed.json"
    pins = [r.split(";")[0].strip() for r in reqs]
    want = {"wheels": wheel_dir.name, "edgepose": wheel_content_digest(edgepose_wheel), "pins": pins}
    if not stamp.is_file() or stamp.read_text().strip() != wheel_dir.name:
        make_venv(rootfs, cpu)  # another requirement set: start clean, no leftovers from the last one
    elif installed.is_file() and (done := json.loads(installed.read_text())).get("want") == want:
        log("edgepose[lite] of this checkout is already installed in the emulated aarch64 venv")
        return done["pip_check"]  # the same wheel contents and pins: the emulated pip (minutes) has nothing to do
    installed.unlink(missing_ok=True)
    py = f"{GUEST_VENV}/bin/python"
    pip = [py, "-m", "pip", "install", "--no-index", "--find-links", GUEST_WHEELS, "--no-compile", "-q"]
    log("pip install --no-index 'edgepose[lite]' inside the emulated aarch64 venv ...")
    # edgepose itself is reinstalled when the checkout changed; its dependencies only when missing.
    run(chroot_cmd(rootfs, cpu, *pip, "--force-reinstall", "--no-deps", f"{GUEST_WHEELS}/{edgepose_wheel.name}"),
        "pip install edgepose (aarch64)", env=guest_env())  # fmt: skip
    # the requirement set named too, so that a venv left with other versions by an earlier run is brought to it
    run(chroot_cmd(rootfs, cpu, *pip, "edgepose[lite]", *pins), "pip install edgepose[lite] (aarch64)",
        env=guest_env())  # fmt: skip
    stamp.write_text(wheel_dir.name + "\n")
    check = subprocess.run(chroot_cmd(rootfs, cpu, py, "-m", "pip", "check"), env=guest_env(),
                           capture_output=True, text=True)  # fmt: skip
    verdict = (check.stdout + check.stderr).strip()
    installed.write_text(json.dumps({"want": want, "pip_check": verdict}) + "\n")
    return verdict


def wheel_content_digest(wheel: Path) -> str:
    """sha256 over a wheel's member names and CRCs: equal for two builds of the same tree, whatever their zip
    timestamps (the ARM check and the remote test each build one)."""
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        facts = sorted(f"{i.filename}:{i.CRC:08x}:{i.file_size}" for i in z.infolist())
    return hashlib.sha256("\n".join(facts).encode()).hexdigest()
