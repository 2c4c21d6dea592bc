"""Edge runtime: numpy + onnxruntime only. This package must never import torch."""
