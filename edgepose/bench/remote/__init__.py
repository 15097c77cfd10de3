"""``edgepose bench --remote``: the same bench on another machine over SSH, merged into this report.

The package, in import order: ``ssh`` (the ssh client: targets, commands, tar copies), ``env`` (the agent's
source and the edgepose wheel for the remote venv), ``agent`` (what runs on the remote, standard library
only: sent as source text, ``python -c``, never imported there), ``report`` (the merge and the device table),
``run`` (:func:`bench_remotes`: the steps of one host). This file re-exports the public faces.
"""

from __future__ import annotations

from .report import console_devices, markdown_devices, merge_remote
from .run import RemoteOptions, bench_remotes, check_targets
from .ssh import RemoteError, Target, parse_target

__all__ = ["RemoteError", "RemoteOptions", "Target", "bench_remotes", "check_targets", "console_devices",
           "markdown_devices", "merge_remote", "parse_target"]  # fmt: skip
