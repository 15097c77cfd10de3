"""One small runtime class per engine, all with the same face.

``load_runtime(path)`` picks the engine from the file suffix (or ``engine=``); a runtime is called with a
float32 NCHW normalised batch and returns float32 NCHW heatmaps. Layout and quantised input/output are each
runtime's own business, read from the artifact's metadata. Engines are imported only when used.
"""

# Importing the modules registers the engines; none of them imports its engine at import time.
from . import litert_rt, onnxruntime_rt, openvino_rt, torch_rt  # noqa: F401,E402
from .base import RUNTIMES, Runtime, engine_for, load_runtime, register_runtime

__all__ = ["RUNTIMES", "Runtime", "engine_for", "load_runtime", "register_runtime"]
