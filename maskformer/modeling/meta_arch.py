"""The MaskFormer meta-architecture: backbone -> MaskFormerHead -> set loss or post-processing."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone, build_sem_seg_head
from detectron2.structures import ImageList
from torch import Tensor, nn

from .backbone.freeze import freeze_backbone
from .class_weights import read_class_weights
from .criterion import SetCriterion
from .matcher import HungarianMatcher
from .postprocessing import PostProcessing

__all__ = ["MaskFormer", "postprocessing_from_config", "thing_ids_of"]


def thing_ids_of(dataset_name: Optional[str]) -> Optional[List[int]]:
    """Contiguous ids of a registered dataset's thing classes; None if its metadata has none."""
    if not dataset_name:
        return None
    mapping = MetadataCatalog.get(dataset_name).get("thing_dataset_id_to_contiguous_id")
    return None if mapping is None else sorted(mapping.values())


def postprocessing_from_config(cfg) -> PostProcessing:
    """The post-processing MODEL.MASK_FORMER.TEST and TEST.DETECTIONS_PER_IMAGE ask for."""
    test = cfg.MODEL.MASK_FORMER.TEST
    return PostProcessing(
        semantic_on=test.SEMANTIC_ON,
        panoptic_on=test.PANOPTIC_ON,
        instance_on=test.INSTANCE_ON,
        sem_seg_postprocess_before_inference=test.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE,
        object_mask_threshold=test.OBJECT_MASK_THRESHOLD,
        overlap_threshold=test.OVERLAP_THRESHOLD,
        detections_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
        instance_score_threshold=test.INSTANCE_SCORE_THRESHOLD,
    )


@META_ARCH_REGISTRY.register()
class MaskFormer(nn.Module):
    """Mask classification for semantic, panoptic and instance segmentation.

    Training input: Detectron2 batched dicts with "image" (C, H, W) and "instances" carrying
    `gt_classes` (T,) and `gt_masks` (T, H, W); output: the weighted losses. Inference output
    per image, at its "height" x "width": `self.postprocessing`'s.

    Which classes are things is a property of the evaluated dataset, not of the model:
    `thing_ids` is the default (the first test dataset's), and `model(inputs, dataset_name=...)`
    post-processes for another registered dataset's classes (as the evaluation loop does).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        sem_seg_head: nn.Module,
        criterion: SetCriterion,
        postprocessing: PostProcessing,
        thing_ids: Optional[Sequence[int]],
        size_divisibility: int,
        pixel_mean: Tuple[float, ...],
        pixel_std: Tuple[float, ...],
    ):
        """
        Args:
            thing_ids: contiguous ids of the thing classes of the dataset to post-process for;
                None if it declares none.
            size_divisibility: pad the batch to a multiple of this (<0: the backbone's).
            pixel_mean, pixel_std: input normalisation, in the input's channel order.
        """
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.postprocessing = postprocessing
        if size_divisibility < 0:
            size_divisibility = self.backbone.size_divisibility
        self.size_divisibility = size_divisibility
        self.thing_ids = self.checked_thing_ids(thing_ids, "the config's first DATASETS.TEST")
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    def checked_thing_ids(
        self, thing_ids: Optional[Sequence[int]], source: str
    ) -> Optional[Tuple[int, ...]]:
        """`thing_ids` sorted, refused if panoptic or instance output would use an id outside
        the model's classes (`source` names where they came from, for the error)."""
        if thing_ids is None:
            return None
        thing_ids = tuple(sorted(int(i) for i in thing_ids))
        num_classes = self.criterion.num_classes
        bad = [i for i in thing_ids if not 0 <= i < num_classes]
        # A semantic model may be evaluated on a panoptic dataset whatever its thing ids are.
        if bad and (self.postprocessing.panoptic_on or self.postprocessing.instance_on):
            raise ValueError(
                f"Thing class ids {bad} of {source} (metadata thing_dataset_id_to_contiguous_id) "
                f"are outside the model's classes [0, {num_classes}) "
                "(MODEL.SEM_SEG_HEAD.NUM_CLASSES): the dataset does not fit this model"
            )
        return thing_ids

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
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
        # A default for use outside the evaluation loop, which passes the evaluated dataset's.
        test_dataset = cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else None
        return {
            "backbone": backbone,
            "sem_seg_head": sem_seg_head,
            "criterion": criterion,
            "postprocessing": postprocessing_from_config(cfg),
            "thing_ids": thing_ids_of(test_dataset),
            "size_divisibility": mf.SIZE_DIVISIBILITY,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        images = [
            (x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs
        ]
        return ImageList.from_tensors(images, self.size_divisibility)

    def forward(self, batched_inputs: List[Dict], dataset_name: Optional[str] = None):
        """`dataset_name`: at inference, post-process for this registered dataset's thing classes
        instead of `self.thing_ids`."""
        thing_ids = self.thing_ids
        if dataset_name is not None:
            thing_ids = self.checked_thing_ids(thing_ids_of(dataset_name), f"'{dataset_name}'")
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        outputs = self.sem_seg_head(features)
        if self.training:
            targets = self.prepare_targets(batched_inputs, images)
            return self.criterion(outputs, targets)
        return self.inference(outputs, batched_inputs, images, thing_ids)

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

    def inference(
        self,
        outputs: Dict,
        batched_inputs: List[Dict],
        images: ImageList,
        thing_ids: Optional[Sequence[int]],
    ) -> List[Dict]:
        """Per image, `self.postprocessing` of its class and mask logits at the output size
        ("height" and "width" of its input dict; default: the image size)."""
        padded_size = tuple(images.tensor.shape[-2:])
        results = []
        for mask_cls, mask_logits, x, image_size in zip(
            outputs["pred_logits"], outputs["pred_masks"], batched_inputs, images.image_sizes
        ):
            out_size = (x.get("height", image_size[0]), x.get("width", image_size[1]))
            # Post-processing in float32 whatever precision the network ran in.
            results.append(
                self.postprocessing(
                    mask_cls.float(),
                    mask_logits.float(),
                    padded_size,
                    tuple(image_size),
                    out_size,
                    thing_ids,
                )
            )
        return results
