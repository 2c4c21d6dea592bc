"""Torch side: augmentations, encoders, self-supervised objectives, the training loop, evaluation.

Importing this package requires the ``[train]`` extra (torch).
"""
