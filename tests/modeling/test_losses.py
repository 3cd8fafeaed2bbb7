import math

import pytest
import torch

from maskformer.modeling.losses import (
    dice_loss,
    pairwise_dice_loss,
    pairwise_sigmoid_focal_loss,
    sigmoid_focal_loss,
)


def test_focal_hand_computed():
    # logit 0 -> p = 0.5, BCE = ln 2, (1 - p_t)^2 = 1/4; alpha_t = 0.25 (positive) / 0.75.
    inputs = torch.tensor([[0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0]])
    expected = (0.25 * 0.25 * math.log(2) + 0.75 * 0.25 * math.log(2)) / 2
    assert sigmoid_focal_loss(inputs, targets, 1).item() == pytest.approx(expected, rel=1e-6)

    # logit 2 on a positive: p = sigmoid(2), BCE = -ln p, weight 0.25 (1 - p)^2.
    p = 1 / (1 + math.exp(-2))
    expected = 0.25 * (1 - p) ** 2 * -math.log(p)
    got = sigmoid_focal_loss(torch.tensor([[2.0]]), torch.tensor([[1.0]]), 1).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_focal_sums_over_masks_and_normalises():
    inputs = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    one = sigmoid_focal_loss(inputs[:1], targets[:1], 1)
    assert sigmoid_focal_loss(inputs, targets, 1) == pytest.approx(2 * one.item())
    assert sigmoid_focal_loss(inputs, targets, 4) == pytest.approx(one.item() / 2)


def test_dice_hand_computed():
    # p = 0.5 everywhere, target [1, 1, 0, 0]: 1 - (2 * 1 + 1) / (2 + 2 + 1) = 0.4.
    got = dice_loss(torch.zeros(1, 4), torch.tensor([[1.0, 1.0, 0.0, 0.0]]), 1)
    assert got.item() == pytest.approx(0.4, rel=1e-6)
    # A confident perfect prediction costs ~0; a confident wrong one ~1 - 1 / (n + 1).
    t = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert dice_loss((t * 2 - 1) * 50, t, 1).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss((1 - 2 * t) * 50, t, 1).item() == pytest.approx(1 - 1 / 5, abs=1e-6)
    assert dice_loss(torch.zeros(3, 4), t.expand(3, 4), 2).item() == pytest.approx(0.6, rel=1e-6)


def test_pairwise_forms_equal_elementwise_forms():
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(7, 50, generator=g) * 3
    targets = (torch.rand(4, 50, generator=g) > 0.5).float()
    focal = pairwise_sigmoid_focal_loss(inputs, targets)
    dice = pairwise_dice_loss(inputs, targets)
    assert focal.shape == dice.shape == (7, 4)
    for q in range(7):
        for t in range(4):
            f = sigmoid_focal_loss(inputs[q : q + 1], targets[t : t + 1], 1)
            d = dice_loss(inputs[q : q + 1], targets[t : t + 1], 1)
            assert focal[q, t].item() == pytest.approx(f.item(), rel=1e-5, abs=1e-7)
            assert dice[q, t].item() == pytest.approx(d.item(), rel=1e-5, abs=1e-7)


def test_pairwise_focal_is_finite_for_extreme_logits():
    inputs = torch.tensor([[100.0, -100.0], [-100.0, 100.0]])
    targets = torch.tensor([[1.0, 0.0]])
    cost = pairwise_sigmoid_focal_loss(inputs, targets)
    assert torch.isfinite(cost).all()
    assert cost[0, 0] < 1e-6 < cost[1, 0]
