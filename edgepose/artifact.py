"""Artifact metadata, read on the device side: the public name of :mod:`edgepose.runtimes.artifact`.

The readers live beside the engines (each engine reads its own format's embedded copy); the writers are on the
workstation side (:mod:`edgepose.converters.metadata`). Apps and scripts import from here. The integrity check
(:func:`verify_artifact`: sizes and sha256 recorded at conversion, checked before an engine parses a byte) is
here too.
"""

from .processing import INPUT_FLOAT, INPUT_KINDS, INPUT_UINT8  # noqa: F401  (input.kind values, for apps)
from .runtimes.artifact import (  # noqa: F401
    FORMAT_VERSION,
    KEY,
    file_record,
    input_kind,
    read_embedded,
    read_metadata,
    sidecar_path,
    tflite_metadata_entries,
    tflite_problem,
    verify_artifact,
)

__all__ = ["FORMAT_VERSION", "KEY", "INPUT_FLOAT", "INPUT_UINT8", "INPUT_KINDS", "file_record", "input_kind",
           "read_embedded", "read_metadata", "sidecar_path", "tflite_metadata_entries", "tflite_problem",
           "verify_artifact"]  # fmt: skip
