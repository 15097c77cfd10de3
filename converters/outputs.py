"""Where convert's files go: the list of every file it will write (checked before any work starts) and the
final moves out of the work folder (companions first, the main file last; undone when one fails).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from edgepose.errors import EdgeposeError
from edgepose.runtimes.artifact import sidecar_path

from .base import TARGETS, Converted

__all__ = ["planned_outputs", "move_into_place"]


def planned_outputs(out_dir: Path, stem: str, plan: dict[str, list[str]], tag: str = "") -> list[Path]:
    """Every file convert will move into ``out_dir`` (artifact, companions, sidecar), for the up-front check;
    names as :meth:`Context.artifact_path` makes them (``<stem>_<precision><tag><suffix>``)."""
    from edgepose.runtimes import runtime_for

    names = []
    for t, ps in plan.items():
        for p in ps:
            main = out_dir / f"{stem}_{p}{tag}{TARGETS[t].suffix}"
            cls = runtime_for(main)
            names += [main, sidecar_path(main), *(main.with_suffix(s) for s in (cls.companions if cls else ()))]
    return names


def move_into_place(converted: list[Converted], out_dir: Path) -> None:
    """Companions first, then the sidecar, the main file last (so that it appears only when its companions are
    there); if a move fails, every file this call moved is removed again and the call fails with one line."""
    moved: list[Path] = []
    try:
        for c in converted:
            for f in [*c.extra_files, sidecar_path(c.path), c.path]:
                dst = out_dir / f.name
                os.replace(f, dst)
                moved.append(dst)
    except OSError as e:
        for m in moved:
            with contextlib.suppress(OSError):
                m.unlink()
        raise EdgeposeError(f"{out_dir / f.name}: cannot move the artifact into place ({e.strerror}); nothing "
                            "written") from None  # fmt: skip
