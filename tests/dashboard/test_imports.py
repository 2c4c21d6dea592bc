"""The dashboard serves every command, so it depends on none of the four parts (nor on torch)."""

from __future__ import annotations

from tests.test_architecture import ROOT, imported_names, module_name

FORBIDDEN = ("edgessl.edge_runtime", "edgessl.firmware_bridge", "edgessl.trainer", "edgessl.export", "torch",
             "onnxruntime", "serial")  # fmt: skip


def test_the_dashboard_imports_only_the_standard_library_numpy_and_errors():
    files = sorted((ROOT / "dashboard").rglob("*.py"))
    assert len(files) >= 4
    bad = {f"{module_name(p)} imports {t}" for p in files for t in imported_names(p, module_name(p))
           if any(t == f or t.startswith(f + ".") for f in FORBIDDEN)}  # fmt: skip
    assert not bad, sorted(bad)
