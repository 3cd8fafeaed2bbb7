"""tools/benchmark.py on a tiny config: every figure it reports, and the label agreement."""

import numpy as np
from PIL import Image

from tests.common import tiny_cfg
from tests.scripts import load_script


def _tool():
    return load_script("tools/benchmark.py")


def _run(tmp_path, *extra):
    (tmp_path / "tiny.yaml").write_text(tiny_cfg().dump())
    argv = ["--config-file", str(tmp_path / "tiny.yaml"), "--size", "64", "--warmup", "0"]
    argv += ["--infer-iters", "2", "--train-iters", "2", "--train-warmup", "0", *extra]
    return _tool().main(argv)


def test_figures_of_inference_and_training(tmp_path):
    res = _run(tmp_path, "--infer-batch", "1", "2")
    for key in ("infer_s", "infer_b2_s", "train_s", "matcher_ms", "train_saved_gb"):
        assert res[key] > 0, key
    assert res["infer_backbone_s"] + res["infer_head_s"] <= res["infer_s"] * 1.01
    assert res["params"] > 0 and res["train_peak_gb"] > 0


def test_step_memory_holds_the_saved_activations(tmp_path):
    res = _run(tmp_path, "--skip-infer", "--step-memory")
    assert res["train_step_tensor_gb"] > res["train_step_extra_gb"] > 0
    # At the start of the backward pass every tensor saved for it is alive.
    assert res["train_step_extra_gb"] >= res["train_saved_gb"]


def test_low_res_labels_at_a_large_output_agree_with_the_exact_labels(tmp_path):
    res = _run(
        tmp_path,
        "--skip-train",
        "--output-size", "300", "410",
        "--agreement",
        "--opts", "MODEL.MASK_FORMER.TEST.SEM_SEG_LOW_RES_LABELS", "True",
    )  # fmt: skip
    assert 0.9 < res["label_agreement"] <= 1.0
    # The exact path itself agrees with itself.
    exact = _run(tmp_path, "--skip-train", "--output-size", "300", "410", "--agreement")
    assert exact["label_agreement"] == 1.0


def test_paths_are_timed_interleaved_with_their_label_agreement(tmp_path):
    paths = ("plain", "optimized", "bf16", "labels")
    res = _run(tmp_path, "--paths", *paths, "--infer-batch", "1", "2")
    for path in paths:
        for b in (1, 2):
            assert res[f"{path}_b{b}_s"] > 0
    # The exact transforms keep every label; bfloat16 keeps most of them.
    assert res["optimized_b2_agreement_plain"] == 1.0
    assert res["optimized_b2_max_score_diff_plain"] < 1e-4
    assert res["labels_b2_agreement_plain"] == 1.0
    assert 0 < res["bf16_b1_max_score_diff_plain"] < 0.2
    assert res["bf16_b1_agreement_plain"] > 0.9
    assert res["peak_rss_gb"] > 0


def test_label_agreement_on_image_files(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i, (h, w) in enumerate([(50, 70), (90, 40)]):
        files.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(files[-1])
    res = _run(tmp_path, "--paths", "plain", "optimized", "bf16", "--images", *files)
    assert res["optimized_agreement_mean"] == res["optimized_agreement_min"] == 1.0
    assert 0.9 < res["bf16_agreement_min"] <= res["bf16_agreement_mean"] <= 1.0
