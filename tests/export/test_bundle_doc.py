"""docs/bundle.md is the format's one specification: its tables of members, manifest keys and adaptation
arrays must equal what export writes, and the runtime must read nothing that is not in them."""

import re
from pathlib import Path

import numpy as np
import pytest

from edgessl.edge_runtime.bundle import MANIFEST, REQUIRED, REQUIRED_KEYS, Bundle, open_bundle

pytest.importorskip("torch")  # the fixtures fine-tune and export

DOC = Path(__file__).resolve().parents[2] / "docs" / "bundle.md"


def documented(section: str) -> dict[str, bool]:
    """``{name: required}`` from the table under ``## section`` (rows ``| `name` | yes/no | ... |``)."""
    text = DOC.read_text()
    head = f"\n## {section}\n"
    assert head in text, f"docs/bundle.md has no section {section!r}"
    part = text.split(head, 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| (yes|no) \|", part, re.M)
    names = [n for n, _ in rows]
    assert len(names) == len(set(names)), f"a name is listed twice in {section}"
    return {n: r == "yes" for n, r in rows}


def test_the_tables_parse_and_name_what_a_reader_requires():
    members, keys, arrays = documented("Members"), documented("manifest.json"), documented("adaptation.npz")
    assert {n for n, r in members.items() if r} == {MANIFEST, *REQUIRED}
    # open_bundle refuses a manifest without these; schema_version and members are checked before them
    assert {k for k, r in keys.items() if r} == {*REQUIRED_KEYS, "schema_version", "members"}
    assert {"head_weight", "head_bias", "prototypes"} <= {a for a, r in arrays.items() if r}
    assert "input_moments_natural" in arrays and len(arrays) >= 12


def test_export_writes_exactly_what_is_documented(ttt_bundle, small_bundle):
    """The TTT bundle has every optional part (fp32 encoder, ssl head, input moments, segmentation) but the
    training sensor's gravity calibration (its gesture windows hold no still ones; tests/edge_runtime/adapt/
    test_gravity.py checks those arrays): equal sets. A bundle of a default fine-tune has every required part
    and nothing undocumented."""
    members, keys, arrays = documented("Members"), documented("manifest.json"), documented("adaptation.npz")
    full = open_bundle(ttt_bundle)
    assert set(full.members) == set(members)
    assert set(full.manifest) == set(keys)
    gravity = {a for a in arrays if a.startswith("input_moments_gravity_")}
    assert len(gravity) == 3 and set(full.adaptation()) == set(arrays) - gravity
    default = open_bundle(small_bundle)
    for have, doc in ((set(default.members), members), (set(default.manifest), keys), (set(default.adaptation()), arrays)):
        assert {n for n, r in doc.items() if r} <= have <= set(doc)


class Reads(dict):
    """A dict that remembers which keys were looked up."""

    def __init__(self, d, seen: set):
        super().__init__(d)
        self.seen = seen

    def __getitem__(self, k):
        self.seen.add(k)
        return super().__getitem__(k)

    def get(self, k, default=None):
        self.seen.add(k)
        return super().get(k, default)

    def __contains__(self, k):
        self.seen.add(k)
        return super().__contains__(k)


def test_the_runtime_reads_only_documented_keys(ttt_bundle, monkeypatch):
    import dataclasses

    from edgessl.edge_runtime import runtime as R
    from edgessl.edge_runtime.adapt import build_adapter
    from edgessl.synthetic import SyntheticConfig, make_stream

    keys_read: set = set()
    arrays_read: set = set()
    real_open, real_adaptation = R.open_bundle, Bundle.adaptation

    def recording_open(path):
        b = real_open(path)
        return dataclasses.replace(b, manifest=Reads(b.manifest, keys_read))

    monkeypatch.setattr(R, "open_bundle", recording_open)
    monkeypatch.setattr(Bundle, "adaptation", lambda self: Reads(real_adaptation(self), arrays_read))
    st = make_stream(SyntheticConfig(seed=0, reps=6), n_gestures=4)
    t = np.arange(st.signal.shape[1]) / 100.0
    # every adaptation method at once, a stream through segmentation, the metadata a CLI prints
    with R.GestureRuntime(ttt_bundle, adapter=build_adapter("input+t3a+tent+ttt"), precision="fp32") as rt:
        assert [p.name for p in rt.adapter.parts] == ["input", "t3a", "tent", "ttt"]
        rt.feed(st.signal.T, t)
        _ = rt.metadata, rt.bundle.segmentation
    assert {"labels", "window", "input_mode", "preprocessing"} <= keys_read  # the recording works
    assert {"head_weight", "ssl_head_weight", "input_moments_natural"} <= arrays_read
    assert keys_read <= set(documented("manifest.json")), keys_read - set(documented("manifest.json"))
    assert arrays_read <= set(documented("adaptation.npz")), arrays_read - set(documented("adaptation.npz"))
