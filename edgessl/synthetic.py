"""The embedded synthetic IMU gesture generator, under its short name.

The generator is one of the dataset sources and lives in :mod:`edgessl.datasets.synthetic` (spec
``synthetic[:key=value,...]``); this module keeps ``from edgessl.synthetic import ...`` working.
"""

from edgessl.datasets.synthetic import (
    CHANNELS,
    GESTURES,
    SyntheticConfig,
    UserProfile,
    describe_gesture,
    load_synthetic,
    make_dataset,
    make_gesture,
    make_idle,
    make_stream,
    make_user,
    rotation_matrix,
)

__all__ = [
    "CHANNELS",
    "GESTURES",
    "SyntheticConfig",
    "UserProfile",
    "describe_gesture",
    "load_synthetic",
    "make_dataset",
    "make_gesture",
    "make_idle",
    "make_stream",
    "make_user",
    "rotation_matrix",
]
