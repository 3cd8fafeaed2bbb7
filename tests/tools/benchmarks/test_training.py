"""tools/benchmarks/training.py on the tiny config: every figure it reports."""

from tests.scripts import load_script


def _run(config, *extra):
    argv = ["--config-file", config, "--size", "64", "--warmup", "0", "--iters", "2", *extra]
    return load_script("tools/benchmarks/training.py").main(argv)


def test_step_time_matcher_saved_activations_and_step_memory(tiny_config):
    res = _run(tiny_config, "--step-memory")
    assert res["s"] > 0 and res["img_per_s"] == 2 / res["s"]
    assert 0 < res["matcher_ms"] < 1000 * res["s"]
    assert res["peak_gb"] > 0 and res["saved_gb"] > 0
    assert res["step_tensor_gb"] > res["step_extra_gb"] > 0
    # At the start of the backward pass every tensor saved for it is alive.
    assert res["step_extra_gb"] >= res["saved_gb"]


def test_float16_step_with_loss_scaling(tiny_config):
    res = _run(tiny_config, "--precision", "fp16", "--batch", "1")
    assert res["s"] > 0 and res["img_per_s"] == 1 / res["s"]
