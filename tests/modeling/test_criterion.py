import math

import pytest
import torch
import torch.nn.functional as F

from maskformer.modeling.criterion import SetCriterion
from maskformer.modeling.losses import dice_loss, sigmoid_focal_loss, values_at_points
from maskformer.modeling.matcher import HungarianMatcher

K = 4


def _criterion(**kw):
    return SetCriterion(K, HungarianMatcher(1, 20, 1), **kw)


def _outputs(b=2, q=5, h=6, w=6, layers=3, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)

    def layer():
        return {
            "pred_logits": torch.randn(b, q, K + 1, generator=g).requires_grad_(requires_grad),
            "pred_masks": torch.randn(b, q, h, w, generator=g).requires_grad_(requires_grad),
        }

    out = layer()
    out["aux_outputs"] = [layer() for _ in range(layers - 1)]
    return out


def _targets(counts=(2, 1), h=24, w=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "labels": torch.randint(0, K, (n,), generator=g),
            "masks": torch.rand(n, h, w, generator=g) > 0.5,
        }
        for n in counts
    ]


def test_loss_keys_include_deep_supervision_and_are_weighted():
    crit = _criterion(class_weight=1.0, mask_weight=20.0, dice_weight=1.0)
    outputs, targets = _outputs(layers=6), _targets()
    losses = crit(outputs, targets)
    expected = {
        f"{n}{s}"
        for n in ("loss_ce", "loss_mask", "loss_dice")
        for s in ["", "_0", "_1", "_2", "_3", "_4"]
    }
    assert set(losses) == expected
    # Already weighted: recompute the final layer's terms by hand.
    indices = crit.matcher(outputs, targets)
    focal, dice = crit.loss_masks(outputs["pred_masks"], targets, indices, num_masks=3)
    assert losses["loss_mask"].item() == pytest.approx(20 * focal.item(), rel=1e-6)
    assert losses["loss_dice"].item() == pytest.approx(dice.item(), rel=1e-6)
    ce = crit.loss_labels(outputs["pred_logits"], targets, indices)
    assert losses["loss_ce"].item() == pytest.approx(ce.item(), rel=1e-6)
    # Aux layer 0 is scored on its own predictions.
    aux = outputs["aux_outputs"][0]
    aux_idx = crit.matcher(aux, targets)
    assert losses["loss_ce_0"].item() == pytest.approx(
        crit.loss_labels(aux["pred_logits"], targets, aux_idx).item(), rel=1e-6
    )


def test_without_deep_supervision_only_final_losses():
    losses = _criterion(deep_supervision=False)(_outputs(), _targets())
    assert set(losses) == {"loss_ce", "loss_mask", "loss_dice"}


def test_no_object_weight_in_cross_entropy():
    crit = _criterion(no_object_weight=0.1)
    assert crit.empty_weight.tolist() == pytest.approx([1, 1, 1, 1, 0.1])
    assert "empty_weight" in crit.state_dict()
    logits = torch.randn(1, 3, K + 1)
    targets = [{"labels": torch.tensor([2]), "masks": torch.ones(1, 4, 4, dtype=torch.bool)}]
    indices = [(torch.tensor([1]), torch.tensor([0]))]
    # Query 1 -> class 2 (weight 1), queries 0 and 2 -> no object (weight 0.1).
    logp = F.log_softmax(logits[0], -1)
    expected = -(0.1 * logp[0, K] + 1.0 * logp[1, 2] + 0.1 * logp[2, K]) / (0.1 + 1 + 0.1)
    assert crit.loss_labels(logits, targets, indices).item() == pytest.approx(
        expected.item(), rel=1e-6
    )


def test_image_without_targets_gives_finite_no_object_loss():
    crit = _criterion()
    outputs = _outputs(b=1, requires_grad=True)
    targets = [
        {
            "labels": torch.zeros(0, dtype=torch.int64),
            "masks": torch.zeros(0, 24, 24, dtype=torch.bool),
        }
    ]
    losses = crit(outputs, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_mask"].item() == 0 and losses["loss_dice"].item() == 0
    expected = -F.log_softmax(outputs["pred_logits"][0], -1)[:, K].mean()
    assert losses["loss_ce"].item() == pytest.approx(expected.item(), rel=1e-6)
    sum(losses.values()).backward()
    assert outputs["pred_masks"].grad is not None  # still connected (zero gradient)


def test_masks_emptied_to_zero_area_are_dropped():
    crit = _criterion()
    outputs, targets = _outputs(), _targets()
    with_empty = [dict(t) for t in targets]
    with_empty[0] = {
        "labels": torch.cat([targets[0]["labels"], torch.tensor([3])]),
        "masks": torch.cat([targets[0]["masks"], torch.zeros(1, 24, 24, dtype=torch.bool)]),
    }
    a, b = crit(outputs, targets), crit(outputs, with_empty)
    for k in a:
        assert a[k].item() == pytest.approx(b[k].item(), rel=1e-6), k


def test_num_masks_is_floored_at_one():
    crit = _criterion(deep_supervision=False)
    outputs = _outputs(b=1)
    # num_masks = max(1, 1) = 1 and the only target is matched: loss_dice = dice of that pair.
    targets = _targets(counts=(1,))
    indices = crit.matcher(outputs, targets)
    _, dice = crit.loss_masks(outputs["pred_masks"], targets, indices, num_masks=1.0)
    assert crit(outputs, targets)["loss_dice"].item() == pytest.approx(dice.item(), rel=1e-6)


def test_losses_are_fp32_under_autocast():
    crit = _criterion()
    outputs = _outputs()
    half = {
        "pred_logits": outputs["pred_logits"].bfloat16(),
        "pred_masks": outputs["pred_masks"].bfloat16(),
        "aux_outputs": [{k: v.bfloat16() for k, v in a.items()} for a in outputs["aux_outputs"]],
    }
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = crit(half, _targets())
    assert all(v.dtype == torch.float32 and math.isfinite(v.item()) for v in losses.values())


# The official composition, written out per layer -------------------------------------------


def _reference_losses(criterion, outputs, targets):
    """Per layer: match, upsample the matched masks, the autograd focal and dice losses."""
    num_masks = float(sum(len(t["labels"]) for t in targets))
    losses = {}
    layers = [outputs, *outputs["aux_outputs"]]
    for i, layer in enumerate(layers):
        indices = criterion.matcher(layer, targets)
        src = torch.cat([layer["pred_masks"][b, s] for b, (s, _) in enumerate(indices)])
        tgt = torch.cat([t["masks"][j] for t, (_, j) in zip(targets, indices)]).float()
        src = F.interpolate(src[:, None], size=tgt.shape[-2:], mode="bilinear")[:, 0]
        suffix = "" if i == 0 else f"_{i - 1}"
        losses["loss_ce" + suffix] = criterion.loss_labels(layer["pred_logits"], targets, indices)
        focal = sigmoid_focal_loss(src.flatten(1), tgt.flatten(1), num_masks)
        losses["loss_mask" + suffix] = 20.0 * focal
        losses["loss_dice" + suffix] = dice_loss(src.flatten(1), tgt.flatten(1), num_masks)
    return losses


def test_losses_and_gradients_equal_the_official_composition():
    criterion = _criterion()
    targets = _targets(counts=(3, 1))
    outputs, reference_outputs = _outputs(requires_grad=True), _outputs(requires_grad=True)
    got = criterion(outputs, targets)
    want = _reference_losses(criterion, reference_outputs, targets)
    assert got.keys() == want.keys() and len(got) == 9
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=0, msg=k)
    sum(got.values()).backward()
    sum(want.values()).backward()
    for layer, ref in zip(
        [outputs, *outputs["aux_outputs"]], [reference_outputs, *reference_outputs["aux_outputs"]]
    ):
        for key in ("pred_masks", "pred_logits"):
            torch.testing.assert_close(layer[key].grad, ref[key].grad, rtol=1e-4, atol=1e-7)


# Point-sampled losses (TRAIN_NUM_POINTS) ------------------------------------------------------


def test_values_at_the_pixel_centres_are_the_bilinear_upsampling():
    g = torch.Generator().manual_seed(0)
    src = 3 * torch.randn(4, 6, 5, generator=g)
    ys, xs = torch.meshgrid(torch.arange(24), torch.arange(20), indexing="ij")
    centres = torch.stack([(xs + 0.5) / 20, (ys + 0.5) / 24], -1).view(1, -1, 2).expand(4, -1, -1)
    up = F.interpolate(src[:, None], size=(24, 20), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(values_at_points(src, centres), up.flatten(1), rtol=1e-5, atol=1e-6)


def test_point_sampled_losses_hand_computed():
    # Logit 0 everywhere (p = 0.5) against all-ones targets, at P = 10 points per mask:
    # focal = alpha (1 - p)^2 log(1 / p) = 0.25 * 0.25 * log 2, whatever the points;
    # dice = 1 - (2 * 0.5 P + 1) / (0.5 P + P + 1) = 1 - 11 / 16. Two masks, num_masks 2.
    criterion = _criterion(num_points=10)
    src, tgt = criterion.sample_points(torch.zeros(2, 3, 3), torch.ones(2, 12, 12))
    assert src.shape == tgt.shape == (2, 10)
    assert sigmoid_focal_loss(src, tgt, 2).item() == pytest.approx(0.0625 * math.log(2), rel=1e-6)
    assert dice_loss(src, tgt, 2).item() == pytest.approx(5 / 16, rel=1e-6)


def test_point_sampled_criterion_matches_and_cuts_the_loss_to_points():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)
    # Targets constant on 4 x 4 blocks, so that the 8 x 8 predictions can equal them.
    blocks = [torch.rand(2, 8, 8, generator=g) > 0.5 for _ in range(2)]
    targets = [
        {"labels": torch.tensor([0, 3]), "masks": b.repeat_interleave(4, 1).repeat_interleave(4, 2)}
        for b in blocks
    ]
    outputs = _outputs(h=8, w=8, requires_grad=True)
    # Predictions that are the (downsampled) targets, strongly: every matcher finds them.
    with torch.no_grad():
        for b, block in enumerate(blocks):
            for layer in [outputs, *outputs["aux_outputs"]]:
                layer["pred_masks"][b, :2] = 20 * (block.float() - 0.5)
    dense = HungarianMatcher(1, 20, 1)(outputs, targets)
    points = HungarianMatcher(1, 20, 1, num_points=256)(outputs, targets)
    for (qi, ti), (qp, tp) in zip(dense, points):
        assert torch.equal(qi[ti.argsort()], qp[tp.argsort()])
        assert torch.equal(qi[ti.argsort()], torch.arange(len(ti)))
    criterion = _criterion(num_points=256)
    criterion.matcher.num_points = 256
    losses = criterion(outputs, targets)
    assert all(torch.isfinite(v) for v in losses.values()) and len(losses) == 9
    sum(losses.values()).backward()
    assert torch.isfinite(outputs["pred_masks"].grad).all()
    # Inverted masks (matched to other, random queries) cost far more at the sampled points.
    with torch.no_grad():
        for layer in [outputs, *outputs["aux_outputs"]]:
            layer["pred_masks"][:, :2] *= -1
    inverted = criterion(outputs, targets)
    # (About 2x on these data; misaligned point coordinates would make both alike.)
    for suffix in ("", "_0", "_1"):
        assert inverted["loss_dice" + suffix] > 1.5 * losses["loss_dice" + suffix]
        assert inverted["loss_mask" + suffix] > 1.5 * losses["loss_mask" + suffix]
