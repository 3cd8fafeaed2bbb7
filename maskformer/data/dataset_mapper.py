"""Training dataset mappers: dataset dict -> augmented image + mask-classification targets.

Every MaskFormer mapper shares one load -> augment -> pad path (`MaskFormerDatasetMapper`); what
differs between tasks is injected: the augmentations and a target builder, which names the label
maps it needs, checks them, and turns the augmented maps into `Instances` (gt_classes, gt_masks).
"""

from __future__ import annotations

import copy
import logging
from typing import Callable, Collection, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.projects.point_rend import ColorAugSSDTransform
from detectron2.structures import BitMasks, Instances

from ..config import ConfigValueError
from .io import is_multichannel_format, read_image, read_label_map, rgb_to_panoptic_ids
from .targets import (
    check_panoptic_labels,
    check_semantic_labels,
    panoptic_targets,
    semantic_targets,
)

__all__ = [
    "DETRAugmentation",
    "DETRPanopticDatasetMapper",
    "InferenceDatasetMapper",
    "MaskFormerDatasetMapper",
    "MaskFormerPanopticDatasetMapper",
    "MaskFormerSemanticDatasetMapper",
    "PanopticTargetBuilder",
    "SemanticTargetBuilder",
    "detr_augmentations",
    "image_format_of",
    "semantic_augmentations",
]

logger = logging.getLogger(__name__)

# Image padding value: mid-grey, as the official mappers use.
_IMAGE_PAD_VALUE = 128


def make_instances(classes: np.ndarray, masks: np.ndarray, image_size) -> Instances:
    """(T,) classes and (T, H, W) bool masks -> Instances with gt_classes and BitMasks gt_masks."""
    inst = Instances(image_size)
    inst.gt_classes = torch.as_tensor(classes, dtype=torch.int64)
    if len(classes):
        inst.gt_masks = BitMasks(torch.from_numpy(np.ascontiguousarray(masks)))
    else:
        inst.gt_masks = BitMasks(torch.zeros((0, *image_size), dtype=torch.bool))
    return inst


class SemanticTargetBuilder:
    """Targets of semantic segmentation: one mask per class present, the ignore label excluded."""

    def __init__(self, num_classes: int, ignore_label: int):
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        # label map name -> (dataset dict key of its file, padding value)
        self.label_files = {"sem_seg": ("sem_seg_file_name", ignore_label)}

    def check(self, labels: Mapping[str, np.ndarray], dataset_dict: Dict) -> None:
        check_semantic_labels(
            labels["sem_seg"],
            self.num_classes,
            self.ignore_label,
            dataset_dict["sem_seg_file_name"],
        )

    def __call__(self, labels: Mapping[str, np.ndarray], dataset_dict: Dict) -> Instances:
        sem_seg = labels["sem_seg"]
        classes, masks = semantic_targets(sem_seg, self.ignore_label)
        return make_instances(classes, masks, sem_seg.shape)


class PanopticTargetBuilder:
    """Targets of panoptic segmentation: one mask per non-crowd segment of the panoptic PNG.

    The PNG is augmented as uint8 RGB (Detectron2 resizes it with PIL's nearest, as in the
    official mappers) and decoded to segment ids afterwards; its padding is black, i.e. id 0,
    void.
    """

    def __init__(
        self,
        num_classes: int,
        class_ids: Collection[int],
        *,
        semantic_ignore_label: Optional[int] = None,
    ):
        """`class_ids`: the training datasets' contiguous ids (those in [0, `num_classes`) are
        valid). With `semantic_ignore_label`, the semantic map is loaded, augmented (the
        category-area crop looks at it) and checked too."""
        self.num_classes = num_classes
        self.class_ids = {int(c) for c in class_ids if 0 <= c < num_classes}
        self.semantic_ignore_label = semantic_ignore_label
        self.label_files = {"pan_seg": ("pan_seg_file_name", 0)}
        if semantic_ignore_label is not None:
            self.label_files["sem_seg"] = ("sem_seg_file_name", semantic_ignore_label)

    @staticmethod
    def _segments(dataset_dict: Dict) -> Sequence[Dict]:
        if "segments_info" not in dataset_dict:
            raise KeyError(
                f"{dataset_dict['pan_seg_file_name']}: dataset dict has no 'segments_info'; "
                "panoptic mappers need COCO-panoptic style dataset dicts"
            )
        return dataset_dict["segments_info"]

    def check(self, labels: Mapping[str, np.ndarray], dataset_dict: Dict) -> None:
        file_name = dataset_dict["pan_seg_file_name"]
        pan_ids = rgb_to_panoptic_ids(labels["pan_seg"], file_name)
        check_panoptic_labels(pan_ids, self._segments(dataset_dict), self.class_ids, file_name)
        if "sem_seg" in labels:
            check_semantic_labels(
                labels["sem_seg"],
                self.num_classes,
                self.semantic_ignore_label,
                dataset_dict["sem_seg_file_name"],
            )

    def __call__(self, labels: Mapping[str, np.ndarray], dataset_dict: Dict) -> Instances:
        pan_ids = rgb_to_panoptic_ids(labels["pan_seg"], dataset_dict["pan_seg_file_name"])
        classes, masks = panoptic_targets(pan_ids, self._segments(dataset_dict))
        return make_instances(classes, masks, pan_ids.shape)


def dataset_class_ids(dataset_names: Sequence[str]) -> List[int]:
    """Contiguous class ids (things and stuff) declared by the datasets' metadata."""
    ids = set()
    for name in dataset_names:
        meta = MetadataCatalog.get(name)
        for key in ("thing_dataset_id_to_contiguous_id", "stuff_dataset_id_to_contiguous_id"):
            ids.update(meta.get(key, {}).values())
    return sorted(ids)


def image_format_of(cfg) -> str:
    """INPUT.FORMAT, checked (for training, evaluation and inference alike) to have one
    MODEL.PIXEL_MEAN/STD value per channel and no colour jitter if multi-channel.

    Raises:
        ConfigValueError: naming the keys at fault.
    """
    fmt = cfg.INPUT.FORMAT
    channels = len(fmt) if is_multichannel_format(fmt) else 1 if fmt == "L" else 3
    mean, std = len(cfg.MODEL.PIXEL_MEAN), len(cfg.MODEL.PIXEL_STD)
    if not channels == mean == std:
        raise ConfigValueError(
            f"INPUT.FORMAT '{fmt}' has {channels} channels but MODEL.PIXEL_MEAN has {mean} and "
            f"MODEL.PIXEL_STD {std} values; give one per channel"
        )
    if is_multichannel_format(fmt) and cfg.INPUT.COLOR_AUG_SSD:
        raise ConfigValueError(
            f"INPUT.COLOR_AUG_SSD is a colour jitter of RGB/BGR images; INPUT.FORMAT is "
            f"'{fmt}' (multi-channel): set INPUT.COLOR_AUG_SSD False"
        )
    return fmt


def _as_network_input(image: np.ndarray, image_format: str) -> np.ndarray:
    # Multi-channel images keep their values (16-bit, float) as float32: the model normalises
    # them with PIXEL_MEAN/STD, and Detectron2 resizes float images with torch (any channel
    # count) where it would use PIL for uint8 (at most 4 channels).
    return image.astype(np.float32) if is_multichannel_format(image_format) else image


def semantic_augmentations(cfg, ignore_label: int) -> List[T.Augmentation]:
    """The official semantic training augmentations: resize, category-constrained crop, SSD
    colour jitter, horizontal flip."""
    augs: List[T.Augmentation] = [
        T.ResizeShortestEdge(
            cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
        )
    ]
    if cfg.INPUT.CROP.ENABLED:
        augs.append(
            T.RandomCrop_CategoryAreaConstraint(
                cfg.INPUT.CROP.TYPE,
                cfg.INPUT.CROP.SIZE,
                cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA,
                ignore_label,
            )
        )
    if cfg.INPUT.COLOR_AUG_SSD:
        augs.append(ColorAugSSDTransform(img_format=image_format_of(cfg)))
    augs.append(T.RandomFlip())
    return augs


class DETRAugmentation(T.Augmentation):
    """DETR's COCO augmentation: `flip`; half of the time the `crop` augmentations (none if
    None); then `resize`.

    Whether to crop is drawn first, before the flip, as DETR's mapper draws it: with the same
    seeds the sample is the official one (a `RandomApply` after the flip would swap the two
    draws).
    """

    def __init__(
        self,
        *,
        flip: T.Augmentation,
        crop: Optional[Sequence[T.Augmentation]],
        resize: T.Augmentation,
    ):
        super().__init__()
        self.flip, self.crop, self.resize = flip, crop, resize
        self._plain = T.AugmentationList([flip, resize])
        self._cropped = None if crop is None else T.AugmentationList([flip, *crop, resize])

    def __call__(self, aug_input) -> T.Transform:
        if self._cropped is None or np.random.rand() > 0.5:
            return self._plain(aug_input)
        return self._cropped(aug_input)


def detr_augmentations(cfg) -> List[T.Augmentation]:
    """`DETRAugmentation`: flip; half of the time, resize the short side to 400/500/600 and crop
    (if INPUT.CROP.ENABLED); then resize to the training scale."""
    crop = None
    if cfg.INPUT.CROP.ENABLED:
        crop = [
            T.ResizeShortestEdge([400, 500, 600], sample_style="choice"),
            T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE),
        ]
    resize = T.ResizeShortestEdge(
        cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
    )
    return [DETRAugmentation(flip=T.RandomFlip(), crop=crop, resize=resize)]


def _pad_to_multiple(array: np.ndarray, divisor: int, value: int) -> np.ndarray:
    """Pad (H, W, ...) bottom/right up to a multiple of `divisor` (a crop of that size: to it)."""
    h, w = array.shape[:2]
    pad_h, pad_w = (-h) % divisor, (-w) % divisor
    if pad_h == 0 and pad_w == 0:
        return array
    pad = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad, mode="constant", constant_values=value)


class MaskFormerDatasetMapper:
    """Load image and label maps, augment them together, pad, and build the targets.

    Output dict: the input's keys plus "image" (C, H, W) uint8, "sem_seg" (H, W) int64 if a
    semantic map is used, and "instances" (gt_classes (T,), gt_masks (T, H, W)).
    """

    @configurable
    def __init__(
        self,
        is_train: bool = True,
        *,
        augmentations: List[T.Augmentation],
        image_format: str,
        size_divisibility: int,
        target_builder: Callable,
    ):
        """
        Args:
            size_divisibility: pad image and labels up to a multiple of this (<= 0: no padding).
            target_builder: object with `label_files` ({name: (dataset key, pad value)}),
                `check(labels, dataset_dict)` and `__call__(labels, dataset_dict) -> Instances`.
        """
        if not is_train:
            raise ValueError(
                f"{type(self).__name__} is for training; evaluation uses DatasetMapper(cfg, False)"
            )
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.size_divisibility = size_divisibility
        self.target_builder = target_builder
        logger.info(f"[{type(self).__name__}] augmentations: {augmentations}")

    def __call__(self, dataset_dict: Dict) -> Dict:
        d = copy.deepcopy(dataset_dict)
        image = _as_network_input(read_image(d["file_name"], self.image_format), self.image_format)
        utils.check_image_size(d, image)
        labels = {}
        for name, (key, _) in self.target_builder.label_files.items():
            if key not in d:
                raise KeyError(f"{d['file_name']}: dataset dict has no '{key}' ({name} labels)")
            label = read_label_map(d[key])
            if label.shape[:2] != image.shape[:2]:
                raise ValueError(
                    f"{d[key]} is {label.shape[1]}x{label.shape[0]} but its image {d['file_name']}"
                    f" is {image.shape[1]}x{image.shape[0]}"
                )
            labels[name] = label
        self.target_builder.check(labels, d)
        if "sem_seg" in labels:
            # The official mappers read the semantic map as float64, which Detectron2 resizes
            # with torch's nearest (source pixel floor(i * in / out)); as uint8 it would take
            # PIL's (pixel centres) and other source pixels. The panoptic PNG they read as uint8
            # RGB, as `read_label_map` does: PIL's nearest. float64 holds 16-bit labels exactly.
            labels["sem_seg"] = labels["sem_seg"].astype(np.float64)

        # The semantic map rides in AugInput so that the crop can look at its categories.
        aug_input = T.AugInput(image, sem_seg=labels.get("sem_seg"))
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        for name in labels.keys() - {"sem_seg"}:
            labels[name] = transforms.apply_segmentation(labels[name])
        if "sem_seg" in labels:
            labels["sem_seg"] = aug_input.sem_seg

        if self.size_divisibility > 0:
            image = _pad_to_multiple(image, self.size_divisibility, _IMAGE_PAD_VALUE)
            for name, (_, pad_value) in self.target_builder.label_files.items():
                labels[name] = _pad_to_multiple(labels[name], self.size_divisibility, pad_value)
        labels = {k: v.astype(np.int64) if v.ndim == 2 else v for k, v in labels.items()}

        d["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if "sem_seg" in labels:
            d["sem_seg"] = torch.as_tensor(labels["sem_seg"])
        d["instances"] = self.target_builder(labels, d)
        return d


class MaskFormerSemanticDatasetMapper(MaskFormerDatasetMapper):
    """`INPUT.DATASET_MAPPER_NAME: mask_former_semantic`: one target mask per class present."""

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        meta = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
        ignore_label = meta.get("ignore_label", cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE)
        return {
            "is_train": is_train,
            "augmentations": semantic_augmentations(cfg, ignore_label),
            "image_format": image_format_of(cfg),
            "size_divisibility": cfg.INPUT.SIZE_DIVISIBILITY,
            "target_builder": SemanticTargetBuilder(
                cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, ignore_label
            ),
        }


class MaskFormerPanopticDatasetMapper(MaskFormerDatasetMapper):
    """`INPUT.DATASET_MAPPER_NAME: mask_former_panoptic` (ADE20K panoptic): the semantic
    augmentations applied to the image, semantic map and panoptic PNG together; one target mask
    per non-crowd segment."""

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        meta = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
        ignore_label = meta.get("ignore_label", cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE)
        num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
        return {
            "is_train": is_train,
            "augmentations": semantic_augmentations(cfg, ignore_label),
            "image_format": image_format_of(cfg),
            "size_divisibility": cfg.INPUT.SIZE_DIVISIBILITY,
            "target_builder": PanopticTargetBuilder(
                num_classes,
                dataset_class_ids(cfg.DATASETS.TRAIN) or range(num_classes),
                semantic_ignore_label=ignore_label,
            ),
        }


class DETRPanopticDatasetMapper(MaskFormerDatasetMapper):
    """`INPUT.DATASET_MAPPER_NAME: detr_panoptic` (COCO panoptic): DETR's flip / resize / crop
    augmentation on the image and panoptic PNG; one target mask per non-crowd segment."""

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
        return {
            "is_train": is_train,
            "augmentations": detr_augmentations(cfg),
            "image_format": image_format_of(cfg),
            # -1 in the COCO recipe: DETR's augmentation pads nothing.
            "size_divisibility": cfg.INPUT.SIZE_DIVISIBILITY,
            "target_builder": PanopticTargetBuilder(
                num_classes, dataset_class_ids(cfg.DATASETS.TRAIN) or range(num_classes)
            ),
        }


class InferenceDatasetMapper:
    """Evaluation mapper for any INPUT.FORMAT: Detectron2's `DatasetMapper(cfg, False)` (the
    test resize, "image" (C, H, W), the dict's other keys), reading images with `read_image`,
    so multi-channel TIFF and .npy images work too."""

    @configurable
    def __init__(self, *, augmentations: List[T.Augmentation], image_format: str):
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format

    @classmethod
    def from_config(cls, cfg):
        return {
            "augmentations": [
                T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")
            ],
            "image_format": image_format_of(cfg),
        }

    def __call__(self, dataset_dict: Dict) -> Dict:
        d = copy.deepcopy(dataset_dict)
        image = _as_network_input(read_image(d["file_name"], self.image_format), self.image_format)
        utils.check_image_size(d, image)
        aug_input = T.AugInput(image)
        self.augmentations(aug_input)
        d["image"] = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        # Evaluators read the ground truth from the files themselves.
        d.pop("annotations", None)
        d.pop("sem_seg_file_name", None)
        return d
