"""Config layers for the CLI (defaults < recipe < ``--config`` file < explicit flags) and old saved configs.

A layer is a plain dict nested like the config's ``to_dict()``: top-level fields, and one table per section
(``data``, ``encoder``, ``method``, ``fit``). Nothing here imports torch, so building the CLI stays light.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a ``--config`` file: TOML (``.toml``) or JSON (anything else), one table per section."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such config file")
    text = p.read_text()
    toml = p.suffix.lower() == ".toml"
    try:
        if toml:
            import tomllib  # Python >= 3.11; on 3.10 write the file as JSON
        d = tomllib.loads(text) if toml else json.loads(text)
    except ImportError:
        raise ValueError(f"{p}: TOML config files need Python >= 3.11; write it as JSON") from None
    except ValueError as e:  # tomllib.TOMLDecodeError and json.JSONDecodeError are ValueErrors
        raise ValueError(f"{p}: not valid {'TOML' if toml else 'JSON'}: {e}") from None
    if not isinstance(d, dict):
        raise ValueError(f"{p}: expected a table of settings at the top, got {type(d).__name__}")
    return d


def check_keys(layer: Mapping[str, Any], template: Mapping[str, Any], sections: tuple[str, ...], source: str,
               prefix: str = "") -> None:  # fmt: skip
    """Refuse keys of ``layer`` that ``template`` (a default config's ``to_dict()``) does not have.

    Raises:
        ValueError: naming the first unknown key (dotted, e.g. ``fit.lrr``), the ``source`` it came from and
            the keys that were expected there.
    """
    for k, v in layer.items():
        if k not in template or k == "kind":
            known = ", ".join(sorted(t for t in template if t != "kind"))
            raise ValueError(f"{source}: unknown key '{prefix}{k}' (expected one of: {known})")
        if k in sections:
            if not isinstance(v, Mapping):
                raise ValueError(f"{source}: '{prefix}{k}' must be a table of settings, got {v!r}")
            check_keys(v, template[k], (), source, f"{prefix}{k}.")


def merge(base: Mapping[str, Any], over: Mapping[str, Any], sections: tuple[str, ...]) -> dict[str, Any]:
    """``base`` with the settings of ``over`` laid on top; sections merge key by key, other values replace."""
    out = dict(base)
    for k, v in over.items():
        out[k] = {**base[k], **v} if k in sections and isinstance(base.get(k), Mapping) else v
    return out


def drop_retired(d: Mapping[str, Any], retired: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """``d`` without the keys of options that were removed, which old saved configs still hold.

    A removed key is ignored only where it holds its old "off" value (``retired[key]``), so a model loads as it
    was trained; one that was trained with the option on is refused, since it can no longer be rebuilt.
    """
    out = {}
    for k, v in d.items():
        if k not in retired:
            out[k] = v
            continue
        off = retired[k]
        if (list(v) if isinstance(v, tuple) else v) != (list(off) if isinstance(off, tuple) else off):
            raise ValueError(f"{owner}: '{k}' = {v!r} was trained with an option this version removed (it loads "
                             f"only at its old off value {off!r}); use the edgessl release that wrote it")  # fmt: skip
    return out
