"""Multi-scale + flip test-time augmentation of semantic segmentation models."""

import numpy as np
import pytest
import torch
from detectron2.data import transforms as T
from detectron2.modeling import build_model

from maskformer.modeling import SemanticSegmentorWithTTA
from tests.common import tiny_cfg

H, W = 90, 120  # original image size
TEST_SIZE = 64


def _model_and_cfg(*opts, config_file=None):
    torch.manual_seed(0)
    cfg = tiny_cfg(
        "INPUT.MIN_SIZE_TEST", TEST_SIZE,
        "INPUT.MAX_SIZE_TEST", 1000,
        "TEST.AUG.MAX_SIZE", 1000,
        *opts,
        config_file=config_file,
    )  # fmt: skip
    model = build_model(cfg)
    model.eval()
    return model, cfg


def _test_input(seed=0):
    """What Detectron2's test DatasetMapper gives: the image at the test size, original size."""
    image = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    resized = T.ResizeShortestEdge(TEST_SIZE, 1000).get_transform(image).apply_image(image)
    return {"image": torch.as_tensor(resized.transpose(2, 0, 1).copy()), "height": H, "width": W}


@pytest.mark.parametrize(
    "config_file, opts",
    [
        (None, []),  # MaskFormer
        ("ade20k/per_pixel_baseline_R50.yaml", []),  # SemanticSegmentor
    ],
)
def test_one_scale_without_flip_is_the_plain_prediction(config_file, opts):
    model, cfg = _model_and_cfg(
        "TEST.AUG.MIN_SIZES", (TEST_SIZE,), "TEST.AUG.FLIP", False, *opts, config_file=config_file
    )
    x = _test_input()
    with torch.no_grad():
        plain = model([x])[0]["sem_seg"]
        tta = SemanticSegmentorWithTTA(cfg, model)([x])[0]["sem_seg"]
    assert tta.shape == plain.shape == (5, H, W)
    assert torch.allclose(tta, plain, atol=1e-6)


def test_flip_averages_with_the_unflipped_prediction_of_the_flipped_image():
    model, cfg = _model_and_cfg("TEST.AUG.MIN_SIZES", (TEST_SIZE,), "TEST.AUG.FLIP", True)
    x = _test_input()
    flipped = dict(x, image=x["image"].flip(-1))
    with torch.no_grad():
        expected = (model([x])[0]["sem_seg"] + model([flipped])[0]["sem_seg"].flip(-1)) / 2
        tta = SemanticSegmentorWithTTA(cfg, model)([x])[0]["sem_seg"]
    assert torch.allclose(tta, expected, atol=1e-6)
    # The flipped image's prediction differs: the test above is not vacuous.
    assert not torch.allclose(expected, model([x])[0]["sem_seg"], atol=1e-4)


def test_multi_scale_returns_the_original_size():
    model, cfg = _model_and_cfg("TEST.AUG.MIN_SIZES", (32, 64, 96), "TEST.AUG.FLIP", True)
    with torch.no_grad():
        out = SemanticSegmentorWithTTA(cfg, model)([_test_input(0), _test_input(1)])
    assert [o["sem_seg"].shape for o in out] == [(5, H, W), (5, H, W)]
    assert all(torch.isfinite(o["sem_seg"]).all() for o in out)
    # MaskFormer scores are sums of class probability x mask probability: the average is too.
    assert all((o["sem_seg"] >= 0).all() for o in out)
