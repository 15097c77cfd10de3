"""Format-free INT8 helpers: calibration health check and distilled (image-free) calibration data."""
