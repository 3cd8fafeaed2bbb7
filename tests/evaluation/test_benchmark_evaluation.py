"""tools/benchmark_evaluation.py on a tiny size: every figure, and the same metrics as the
references (PQ: with the evaluator reading the PNGs and with the test loader's decoded ground
truth)."""

from tests.scripts import load_script


def test_benchmark_reports_times_and_identical_metrics(capsys):
    res = load_script("tools/benchmark_evaluation.py").main(
        ["--images", "3", "--size", "64", "--classes", "10", "--pan-size", "48", "64",
         "--segments", "8", "--categories", "10", "--rounds", "1", "--memory-images", "30"]
    )  # fmt: skip
    sem, pan, mem = res["semantic"], res["panoptic"], res["memory"]
    for key in ("d2_ms", "scores_ms", "labels_ms"):
        assert sem[key] > 0, key
    for key in ("pq_compute_ms", "ours_ms", "loader_ms", "loader_decode_ms"):
        assert pan[key] > 0, key
    assert pan["loader_send_ms"] >= 0
    assert sem["max_abs_diff"] < 1e-9 and pan["max_abs_diff"] < 1e-9
    assert pan["loader_max_abs_diff"] < 1e-9
    # Nothing kept per image: the state after 30 images is the state after 10.
    assert mem["kept_bytes_after_all"] == mem["kept_bytes_after_10"]
    printed = capsys.readouterr().out
    assert "| SemanticEvaluator, sem_seg_labels |" in printed and "pq_compute" in printed
    assert "| PanopticEvaluator, GT decoded by the test loader" in printed
