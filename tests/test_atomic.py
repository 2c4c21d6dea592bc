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


def test_a_folder_that_refuses_writes_is_found_before_the_command_works(tmp_path, monkeypatch, small_bundle, capsys):
    """A walkthrough's state folder could not be written in (immutable; root passes any permission check):
    enroll recorded every take, then lost them at the save, naming its temporary file; run warned once and saved
    nothing. Both now refuse at the start, naming the flag."""
    import tempfile

    from edgessl.atomic import write_problem
    from edgessl.cli import main
    from edgessl.errors import ExitCode

    assert write_problem(tmp_path / "s.npz") is None and not list(tmp_path.iterdir())  # the try leaves nothing
    assert write_problem(tmp_path / "none" / "s.npz") == f"no folder {tmp_path / 'none'}"

    def refuse(*a, **k):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert write_problem(tmp_path / "s.npz") == f"cannot write in {tmp_path} (Operation not permitted)"
    port = str(tmp_path / "no-port")
    for argv, flag in ((["enroll", str(small_bundle), "--port", port, "--calibrate", "--state", str(tmp_path / "a.npz")],
                        "--state"),
                       (["run", str(small_bundle), "--port", port, "--wait", "0", "--adapt-state",
                         str(tmp_path / "ad.npz")], "--adapt-state")):  # fmt: skip
        assert main(argv) == ExitCode.USAGE
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{flag} {tmp_path}" in err and "cannot write in" in err, err
