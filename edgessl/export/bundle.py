"""Writing model bundles. The format (and its reader) lives in ``edgessl.edge_runtime.bundle`` and
``docs/bundle.md``; this module only assembles members and the manifest."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgessl import __version__
from edgessl.edge_runtime.bundle import MANIFEST, SCHEMA_VERSION, safe_member_name, sha256

_FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # members get a fixed zip timestamp; "created" in the manifest is the real one


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
    return buf.getvalue()


def write_bundle(path: str | Path, manifest: dict[str, Any], members: dict[str, bytes]) -> dict[str, Any]:
    """Write ``members`` and a manifest listing their sha256 and size; returns the manifest written."""
    for name in members:
        if not safe_member_name(name) or name == MANIFEST:
            raise ValueError(f"invalid bundle member name {name!r}")
    manifest = dict(manifest)
    manifest["schema_version"] = SCHEMA_VERSION
    manifest["edgessl_version"] = __version__
    manifest["members"] = {n: {"sha256": sha256(b), "bytes": len(b)} for n, b in sorted(members.items())}
    data = json.dumps(manifest, indent=2, sort_keys=True).encode()
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, blob in [(MANIFEST, data), *sorted(members.items())]:
            zf.writestr(zipfile.ZipInfo(name, _FIXED_TIME), blob, compress_type=zipfile.ZIP_DEFLATED)
    tmp.replace(path)
    return manifest
