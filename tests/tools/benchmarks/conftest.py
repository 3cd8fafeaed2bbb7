import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from tests.common import randomize_, tiny_cfg

# The tiny model's input: images resized to a short side of 64 (not 512) in the predictor.
SMALL_INPUT = ["INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 128]


@pytest.fixture
def tiny_config(tmp_path):
    """Path of the tiny config (tests/common.py) as a YAML file."""
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_cfg(*SMALL_INPUT).dump())
    return str(path)


@pytest.fixture
def varied_weights(tmp_path):
    """A weight file for the tiny config whose label maps of `block_image`s are not one class:
    random weights, with queries spread apart, their classes and masks sharpened, so that
    queries of different classes win different regions."""
    torch.manual_seed(0)
    model = randomize_(build_model(tiny_cfg()), seed=0)
    predictor = model.sem_seg_head.predictor
    with torch.no_grad():
        predictor.query_embed.weight *= 1000
        predictor.class_embed.weight *= 900
        predictor.mask_embed.layers[-1].weight *= 30
        predictor.mask_embed.layers[-1].bias *= 30
    path = tmp_path / "varied.pth"
    torch.save({"model": model.state_dict()}, path)
    return str(path)


def block_image(h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8 RGB: a red and a blue half, a yellow block in the middle."""
    image = np.zeros((h, w, 3), np.uint8)
    image[:, : w // 2], image[:, w // 2 :] = (200, 30, 30), (20, 40, 220)
    image[h // 3 : 2 * h // 3, w // 4 : 3 * w // 4] = (250, 250, 40)
    return image
