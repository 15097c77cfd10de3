"""Bundled INT8 calibration sets (installed as edgepose.calibration_data)."""
