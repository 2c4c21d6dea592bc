"""edgessl: self-supervised IMU gesture recognition, from unlabeled data to a live device.

Subpackages:
    trainer: torch-side pretraining, fine-tuning and evaluation.
    export: ONNX export, int8 quantization and the bundle format.
    edge_runtime: numpy + onnxruntime live inference (never imports torch).
    firmware_bridge: wire protocol, reference firmware, simulator and serial transport.

Top-level modules shared by both sides: ``datasets`` (loaders), ``preprocess`` (the one
preprocessing implementation) and ``synthetic`` (the embedded IMU gesture generator).
"""

__version__ = "0.1.0"
