"""Runtime benchmark: per-window cost, end-to-end latency on a pseudo-terminal, memory and CPU of
``edgessl run``, and gesture spotting on continuous uWave streams. Writes benchmarks/results/runtime.json.

Protocol:
* model: the reference CNN of benchmarks/reference_model.py (UCR train split, windows of 63 samples), int8
  bundle, input mode ``segment`` (motion-energy segmentation, each segment stretched to 63 samples, z-scored);
* classify: ``GestureRuntime.classify`` on single test windows, one onnxruntime thread, 4000 runs after
  200 warm-up runs (includes input checks, the int8 encoder with its in-graph standardisation, the float
  head and the OOD score), interleaved in 10 blocks with onnxruntime's run alone as the in-run reference;
* end-to-end: the simulator writes binary frames of 10 samples at 100 Hz on a pty; the latency of an event
  is the time from the write of the frame whose samples completed the decision to the event;
* ``edgessl run`` as a separate process for 20 s on that device: peak RSS (VmHWM) and CPU share;
* with the live page (``--serve``): the end-to-end run above with a Dashboard fed as ``edgessl run --serve``
  feeds it and one page connected (headless Chromium when /usr/bin/chromium and chromedriver exist, else a
  Python client reading the event stream; on its own cores), alternated with the same run without it (3
  rounds of 15 s each); classify is the runtime's own per-decision time in those runs, ``every_block`` the
  time from each frame's write to the end of its processing (events or not); peak RSS of ``edgessl run
  --serve`` with one connected page against the plain process, measured in the same benchmark run;
* spotting: uWave templates of the UCR *test* split (never seen in training), one stream per user,
  gestures in recording order separated by 1.5–3.0 s of synthesized idle: the device at rest in the
  orientation of the gesture's first 5 samples (scaled to 1 g), small hand tremor (8–12 Hz, 0.004 g),
  white noise, quantised to the uWave count step (1/26 g on x and y, 1/25 g on z). An event matches a
  gesture when their intervals overlap with a tolerance of 0.25 s on each side; each gesture matches at
  most one event. Precision, recall, F1 of detection; accuracy of the labels of matched events; false
  events per minute of idle.

    python benchmarks/runtime.py --model DIR
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from edgessl.datasets import load_stream, load_windows
from edgessl.edge_runtime.bundle import open_bundle
from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime
from edgessl.preprocess import resample_to_length


def classify_cost(bundle: Path, X: np.ndarray, blocks: int = 10, per_block: int = 400) -> dict:
    """``classify`` per window, and onnxruntime's int8 run alone on the same bound buffers, interleaved in
    blocks (this VM's speed changes from minute to minute: the blocks show it, the ratio is robust to it)."""
    with GestureRuntime(bundle, threads=1) as rt:
        for i in range(200):
            rt.classify(X[i % len(X)])
        ts, ref, med_blocks = [], [], []
        for b in range(blocks):
            t_c, t_r = np.empty(per_block), np.empty(per_block)
            for i in range(per_block):
                x = X[(b * per_block + i) % len(X)]
                t0 = time.perf_counter()
                rt.classify(x)
                t_c[i] = time.perf_counter() - t0
                np.copyto(rt._in_buf, x[None])
                t0 = time.perf_counter()
                rt._run_bound(*rt._run_args)
                t_r[i] = time.perf_counter() - t0
            ts.append(t_c)
            ref.append(t_r)
            med_blocks.append([float(np.median(t_c) * 1e3), float(np.median(t_r) * 1e3)])
        ts, ref = np.concatenate(ts), np.concatenate(ref)
    return {"median_ms": float(np.median(ts) * 1e3), "p99_ms": float(np.percentile(ts, 99) * 1e3), "runs": len(ts),
            "onnxruntime_int8_alone_median_ms": float(np.median(ref) * 1e3),
            "python_overhead_median_ms": float((np.median(ts) - np.median(ref)) * 1e3),
            "block_medians_ms_classify_vs_ort": med_blocks}  # fmt: skip


def make_spotting_streams(raw, rng: np.random.Generator, max_per_user: int | None = None):
    """One continuous stream per user from UCR-test templates with synthesized idle between them."""
    split, subj = raw.recording_groups["ucr_split"], raw.recording_groups["subject"]
    streams = []
    for u in np.unique(subj):
        ks = np.flatnonzero((split == 1) & (subj == u) & (np.diff(raw.offsets) >= 20))
        if max_per_user:
            ks = ks[:max_per_user]
        parts, truth, pos = [], [], 0
        for k in ks:
            g = raw.recording(k)
            n_idle = int(rng.uniform(1.5, 3.0) * 100)
            rest = g[:, :5].mean(1)
            rest = rest / max(np.linalg.norm(rest), 1e-6)
            t = np.arange(n_idle) / 100
            tremor = 0.004 * np.sin(2 * np.pi * rng.uniform(8, 12) * t + rng.uniform(0, 6.3, size=(3, 1)))
            idle = rest[:, None] + tremor + rng.normal(0, 0.01, size=(3, n_idle))
            idle = np.round(idle * np.array([[26], [26], [25]])) / np.array([[26], [26], [25]])
            parts += [idle.astype(np.float32), g]
            truth.append((pos + n_idle, pos + n_idle + g.shape[1], int(raw.recording_labels[k])))
            pos += n_idle + g.shape[1]
        tail = np.repeat(parts[-1][:, -1:], 200, axis=1)
        parts.append(tail)
        streams.append((np.concatenate(parts, axis=1), np.array(truth), int(u)))
    return streams


def spotting(bundle: Path, streams, tol: float = 0.25) -> dict:
    tp = fp = fn = correct = 0
    idle_s = 0.0
    per_user = []
    for sig, truth, u in streams:
        t = np.arange(sig.shape[1]) / 100.0
        with GestureRuntime(bundle, decision=DecisionConfig(confidence=0.0, ood_threshold=float("inf"), roughness_threshold=float("inf"))) as rt:
            events = []
            for i in range(0, sig.shape[1], 10):
                events += rt.feed(sig[:, i : i + 10].T, t[i : i + 10])
        used = set()
        u_tp = u_correct = 0
        for s, e, lab in truth:
            hit = next((j for j, ev in enumerate(events) if j not in used and ev.window_start < e / 100 + tol
                        and ev.window_end > s / 100 - tol), None)  # fmt: skip
            if hit is None:
                fn += 1
                continue
            used.add(hit)
            u_tp += 1
            u_correct += rt.labels.index(events[hit].label) == lab
        tp += u_tp
        correct += u_correct
        fp += len(events) - len(used)
        gest = sum(e - s for s, e, _ in truth)
        idle_s += (sig.shape[1] - gest) / 100
        per_user.append({"user": u, "gestures": len(truth), "events": len(events), "matched": u_tp,
                         "label_accuracy_of_matched": u_correct / max(u_tp, 1)})  # fmt: skip
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {"gestures": tp + fn, "events": tp + fp, "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / max(precision + recall, 1e-12), "label_accuracy_of_matched": correct / max(tp, 1),
            "end_to_end_accuracy": correct / max(tp + fn, 1), "false_events_per_idle_minute": fp / (idle_s / 60),
            "idle_minutes": idle_s / 60, "tolerance_s": tol, "per_user": per_user}  # fmt: skip


class Page:
    """One connected page of a dashboard: headless Chromium (Selenium, Debian's chromedriver) if installed,
    else a Python client reading ``/events``. ``kind`` says which."""

    CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

    def __init__(self, url: str, cores: set[int] | None = None):
        self.url, self._driver, self._stop = url, None, threading.Event()
        self.tmp = tempfile.TemporaryDirectory()
        if os.path.exists(self.CHROMIUM) and os.path.exists(self.CHROMEDRIVER):
            mine = os.sched_getaffinity(0)
            if cores:  # the browser's processes inherit the affinity of the process that starts them
                os.sched_setaffinity(0, cores)
            from selenium import webdriver
            from selenium.webdriver.chrome.options import Options
            from selenium.webdriver.chrome.service import Service

            o = Options()
            o.binary_location = self.CHROMIUM
            for f in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update", "--disable-sync",
                      "--disable-dev-shm-usage", "--window-size=1200,800", f"--user-data-dir={self.tmp.name}"]:  # fmt: skip
                o.add_argument(f)
            try:
                self._driver = webdriver.Chrome(service=Service(executable_path=self.CHROMEDRIVER), options=o)
            finally:
                os.sched_setaffinity(0, mine)
            self._driver.get(url)
            time.sleep(3.0)  # its start-up burst is over before anything is measured
            self.kind = "headless chromium " + self._driver.capabilities.get("browserVersion", "")
            if cores:
                self.kind += f" on cores {sorted(cores)}"
        else:
            self.kind = "python SSE client"
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        import urllib.request

        with urllib.request.urlopen(self.url + "events", timeout=30) as r:
            while not self._stop.is_set() and r.readline():
                pass

    def close(self) -> None:
        self._stop.set()
        if self._driver is not None:
            self._driver.quit()
        self.tmp.cleanup()


def _wait_for_page(hub, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while hub.clients == 0:
        if time.monotonic() > end:
            raise RuntimeError("the page did not connect to the dashboard")
        time.sleep(0.05)


def _pct(v: list[float]) -> dict:
    a = np.array(v)
    return {"n": len(a), "p50_ms": float(np.median(a)) if len(a) else None,
            "p99_ms": float(np.percentile(a, 99)) if len(a) else None, "max_ms": float(a.max()) if len(a) else None}  # fmt: skip


def with_page(bundle: Path, raw, rounds: int = 3, seconds: float = 15.0) -> dict:
    """End-to-end and classify latency without and with a connected page, alternated in the same run. On a
    machine of two cores or more the benchmark (the runtime) stays on its first core in both conditions and
    the browser gets the others, as when the page is watched from a laptop: on the same core the browser
    would measure its own rendering, not the server's cost."""
    got: dict[str, dict[str, list[float]]] = {c: {"e2e": [], "classify": [], "block": []}
                                              for c in ("without_page", "with_page")}  # fmt: skip
    kind = None
    mine = os.sched_getaffinity(0)
    cores = sorted(mine)
    runtime_cores, page_cores = ({cores[0]}, set(cores[1:])) if len(cores) > 1 else (mine, None)
    os.sched_setaffinity(0, runtime_cores)
    try:
        results = []
        for _ in range(rounds):
            for cond in got:
                results.append((cond, end_to_end(bundle, raw, seconds, serve=cond == "with_page", page_cores=page_cores)))
    finally:
        os.sched_setaffinity(0, mine)
    for cond, r in results:
        got[cond]["e2e"] += r["latencies_ms"]
        got[cond]["classify"] += r["classify_ms"]
        got[cond]["block"] += r["block_ms"]
        kind = r.get("page") or kind
    out: dict = {"page": kind, "rounds": rounds, "seconds_each": seconds}
    for cond, v in got.items():
        out[cond] = {"end_to_end": _pct(v["e2e"]), "classify": _pct(v["classify"]), "every_block": _pct(v["block"])}
    for what in ("end_to_end", "classify", "every_block"):
        a, b = out["without_page"][what], out["with_page"][what]
        out[f"{what}_ratio_with_to_without"] = {k: (b[k] / a[k] if a[k] and b[k] else None) for k in ("p50_ms", "p99_ms")}
    return out


def end_to_end(bundle: Path, raw, seconds: float = 25.0, serve: bool = False, page_cores: set[int] | None = None) -> dict:
    """Latency from the frame write on the pty to the event, with the simulator in this process. With
    ``serve``, a Dashboard is fed as ``edgessl run --serve`` feeds it (samples before the runtime, the event
    after it, the status each turn) and one page is connected."""
    from edgessl.dashboard.server import Dashboard
    from edgessl.edge_runtime.dashboard_feed import Feed
    from edgessl.firmware_bridge.simulator import SimulatedImu
    from edgessl.firmware_bridge.transport import ImuStream, SampleBlock

    rng = np.random.default_rng(0)
    sig, _, _ = make_spotting_streams(raw, rng, max_per_user=15)[0]
    write_times: dict[int, float] = {}
    lock = threading.Lock()

    class TimedSim(SimulatedImu):
        def _frame(self, mtype, count, payload, t_us):  # record when each SAMPLES frame goes out
            seq = self.seq
            wire = super()._frame(mtype, count, payload, t_us)
            if count:
                with lock:
                    write_times[seq] = time.monotonic()
            return wire

    lat, per_block, blocks, page = [], [], 0, None
    with Dashboard("127.0.0.1", 0) if serve else contextlib.nullcontext() as dash:
        if dash is not None:  # connected before the board starts: its start-up is not in the figures
            page = Page(dash.url, page_cores)
            _wait_for_page(dash.hub)
        with tempfile.TemporaryDirectory() as td, \
                TimedSim(sig, 100.0, ["acc_x", "acc_y", "acc_z"], link=str(Path(td) / "imu")) as sim, \
                GestureRuntime(bundle, decision=DecisionConfig(confidence=0.0, ood_threshold=float("inf"), roughness_threshold=float("inf"))) as rt, \
                ImuStream(sim.path) as dev:  # fmt: skip
            feed = Feed(dash, rt, bundle.name) if dash is not None else None
            if feed is not None:
                feed.stream(dev)
            try:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    for ev in dev.read(0.01):
                        if not isinstance(ev, SampleBlock):
                            continue
                        blocks += 1
                        if feed is not None:
                            feed.samples(ev.t_device, ev.values)
                        evs = rt.feed(ev.values, ev.t_device)
                        if feed is not None:
                            for g in evs:
                                feed.event(g)
                        now = time.monotonic()
                        with lock:
                            w = write_times.get(ev.seq)
                        if w is not None:
                            per_block.append((now - w) * 1e3)
                            if evs:
                                lat.append((now - w) * 1e3)
                    if feed is not None:
                        feed.tick(dev)
                served = dash.hub.counters["messages"] if dash is not None else 0
            finally:
                if page is not None:
                    page.close()
            classify = list(rt.latencies_ms)
    a = np.array(lat)
    return {"events": len(a), "median_ms": float(np.median(a)) if len(a) else None,
            "p99_ms": float(np.percentile(a, 99)) if len(a) else None, "max_ms": float(a.max()) if len(a) else None,
            "blocks": blocks, "block_p99_ms": float(np.percentile(per_block, 99)) if per_block else None,
            "latencies_ms": lat, "classify_ms": classify, "block_ms": per_block,
            **({"page": page.kind, "messages_sent": served} if page is not None else {})}  # fmt: skip


def run_process(bundle: Path, raw, seconds: float = 20.0, serve: bool = False) -> dict:
    """Peak RSS and CPU share of a separate `edgessl run` process at 100 Hz (with ``serve``: ``--serve`` and
    one page connected)."""
    from edgessl.firmware_bridge.simulator import SimulatedImu

    sig, _, _ = make_spotting_streams(raw, np.random.default_rng(1), max_per_user=20)[0]
    page = None
    with tempfile.TemporaryDirectory() as td, SimulatedImu(sig, 100.0, ["acc_x", "acc_y", "acc_z"], link=str(Path(td) / "imu")) as sim:
        p = subprocess.Popen([sys.executable, "-m", "edgessl", "run", str(bundle), "--port", sim.path, "--json",
                              "--seconds", str(seconds), "--confidence", "0",
                              *(["--serve", "127.0.0.1:0"] if serve else [])], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
        first = ""
        if serve:
            assert p.stdout is not None
            first = p.stdout.readline()
            page = Page(json.loads(first)["dashboard"]["url"])
        peak, t0 = 0, time.monotonic()
        cpu = 0.0
        while p.poll() is None:
            try:
                status = Path(f"/proc/{p.pid}/status").read_text()
                peak = max(peak, int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1]))
                st = Path(f"/proc/{p.pid}/stat").read_text().split()
                cpu = (int(st[13]) + int(st[14])) / os.sysconf("SC_CLK_TCK")
            except (OSError, StopIteration):
                pass
            time.sleep(0.2)
        wall = time.monotonic() - t0
        out, err = p.communicate()
        if page is not None:
            page.close()
    n_events = len([x for x in (first + out).splitlines() if x.startswith('{"t"')])
    mods = subprocess.run([sys.executable, "-c", "import sys; sys.modules['torch']=None; import edgessl.edge_runtime.cli, "
                           "edgessl.edge_runtime.runtime, edgessl.firmware_bridge.transport; "
                           "print('scipy.signal' in sys.modules, 'torch' in [m for m in sys.modules if sys.modules[m]])"],
                          capture_output=True, text=True).stdout.split()  # fmt: skip
    return {**({"page": page.kind} if page is not None else {}),
            "peak_rss_mb": peak / 1024, "cpu_seconds": cpu, "wall_seconds": wall, "cpu_share": cpu / wall,
            "events": n_events, "returncode": p.returncode, "stderr_tail": err[-300:],
            "scipy_signal_imported": mods[0] == "True" if mods else None}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="a finetune folder trained on uwave_gesture_ucr "
                    "(default: train the reference model of benchmarks/reference_model.py)")
    ap.add_argument("--compare", nargs="*", default=[], help="more finetune folders: spotting and classify only")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "runtime.json"))
    a = ap.parse_args()
    from edgessl.export.pipeline import ExportConfig, export_bundle

    raw = load_stream("npz:uwave_raw.npz")
    X = load_windows("npz:uwave_gesture_ucr.npz").X_test[:256]
    with tempfile.TemporaryDirectory() as td:
        if a.model is None:
            from reference_model import train_reference

            a.model = str(train_reference(Path(td) / "reference"))
        bundle = Path(td) / "ucr.essl"
        export_bundle(a.model, bundle, ExportConfig(input_mode="segment"), progress=False)
        X = resample_to_length(X, open_bundle(bundle).window).astype(np.float32)  # timing windows in the model's length
        res = {"protocol": __doc__.split("\n\n")[1]}
        import torch

        info = torch.load(Path(a.model) / "model.pt", weights_only=True)  # read now: a trained reference lives in td
        model_info = {"dir": a.model, "data": info["config"]["data"], "fit": info["config"]["fit"],
                      "source_metrics": info["metrics"]}  # fmt: skip
        res["classify"] = classify_cost(bundle, X)
        print("classify", res["classify"], flush=True)
        e2e = end_to_end(bundle, raw)
        res["end_to_end"] = {k: v for k, v in e2e.items() if k not in ("latencies_ms", "classify_ms", "block_ms")}
        print("end_to_end", res["end_to_end"], flush=True)
        res["edgessl_run_process"] = run_process(bundle, raw)
        print("process", res["edgessl_run_process"], flush=True)
        page = with_page(bundle, raw)
        served = run_process(bundle, raw, serve=True)
        page["peak_rss_mb"] = {"without_page": res["edgessl_run_process"]["peak_rss_mb"],
                               "with_serve_and_page": served["peak_rss_mb"],
                               "increase_mb": served["peak_rss_mb"] - res["edgessl_run_process"]["peak_rss_mb"],
                               "cpu_share_with": served["cpu_share"], "events_with": served["events"],
                               "page": served.get("page"), "returncode_with": served["returncode"]}  # fmt: skip
        res["dashboard"] = page
        print("dashboard", page, flush=True)
        res["spotting"] = spotting(bundle, make_spotting_streams(raw, np.random.default_rng(0)))
        print("spotting", {k: v for k, v in res["spotting"].items() if k != "per_user"}, flush=True)
        res["other_models"] = []
        streams = make_spotting_streams(raw, np.random.default_rng(0))
        for i, other in enumerate(a.compare):
            ob = Path(td) / f"other{i}.essl"
            export_bundle(other, ob, ExportConfig(min_agreement=0.97, input_mode="segment"), progress=False)
            sp = spotting(ob, streams)
            info = __import__("torch").load(Path(other) / "model.pt", weights_only=True)
            Xo = resample_to_length(load_windows("npz:uwave_gesture_ucr.npz").X_test[:256], open_bundle(ob).window)
            res["other_models"].append({"dir": other, "window": open_bundle(ob).window, "data": info["config"]["data"],
                                        "epochs": info["config"]["fit"]["epochs"],
                                        "ucr_test_accuracy_arrays": info["metrics"]["test_accuracy"],
                                        "classify": classify_cost(ob, Xo.astype(np.float32)),
                                        "spotting_f1": sp["f1"], "stream_label_accuracy": sp["label_accuracy_of_matched"]})  # fmt: skip
            print("other", res["other_models"][-1], flush=True)
    res["targets"] = {"classify_median_le_0.1ms": res["classify"]["median_ms"] <= 0.1,
                      "end_to_end_p99_le_5ms": (res["end_to_end"]["p99_ms"] or 1e9) <= 5,
                      "peak_rss_le_80MB": res["edgessl_run_process"]["peak_rss_mb"] <= 80,
                      "spotting_f1_ge_0.95": res["spotting"]["f1"] >= 0.95,
                      "with_page_end_to_end_p99_le_5ms": (page["with_page"]["end_to_end"]["p99_ms"] or 1e9) <= 5,
                      "with_page_peak_rss_increase_le_15MB": page["peak_rss_mb"]["increase_mb"] <= 15}  # fmt: skip
    res["model"] = model_info
    res["machine"] = {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}
    if Path(a.out).exists():  # the hand-written notes on earlier figures stay
        res["notes"] = json.loads(Path(a.out).read_text()).get("notes", [])
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res["targets"]))


if __name__ == "__main__":
    main()
