"""The ONNX target: its converter (:mod:`.convert`), the ONNX Runtime quantisation settings (:mod:`.settings`),
its mixed-precision INT8 builder (:mod:`.mixed`) and its graph reader for the per-layer report (:mod:`.graph`),
registered here."""

from ...base import register_target
from . import convert, graph, mixed
from .settings import RANGES

# The head form ``--head auto`` exports per precision (converters/transforms.py), chosen by
# benchmarks/head_forms.py (2026-12-06, 2 threads, two runs): INT8 with the 2x2 form 3.3x faster than with
# ConvTranspose (which ONNX Runtime keeps in float between Q/DQ pairs) and 1.36x faster than with the 3x3 form,
# which won before the activations were uint8 (.settings: with int8 activations 15 of the backbone's
# convolutions ran in float, and the 3x3 form's one operator per block paid off); heatmap SNR 19 -> 28 dB.
# The price: its four branch outputs are quantised one by one and requantised by the Concat, so on poor
# calibration sets it loses 0.003-0.005 AP more than the 3x3 form (colour cast, noise, tiny crops); in-domain
# the same (README, calibration health).
# FP32 with the 2x2 form 1.21-1.23x (earlier runs had put every rewrite within a few % of the original head,
# but they timed sessions whose threads spun against each other: runtimes/engines/onnxruntime.py,
# stop_spinning). FP16 keeps the original head: 1.02-1.03x on the CPU provider, which runs it in float32 anyway;
# the file is for GPU providers, where no form has been measured.
HEAD_FORMS = {"fp32": "subpixel2x2", "fp16": "deconv", "int8": "subpixel2x2"}

register_target("onnx", ".onnx", ("fp32", "fp16", "int8"), requires=("onnx", "onnxruntime"),
                embed=convert.embed_onnx, head_forms=HEAD_FORMS, mixed=mixed.mixed,
                graph=graph.onnx_graph, ranges={k: v[2] for k, v in RANGES.items()})(convert.convert)  # fmt: skip
