"""Folder discovery for the registries: import every module of a package, so a new file is found unlisted.

The engines (``runtimes/engines/``), the datasets (``datasets/``), the conversion targets
(``converters/targets/``) and the subcommands (``commands/``) are each filled this way; this is the one loop.
It imports nothing of edgepose.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from types import ModuleType


def import_submodules(package: str, path: Iterable[str], skip: Iterable[str] = ()) -> list[ModuleType]:
    """Import the modules and subpackages of ``package`` (its ``__name__`` and ``__path__``) in name order.

    Names starting with ``_`` (shared helpers such as ``commands/_args.py``) and those in ``skip`` are left out.
    """
    skipped = set(skip)
    found = sorted(m.name for m in pkgutil.iter_modules(list(path)))
    return [importlib.import_module(f"{package}.{name}") for name in found
            if not name.startswith("_") and name not in skipped]  # fmt: skip
