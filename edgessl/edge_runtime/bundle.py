"""Reading model bundles (``.essl``): the only contract between training and the device.

The format is specified in ``docs/bundle.md``; this module holds its constants and the reader, and the
exporter (``edgessl.export.bundle``) imports them, so there is one definition. A bundle is a zip file:

    manifest.json        schema version, metadata, sha256 and size of every other member
    encoder.int8.onnx    window [N, C, T] -> embedding [N, D], static QDQ int8
    encoder.fp32.onnx    (optional, --keep-fp32) the float reference
    head.onnx            embedding [N, D] -> logits [N, K], float
    adaptation.npz       float parameters for on-device adaptation (no pickles)

Opening a bundle verifies every member's checksum and refuses anything it cannot trust, saying which
member and why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import posixpath
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from edgessl.errors import ModelError
from edgessl.segmenter import SegmentParams

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
ENCODER_INT8 = "encoder.int8.onnx"
ENCODER_FP32 = "encoder.fp32.onnx"
HEAD = "head.onnx"
ADAPTATION = "adaptation.npz"
REQUIRED = (ENCODER_INT8, HEAD, ADAPTATION)
# manifest keys a reader cannot do without (the writer adds ``schema_version`` and ``members``)
REQUIRED_KEYS = ("labels", "window", "stride", "channels", "preprocessing", "sample_rate_hz", "input_mode")
MAX_MEMBER_BYTES = 64 * 1024 * 1024


class BundleError(ModelError, ValueError):
    """The bundle is unreadable, tampered with, truncated, or from a newer schema."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def safe_member_name(name: str) -> bool:
    """Relative, normalised, no ``..``, no absolute or drive paths, no backslashes."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or ":" in name:
        return False
    norm = posixpath.normpath(name)
    return norm == name and not norm.startswith("..") and "/../" not in f"/{norm}/"


@dataclasses.dataclass(frozen=True)
class Bundle:
    """An opened, verified bundle. ``members`` holds the raw bytes of every file."""

    path: str
    manifest: dict[str, Any]
    members: dict[str, bytes]

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    @property
    def rate_hz(self) -> float | None:
        return self.manifest["sample_rate_hz"]

    @property
    def window(self) -> int:
        return int(self.manifest["window"])

    @property
    def stride(self) -> int:
        return int(self.manifest["stride"])

    @property
    def channels(self) -> list[str]:
        return [c["name"] for c in self.manifest["channels"]]

    @property
    def units(self) -> list[str]:
        return [c["unit"] for c in self.manifest["channels"]]

    @property
    def segmentation(self) -> SegmentParams | None:
        """The ``segment`` mode parameters; None for a sliding-window bundle. Keys an older bundle lacks get
        the defaults."""
        seg = self.manifest.get("segmentation")
        return SegmentParams(**seg) if seg else None

    @property
    def checksum(self) -> str:
        """Identity of this bundle: the sha256 of its manifest (which lists every member's sha256)."""
        return sha256(self.members[MANIFEST])

    def adaptation(self) -> dict[str, np.ndarray]:
        with np.load(io.BytesIO(self.members[ADAPTATION]), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def open_bundle(path: str | Path) -> Bundle:
    """Open and verify a bundle; raises :class:`BundleError` naming the member and the reason."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such bundle")
    try:
        zf = zipfile.ZipFile(p)
    except zipfile.BadZipFile as e:
        raise BundleError(f"{p}: not a bundle (truncated or not a zip file: {e})") from e
    with zf:
        names = zf.namelist()
        for n in names:
            if not safe_member_name(n):
                raise BundleError(f"{p}: member {n!r} has an unsafe path (absolute or '..'); refusing the bundle")
        if len(set(names)) != len(names):
            raise BundleError(f"{p}: duplicate member names")
        if MANIFEST not in names:
            raise BundleError(f"{p}: no {MANIFEST}")
        members: dict[str, bytes] = {}
        for info in zf.infolist():
            if info.file_size > MAX_MEMBER_BYTES:
                raise BundleError(f"{p}: member {info.filename} is {info.file_size} bytes; the limit is {MAX_MEMBER_BYTES}")
            try:
                members[info.filename] = zf.read(info)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:  # zlib: a flipped byte in its data
                raise BundleError(f"{p}: member {info.filename} is damaged ({e})") from e
    try:
        manifest = json.loads(members[MANIFEST])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{p}: {MANIFEST} is not valid JSON ({e})") from e
    version = manifest.get("schema_version")
    if not isinstance(version, int):
        raise BundleError(f"{p}: {MANIFEST} has no integer schema_version")
    if version > SCHEMA_VERSION:
        raise BundleError(
            f"{p}: schema version {version} is newer than this runtime supports ({SCHEMA_VERSION}); upgrade edgessl"
        )
    listed = manifest.get("members", {})
    for name in REQUIRED:
        if name not in listed:
            raise BundleError(f"{p}: {MANIFEST} does not list required member {name}")
    for name, meta in listed.items():
        if name not in members:
            raise BundleError(f"{p}: member {name} is listed in the manifest but missing from the bundle")
        data = members[name]
        if len(data) != meta.get("bytes") or sha256(data) != meta.get("sha256"):
            raise BundleError(f"{p}: member {name} fails its checksum (tampered or corrupted)")
    extra = set(members) - set(listed) - {MANIFEST}
    if extra:
        raise BundleError(f"{p}: member(s) {sorted(extra)} are not listed in the manifest")
    for key in REQUIRED_KEYS:
        if key not in manifest:
            raise BundleError(f"{p}: {MANIFEST} lacks {key!r}")
    _check_consistency(p, manifest, members[ADAPTATION])
    return Bundle(str(p), manifest, members)


def _check_consistency(p: Path, manifest: dict[str, Any], adaptation: bytes) -> None:
    """The manifest must describe the model it ships: one label per output of the head (whose weights
    ``adaptation.npz`` holds), unique labels, named channels, a positive window and stride."""
    labels = manifest["labels"]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise BundleError(f"{p}: {MANIFEST} 'labels' must be a non-empty list of names; got {labels!r}")
    if len(set(labels)) != len(labels):
        raise BundleError(f"{p}: {MANIFEST} 'labels' repeats a name: {labels}")
    channels = manifest["channels"]
    if not isinstance(channels, list) or not channels or not all(isinstance(c, dict) and "name" in c for c in channels):
        raise BundleError(f"{p}: {MANIFEST} 'channels' must be a non-empty list of {{name, unit}}; got {channels!r}")
    for key in ("window", "stride"):
        if not isinstance(manifest[key], int) or isinstance(manifest[key], bool) or manifest[key] < 1:
            raise BundleError(f"{p}: {MANIFEST} {key!r} must be a whole number >= 1; got {manifest[key]!r}")
    try:
        with np.load(io.BytesIO(adaptation), allow_pickle=False) as z:
            shapes = {k: z[k].shape for k in ("head_weight", "prototypes") if k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, zlib.error) as e:
        raise BundleError(f"{p}: member {ADAPTATION} is not a readable .npz without pickles ({e})") from e
    head = shapes.get("head_weight")
    if head is not None:
        if len(head) != 2 or head[0] != len(labels):
            raise BundleError(f"{p}: {MANIFEST} lists {len(labels)} labels {labels} but the head has "
                              f"{head[0] if head else 0} outputs; the manifest does not match the model")  # fmt: skip
        dim = manifest.get("embedding_dim")
        if dim is not None and dim != head[1]:
            raise BundleError(f"{p}: {MANIFEST} embedding_dim {dim} but the head takes {head[1]} features")
    protos = shapes.get("prototypes")
    if protos is not None and (len(protos) != 2 or protos[0] != len(labels)):
        raise BundleError(f"{p}: {MANIFEST} lists {len(labels)} labels but {ADAPTATION} holds "
                          f"{protos[0] if protos else 0} class prototypes")  # fmt: skip
