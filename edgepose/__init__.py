"""edgepose: mmpose MobileNetV2 pose models from PyTorch to phones, Raspberry Pis and GPUs, with proof.

The device side (this package, without ``edgepose.converters``) imports with numpy and OpenCV alone;
torch, TensorFlow, ONNX Runtime, OpenVINO and LiteRT are imported only by the code that uses them.
"""

from .errors import EdgeposeError
from .spec import DATASETS, DEFAULT_MODEL, MODELS, DatasetInfo, ModelSpec, get_spec, list_models

__version__ = "0.1.0"

__all__ = [
    "DATASETS",
    "DEFAULT_MODEL",
    "MODELS",
    "DatasetInfo",
    "EdgeposeError",
    "ModelSpec",
    "get_spec",
    "list_models",
    "__version__",
]
