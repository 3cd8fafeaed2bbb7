"""Set prediction loss of MaskFormer (paper Sec. 3.2, Eq. 1).

For the final decoder layer and, with deep supervision, each earlier one: match predictions to
targets, then pay cross-entropy on every query's class (the unmatched ones should predict "no
object") and focal + dice on each matched query's mask.

Shapes: B images, Q queries, K classes, T targets of one image, M matched pairs in the batch,
H x W the prediction size, Hp x Wp the padded image size of the targets.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from detectron2.utils.comm import get_world_size
from torch import Tensor, nn

from .losses import dice_loss, sigmoid_focal_loss
from .matcher import HungarianMatcher

__all__ = ["SetCriterion", "num_masks_across_processes"]


def num_masks_across_processes(num_local: int, device: torch.device) -> float:
    """The loss normaliser: masks per process, averaged over all processes, at least 1.

    Averaging keeps every process's gradient on the same scale when images carry different
    numbers of masks; the floor of 1 keeps a batch without masks finite.
    """
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
    ):
        """
        Args:
            num_classes: K, not counting "no object".
            matcher: assigns predictions to targets.
            class_weight, mask_weight, dice_weight: weights of the cross-entropy, focal and dice
                terms in the total loss (the same for every decoder layer).
            no_object_weight: cross-entropy class weight of "no object" (the real classes have 1).
            deep_supervision: also pay the loss on "aux_outputs" when the model returns them.
        """
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.weights = {"loss_ce": class_weight, "loss_mask": mask_weight, "loss_dice": dice_weight}
        self.deep_supervision = deep_supervision
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = no_object_weight
        # Persistent: the official checkpoints carry it as `criterion.empty_weight`.
        self.register_buffer("empty_weight", empty_weight)

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
        """Focal and dice losses of the matched masks; pred_masks (B, Q, H, W).

        Predictions are bilinearly upsampled to the padded image size of the targets, as in the
        official implementation (the padding counts as background).
        """
        src = torch.cat(
            [pred_masks[b, i.to(pred_masks.device)] for b, (i, _) in enumerate(indices)]
        )
        tgt = torch.cat(
            [t["masks"][j.to(t["masks"].device)] for t, (_, j) in zip(targets, indices)]
        )
        src = F.interpolate(
            src[:, None].float(), size=tgt.shape[-2:], mode="bilinear", align_corners=False
        )[:, 0].flatten(1)
        tgt = tgt.to(src).flatten(1)
        return sigmoid_focal_loss(src, tgt, num_masks), dice_loss(src, tgt, num_masks)

    def _layer_losses(
        self, outputs: Dict[str, Tensor], targets: List[Dict[str, Tensor]], num_masks: float
    ) -> Dict[str, Tensor]:
        indices = self.matcher(outputs, targets)
        loss_mask, loss_dice = self.loss_masks(outputs["pred_masks"], targets, indices, num_masks)
        raw = {
            "loss_ce": self.loss_labels(outputs["pred_logits"], targets, indices),
            "loss_mask": loss_mask,
            "loss_dice": loss_dice,
        }
        return {k: v * self.weights[k] for k, v in raw.items()}

    def forward(
        self, outputs: Dict[str, object], targets: List[Dict[str, Tensor]]
    ) -> Dict[str, Tensor]:
        """
        Args:
            outputs: the predictor's dict: "pred_logits" (B, Q, K + 1), "pred_masks" (B, Q, H, W)
                and optionally "aux_outputs", a list of such dicts for earlier layers.
            targets: B dicts with "labels" (T,) int64 and "masks" (T, Hp, Wp) (bool or float).
        Returns:
            weighted losses "loss_ce", "loss_mask", "loss_dice" and, for aux layer i,
            "loss_ce_i", "loss_mask_i", "loss_dice_i". Their sum is the training loss.
        """
        targets = drop_empty_masks(targets)
        num_masks = num_masks_across_processes(
            sum(len(t["labels"]) for t in targets), outputs["pred_masks"].device
        )
        # Losses in fp32 even under autocast: focal/dice on fp16 logits lose too much.
        with torch.autocast(device_type=outputs["pred_masks"].device.type, enabled=False):
            losses = self._layer_losses(outputs, targets, num_masks)
            if self.deep_supervision:
                for i, aux in enumerate(outputs.get("aux_outputs", [])):
                    aux_losses = self._layer_losses(aux, targets, num_masks)
                    losses.update({f"{k}_{i}": v for k, v in aux_losses.items()})
        return losses
