"""edgessl: self-supervised IMU gesture recognition, from unlabeled data to a live device.

Subpackages:
    trainer: torch-side pretraining, fine-tuning and evaluation.
    export: ONNX export, int8 quantization and the bundle format.
    edge_runtime: numpy + onnxruntime live inference (never imports torch).
    firmware_bridge: wire protocol, reference firmware, simulator and serial transport.

Shared by both sides: ``datasets`` (loaders behind a registry of spec schemes, the embedded synthetic
IMU gesture generator among them) and ``preprocess`` (the one numpy preprocessing implementation).
"""

__version__ = "0.1.0"
