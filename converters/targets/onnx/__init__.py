"""The ONNX target: its converter (:mod:`.convert`), the ONNX Runtime quantisation settings (:mod:`.settings`),
its mixed-precision INT8 builder (:mod:`.mixed`) and its graph reader for the per-layer report (:mod:`.graph`),
registered here."""

from ...base import register_target
from . import convert, graph, mixed
from .settings import RANGES

# The head form ``--head auto`` exports per precision (converters/transforms.py), chosen by
# benchmarks/head_forms.py: INT8 with the 3x3 form ~1.75x faster than with ConvTranspose (which ONNX Runtime
# keeps in float between Q/DQ pairs; the 3x3 convolutions run as int8; the 2x2 form gained ~1.1x), heatmap SNR
# 19 -> 28.6 dB, and faster than FP32. FP32 and FP16 keep the original head: on the CPU provider the rewrites
# were within a few % of it (0.94-1.10x over four loaded runs), FP16 ~0.9x.
HEAD_FORMS = {"fp32": "deconv", "fp16": "deconv", "int8": "subpixel3x3"}

register_target("onnx", ".onnx", ("fp32", "fp16", "int8"), requires=("onnx", "onnxruntime"),
                embed=convert.embed_onnx, head_forms=HEAD_FORMS, mixed=mixed.mixed,
                graph=graph.onnx_graph, ranges={k: v[2] for k, v in RANGES.items()})(convert.convert)  # fmt: skip
