"""The embedded synthetic IMU gesture generator, under its short name.

The generator is one of the dataset sources and lives in :mod:`edgessl.datasets.synthetic` (spec
``synthetic[:key=value,...]``); this module keeps ``from edgessl.synthetic import ...`` working.
"""

from edgessl.datasets import synthetic as _impl
from edgessl.datasets.synthetic import *  # noqa: F403  (the public names, listed once in the implementation)

__all__ = list(_impl.__all__)
