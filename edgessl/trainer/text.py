"""A small text encoder that needs no downloaded weights, and the class descriptions it reads.

Text features are hashed bags of words, word bigrams and character n-grams (3–5, with word boundaries), a
fixed random-free map (CRC-32 into ``dim`` buckets, signed), so two descriptions that share words or word
pieces share features; an MLP on top is trained with the IMU encoder by the CLIP-style loss. A class held
out of training can still be embedded from its description alone (zero-shot).
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgessl.synthetic import GESTURES, describe_gesture

# Descriptions a person would write, for the class names of the data sets this package reads. Anything
# else falls back to the class name with underscores as spaces, or to a JSON file {label: text}.
DESCRIPTIONS: dict[str, str] = {
    # UCI HAR / HAPT activities, written once as motion, direction and posture (not tuned on results)
    "WALKING": "walking: periodic steps forward on level ground, torso upright",
    "WALKING_UPSTAIRS": "walking upstairs: periodic steps forward and up the stairs, torso upright",
    "WALKING_DOWNSTAIRS": "walking downstairs: periodic steps forward and down the stairs, torso upright",
    "SITTING": "sitting: no steps, still, torso upright, legs bent on a chair",
    "STANDING": "standing: no steps, still, torso upright, legs straight",
    "LAYING": "lying: no steps, still, torso horizontal, lying down flat",
    "STAND_TO_SIT": "transition from standing upright to sitting down",
    "SIT_TO_STAND": "transition from sitting to standing up",
    "SIT_TO_LIE": "transition from sitting to lying down flat",
    "LIE_TO_SIT": "transition from lying flat to sitting up",
    "STAND_TO_LIE": "transition from standing upright to lying down flat",
    "LIE_TO_STAND": "transition from lying flat to standing up",
    # the synthetic generator's gestures, read off their stroke lists
    **{g: describe_gesture(g) for g in GESTURES},
}


def describe(labels: list[str], overrides: str | Path | dict[str, str] | None = None) -> list[str]:
    """One description per class label (``overrides``: a dict or a JSON file ``{label: text}``)."""
    table = dict(DESCRIPTIONS)
    if isinstance(overrides, (str, Path)):
        try:
            table.update(json.loads(Path(overrides).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{overrides}: expected a JSON object {{label: description}} ({e})") from e
    elif overrides:
        table.update(overrides)
    return [table.get(str(lab), str(lab).replace("_", " ").lower()) for lab in labels]


def _tokens(text: str) -> list[str]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    toks = [f"w:{w}" for w in words] + [f"b:{a}_{b}" for a, b in zip(words, words[1:], strict=False)]
    for w in words:
        s = f"<{w}>"
        toks += [f"c:{s[i : i + n]}" for n in (3, 4, 5) for i in range(len(s) - n + 1)]
    return toks


def hashed_features(texts: list[str], dim: int = 1024) -> np.ndarray:
    """``[len(texts), dim]`` signed hashed counts, each row scaled to unit length."""
    out = np.zeros((len(texts), dim), np.float32)
    for r, text in enumerate(texts):
        for tok in _tokens(text):
            h = zlib.crc32(tok.encode())
            out[r, h % dim] += 1.0 if (h >> 31) & 1 else -1.0
        n = np.linalg.norm(out[r])
        if n == 0:
            raise ValueError(f"description {text!r} has no words to encode")
        out[r] /= n
    return out


class TextEncoder(nn.Module):
    """Hashed features -> MLP -> ``out_dim``."""

    def __init__(self, out_dim: int, dim: int = 1024, hidden: int = 256):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features)

    def encode(self, texts: list[str]) -> torch.Tensor:
        device = next(self.parameters()).device
        return self(torch.from_numpy(hashed_features(texts, self.dim)).to(device))
