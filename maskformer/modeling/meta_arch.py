"""The MaskFormer meta-architecture: backbone -> MaskFormerHead -> set loss or inference."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone, build_sem_seg_head
from detectron2.structures import ImageList
from torch import Tensor, nn

from .criterion import SetCriterion
from .matcher import HungarianMatcher
from .postprocessing import panoptic_inference, semantic_inference

__all__ = ["MaskFormer"]


def _resize_to_output(x: Tensor, out_size: Tuple[int, int]) -> Tensor:
    """Bilinear resize of (C, H, W) maps to `out_size`, as `sem_seg_postprocess` does.

    A bilinear (align_corners=False) resize to the same size is the identity, so it is skipped.
    """
    if tuple(x.shape[-2:]) == tuple(out_size):
        return x
    return F.interpolate(x[None], size=out_size, mode="bilinear", align_corners=False)[0]


def thing_ids_of(dataset_name: Optional[str]) -> List[int]:
    """Contiguous ids of the thing classes of a registered dataset ([] if it has none)."""
    if not dataset_name:
        return []
    meta = MetadataCatalog.get(dataset_name)
    return sorted(getattr(meta, "thing_dataset_id_to_contiguous_id", {}).values())


@META_ARCH_REGISTRY.register()
class MaskFormer(nn.Module):
    """Mask classification for semantic (and panoptic) segmentation.

    Training input: Detectron2 batched dicts with "image" (C, H, W) and "instances" carrying
    `gt_classes` (T,) and `gt_masks` (T, H, W). Training output: the weighted losses.
    Inference output per image: "sem_seg" (K, height, width) scores, and with panoptic
    inference on, "panoptic_seg" (map, segments_info).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        sem_seg_head: nn.Module,
        criterion: SetCriterion,
        num_queries: int,
        object_mask_threshold: float,
        overlap_threshold: float,
        thing_ids: List[int],
        size_divisibility: int,
        sem_seg_postprocess_before_inference: bool,
        pixel_mean: Tuple[float, ...],
        pixel_std: Tuple[float, ...],
        panoptic_on: bool = False,
    ):
        """
        Args:
            backbone: image features by name.
            sem_seg_head: features -> predictor output dict (MaskFormerHead).
            criterion: predictor output + targets -> weighted losses.
            num_queries: Q.
            object_mask_threshold, overlap_threshold: panoptic inference thresholds.
            thing_ids: contiguous ids of the thing classes (panoptic inference).
            size_divisibility: pad the batch to a multiple of this (<0: the backbone's).
            sem_seg_postprocess_before_inference: resize mask logits to the output size before
                combining them (exact, costlier) instead of resizing the combined K maps.
            pixel_mean, pixel_std: input normalisation, in the input's channel order.
            panoptic_on: also produce "panoptic_seg".
        """
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.num_queries = num_queries
        self.object_mask_threshold = object_mask_threshold
        self.overlap_threshold = overlap_threshold
        self.thing_ids = thing_ids
        if size_divisibility < 0:
            size_divisibility = self.backbone.size_divisibility
        self.size_divisibility = size_divisibility
        self.sem_seg_postprocess_before_inference = (
            sem_seg_postprocess_before_inference or panoptic_on
        )
        self.panoptic_on = panoptic_on
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        sem_seg_head = build_sem_seg_head(cfg, backbone.output_shape())
        mf = cfg.MODEL.MASK_FORMER
        matcher = HungarianMatcher(
            cost_class=1.0, cost_mask=mf.MASK_WEIGHT, cost_dice=mf.DICE_WEIGHT
        )
        criterion = SetCriterion(
            cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            matcher,
            class_weight=1.0,
            mask_weight=mf.MASK_WEIGHT,
            dice_weight=mf.DICE_WEIGHT,
            no_object_weight=mf.NO_OBJECT_WEIGHT,
            deep_supervision=mf.DEEP_SUPERVISION,
        )
        test_dataset = cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else None
        return {
            "backbone": backbone,
            "sem_seg_head": sem_seg_head,
            "criterion": criterion,
            "num_queries": mf.NUM_OBJECT_QUERIES,
            "object_mask_threshold": mf.TEST.OBJECT_MASK_THRESHOLD,
            "overlap_threshold": mf.TEST.OVERLAP_THRESHOLD,
            "thing_ids": thing_ids_of(test_dataset),
            "size_divisibility": mf.SIZE_DIVISIBILITY,
            "sem_seg_postprocess_before_inference": (
                mf.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE
            ),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "panoptic_on": mf.TEST.PANOPTIC_ON,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        images = [
            (x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs
        ]
        return ImageList.from_tensors(images, self.size_divisibility)

    def forward(self, batched_inputs: List[Dict]):
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        outputs = self.sem_seg_head(features)
        if self.training:
            targets = self.prepare_targets(batched_inputs, images)
            return self.criterion(outputs, targets)
        return self.inference(outputs, batched_inputs, images)

    def prepare_targets(
        self, batched_inputs: List[Dict], images: ImageList
    ) -> List[Dict[str, Tensor]]:
        """Ground truth per image: "labels" (T,), "masks" (T, Hp, Wp) zero-padded to the batch."""
        if "instances" not in batched_inputs[0]:
            raise KeyError(
                "MaskFormer training needs 'instances' (gt_classes, gt_masks) in every input dict; "
                "use a MaskFormer dataset mapper (INPUT.DATASET_MAPPER_NAME)"
            )
        h_pad, w_pad = images.tensor.shape[-2:]
        targets = []
        for x in batched_inputs:
            inst = x["instances"].to(self.device)
            gt_masks = inst.gt_masks
            gt_masks = getattr(gt_masks, "tensor", gt_masks)  # BitMasks or a plain tensor
            h, w = gt_masks.shape[-2:]
            padded = gt_masks.new_zeros((gt_masks.shape[0], h_pad, w_pad))
            padded[:, :h, :w] = gt_masks
            targets.append({"labels": inst.gt_classes, "masks": padded})
        return targets

    def inference(self, outputs: Dict, batched_inputs: List[Dict], images: ImageList) -> List[Dict]:
        mask_cls_results = outputs["pred_logits"]
        # Upsample the stride-4 mask logits to the padded input size, as the official model does.
        mask_pred_results = F.interpolate(
            outputs["pred_masks"],
            size=images.tensor.shape[-2:],
            mode="bilinear",
            align_corners=False,
        )
        results = []
        for mask_cls, mask_pred, x, image_size in zip(
            mask_cls_results, mask_pred_results, batched_inputs, images.image_sizes
        ):
            out_size = (x.get("height", image_size[0]), x.get("width", image_size[1]))
            # Drop the batch padding first: everything after is per pixel or a resize of the
            # un-padded region, so cropping early gives the same result with less work.
            mask_pred = mask_pred[:, : image_size[0], : image_size[1]]
            if self.sem_seg_postprocess_before_inference:
                mask_pred = _resize_to_output(mask_pred, out_size)
                sem_seg = semantic_inference(mask_cls, mask_pred)
            else:
                sem_seg = _resize_to_output(semantic_inference(mask_cls, mask_pred), out_size)
            r: Dict[str, object] = {"sem_seg": sem_seg}
            if self.panoptic_on:
                r["panoptic_seg"] = panoptic_inference(
                    mask_cls,
                    mask_pred,
                    self.thing_ids,
                    self.object_mask_threshold,
                    self.overlap_threshold,
                )
            results.append(r)
        return results
