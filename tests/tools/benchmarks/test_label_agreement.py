"""tools/benchmarks/label_agreement.py: paths against the plain model on image files, run as the
predictor runs them, with trained (here: hand-varied) weights."""

import pytest
from PIL import Image

from tests.scripts import load_script
from tests.tools.benchmarks.conftest import block_image


def _images(tmp_path):
    files = []
    for i, (h, w) in enumerate([(50, 70), (90, 40)]):
        files.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(block_image(h, w)).save(files[-1])
    return files


def test_exact_paths_agree_and_approximate_ones_nearly(tiny_config, varied_weights, tmp_path):
    res = load_script("tools/benchmarks/label_agreement.py").main(
        ["--config-file", tiny_config, "--images", *_images(tmp_path),
         "--paths", "optimized", "bf16", "low-res-labels", "--output-size", "150", "200",
         "--opts", "MODEL.WEIGHTS", varied_weights]
    )  # fmt: skip
    assert res["optimized_agreement_mean"] == res["optimized_agreement_min"] == 1.0
    assert 0.9 < res["bf16_agreement_min"] <= res["bf16_agreement_mean"] <= 1.0
    # Labels combined at the mask resolution differ along the class boundaries.
    low_res = res["low-res-labels_agreement_min"], res["low-res-labels_agreement_mean"]
    assert 0.5 < low_res[0] <= low_res[1] < 1.0


def test_random_weights_are_refused(tiny_config, tmp_path):
    tool = load_script("tools/benchmarks/label_agreement.py")
    with pytest.raises(SystemExit, match="label agreement needs trained weights: MODEL.WEIGHTS"):
        tool.main(["--config-file", tiny_config, "--images", *_images(tmp_path)])
