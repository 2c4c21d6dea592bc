from collections.abc import Callable
from pathlib import Path

import pytest

from edgessl.edge_runtime.bundle import ADAPTATION, MANIFEST, open_bundle

SSL_HEAD = ("ssl_head_weight", "ssl_head_bias")


def rewrite_bundle(src: Path, dst: Path, drop_arrays=(), drop_keys=(), update=None) -> Path:
    """A copy of the bundle ``src`` with some adaptation arrays or manifest keys left out (an older export,
    or a model fine-tuned without some head), re-signed by the real writer."""
    from edgessl.export.bundle import npz_bytes, write_bundle

    b = open_bundle(src)
    members = {n: d for n, d in b.members.items() if n != MANIFEST}
    members[ADAPTATION] = npz_bytes({k: v for k, v in b.adaptation().items() if k not in drop_arrays})
    manifest = {k: v for k, v in b.manifest.items() if k not in {*drop_keys, "members", "schema_version", "edgessl_version"}}
    write_bundle(dst, {**manifest, **(update or {})}, members)
    return dst


@pytest.fixture
def rewrite(tmp_path) -> Callable[..., Path]:
    """``rewrite(src, name, drop_arrays=(), drop_keys=(), update=None)``: see :func:`rewrite_bundle`."""
    return lambda src, name, **kw: rewrite_bundle(src, tmp_path / name, **kw)


@pytest.fixture(scope="session")
def headless_bundle(ttt_bundle, tmp_path_factory) -> Path:
    """The TTT bundle without its self-supervised head: what a model fine-tuned with the defaults exports."""
    return rewrite_bundle(ttt_bundle, tmp_path_factory.mktemp("headless") / "model.essl", drop_arrays=SSL_HEAD)
