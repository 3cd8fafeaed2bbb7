"""Mask losses in two forms: elementwise (for the loss) and pairwise (for the matching cost),
and the point reader of their point-sampled variants.

The pairwise form of a loss, evaluated at a matched (prediction, target) pair, equals the
elementwise form of that pair; tests pin this. Shapes: M masks, P pixels (or points) per mask,
Q predictions, T targets. Inputs are logits; targets are in [0, 1].
"""

from __future__ import annotations

import torch.nn.functional as F
from detectron2.projects.point_rend.point_features import point_sample
from torch import Tensor

__all__ = [
    "dice_loss",
    "pairwise_dice_loss",
    "pairwise_sigmoid_focal_loss",
    "sigmoid_focal_loss",
    "values_at_points",
]


def values_at_points(maps: Tensor, coords: Tensor) -> Tensor:
    """(N, H, W) maps read at (N, P, 2) points (x, y) in [0, 1] -> (N, P) values.

    Bilinear with the edge values repeated: what `F.interpolate(align_corners=False)` of the map
    computes at those positions, so the point-sampled losses and costs read the same values the
    full-resolution ones use (pixel k of n covers [k / n, (k + 1) / n)).
    """
    return point_sample(maps[:, None], coords, align_corners=False, padding_mode="border")[:, 0]


def sigmoid_focal_loss(
    inputs: Tensor, targets: Tensor, num_masks: float, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Focal loss of Lin et al. (RetinaNet) of (M, P) logits and targets: the scalar
    sum_m mean_p loss[m, p] / num_masks.

    Args:
        alpha: weight of positives (1 - alpha for negatives); < 0 disables it.
        gamma: focusing exponent on (1 - p_t).
    """
    prob = inputs.sigmoid()
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_masks


def dice_loss(inputs: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """Dice loss `1 - (2|p t| + 1) / (|p| + |t| + 1)` with p = sigmoid(inputs) of (M, P) logits
    and targets, summed over masks / num_masks (a scalar)."""
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
