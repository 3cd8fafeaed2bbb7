"""Set prediction loss of MaskFormer (paper Sec. 3.2, Eq. 1).

For the final decoder layer and, with deep supervision, each earlier one: match predictions to
targets, then pay cross-entropy on every query's class (the unmatched ones should predict "no
object") and focal + dice on each matched query's mask.

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

from .losses import focal_and_dice_per_mask
from .matcher import HungarianMatcher
from .resample import values_at_points

__all__ = ["SetCriterion", "num_masks_across_processes", "point_mask_losses"]


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
        num_points: int = 0,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        class_weights: Optional[Sequence[float]] = None,
    ):
        """
        Args:
            num_classes: K, not counting "no object".
            matcher: assigns predictions to targets.
            class_weight, mask_weight, dice_weight: weights of the cross-entropy, focal and dice
                terms in the total loss (the same for every decoder layer).
            no_object_weight: cross-entropy class weight of "no object" (the real classes have 1).
            deep_supervision: also pay the loss on "aux_outputs" when the model returns them.
            num_points: 0 for the official loss on every pixel of the upsampled masks; P > 0
                for the loss at P points per mask (`point_mask_losses`), which needs far less
                memory (Mask2Former uses 112 * 112).
            oversample_ratio, importance_sample_ratio: the point sampling (PointRend's
                `get_uncertain_point_coords_with_randomness`).
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
        """Focal and dice losses of one layer's matched masks; pred_masks (B, Q, H, W)."""
        return self.loss_masks_of_layers([pred_masks], targets, [indices], num_masks)[0]

    def loss_masks_of_layers(
        self,
        pred_masks: List[Tensor],
        targets: List[Dict[str, Tensor]],
        indices: List[List[Tuple[Tensor, Tensor]]],
        num_masks: float,
    ) -> List[Tuple[Tensor, Tensor]]:
        """Focal and dice losses of the matched masks of several decoder layers together.

        Predictions are bilinearly upsampled to the padded image size of the targets, as in the
        official implementation (the padding counts as background); with `num_points` > 0 they
        are compared at sampled points instead (`point_mask_losses`). All layers' matched pairs
        go through one gathering and one loss evaluation (`dense_mask_losses`), then are summed per
        layer.

        Args:
            pred_masks: per layer, (B, Q, H, W) mask logits.
            indices: per layer, the matcher's B (query_idx, target_idx) pairs.
        Returns:
            per layer, (focal, dice) each summed over its matched masks / num_masks.
        """
        device = pred_masks[0].device
        src = torch.cat(
            [
                masks[b, i.to(device)]
                for masks, layer in zip(pred_masks, indices)
                for b, (i, _) in enumerate(layer)
            ]
        )
        # Each layer pairs the same target masks in its own order: gather them from one
        # concatenation of the batch's targets.
        first = torch.tensor([0] + [len(t["labels"]) for t in targets]).cumsum(0)[:-1].tolist()
        gather = torch.cat(
            [j + first[b] for layer in indices for b, (_, j) in enumerate(layer)]
        ).to(device)
        tgt = torch.cat([t["masks"].to(device) for t in targets])[gather]
        if self.num_points > 0:
            focal, dice = self.point_mask_losses(src, tgt)
        else:
            focal, dice = dense_mask_losses(src, tgt)
        counts = [sum(len(i) for i, _ in layer) for layer in indices]
        return [
            (f.sum() / num_masks, d.sum() / num_masks)
            for f, d in zip(focal.split(counts), dice.split(counts))
        ]

    def point_mask_losses(self, src: Tensor, tgt: Tensor) -> Tuple[Tensor, Tensor]:
        """Per-mask focal and dice losses at `num_points` points per mask (Mask2Former's
        sampling), instead of at every pixel of the upsampled prediction.

        Points are drawn as in PointRend: `oversample_ratio` x num_points uniform candidates,
        of which the `importance_sample_ratio` share with the most uncertain prediction
        (logit closest to 0) is kept, the rest uniform. Predictions are read at the points by
        bilinear interpolation with the edge values repeated (what the full loss's upsampling
        computes there), targets by bilinear interpolation of the binary masks.

        Args:
            src: (M, H, W) mask logits; tgt: (M, Hp, Wp) target masks.
        Returns:
            focal (M,), dice (M,): means / sums over the points instead of the pixels.
        """
        src = src[:, None].float()
        with torch.no_grad():
            coords = get_uncertain_point_coords_with_randomness(
                src,
                lambda logits: -logits.abs(),
                self.num_points,
                self.oversample_ratio,
                self.importance_sample_ratio,
            )
        return point_mask_losses(src[:, 0], tgt, coords)

    def _layer_losses(
        self,
        outputs: Dict[str, Tensor],
        targets: List[Dict[str, Tensor]],
        indices: List[Tuple[Tensor, Tensor]],
        mask_losses: Tuple[Tensor, Tensor],
    ) -> Dict[str, Tensor]:
        raw = {
            "loss_ce": self.loss_labels(outputs["pred_logits"], targets, indices),
            "loss_mask": mask_losses[0],
            "loss_dice": mask_losses[1],
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
        layers = [outputs]
        if self.deep_supervision:
            layers += outputs.get("aux_outputs", [])
        # Losses in fp32 even under autocast: focal/dice on fp16 logits lose too much.
        with torch.autocast(device_type=outputs["pred_masks"].device.type, enabled=False):
            indices = [self.matcher(layer, targets) for layer in layers]
            mask_losses = self.loss_masks_of_layers(
                [layer["pred_masks"] for layer in layers], targets, indices, num_masks
            )
            losses = {}
            for i, (layer, idx, masks) in enumerate(zip(layers, indices, mask_losses)):
                suffix = "" if i == 0 else f"_{i - 1}"
                layer_losses = self._layer_losses(layer, targets, idx, masks)
                losses.update({k + suffix: v for k, v in layer_losses.items()})
        return losses


# On the CPU the masks are upsampled and compared a few at a time: a chunk of upsampled masks
# then stays in cache through the loss and its backward pass. All masks of all layers in one
# piece (72 masks of 512 x 512 for an ADE20K batch of 2) took 2.2x longer on 2 cores.
CPU_LOSS_CHUNK = 4


def dense_mask_losses(src: Tensor, tgt: Tensor) -> Tuple[Tensor, Tensor]:
    """Per-mask focal and dice losses of mask logits bilinearly upsampled to the target size
    (the official loss).

    Args:
        src: (M, h, w) mask logits.
        tgt: (M, Hp, Wp) target masks (bool or float).
    Returns:
        focal (M,), dice (M,) as `focal_and_dice_per_mask` of the upsampled logits.
    """
    if len(src) == 0:
        empty = src.float().flatten(1).sum(1)  # (0,), still part of the graph
        return empty, empty
    chunk = len(src) if src.device.type == "cuda" else CPU_LOSS_CHUNK
    focal, dice = [], []
    for a in range(0, len(src), chunk):
        up = F.interpolate(
            src[a : a + chunk, None].float(),
            size=tgt.shape[-2:],
            mode="bilinear",
            align_corners=False,
        )[:, 0]
        f, d = focal_and_dice_per_mask(up.flatten(1), tgt[a : a + chunk].flatten(1))
        focal.append(f)
        dice.append(d)
    return torch.cat(focal), torch.cat(dice)


def point_mask_losses(src: Tensor, tgt: Tensor, coords: Tensor) -> Tuple[Tensor, Tensor]:
    """Per-mask focal and dice losses of predictions and targets read at given points.

    Args:
        src: (M, H, W) mask logits, upsampled implicitly (bilinear, edges repeated, as
            `F.interpolate(align_corners=False)` does).
        tgt: (M, Hp, Wp) target masks (bool or float).
        coords: (M, P, 2) point coordinates (x, y) in [0, 1], relative to the full extent of
            both maps (pixel k of n covers [k / n, (k + 1) / n)).
    Returns:
        focal (M,), dice (M,) as `focal_and_dice_per_mask` of the (M, P) point values. At the P
        = Hp * Wp pixel centres this is the full-resolution loss.
    """
    logits = values_at_points(src, coords, src.dtype)
    return focal_and_dice_per_mask(logits, values_at_points(tgt, coords, logits.dtype))
