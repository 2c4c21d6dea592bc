import json


def test_demo_quick_runs_and_reports(tmp_path):
    from edgessl.cli import main

    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert "data" in report["stages"] and report["stages"]["preprocess"]["std"] > 0.99
