"""The per-pixel baselines with Detectron2's SemanticSegmentor: loss, training step, inference,
and the official state-dict layout."""

import os

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import build_model

from maskformer import get_maskformer_cfg
from tests.common import CONFIG_DIR, FIXTURES_DIR, tiny_cfg

BASELINE = "ade20k/per_pixel_baseline_R50.yaml"
BASELINE_PLUS = "ade20k/per_pixel_baseline_plus_R50.yaml"
IGNORE = 255


def _model(config_file, *opts):
    torch.manual_seed(0)
    # tiny_cfg: K = 5 classes; the "+" head needs as many queries.
    cfg = tiny_cfg("MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 5, *opts, config_file=config_file)
    return build_model(cfg)


def _sample(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 5, (h // 8, w // 8), generator=g)
    labels = labels.repeat_interleave(8, 0).repeat_interleave(8, 1)
    labels[:4] = IGNORE
    return {"image": torch.randint(0, 256, (3, h, w), generator=g).float(), "sem_seg": labels}


@pytest.mark.parametrize(
    "config_file, loss_names",
    [
        (BASELINE, {"loss_sem_seg"}),
        # DEC_LAYERS 3 with deep supervision: one cross-entropy per decoder layer.
        (BASELINE_PLUS, {"loss_sem_seg", "loss_sem_seg_0", "loss_sem_seg_1"}),
    ],
)
def test_training_step_reaches_every_parameter(config_file, loss_names):
    model = _model(config_file)
    model.train()
    losses = model([_sample(64, 96, 1), _sample(64, 96, 2)])
    assert set(losses) == loss_names
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_loss_is_the_cross_entropy_of_the_upsampled_logits():
    head = _model(BASELINE).sem_seg_head
    logits = torch.randn(2, 5, 16, 24)
    targets = torch.randint(0, 5, (2, 64, 96))
    targets[0, :10] = IGNORE
    expected = F.cross_entropy(
        F.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False),
        targets,
        ignore_index=IGNORE,
    )
    assert torch.allclose(head.loss(logits, targets), expected, rtol=1e-6)
    # Labels smaller than 4x the logits (odd input sizes): the logits are cropped to them.
    assert torch.isfinite(head.loss(logits, targets[:, :63, :94]))
    # A batch without labelled pixels contributes nothing instead of NaN.
    assert head.loss(logits, torch.full_like(targets, IGNORE)).item() == 0.0


@pytest.mark.parametrize("config_file", [BASELINE, BASELINE_PLUS])
def test_inference_on_odd_sizes_returns_the_requested_size(config_file):
    model = _model(config_file)
    model.eval()
    with torch.no_grad():
        out = model(
            [
                {"image": torch.rand(3, 71, 93) * 255},
                {"image": torch.rand(3, 64, 64) * 255, "height": 32, "width": 40},
            ]
        )
    assert out[0]["sem_seg"].shape == (5, 71, 93)
    assert out[1]["sem_seg"].shape == (5, 32, 40)
    assert all(torch.isfinite(o["sem_seg"]).all() for o in out)


def test_baseline_plus_needs_one_query_per_class():
    with pytest.raises(ValueError, match="NUM_OBJECT_QUERIES is 8.*NUM_CLASSES \\(5\\)"):
        build_model(tiny_cfg("MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 8, config_file=BASELINE_PLUS))


def _reference_keys():
    """key -> shape of the official MaskFormer R50 ADE20K checkpoint."""
    keys = {}
    with open(os.path.join(FIXTURES_DIR, "keys_ade20k_R50.txt")) as f:
        for line in f:
            if not line.startswith("#"):
                key, shape, _ = line.rstrip("\n").split("\t")
                keys[key] = [int(s) for s in shape.strip("[]").split(",") if s.strip()]
    return keys


def _layout(config_file):
    cfg = get_maskformer_cfg(os.path.join(CONFIG_DIR, config_file), ["MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    keys = {k: list(v.shape) for k, v in model.state_dict().items()}
    return keys, sum(p.numel() for p in model.parameters())


def test_baseline_has_the_official_layout():
    """Official PerPixelBaselineHead R50: 290 keys, the MaskFormer R50 backbone and pixel decoder
    and a 1x1 conv classifier `sem_seg_head.predictor`; no criterion."""
    ref = _reference_keys()
    expected = {
        k: v for k, v in ref.items() if k.startswith(("backbone.", "sem_seg_head.pixel_decoder."))
    }
    expected["sem_seg_head.predictor.weight"] = [150, 256, 1, 1]
    expected["sem_seg_head.predictor.bias"] = [150]
    keys, params = _layout(BASELINE)
    assert len(expected) == 290
    assert keys == expected
    assert params == pytest.approx(31.03e6, abs=0.005e6)  # 31.03 M, measured officially


def test_baseline_plus_has_the_official_layout():
    """Official PerPixelBaselinePlusHead R50: 407 keys, MaskFormer's without the class head and
    the criterion, and with one query per class."""
    ref = _reference_keys()
    expected = {
        k: v
        for k, v in ref.items()
        if not k.startswith(("sem_seg_head.predictor.class_embed.", "criterion."))
    }
    expected["sem_seg_head.predictor.query_embed.weight"] = [150, 256]
    keys, params = _layout(BASELINE_PLUS)
    assert len(expected) == 407
    assert keys == expected
    assert params == pytest.approx(41.23e6, abs=0.005e6)  # 41.23 M, measured officially
