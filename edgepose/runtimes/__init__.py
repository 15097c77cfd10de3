"""One small runtime class per engine, all with the same face.

``load_runtime(path)`` picks the engine from the file suffix (or ``engine=``); a runtime is called with a
float32 NCHW normalised batch and returns float32 NCHW heatmaps. Layout and quantised input/output are each
runtime's own business, read from the artifact's metadata. Engines are imported only when used; each engine
module in ``runtimes/engines/`` declares its own facts (see :class:`Runtime`).
"""

# Importing the package registers every engine module in it; none imports its engine at import time.
from . import engines  # noqa: F401,E402,I001
from .base import (
    RUNTIMES,
    Runtime,
    RuntimeOptions,
    engine_for,
    format_label,
    load_runtime,
    register_runtime,
    runtime_for,
    runtime_of_format,
)

__all__ = ["RUNTIMES", "Runtime", "RuntimeOptions", "engine_for", "format_label", "load_runtime",
           "register_runtime", "runtime_for", "runtime_of_format"]  # fmt: skip
