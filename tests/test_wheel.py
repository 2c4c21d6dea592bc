"""The device install is real: build the wheel, install it into a fresh virtual environment without torch (what
a Raspberry Pi gets), and run ``edgessl run`` there against ``edgessl simulate`` (docs/deploy.md)."""

from __future__ import annotations

import email.parser
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

import edgessl

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "edgessl"
FIRMWARE_SUFFIXES = {".c", ".h", ".ino", ".txt", ""}  # sources, vectors and the Makefile, not build products


def _check(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _build_wheel(tmp: Path) -> Path:
    # build from a copy: an in-tree build leaves build/lib behind, and a module deleted since would ship from it
    src = tmp / "edgessl-src"
    src.mkdir()
    shutil.copy2(REPO / "pyproject.toml", src)
    shutil.copy2(REPO / "README.md", src)
    shutil.copytree(PACKAGE, src / "edgessl", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.o", "*.so"))
    dist = tmp / "dist"
    _check([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)], timeout=300)
    (wheel,) = dist.glob("edgessl-*.whl")
    return wheel


def _check_wheel_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        dist_info = f"edgessl-{edgessl.__version__}.dist-info"
        meta = email.parser.Parser().parsestr(z.read(f"{dist_info}/METADATA").decode())
        entry_points = z.read(f"{dist_info}/entry_points.txt").decode()
    py = {p.relative_to(REPO).as_posix() for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    assert py - names == set(), "modules missing from the wheel (a subpackage without __init__.py?)"
    fw = PACKAGE / "firmware_bridge" / "firmware"
    firmware = {p.relative_to(REPO).as_posix() for p in fw.rglob("*") if p.is_file() and p.suffix in FIRMWARE_SUFFIXES}
    assert any(n.endswith(".c") for n in firmware) and firmware - names == set(), "firmware sources missing"
    page = {p.relative_to(REPO).as_posix() for p in (PACKAGE / "dashboard" / "static").iterdir() if p.is_file()}
    assert {"edgessl/dashboard/static/index.html", "edgessl/dashboard/static/app.js"} <= page
    assert page - names == set(), "the dashboard's page (HTML/JS/CSS) is missing from the wheel"
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    assert "edgessl = edgessl.cli:main" in entry_points
    requires = meta.get_all("Requires-Dist") or []
    base = [r for r in requires if "extra ==" not in r]
    assert {r.split(">")[0].split("=")[0].strip() for r in base} >= {"numpy", "onnxruntime", "pyserial"}
    assert not any(r.startswith("torch") for r in base), "torch must stay in the train extra"
    assert any(r.startswith("torch") and 'extra == "train"' in r for r in requires)


def _torch_free_venv(tmp: Path, wheel: Path) -> tuple[Path, dict[str, str]]:
    venv = tmp / "pi-venv"
    _check([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    py = venv / "bin" / "python"
    # the main environment's pip installs into the new interpreter: the wheel and its base deps from the index
    _check([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", str(wheel)], timeout=600)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return venv, env


@pytest.mark.slow
def test_wheel_installs_torch_free_and_runs_against_the_simulator(small_bundle, tmp_path):
    t0 = time.monotonic()
    wheel = _build_wheel(tmp_path)
    _check_wheel_contents(wheel)
    venv, env = _torch_free_venv(tmp_path, wheel)
    work = tmp_path / "work"  # cwd away from the repo, so nothing imports the source tree
    work.mkdir()
    py, exe = str(venv / "bin" / "python"), str(venv / "bin" / "edgessl")
    run = {"cwd": work, "env": env}

    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    r = subprocess.run([py, "-c", "import torch"], capture_output=True, text=True, timeout=60, **run)
    assert r.returncode != 0 and "No module named 'torch'" in r.stderr, "torch is visible in the device venv"
    r = _check([py, "-c", "import edgessl; print(edgessl.__file__)"], timeout=60, **run)
    assert Path(r.stdout.strip()).is_relative_to(venv), r.stdout  # the installed copy, not the source tree
    # the live page is served from the installed package's files (package data, not the source tree)
    r = _check([py, "-c", "import urllib.request as u; from edgessl.dashboard.server import Dashboard\n"
                "with Dashboard() as d: print(*(len(u.urlopen(d.url + p).read()) for p in ('', 'static/app.js')))"],
               timeout=60, **run)  # fmt: skip
    assert all(int(n) > 500 for n in r.stdout.split()), r.stdout

    # a training command says what to install, in one line
    r = subprocess.run([exe, "finetune", "--out", str(work / "ft")], capture_output=True, text=True, timeout=60, **run)
    assert r.returncode == 6 and r.stderr.strip() == (
        "edgessl finetune: error: needs the training extra (torch), which a device install leaves out: on the training "
        "box, from a checkout, pip install torch==2.13.0 && pip install '.[train]'"), r.stderr

    link = work / "imu"
    sim = subprocess.Popen([exe, "simulate", "--speed", "4", "--seconds", "60", "--link", str(link)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **run,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not link.exists():
            assert sim.poll() is None, sim.communicate(timeout=5)
            assert time.monotonic() < deadline, "the simulator did not create its link within 30 s"
            time.sleep(0.05)
        r = _check([exe, "run", str(small_bundle), "--port", str(link), "--json", "--seconds", "5",
                    "--confidence", "0.3", "--record", str(work / "rec.csv")], timeout=90, **run)  # fmt: skip
    finally:
        sim.send_signal(signal.SIGINT)  # what Ctrl-C sends: the simulator stops and exits 0
        try:
            sim_out, sim_err = sim.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim_out, sim_err = sim.communicate(timeout=15)
    assert sim.returncode == 0 and sim_out.splitlines()[0] == str(link), sim_err
    assert not link.exists()  # the simulator removed the link it made
    assert "Traceback" not in r.stderr, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    events = [x for x in lines if "label" in x]  # --json also prints device-state, gap and stats lines
    assert lines[-1]["stats"]["device"]["delivered_samples"] > 300, lines[-1]
    assert len(events) >= 2, r.stdout  # 5 s at 4x speed play ~20 s of stream: about six gestures
    labels = set(json.loads(zipfile.ZipFile(small_bundle).read("manifest.json"))["labels"])
    assert all(e["label"] in labels | {"unknown"} and 0 <= e["confidence"] <= 1 for e in events)
    rows = (work / "rec.csv").read_text().splitlines()
    assert rows[0].startswith("time_s,") and len(rows) > 300  # ~5 s at 100 Hz reached the runtime
    print(f"wheel test: {time.monotonic() - t0:.1f} s (build, install, run)")
