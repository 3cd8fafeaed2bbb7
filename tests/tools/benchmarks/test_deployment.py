"""tools/benchmarks/deployment.py on the tiny config: paths timed interleaved, with their label
agreement and score difference against the plain model."""

import pytest

from tests.scripts import load_script


def _tool():
    return load_script("tools/benchmarks/deployment.py")


@pytest.mark.slow
def test_paths_are_timed_with_their_agreement_with_the_plain_model(tiny_config, capsys):
    paths = ("plain", "optimized", "bf16", "labels")
    res = _tool().main(
        ["--config-file", tiny_config, "--size", "64", "--warmup", "0", "--iters", "2",
         "--paths", *paths, "--batch", "1", "2"]
    )  # fmt: skip
    for path in paths:
        for b in (1, 2):
            assert res[f"{path}_b{b}_s"] > 0
    # The exact transforms keep every label; bfloat16 changes the scores.
    assert res["optimized_b2_plain_agreement"] == 1.0
    assert 0 < res["optimized_b2_plain_max_score_diff"] < 1e-4
    assert res["labels_b2_plain_agreement"] == 1.0
    assert "labels_b2_plain_max_score_diff" not in res  # no scores to compare
    assert 1e-4 < res["bf16_b1_plain_max_score_diff"] < 0.2
    assert "plain_b1_plain_agreement" not in res
    assert res["peak_gb"] > 0
    assert "labels = plain's at 100.0000%" in capsys.readouterr().out


def test_official_path_needs_a_checkout(tiny_config, capsys):
    with pytest.raises(SystemExit):
        _tool().parse_args(["--config-file", tiny_config, "--paths", "plain", "official"])
    assert "--paths official needs --compare-official CHECKOUT" in capsys.readouterr().err
    args = _tool().parse_args(["--config-file", tiny_config, "--compare-official", "x"])
    assert args.paths == ["official", "plain", "optimized"]
