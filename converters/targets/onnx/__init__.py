"""The ONNX target: its converter (:mod:`.convert`), the ONNX Runtime quantisation settings (:mod:`.settings`),
its mixed-precision INT8 builder (:mod:`.mixed`) and its graph reader for the per-layer report (:mod:`.graph`),
registered here."""

from ...base import register_target
from . import convert, graph, mixed
from .settings import RANGES

# The head form ``--head auto`` exports per precision (converters/transforms.py), chosen by
# benchmarks/head_forms.py (2026-12-06, 2 threads): INT8 with the 2x2 form 3.3x faster than with ConvTranspose
# (which ONNX Runtime keeps in float between Q/DQ pairs) and 1.36x faster than with the 3x3 form, which won
# before the activations were uint8 (.settings: with int8 activations 15 of the backbone's convolutions ran in
# float, and the 3x3 form's one operator per block paid off); heatmap SNR 19 -> 28 dB. FP32 and FP16 keep the
# original head: earlier runs put the rewrites within a few % of it, but they timed sessions whose threads spun
# against each other (runtimes/engines/onnxruntime.py, stop_spinning); the two runs of 2026-12-06 gave the 2x2
# form 1.21-1.23x (FP32) and 1.02-1.03x (FP16): FP32 is a candidate, not yet switched.
HEAD_FORMS = {"fp32": "deconv", "fp16": "deconv", "int8": "subpixel2x2"}

register_target("onnx", ".onnx", ("fp32", "fp16", "int8"), requires=("onnx", "onnxruntime"),
                embed=convert.embed_onnx, head_forms=HEAD_FORMS, mixed=mixed.mixed,
                graph=graph.onnx_graph, ranges={k: v[2] for k, v in RANGES.items()})(convert.convert)  # fmt: skip
