"""The TFLite target: its converter (:mod:`.convert`), its mixed-precision INT8 builder (:mod:`.mixed`) and its
graph reader for the per-layer report (:mod:`.graph`), registered here."""

from ...base import register_target
from . import convert, graph, mixed

# The head form ``--head auto`` exports per precision (converters/transforms.py), chosen by
# benchmarks/head_forms.py: without TRANSPOSE_CONV, XNNPACK ran the demo model ~3x faster in FP32, FP16 and
# INT8 (2.6-3.9x over four runs on the loaded 2-core machine; the INT8 heatmap SNR rose from 18 to 26.5 dB);
# the 3x3 form was slower than the 2x2 one everywhere.
# No ``ranges=``: the TFLite converter calibrates activations by min-max only (its representative dataset) and
# offers no percentile / entropy / bias-correction option, so accuracy control goes straight to layers.
HEAD_FORMS = {"fp32": "subpixel2x2", "fp16": "subpixel2x2", "int8": "subpixel2x2"}

register_target("tflite", ".tflite", ("fp32", "fp16", "int8"), requires=("onnx2tf", "tensorflow", "tf_keras"),
                embed=convert.embed_tflite, head_forms=HEAD_FORMS, mixed=mixed.mixed, graph=graph.read,
                float_model=graph.float_model)(convert.convert)  # fmt: skip
