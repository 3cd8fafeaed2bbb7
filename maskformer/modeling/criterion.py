"""Set prediction loss of MaskFormer (paper Sec. 3.2, Eq. 1).

Shapes: B images, Q queries, K classes, T targets of one image, M matched pairs in the batch,
H x W the prediction size, Hp x Wp the padded image size of the targets.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.projects.point_rend.point_features import (
    get_uncertain_point_coords_with_randomness,
)
from detectron2.utils.comm import get_world_size
from torch import Tensor, nn

from .losses import dice_loss, sigmoid_focal_loss, values_at_points
from .matcher import HungarianMatcher

__all__ = ["SetCriterion", "num_masks_across_processes"]


def num_masks_across_processes(num_local: int, device: torch.device) -> float:
    """The loss normaliser: masks per process, averaged over all processes (so every process's
    gradient is on the same scale), at least 1 (so a batch without masks stays finite)."""
    num = torch.as_tensor([float(num_local)], device=device)
    world_size = get_world_size()
    if world_size > 1:
        torch.distributed.all_reduce(num)
    return max(num.item() / world_size, 1.0)


def drop_empty_masks(targets: List[Dict[str, Tensor]]) -> List[Dict[str, Tensor]]:
    """Remove targets whose mask has no pixel (e.g. cropped away): they cannot be matched."""
    out = []
    for t in targets:
        keep = t["masks"].flatten(1).any(dim=1)
        out.append(
            t if bool(keep.all()) else {**t, "labels": t["labels"][keep], "masks": t["masks"][keep]}
        )
    return out


class SetCriterion(nn.Module):
    """The paper's mask-classification loss (Eq. 1): for the last decoder layer and, with deep
    supervision, each earlier one, the Hungarian matching of its Q predictions to the targets,
    then cross-entropy on every query's class (the unmatched ones should predict "no object") and
    focal + dice on each matched query's mask, weighted and normalised by the number of masks."""

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher,
        *,
        class_weight: float = 1.0,
        mask_weight: float = 20.0,
        dice_weight: float = 1.0,
        no_object_weight: float = 0.1,
        deep_supervision: bool = True,
        num_points: int = 0,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        class_weights: Optional[Sequence[float]] = None,
    ):
        """
        Args:
            num_classes: K, not counting "no object".
            class_weight, mask_weight, dice_weight: weights of the cross-entropy, focal and dice
                terms in the total loss (the same for every decoder layer).
            no_object_weight: cross-entropy class weight of "no object".
            num_points: 0 for the official loss on every pixel of the upsampled masks; P > 0
                for the loss at P points per mask (`sample_points`), which needs far less
                memory (Mask2Former uses 112 * 112).
            class_weights: K cross-entropy class weights (None: all 1); the matcher should
                scale its class cost by the same ones (`MaskFormer.from_config` does).
        """
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.weights = {"loss_ce": class_weight, "loss_mask": mask_weight, "loss_dice": dice_weight}
        self.deep_supervision = deep_supervision
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        empty_weight = torch.ones(num_classes + 1)
        if class_weights is not None:
            empty_weight[:-1] = torch.as_tensor(class_weights, dtype=torch.float32)
        empty_weight[-1] = no_object_weight
        # Persistent: the official checkpoints carry it as `criterion.empty_weight`.
        self.register_buffer("empty_weight", empty_weight)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The class weights are configuration, not learned: a checkpoint trained with other
        # weights (the official ones are 1 and NO_OBJECT_WEIGHT) must not replace them.
        key = prefix + "empty_weight"
        if key in state_dict and state_dict[key].shape == self.empty_weight.shape:
            state_dict[key] = self.empty_weight.clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def loss_labels(
        self, logits: Tensor, targets: List[Dict[str, Tensor]], indices: List[Tuple[Tensor, Tensor]]
    ) -> Tensor:
        """Weighted cross-entropy over K + 1 classes of all B x Q queries; logits (B, Q, K + 1)."""
        logits = logits.float()
        target_classes = torch.full(
            logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device
        )
        for b, (t, (src, tgt)) in enumerate(zip(targets, indices)):
            target_classes[b, src.to(logits.device)] = t["labels"][tgt.to(t["labels"].device)].to(
                logits.device
            )
        return F.cross_entropy(logits.transpose(1, 2), target_classes, self.empty_weight)

    def loss_masks(
        self,
        pred_masks: Tensor,
        targets: List[Dict[str, Tensor]],
        indices: List[Tuple[Tensor, Tensor]],
        num_masks: float,
    ) -> Tuple[Tensor, Tensor]:
        """Focal and dice losses of one layer's matched (B, Q, H, W) mask logits, each summed
        over the M matched masks / num_masks. The predictions are bilinearly upsampled to the
        padded image size of the targets, as in the official implementation (the padding counts
        as background); with `num_points` > 0 both are read at sampled points instead."""
        device = pred_masks.device
        src = torch.cat([pred_masks[b, i.to(device)] for b, (i, _) in enumerate(indices)])
        tgt = torch.cat([t["masks"][j.to(device)] for t, (_, j) in zip(targets, indices)])
        src, tgt = src.float(), tgt.float()  # (M, H, W), (M, Hp, Wp)
        if self.num_points > 0:
            src, tgt = self.sample_points(src, tgt)
        else:
            size = tgt.shape[-2:]
            src = F.interpolate(src[:, None], size=size, mode="bilinear", align_corners=False)
            src, tgt = src.flatten(1), tgt.flatten(1)
        return sigmoid_focal_loss(src, tgt, num_masks), dice_loss(src, tgt, num_masks)

    def sample_points(self, src: Tensor, tgt: Tensor) -> Tuple[Tensor, Tensor]:
        """(M, P) logits and targets at `num_points` points per mask of src (M, H, W) logits and
        tgt (M, Hp, Wp) masks, drawn as in PointRend and Mask2Former: `oversample_ratio` x P
        uniform candidates, of which the `importance_sample_ratio` share with the most uncertain
        prediction (logit closest to 0) is kept, the rest uniform."""
        with torch.no_grad():
            coords = get_uncertain_point_coords_with_randomness(
                src[:, None],
                lambda logits: -logits.abs(),
                self.num_points,
                self.oversample_ratio,
                self.importance_sample_ratio,
            )
        return values_at_points(src, coords), values_at_points(tgt, coords)

    def forward(
        self, outputs: Dict[str, object], targets: List[Dict[str, Tensor]]
    ) -> Dict[str, Tensor]:
        """The predictor's `outputs` and B `targets` ("labels" (T,) int64, "masks" (T, Hp, Wp))
        -> weighted losses "loss_ce", "loss_mask", "loss_dice" and, for aux layer i,
        "loss_ce_i", "loss_mask_i", "loss_dice_i". Their sum is the training loss."""
        targets = drop_empty_masks(targets)
        num_masks = num_masks_across_processes(
            sum(len(t["labels"]) for t in targets), outputs["pred_masks"].device
        )
        layers = [outputs]
        if self.deep_supervision:
            layers += outputs.get("aux_outputs", [])
        losses = {}
        # Losses in fp32 even under autocast: focal/dice on fp16 logits lose too much.
        with torch.autocast(device_type=outputs["pred_masks"].device.type, enabled=False):
            for i, layer in enumerate(layers):
                indices = self.matcher(layer, targets)
                focal, dice = self.loss_masks(layer["pred_masks"], targets, indices, num_masks)
                raw = {
                    "loss_ce": self.loss_labels(layer["pred_logits"], targets, indices),
                    "loss_mask": focal,
                    "loss_dice": dice,
                }
                suffix = "" if i == 0 else f"_{i - 1}"
                losses.update({k + suffix: v * self.weights[k] for k, v in raw.items()})
        return losses
