import json


def test_demo_quick_runs_end_to_end_and_reports(tmp_path):
    from edgessl.cli import main

    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    s = report["stages"]
    assert set(s) == {"data", "pretrain", "finetune", "export", "stream", "runtime"}
    assert s["stream"]["samples_received"] > 1000 and s["runtime"]["events"] > 0
    assert 0 <= s["runtime"]["accuracy_adapted"] <= 1 and 0 <= s["runtime"]["accuracy_unadapted"] <= 1
    md = (tmp_path / "report.md").read_text()
    # the report shows the figures the stages printed
    assert f"{s['finetune']['test_accuracy']:.3f}" in md and f"{s['runtime']['accuracy_adapted']:.3f}" in md
    for png in ("curves.png", "confusion.png", "embedding.png", "stream_accuracy.png", "latency.png"):
        assert (tmp_path / png).stat().st_size > 5000, png
    assert report["seconds"] < 120
