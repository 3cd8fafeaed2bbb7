"""The MaskFormer meta-architecture end to end on a tiny config."""

import torch
from detectron2.modeling import build_model

from tests.common import sample, tiny_cfg


def _model(*opts):
    torch.manual_seed(0)
    return build_model(tiny_cfg(*opts))


def test_training_step_reaches_every_parameter():
    model = _model()
    model.train()
    batch = [sample(64, 96, [0, 3, 4], seed=1), sample(64, 96, [], seed=2)]
    losses = model(batch)
    assert {"loss_ce", "loss_mask", "loss_dice", "loss_ce_0", "loss_dice_1"} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_training_step_with_only_empty_targets():
    model = _model()
    model.train()
    losses = model([sample(64, 64, [], seed=1), sample(64, 64, [], seed=2)])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_mask"].item() == 0.0
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_eval_on_odd_sized_images_returns_input_size():
    model = _model()
    model.eval()
    inputs = [
        {"image": torch.rand(3, 200, 250) * 255},
        {"image": torch.rand(3, 171, 333) * 255, "height": 171, "width": 333},
    ]
    with torch.no_grad():
        out = model(inputs)
    assert out[0]["sem_seg"].shape == (5, 200, 250)
    assert out[1]["sem_seg"].shape == (5, 171, 333)
    assert all(torch.isfinite(o["sem_seg"]).all() for o in out)


def test_eval_resizes_to_requested_output_size():
    model = _model()
    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 96, 128) * 255, "height": 48, "width": 64}])
    assert out[0]["sem_seg"].shape == (5, 48, 64)


def test_postprocessing_before_inference_gives_close_scores():
    model = _model()
    model.eval()
    image = {"image": torch.rand(3, 90, 120) * 255}
    with torch.no_grad():
        after = model([image])[0]["sem_seg"]
        model.sem_seg_postprocess_before_inference = True
        before = model([image])[0]["sem_seg"]
    # Same size, no resize involved: combining then cropping equals cropping then combining.
    assert torch.allclose(before, after, atol=1e-5)


def test_panoptic_output_is_consistent():
    model = _model(
        "MODEL.MASK_FORMER.TEST.PANOPTIC_ON",
        True,
        "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD",
        0.0,
        "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD",
        0.0,
    )
    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 70, 90) * 255}])[0]
    seg, info = out["panoptic_seg"]
    assert seg.shape == (70, 90) and out["sem_seg"].shape == (5, 70, 90)
    ids = set(seg.unique().tolist()) - {0}
    assert ids == {s["id"] for s in info}
