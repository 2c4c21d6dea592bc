"""Small helpers shared by the C generators (:mod:`edgessl.export.c_model`, :mod:`edgessl.export.c_stream`):
C literals of float32 constants and arrays, and the refusal error."""

from __future__ import annotations

import json
import math

import numpy as np

from edgessl.errors import ModelError


class CExportError(ModelError):
    """The bundle cannot be expressed by the C generator (an op or a form outside its set)."""


def c_float(v: float) -> str:
    """A float32 as a C literal that reads back to exactly the same float."""
    f = float(np.float32(v))
    if not math.isfinite(f):
        raise CExportError(f"a model constant is {f}; the C generator needs finite weights")
    s = f"{f:.9g}"
    if not any(ch in s for ch in ".e"):
        s += ".0"
    return s + "f"


def c_array(ctype: str, name: str, values: np.ndarray, per_line: int = 12) -> str:
    flat = np.asarray(values).reshape(-1)
    fmt = c_float if ctype == "float" else (lambda x: str(int(x)))
    items = [fmt(x) for x in flat]
    lines = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{len(items)}] = {{\n    {body}\n}};\n"


def c_string(s: str) -> str:
    return json.dumps(s, ensure_ascii=True).replace("?", "\\?")  # a valid C literal; no trigraphs
