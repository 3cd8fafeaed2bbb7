"""Mask losses in two forms: elementwise (for the loss) and pairwise (for the matching cost).

The pairwise form of a loss, evaluated at a matched (prediction, target) pair, equals the
elementwise form of that pair; tests pin this. Shapes: M masks, P pixels (or points) per mask,
Q predictions, T targets. Inputs are logits; targets are in [0, 1].
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "dice_loss",
    "focal_and_dice_per_mask",
    "pairwise_dice_loss",
    "pairwise_sigmoid_focal_loss",
    "sigmoid_focal_loss",
]


def sigmoid_focal_loss(
    inputs: Tensor, targets: Tensor, num_masks: float, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Focal loss of Lin et al. (RetinaNet), averaged over pixels, summed over masks.

    Args:
        inputs: (M, P) logits.
        targets: (M, P) binary targets.
        num_masks: normaliser of the sum over masks.
        alpha: weight of positives (1 - alpha for negatives); < 0 disables it.
        gamma: focusing exponent on (1 - p_t).
    Returns:
        scalar: sum_m mean_p loss[m, p] / num_masks.
    """
    prob = inputs.sigmoid()
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_masks


def dice_loss(inputs: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """Dice loss `1 - (2|p t| + 1) / (|p| + |t| + 1)` with p = sigmoid(inputs), summed over masks.

    Args:
        inputs: (M, P) logits.
        targets: (M, P) binary targets.
        num_masks: normaliser of the sum over masks.
    Returns:
        scalar.
    """
    prob = inputs.sigmoid()
    numerator = 2 * (prob * targets).sum(-1)
    denominator = prob.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def pairwise_sigmoid_focal_loss(
    inputs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Focal loss of every prediction against every target, averaged over pixels.

    Splitting the loss into a part paid where the target is 1 and a part paid where it is 0
    turns the Q x T evaluation into two matrix products instead of a (Q, T, P) tensor.

    Args:
        inputs: (Q, P) logits.
        targets: (T, P) binary targets.
    Returns:
        (Q, T) cost; entry (q, t) equals `sigmoid_focal_loss(inputs[q:q+1], targets[t:t+1], 1)`.
    """
    num_pixels = inputs.shape[1]
    prob = inputs.sigmoid()
    # -log(p) and -log(1 - p), computed stably from the logits.
    neg_log_p = F.softplus(-inputs)
    neg_log_1mp = F.softplus(inputs)
    focal_pos = (1 - prob) ** gamma * neg_log_p
    focal_neg = prob**gamma * neg_log_1mp
    if alpha >= 0:
        focal_pos = focal_pos * alpha
        focal_neg = focal_neg * (1 - alpha)
    loss = focal_pos @ targets.T + focal_neg @ (1 - targets).T
    return loss / num_pixels


def pairwise_dice_loss(inputs: Tensor, targets: Tensor) -> Tensor:
    """Dice loss of every prediction against every target.

    Args:
        inputs: (Q, P) logits.
        targets: (T, P) binary targets.
    Returns:
        (Q, T) cost; entry (q, t) equals `dice_loss(inputs[q:q+1], targets[t:t+1], 1)`.
    """
    prob = inputs.sigmoid()
    numerator = 2 * prob @ targets.T
    denominator = prob.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


class _FocalDiceBinary(torch.autograd.Function):
    """Per-mask focal and dice losses of logits against binary (bool) targets, in few passes.

    The autograd composition of `sigmoid_focal_loss` and `dice_loss` makes about 50 passes over
    the (M, P) tensors (forward and backward) and keeps a dozen of them for the backward pass;
    at full image resolution these passes are a large part of a training step. With z the logit
    of the target's side (x where t = 1, -x where t = 0), q = sigmoid(-z) = 1 - p_t and
    c = softplus(-z) = -log p_t:

        focal = a_t * q^g * c,          d focal / dz = -a_t * q^g * (g * (1 - q) * c + q)
        p = 1 - q (t = 1) or q (t = 0), dp / dx = q * (1 - q)
        dice = 1 - (2 I + 1) / (S + 1), I = sum p t, S = sum p + sum t,
        d dice / dp_j = (2 I + 1) / (S + 1)^2 - 2 t_j / (S + 1).

    The backward pass evaluates these closed forms from q and c, the only tensors kept.
    """

    @staticmethod
    def forward(ctx, inputs: Tensor, targets: Tensor, alpha: float, gamma: float):
        neg_z = torch.where(targets, -inputs, inputs)
        q = torch.sigmoid(neg_z)
        c = F.softplus(neg_z)
        f = q.pow(gamma).mul_(c)
        f_pos = torch.where(targets, f, 0).sum(1)
        # sum_j a_t f_j with a_t = alpha (t = 1) or 1 - alpha (t = 0).
        focal = ((1 - alpha) * (f.sum(1) - f_pos) + alpha * f_pos) / inputs.shape[1]
        t_sum = targets.sum(1, dtype=inputs.dtype)
        q_pos = torch.where(targets, q, 0).sum(1)
        inter = t_sum - q_pos  # sum_{t=1} p = sum_{t=1} (1 - q)
        denom = inter + (q.sum(1) - q_pos) + t_sum + 1  # sum p + sum t + 1
        dice = 1 - (2 * inter + 1) / denom
        ctx.save_for_backward(targets, q, c, inter, denom)
        ctx.alpha, ctx.gamma = alpha, gamma
        return focal, dice

    @staticmethod
    def backward(ctx, grad_focal: Tensor, grad_dice: Tensor):
        targets, q, c, inter, denom = ctx.saved_tensors
        alpha, gamma = ctx.alpha, ctx.gamma
        one_minus_q = 1 - q
        # Focal: d/dx = s_t * d/dz with s_t = +1 (t = 1) / -1 (t = 0); a_t, s_t and the pixel
        # mean folded into one per-mask coefficient for each side.
        scale = grad_focal / q.shape[1]
        coef = torch.where(targets, (-alpha * scale)[:, None], ((1 - alpha) * scale)[:, None])
        grad = q.pow(gamma).mul_(one_minus_q.mul(c).mul_(gamma).add_(q)).mul_(coef)
        # Dice: d/dx = (A - B t) * q * (1 - q).
        a = grad_dice * (2 * inter + 1) / denom.square()
        b = grad_dice * 2 / denom
        coef = torch.where(targets, (a - b)[:, None], a[:, None])
        grad.addcmul_(q * one_minus_q, coef)
        return grad, None, None, None


def focal_and_dice_per_mask(
    inputs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tuple[Tensor, Tensor]:
    """Per-mask focal loss (mean over pixels) and dice loss, as `sigmoid_focal_loss` and
    `dice_loss` compute them before summing over masks.

    Args:
        inputs: (M, P) logits.
        targets: (M, P) targets: bool (a fused computation with closed-form gradients, the
            training path) or float in [0, 1] (the autograd composition).
        alpha, gamma: focal loss parameters; the fused path needs alpha >= 0 and gamma >= 1.
    Returns:
        focal (M,), dice (M,): `sigmoid_focal_loss(inputs[m:m+1], targets[m:m+1], 1)` and
        `dice_loss(inputs[m:m+1], targets[m:m+1], 1)` for every m.
    """
    if targets.dtype == torch.bool and alpha >= 0 and gamma >= 1:
        return _FocalDiceBinary.apply(inputs, targets, alpha, gamma)
    targets = targets.to(inputs.dtype)
    prob = inputs.sigmoid()
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    numerator = 2 * (prob * targets).sum(-1)
    denominator = prob.sum(-1) + targets.sum(-1)
    return loss.mean(1), 1 - (numerator + 1) / (denominator + 1)
