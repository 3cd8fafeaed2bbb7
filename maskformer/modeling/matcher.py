"""Bipartite matching of predicted masks to ground-truth masks (paper Sec. 3.2).

Shapes: B images, Q queries, K classes, T targets of one image, H x W the prediction size,
Hp x Wp the padded image size of the targets.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.utils.events import get_event_storage
from detectron2.utils.logger import log_every_n_seconds
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from .losses import pairwise_dice_loss, pairwise_sigmoid_focal_loss, values_at_points

logger = logging.getLogger(__name__)

# What a non-finite cost entry is replaced by: far above any real cost (real costs are O(10)),
# so such a pair is only chosen when nothing else is left, yet finite so scipy accepts it.
_NONFINITE_COST = 1e8


def sample_points(masks: Tensor, targets: Tensor, num_points: int) -> Tuple[Tensor, Tensor]:
    """(Q, H, W) predictions and (T, Hp, Wp) targets at the same `num_points` uniformly random
    points: (Q, P) and (T, P) float, bilinearly interpolated (edge values repeated)."""
    coords = torch.rand(1, num_points, 2, device=masks.device)

    def at_points(x: Tensor) -> Tensor:
        return values_at_points(x.to(masks.dtype), coords.expand(x.shape[0], -1, -1))

    return at_points(masks), at_points(targets)


class HungarianMatcher(nn.Module):
    """One-to-one assignment of the Q predictions of an image to its T targets, minimising the
    total cost `cost_class * -p_q(c_t) + cost_mask * focal(m_q, t) + cost_dice * dice(m_q, t)`.
    Runs in fp32 and without gradients; the assignment itself is scipy's, on the CPU.
    """

    def __init__(
        self,
        cost_class: float = 1.0,
        cost_mask: float = 1.0,
        cost_dice: float = 1.0,
        num_points: int = 0,
        class_weights: Optional[Sequence[float]] = None,
    ):
        """
        Args:
            num_points: 0 to compare masks at every pixel of the prediction grid (official);
                P > 0 at P random points per image, shared by its predictions and targets.
            class_weights: K weights scaling the class cost of a target of each class (as the
                criterion's cross-entropy). None: all 1.
        """
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("HungarianMatcher: all costs are 0; nothing to match on")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points
        weights = None if class_weights is None else torch.as_tensor(class_weights).float()
        self.register_buffer("class_weights", weights, persistent=False)
        # Running count of non-finite cost entries replaced so far (reported in the log).
        self.num_nonfinite_costs = 0

    @torch.no_grad()
    def cost_matrix(self, logits: Tensor, masks: Tensor, target: Dict[str, Tensor]) -> Tensor:
        """(Q, T) float32 cost of one image's logits (Q, K + 1) and masks (Q, H, W) against its
        target "labels" (T,) and "masks" (T, Hp, Wp); non-finite where the inputs are."""
        logits = logits.float()
        masks = masks.float()
        labels = target["labels"]
        # -p(class): a constant 1 - p would not change the assignment, so it is left out.
        cost_class = -logits.softmax(-1)[:, labels]
        if self.class_weights is not None:
            cost_class = cost_class * self.class_weights[labels]
        if self.num_points > 0:
            out, tgt = sample_points(masks, target["masks"], self.num_points)
        else:
            # Targets nearest-downsampled to the prediction size, as the official matcher does.
            tgt = F.interpolate(target["masks"][:, None].to(masks), masks.shape[-2:])
            tgt = tgt.flatten(1)
            out = masks.flatten(1)
        cost_mask = pairwise_sigmoid_focal_loss(out, tgt)
        cost_dice = pairwise_dice_loss(out, tgt)
        return (
            self.cost_mask * cost_mask + self.cost_class * cost_class + self.cost_dice * cost_dice
        )

    @torch.no_grad()
    def forward(
        self, outputs: Dict[str, Tensor], targets: List[Dict[str, Tensor]]
    ) -> List[Tuple[Tensor, Tensor]]:
        """outputs: "pred_logits" (B, Q, K + 1), "pred_masks" (B, Q, H, W); targets: B dicts of
        "labels" (T,) and "masks" (T, Hp, Wp), T possibly 0. Returns B pairs (query_idx,
        target_idx) of int64 tensors of length min(Q, T), on the CPU."""
        device_type = outputs["pred_masks"].device.type
        indices = []
        with torch.autocast(device_type=device_type, enabled=False):
            for b, target in enumerate(targets):
                if len(target["labels"]) == 0:
                    empty = torch.empty(0, dtype=torch.int64)
                    indices.append((empty, empty))
                    continue
                cost = self.cost_matrix(
                    outputs["pred_logits"][b], outputs["pred_masks"][b], target
                ).cpu()
                cost = self._sanitize(cost)
                i, j = linear_sum_assignment(cost.numpy())
                indices.append(
                    (torch.as_tensor(i, dtype=torch.int64), torch.as_tensor(j, dtype=torch.int64))
                )
        return indices

    def _sanitize(self, cost: Tensor) -> Tensor:
        """Replace NaN/inf entries (which scipy refuses) by a large finite cost, and count them."""
        finite = torch.isfinite(cost)
        if bool(finite.all()):
            return cost
        n = int((~finite).sum())
        self.num_nonfinite_costs += n
        log_every_n_seconds(
            logging.WARNING,
            f"HungarianMatcher: replaced {n} non-finite matching costs (NaN/inf predictions?); "
            f"{self.num_nonfinite_costs} so far",
            n=60,
        )
        try:
            get_event_storage().put_scalar(
                "matcher_nonfinite_costs", self.num_nonfinite_costs, smoothing_hint=False
            )
        except AssertionError:  # not inside a training loop: the warning is the report
            pass
        return torch.where(finite, cost, torch.full_like(cost, _NONFINITE_COST))
