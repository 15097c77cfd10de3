"""Workstation side: PyTorch -> ONNX -> TFLite / OpenVINO converters (installed as edgepose.converters)."""
