"""tools/benchmarks/inference.py on the tiny config: every figure it reports."""

import json

from tests.scripts import load_script


def _run(config, *extra):
    argv = ["--config-file", config, "--size", "64", "--warmup", "0", "--iters", "2", *extra]
    return load_script("tools/benchmarks/inference.py").main(argv)


def test_seconds_per_image_split_and_memory_at_each_batch_size(tiny_config, tmp_path, capsys):
    res = _run(tiny_config, "--batch", "1", "2", "--json", str(tmp_path / "figures.json"))
    for b in (1, 2):
        assert res[f"b{b}_s"] > 0 and res[f"b{b}_peak_gb"] > 0
        parts = res[f"b{b}_backbone_s"] + res[f"b{b}_head_s"] + res[f"b{b}_rest_s"]
        assert abs(parts - res[f"b{b}_s"]) < 0.05 * res[f"b{b}_s"] + 1e-3  # medians of parts
        assert res[f"b{b}_img_per_s"] == 1 / res[f"b{b}_s"]
    assert res["params"] > 1_000_000
    assert json.loads((tmp_path / "figures.json").read_text()) == res
    out = capsys.readouterr().out
    assert out.startswith("machine: CPU ") and "get_cpu_capability()" in out
    assert "batch 2: " in out


def test_large_output_with_low_resolution_labels(tiny_config):
    res = _run(tiny_config, "--output-size", "300", "410", "--semantic-output", "low_res_labels")
    assert res["b1_s"] > 0 and res["b1_rest_s"] > 0
