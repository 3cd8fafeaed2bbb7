import math

import pytest
import torch
import torch.nn.functional as F

from maskformer.modeling.criterion import SetCriterion
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
