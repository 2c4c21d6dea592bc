import json

import pytest


@pytest.mark.slow
def test_demo_quick_runs_end_to_end_and_reports(tmp_path):
    from edgessl.cli import main

    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    s = report["stages"]
    assert set(s) == {"data", "pretrain", "finetune", "export", "stream", "runtime"}
    assert s["stream"]["samples_received"] > 1000 and s["runtime"]["events"] > 0
    # 8 gestures, chance 0.125: held-out users (0.58 when written), the live stream of a rotated new user (0.70)
    assert s["finetune"]["test_accuracy"] >= 0.35 and s["finetune"]["knn_test_accuracy"] >= 0.35, s["finetune"]
    # `edgessl finetune`'s recipe for a label budget (what a user with 5 labels per class gets), not one of its own
    from edgessl.trainer.recipes import AUTO, resolve

    assert s["finetune"]["recipe"] == resolve(AUTO, label_budget=True).name, s["finetune"]
    assert s["runtime"]["rotate_degrees"] == resolve(AUTO, label_budget=True).settings["rotate_degrees"]
    # `edgessl export`'s own gate, not a lowered one
    assert s["export"]["top1_agreement"] >= 0.99 and s["export"]["max_logit_difference"] < 0.5, s["export"]
    assert abs(s["export"]["accuracy_int8"] - s["export"]["accuracy_fp32"]) <= 0.05, s["export"]
    assert s["runtime"]["accuracy_adapted"] >= 0.35 and s["runtime"]["accuracy_unadapted"] >= 0.35, s["runtime"]
    # `edgessl run`'s decisions: the gestures answered `unknown` are counted by reason and shown
    for k in ("unknown_adapted", "unknown_unadapted"):
        u = s["runtime"][k]
        assert u["total"] == u["low_confidence"] + u["out_of_distribution"] <= s["stream"]["gestures"], u
    assert 0.0 < s["export"]["confidence_threshold"] <= 0.5 and s["export"]["ood_threshold"] > 0, s["export"]
    md = (tmp_path / "report.md").read_text()
    un, ad = (s["runtime"][k]["total"] for k in ("unknown_unadapted", "unknown_adapted"))
    assert f"answered `unknown`: {un} (" in md and f"out of distribution) unadapted, {ad} (" in md
    # the report shows the figures the stages printed
    assert f"{s['finetune']['test_accuracy']:.3f}" in md and f"{s['runtime']['accuracy_adapted']:.3f}" in md
    # what adaptation changed, gesture by gesture: consistent with the two accuracies
    rt = s["runtime"]
    net = (rt["adaptation_won"] - rt["adaptation_lost"]) / rt["session_gestures"]
    assert net == pytest.approx(rt["accuracy_adapted"] - rt["accuracy_unadapted"], abs=1e-9), rt
    assert f"turned {rt['adaptation_won']} of the {rt['session_gestures']} gestures right and {rt['adaptation_lost']} wrong" in md
    for png in ("curves.png", "confusion.png", "embedding.png", "stream_accuracy.png", "latency.png"):
        assert (tmp_path / png).stat().st_size > 5000, png
    assert report["seconds"] > 0  # recorded; how long it takes is not a unit test's business (210 s under load)


def test_the_demo_pretrains_with_pretrains_default_method():
    """The demo shows what a user gets: `edgessl pretrain`'s default objective, not one of its own."""
    pytest.importorskip("torch")
    from edgessl.demo import DemoConfig
    from edgessl.trainer.methods import MethodConfig

    assert DemoConfig().method == MethodConfig().name
