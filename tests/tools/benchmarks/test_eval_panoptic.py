"""tools/benchmarks/eval_panoptic.py on a tiny size: every figure, and the same metrics as
panopticapi (with the evaluator reading the PNGs and with the test loader's decoded ground
truth)."""

from tests.scripts import load_script


def test_times_and_the_metrics_of_panopticapi(capsys):
    res = load_script("tools/benchmarks/eval_panoptic.py").main(
        ["--images", "3", "--size", "48", "64", "--segments", "8", "--categories", "10",
         "--rounds", "1"]
    )  # fmt: skip
    for key in ("pq_compute_ms", "ours_ms", "loader_ms", "loader_decode_ms"):
        assert res[key] > 0, key
    assert res["loader_send_ms"] >= 0
    assert res["max_abs_diff"] < 1e-9 and res["loader_max_abs_diff"] < 1e-9
    assert 4 <= res["segments_per_image"] <= 8
    printed = capsys.readouterr().out
    assert "| panopticapi `pq_compute`, 1 core" in printed
    assert "| `PanopticEvaluator` on GT decoded by the test loader" in printed
