"""Facts about the machine a benchmark ran on, and process memory (RSS) readings.

Standard library only (psutil is used when present, never required): the bench must run on a Raspberry Pi
with numpy, OpenCV and ai-edge-litert alone. Engine versions are read from the installed distributions'
metadata, so recording them imports no engine.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import sys
from importlib import metadata as _md
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# Tools besides the engines whose versions a benchmark record carries (each engine names its own).
TOOL_DISTRIBUTIONS = ("onnx2tf", "xtcocotools", "pycocotools")

# CPU features that decide which kernels the engines pick (x86 SIMD / AMX, ARM NEON dot product / fp16).
NOTABLE_FLAGS = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8",
    "amx_bf16", "neon", "asimd", "asimddp", "asimdhp", "sve", "i8mm", "bf16",
)  # fmt: skip


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def cpu_model() -> str:
    """A human name for the CPU: /proc/cpuinfo (x86 'model name', ARM 'Model'/device tree), else platform."""
    info = _read("/proc/cpuinfo")
    for key in ("model name", "Model", "Hardware", "cpu model"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", info, re.MULTILINE)
        if m and m.group(1).strip():
            name = m.group(1).strip()
            break
    else:
        name = ""
    board = _read("/proc/device-tree/model").strip("\x00\n ")
    if board and board not in name:
        name = f"{board} ({name})" if name else board
    if not name and sys.platform == "darwin":
        try:
            import subprocess

            name = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
        except (OSError, ValueError):
            name = ""
    return name or platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> list[str]:
    """The notable SIMD/matrix features the CPU reports (empty where /proc/cpuinfo is absent)."""
    info = _read("/proc/cpuinfo")
    m = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", info, re.MULTILINE)
    have = set(m.group(1).split()) if m else set()
    return [f for f in NOTABLE_FLAGS if f in have]


def usable_cpus() -> int:
    """CPUs this process may run on (affinity/cgroup-aware where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except ImportError:
        pass
    info = _read("/proc/cpuinfo")
    pairs = set(re.findall(r"^physical id\s*:\s*(\d+)$.*?^core id\s*:\s*(\d+)$", info, re.MULTILINE | re.DOTALL))
    return len(pairs) or None


def total_memory_bytes() -> int | None:
    m = re.search(r"^MemTotal:\s*(\d+)\s*kB", _read("/proc/meminfo"), re.MULTILINE)
    if m:
        return int(m.group(1)) * 1024
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        return None


def engine_versions() -> dict[str, str]:
    """Installed versions of the engines and tools (from package metadata; nothing is imported)."""
    out = {"numpy": np.__version__, "opencv": cv2.__version__}
    from ..runtimes import RUNTIMES

    dists = [d for cls in RUNTIMES.values() for d in cls.distributions] + list(TOOL_DISTRIBUTIONS)
    for dist in dict.fromkeys(dists):
        try:
            out[dist] = _md.version(dist)
        except _md.PackageNotFoundError:
            continue
    try:
        out["edgepose"] = _md.version("edgepose")
    except _md.PackageNotFoundError:
        pass
    return out


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """Everything a benchmark number needs next to it to mean something."""
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "physical_cores": physical_cores(),
        "threads": threads,
        "cpu_flags": cpu_flags(),
        "memory_bytes": total_memory_bytes(),
        "os": platform.platform(),
        "os_release": os_release(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "versions": engine_versions(),
        "load_average": load_average(),
        "thermal": thermal(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def os_release() -> str | None:
    """The distribution's own name (``PRETTY_NAME`` of /etc/os-release: "Debian GNU/Linux 12 (bookworm)")."""
    m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?$', _read("/etc/os-release"), re.MULTILINE)
    return m.group(1).strip() if m else None


# ------------------------------------------------------------------------------------------ thermal
# Bits of the Raspberry Pi firmware's throttle word (`vcgencmd get_throttled`, documented by Raspberry Pi).
PI_THROTTLE_BITS = {
    0: "under-voltage now", 1: "ARM frequency capped now", 2: "throttled now", 3: "soft temperature limit now",
    16: "under-voltage has occurred", 17: "ARM frequency capping has occurred", 18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}  # fmt: skip
CPUFREQ = "/sys/devices/system/cpu/cpu0/cpufreq"


def decode_pi_throttled(word: int) -> list[str]:
    """The Raspberry Pi throttle word as words (empty: never throttled since boot)."""
    return [text for bit, text in sorted(PI_THROTTLE_BITS.items()) if word >> bit & 1]


def _vcgencmd(*args: str) -> str | None:
    import shutil
    import subprocess

    exe = shutil.which("vcgencmd") or next((p for p in ("/usr/bin/vcgencmd", "/opt/vc/bin/vcgencmd")
                                            if os.access(p, os.X_OK)), None)  # fmt: skip
    if not exe:
        return None
    try:
        r = subprocess.run([exe, *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def _int(text: str, base: int = 10) -> int | None:
    try:
        return int(text.strip(), base)
    except ValueError:
        return None


def cpu_temperature() -> tuple[float | None, str | None]:
    """CPU temperature in degrees C and where it came from (vcgencmd, else the CPU's /sys/class/thermal zone)."""
    out = _vcgencmd("measure_temp")  # "temp=48.3'C"
    m = re.search(r"temp=([\d.]+)", out or "")
    if m:
        return float(m.group(1)), "vcgencmd measure_temp"
    zones = sorted(Path("/sys/class/thermal").glob("thermal_zone*"))
    typed = [(_read(str(z / "type")).strip(), z) for z in zones]
    cpu_like = ("cpu", "x86_pkg", "soc", "core", "package")
    for kind, z in sorted(typed, key=lambda t: not any(k in t[0].lower() for k in cpu_like)):
        milli = _int(_read(str(z / "temp")))
        if milli is not None:
            return milli / 1000.0, f"/sys/class/thermal ({kind or z.name})"
    return None, None


def throttling() -> dict[str, Any] | None:
    """Throttling so far: the Raspberry Pi firmware word (vcgencmd, else its sysfs file), else the x86 kernel's
    per-core thermal throttle counters; ``None`` where the machine reports neither."""
    out = _vcgencmd("get_throttled")  # "throttled=0x50000"
    m = re.search(r"throttled=(0x[0-9a-fA-F]+)", out or "")
    word = int(m.group(1), 16) if m else _int(_read("/sys/devices/platform/soc/soc:firmware/get_throttled"), 16)
    if word is not None:
        src = "vcgencmd get_throttled" if m else "/sys/devices/platform/soc/soc:firmware/get_throttled"
        return {"source": src, "word": hex(word), "flags": decode_pi_throttled(word)}
    files = Path("/sys/devices/system/cpu").glob("cpu*/thermal_throttle/core_throttle_count")
    counts = [c for c in (_int(_read(str(p))) for p in files) if c is not None]
    if counts:
        total = sum(counts)
        return {"source": "/sys/devices/system/cpu/cpu*/thermal_throttle", "events": total,
                "flags": [f"{total} thermal throttle events since boot"] if total else []}  # fmt: skip
    return None


def thermal() -> dict[str, Any]:
    """CPU frequency governor, clock, temperature and throttling now (read before and after a bench)."""
    temp, temp_src = cpu_temperature()
    khz = _int(_read(f"{CPUFREQ}/scaling_cur_freq"))
    max_khz = _int(_read(f"{CPUFREQ}/cpuinfo_max_freq"))
    return {
        "governor": _read(f"{CPUFREQ}/scaling_governor").strip() or None,
        "cpu_mhz": khz / 1000 if khz else None,
        "cpu_max_mhz": max_khz / 1000 if max_khz else None,
        "temperature_c": temp,
        "temperature_source": temp_src,
        "throttling": throttling(),
    }


# ------------------------------------------------------------------------------------------- memory
def rss_bytes() -> int | None:
    """Resident set size of this process now."""
    statm = _read("/proc/self/statm").split()
    if len(statm) >= 2:
        return int(statm[1]) * os.sysconf("SC_PAGE_SIZE")
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        return None


def peak_rss_bytes() -> int | None:
    """High-water mark of RSS: VmHWM (resettable on Linux), else getrusage's lifetime maximum."""
    m = re.search(r"^VmHWM:\s*(\d+)\s*kB", _read("/proc/self/status"), re.MULTILINE)
    if m:
        return int(m.group(1)) * 1024
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, KiB elsewhere
    except (ImportError, OSError):
        return None


def reset_peak_rss() -> bool:
    """Reset the RSS high-water mark to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Context manager: how far RSS rose above its starting value while the block ran.

    ``method`` says how it was measured: ``"hwm"`` (the kernel's high-water mark, reset at entry: the true
    peak), or ``"end"`` (RSS at exit minus RSS at entry, where the high-water mark cannot be reset; a lower
    bound of the peak).
    """

    def __init__(self) -> None:
        self.start: int | None = None
        self.peak: int | None = None
        self.method = "none"

    def __enter__(self) -> PeakMemory:
        self.hwm = reset_peak_rss()
        self.start = rss_bytes()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.hwm and self.start is not None:
            self.peak, self.method = peak_rss_bytes(), "hwm"
        else:
            self.peak, self.method = rss_bytes(), "end"

    @property
    def delta(self) -> int | None:
        if self.start is None or self.peak is None:
            return None
        return max(0, self.peak - self.start)
