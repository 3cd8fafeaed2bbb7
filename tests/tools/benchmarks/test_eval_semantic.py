"""tools/benchmarks/eval_semantic.py on a tiny size: every figure, and the same metrics as
Detectron2's SemSegEvaluator."""

from tests.scripts import load_script


def test_times_identical_metrics_and_constant_memory(capsys):
    res = load_script("tools/benchmarks/eval_semantic.py").main(
        ["--images", "3", "--size", "64", "--classes", "10", "--memory-images", "30"]
    )
    for key in ("d2_ms", "scores_ms", "labels_ms", "report_s", "d2_kept_mb_per_image"):
        assert res[key] > 0, key
    assert res["max_abs_diff"] < 1e-9
    # Nothing kept per image: the state after 30 images is the state after 10.
    assert res["kept_bytes_after_all"] == res["kept_bytes_after_10"]
    printed = capsys.readouterr().out
    assert '| `SemanticEvaluator`, "sem_seg_labels" |' in printed
    assert "| evaluation | ms / image | speed-up | max abs diff of the metrics |" in printed
