"""The MaskFormer meta-architecture: backbone -> MaskFormerHead -> set loss or inference."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone, build_sem_seg_head
from detectron2.structures import ImageList
from torch import Tensor, nn

from .backbone.freeze import freeze_backbone
from .class_weights import read_class_weights
from .criterion import SetCriterion
from .layers.frozen_bn import fold_frozen_batchnorm
from .matcher import HungarianMatcher
from .postprocessing import (
    SemSegLabels,
    instance_inference,
    panoptic_inference_banded,
    semantic_inference_banded,
    semantic_labels_low_res,
)
from .resample import MapResampler

__all__ = ["MaskFormer", "upsample_masks"]


def _resize_to_output(x: Tensor, out_size: Tuple[int, int]) -> Tensor:
    """Bilinear resize of (C, H, W) maps to `out_size`, as `sem_seg_postprocess` does.

    A bilinear (align_corners=False) resize to the same size is the identity, so it is skipped.
    """
    if tuple(x.shape[-2:]) == tuple(out_size):
        return x
    return F.interpolate(x[None], size=out_size, mode="bilinear", align_corners=False)[0]


def thing_ids_of(dataset_name: Optional[str]) -> Optional[List[int]]:
    """Contiguous ids of a registered dataset's thing classes; None if its metadata has none."""
    if not dataset_name:
        return None
    mapping = MetadataCatalog.get(dataset_name).get("thing_dataset_id_to_contiguous_id")
    return None if mapping is None else sorted(mapping.values())


@META_ARCH_REGISTRY.register()
class MaskFormer(nn.Module):
    """Mask classification for semantic, panoptic and instance segmentation.

    Training input: Detectron2 batched dicts with "image" (C, H, W) and "instances" carrying
    `gt_classes` (T,) and `gt_masks` (T, H, W). Training output: the weighted losses.
    Inference output per image, each at the requested output size and switched on separately:
    "sem_seg" (K, height, width) scores, "panoptic_seg" (map, segments_info), "instances".

    Panoptic and instance outputs depend on which classes are things. That is a property of
    the dataset being evaluated, not of the model: `thing_ids` starts as the first test
    dataset's and is set per dataset by the evaluation loop (`train_net.Trainer.test`).
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
        thing_ids: Optional[Sequence[int]],
        size_divisibility: int,
        sem_seg_postprocess_before_inference: bool,
        pixel_mean: Tuple[float, ...],
        pixel_std: Tuple[float, ...],
        semantic_on: bool = True,
        panoptic_on: bool = False,
        instance_on: bool = False,
        detections_per_image: int = 100,
        instance_score_threshold: float = 0.0,
        sem_seg_low_res_labels: bool = False,
        channels_last: bool = False,
    ):
        """
        Args:
            backbone: image features by name.
            sem_seg_head: features -> predictor output dict (MaskFormerHead).
            criterion: predictor output + targets -> weighted losses.
            num_queries: Q.
            object_mask_threshold, overlap_threshold: panoptic inference thresholds.
            thing_ids: contiguous ids of the thing classes of the dataset to post-process for;
                None if it declares none (then panoptic output is all stuff and every class can
                be an instance).
            size_divisibility: pad the batch to a multiple of this (<0: the backbone's).
            sem_seg_postprocess_before_inference: resize mask logits to the output size before
                combining them (exact, costlier) instead of resizing the combined K maps. Always
                so for panoptic and instance output, which need masks at the output size.
            pixel_mean, pixel_std: input normalisation, in the input's channel order.
            semantic_on, panoptic_on, instance_on: which outputs to produce (at least one).
            detections_per_image: instance output: top-k over (query, class) pairs.
            instance_score_threshold: instance output: drop detections scoring at most this.
            sem_seg_low_res_labels: "sem_seg" is a `SemSegLabels` (label map and top score)
                combined at the mask resolution and resized in bands, for outputs too large
                for (K, H, W) scores; see `semantic_labels_low_res`.
            channels_last: keep convolution weights and the images in channels-last memory
                order (NHWC). The numbers are the same up to float rounding; oneDNN (CPU) and
                cuDNN with tensor cores run NHWC convolutions faster.
        """
        super().__init__()
        if not (semantic_on or panoptic_on or instance_on):
            raise ValueError(
                "MaskFormer has no output: set at least one of MODEL.MASK_FORMER.TEST."
                "{SEMANTIC_ON, PANOPTIC_ON, INSTANCE_ON} to True"
            )
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.num_queries = num_queries
        self.object_mask_threshold = object_mask_threshold
        self.overlap_threshold = overlap_threshold
        if size_divisibility < 0:
            size_divisibility = self.backbone.size_divisibility
        self.size_divisibility = size_divisibility
        self.sem_seg_postprocess_before_inference = (
            sem_seg_postprocess_before_inference or panoptic_on or instance_on
        )
        self.semantic_on = semantic_on
        self.panoptic_on = panoptic_on
        self.instance_on = instance_on
        self.thing_ids = thing_ids
        self.detections_per_image = detections_per_image
        self.instance_score_threshold = instance_score_threshold
        self.sem_seg_low_res_labels = sem_seg_low_res_labels
        self.channels_last = channels_last
        if channels_last:
            # Only 4-D tensors change order: convolution weights; linear layers are untouched.
            self.backbone.to(memory_format=torch.channels_last)
            self.sem_seg_head.to(memory_format=torch.channels_last)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @property
    def thing_ids(self) -> Optional[Tuple[int, ...]]:
        return self._thing_ids

    @thing_ids.setter
    def thing_ids(self, thing_ids: Optional[Sequence[int]]) -> None:
        num_classes = self.criterion.num_classes
        if thing_ids is not None:
            thing_ids = tuple(sorted(int(i) for i in thing_ids))
            bad = [i for i in thing_ids if not 0 <= i < num_classes]
            # Only panoptic and instance output use them; a semantic model may be evaluated on a
            # panoptic dataset's semantic maps whatever its thing ids are.
            if bad and (self.panoptic_on or self.instance_on):
                raise ValueError(
                    f"Thing class ids {bad} are outside the model's classes [0, {num_classes}) "
                    "(MODEL.SEM_SEG_HEAD.NUM_CLASSES); the dataset's metadata "
                    "thing_dataset_id_to_contiguous_id does not fit this model"
                )
        self._thing_ids = thing_ids

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        # One convolution instead of convolution + frozen norm; same parameters and keys.
        fold_frozen_batchnorm(backbone)
        if cfg.MODEL.BACKBONE.FREEZE:
            freeze_backbone(backbone)
        sem_seg_head = build_sem_seg_head(cfg, backbone.output_shape())
        mf = cfg.MODEL.MASK_FORMER
        class_weights = read_class_weights(mf.CLASS_WEIGHTS, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)
        matcher = HungarianMatcher(
            cost_class=1.0,
            cost_mask=mf.MASK_WEIGHT,
            cost_dice=mf.DICE_WEIGHT,
            num_points=mf.TRAIN_NUM_POINTS,
            class_weights=class_weights,
        )
        criterion = SetCriterion(
            cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            matcher,
            class_weight=1.0,
            mask_weight=mf.MASK_WEIGHT,
            dice_weight=mf.DICE_WEIGHT,
            no_object_weight=mf.NO_OBJECT_WEIGHT,
            deep_supervision=mf.DEEP_SUPERVISION,
            num_points=mf.TRAIN_NUM_POINTS,
            oversample_ratio=mf.OVERSAMPLE_RATIO,
            importance_sample_ratio=mf.IMPORTANCE_SAMPLE_RATIO,
            class_weights=class_weights,
        )
        # A default for use outside the evaluation loop, which sets the evaluated dataset's.
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
            "semantic_on": mf.TEST.SEMANTIC_ON,
            "panoptic_on": mf.TEST.PANOPTIC_ON,
            "instance_on": mf.TEST.INSTANCE_ON,
            "detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "instance_score_threshold": mf.TEST.INSTANCE_SCORE_THRESHOLD,
            "sem_seg_low_res_labels": mf.TEST.SEM_SEG_LOW_RES_LABELS,
            "channels_last": mf.CHANNELS_LAST,
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
        x = images.tensor
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        features = self.backbone(x)
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
        # Post-processing in float32 whatever precision the network ran in.
        mask_cls_results = outputs["pred_logits"].float()
        mask_logits_results = outputs["pred_masks"].float()
        padded_size = tuple(images.tensor.shape[-2:])
        results = []
        for mask_cls, mask_logits, x, image_size in zip(
            mask_cls_results, mask_logits_results, batched_inputs, images.image_sizes
        ):
            out_size = (x.get("height", image_size[0]), x.get("width", image_size[1]))
            # The official geometry: upsample the stride-4 logits to the padded input size,
            # crop the image, resize to the output size. Done band by band of output rows.
            to_output = MapResampler(mask_logits.shape[-2:], padded_size, image_size, out_size)
            r: Dict[str, object] = {}
            if self.semantic_on:
                r["sem_seg"] = self.semantic_inference(mask_cls, mask_logits, to_output)
            if self.panoptic_on:
                r["panoptic_seg"] = panoptic_inference_banded(
                    mask_cls,
                    mask_logits,
                    to_output,
                    self.thing_ids or (),
                    self.object_mask_threshold,
                    self.overlap_threshold,
                )
            if self.instance_on:
                # Binary masks of the detections at the output size are the result itself.
                mask_pred = upsample_masks(mask_logits, padded_size, image_size, out_size)
                # Stuff classes have no instances (and COCO's AP evaluation could not map them).
                r["instances"] = instance_inference(
                    mask_cls,
                    mask_pred,
                    max_detections=self.detections_per_image,
                    candidate_classes=self.thing_ids,
                    score_threshold=self.instance_score_threshold,
                )
            results.append(r)
        return results

    def semantic_inference(
        self, mask_cls: Tensor, mask_logits: Tensor, to_output: MapResampler
    ) -> Union[Tensor, SemSegLabels]:
        """One image's "sem_seg" from its (Q, K + 1) class and (Q, h, w) mask logits."""
        if self.sem_seg_low_res_labels:
            return semantic_labels_low_res(mask_cls, mask_logits, to_output)
        if self.sem_seg_postprocess_before_inference:
            return semantic_inference_banded(mask_cls, mask_logits, to_output)
        # Combine at the image size, then resize the K score maps (the official default).
        low_size, image_size = mask_logits.shape[-2:], to_output.image_size
        at_image = MapResampler(low_size, to_output.padded_size, image_size, image_size)
        sem_seg = semantic_inference_banded(mask_cls, mask_logits, at_image)
        return _resize_to_output(sem_seg, to_output.output_size)


def upsample_masks(
    mask_logits: Tensor,
    padded_size: Tuple[int, int],
    image_size: Tuple[int, int],
    output_size: Tuple[int, int],
) -> Tensor:
    """(Q, h, w) mask logits -> (Q, H, W) at the output size, as the official model does it:
    bilinear upsampling to the padded input size, crop to the image, bilinear resize."""
    x = F.interpolate(mask_logits[None], size=padded_size, mode="bilinear", align_corners=False)
    return _resize_to_output(x[0, :, : image_size[0], : image_size[1]], output_size)
