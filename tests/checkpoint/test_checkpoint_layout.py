"""The state dict of our models has exactly the keys and shapes of the official checkpoints."""

import os

import pytest
import torch
from detectron2.modeling import build_model

from maskformer import get_maskformer_cfg
from tests.common import CONFIG_DIR, FIXTURES_DIR


def _reference(name):
    """key -> (shape, dtype) from a reference listing, and the header's parameter count."""
    ref, params = {}, None
    with open(os.path.join(FIXTURES_DIR, name)) as f:
        for line in f:
            if line.startswith("# configs/"):
                params = int(line.split("params=")[1].split()[0])
            if line.startswith("#"):
                continue
            key, shape, dtype = line.rstrip("\n").split("\t")
            ref[key] = ([int(s) for s in shape.strip("[]").split(",") if s.strip()], dtype)
    return ref, params


@pytest.mark.parametrize(
    "config, reference, expected_params",
    [
        ("ade20k/maskformer_R50.yaml", "keys_ade20k_R50.txt", 41_254_743),
        ("coco-panoptic/maskformer_panoptic_R50.yaml", "keys_coco_panoptic_R50.txt", 45_012_038),
        ("ade20k/swin/maskformer_swin_tiny.yaml", "keys_ade20k_swin_tiny.txt", 41_757_009),
    ],
)
def test_official_key_layout(config, reference, expected_params):
    cfg = get_maskformer_cfg(os.path.join(CONFIG_DIR, config), ["MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    ref, ref_params = _reference(reference)
    assert ref_params == expected_params
    mine = {
        k: (list(v.shape), str(v.dtype).replace("torch.", ""))
        for k, v in model.state_dict().items()
    }
    assert sorted(set(ref) - set(mine)) == [], "missing keys"
    assert sorted(set(mine) - set(ref)) == [], "unexpected keys"
    assert {k: v for k, v in mine.items() if v != ref[k]} == {}, "shape or dtype differs"
    assert sum(p.numel() for p in model.parameters()) == expected_params
    assert "criterion.empty_weight" in mine and "pixel_mean" not in mine
    assert torch.equal(model.criterion.empty_weight[-1], torch.tensor(0.1))
