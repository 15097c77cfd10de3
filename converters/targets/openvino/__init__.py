"""The OpenVINO target: its converter (:mod:`.convert`), its INT8 accuracy-control parts (:mod:`.mixed`: the
mixed-precision builder and NNCF's own accuracy control) and its graph reader for the per-layer report
(:mod:`.graph`), registered here."""

from ...base import register_target
from . import convert, graph, mixed

# The head form ``--head auto`` exports per precision (converters/transforms.py), chosen by
# benchmarks/head_forms.py with the CPU plugin's default precision (bf16 on this AMX Xeon): the 2x2 form ran
# FP32 ~1.3x, FP16 ~1.2x and INT8 ~1.15x faster than the original ConvTranspose head (the 3x3 form at most
# ~1.1x); INT8 heatmap SNR 20.7 -> 29.2 dB (BatchNorm folded before quantisation).
HEAD_FORMS = {"fp32": "subpixel2x2", "fp16": "subpixel2x2", "int8": "subpixel2x2"}

register_target("openvino", ".xml", ("fp32", "fp16", "int8"), requires=("openvino",), embed=convert.embed_openvino,
                head_forms=HEAD_FORMS, mixed=mixed.mixed, graph=graph.openvino_graph,
                controls={"nncf": mixed.nncf_control}, ranges=convert.RANGES)(convert.convert)  # fmt: skip
