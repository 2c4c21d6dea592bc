"""Atomically replaced files get the permissions a plain write would give them, not the temporary file's."""

import os
import stat

import pytest

from edgessl.atomic import atomic_write, save_npz_atomic


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_new_file_follows_the_umask_and_a_replaced_one_keeps_its_mode(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "new.json", lambda f: f.write(b"{}"))
        save_npz_atomic(tmp_path / "state.npz", x=[1, 2])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o640  # 0o666 less the umask, not 0o600
    assert stat.S_IMODE((tmp_path / "state.npz").stat().st_mode) == 0o640
    kept = tmp_path / "kept.json"
    kept.write_text("old")
    kept.chmod(0o604)
    atomic_write(kept, lambda f: f.write(b"new"))
    assert kept.read_text() == "new" and stat.S_IMODE(kept.stat().st_mode) == 0o604
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.json", "new.json", "state.npz"]  # no temporary left
