"""The remote half of ``edgepose bench --remote``: run on the remote as ``python -c <this file> OP ARGS``.

Standard library only and Python 3.6 syntax, so that it also runs where edgepose is not installed yet and can
say clearly that the Python there is too old. Operations (each prints one JSON line on stdout):

* ``probe DIR``: Python version and bitness, architecture, free disk in DIR, edgepose and the engines that
  this Python can import (found, not imported), CPU model and cores.
* ``sha256 DIR``: the sha256 of every file under DIR, by path relative to DIR (the integrity check on arrival).
"""

import hashlib
import json
import os
import platform
import shutil
import struct
import sys

ENGINES = ("ai_edge_litert", "tflite_runtime", "onnxruntime", "openvino")


def _find(name):
    try:
        import importlib.util

        return importlib.util.find_spec(name) is not None
    except Exception:  # noqa: BLE001 - a broken package is as good as none
        return False


def _version(dist):
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8
        return None
    try:
        return metadata.version(dist)
    except Exception:  # noqa: BLE001
        return None


def _cpu():
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None
    for key in ("model name", "Model", "Hardware"):
        for line in text.splitlines():
            if line.split(":", 1)[0].strip() == key and ":" in line:
                return line.split(":", 1)[1].strip()
    return None


def probe(directory):
    usage = shutil.disk_usage(directory)
    return {
        "python": "%d.%d.%d" % sys.version_info[:3],
        "python_executable": sys.executable,
        "bits": struct.calcsize("P") * 8,
        "machine": platform.machine(),
        "system": platform.system(),
        "cpu": _cpu(),
        "cpus": os.cpu_count(),
        "free_bytes": usage.free,
        "edgepose": _version("edgepose") if _find("edgepose") else None,
        "engines": [m for m in ENGINES if _find(m)],
        "venv": sys.prefix != getattr(sys, "base_prefix", sys.prefix),
    }


def sha256_tree(directory):
    out = {}
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[os.path.relpath(path, directory).replace(os.sep, "/")] = h.hexdigest()
    return out


def main(argv):
    op, directory = argv[0], argv[1]
    result = probe(directory) if op == "probe" else sha256_tree(directory) if op == "sha256" else None
    if result is None:
        sys.stderr.write("edgepose remote agent: unknown operation %r\n" % op)
        return 2
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
