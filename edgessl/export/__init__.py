"""Export: torch -> ONNX, static int8 quantization, verification and the bundle format."""
