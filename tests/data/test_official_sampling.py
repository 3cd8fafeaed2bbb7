"""The training mappers give the official MaskFormer sample: same dataset dict, same seeds, same
image and label maps, bit for bit.

The official sample is rebuilt here from Detectron2's own transforms and the facts of how the
official mappers read each map: the image in INPUT.FORMAT (uint8), the semantic map as float64
(Detectron2 then resizes it with torch's nearest), the panoptic PNG as uint8 RGB (PIL's nearest).
The label maps have a different value at almost every pixel, and the resizes have non-integer
scales, so that a label taken from any other source pixel shows.
"""

import random

import numpy as np
import pytest
import torch
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.projects.point_rend import ColorAugSSDTransform
from PIL import Image

from maskformer.data import (
    DETRPanopticDatasetMapper,
    MaskFormerPanopticDatasetMapper,
    MaskFormerSemanticDatasetMapper,
)
from tests.common import tiny_cfg

H, W = 40, 61
# Short edges of the training resize: scales 0.725 and 1.325 of the 40-pixel short edge.
SHORT_EDGES = (29, 53)
SEEDS = range(4)
# Not registered: the mappers then take the ignore label from the config and every class id
# below NUM_CLASSES as known.
DATASET = "test_official_sampling"


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _pixel_index() -> np.ndarray:
    return np.arange(H * W).reshape(H, W)


def _write_sample(tmp_path, *, sem_seg=None, pan_ids=None) -> dict:
    image = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    d = {"file_name": str(tmp_path / "image.png"), "height": H, "width": W}
    Image.fromarray(image).save(d["file_name"])
    if sem_seg is not None:
        d["sem_seg_file_name"] = str(tmp_path / "sem_seg.png")
        Image.fromarray(sem_seg).save(d["sem_seg_file_name"])  # uint16: a 16-bit PNG
    if pan_ids is not None:
        d["pan_seg_file_name"] = str(tmp_path / "pan_seg.png")
        rgb = np.stack([pan_ids % 256, pan_ids // 256 % 256, pan_ids // 65536], -1)
        Image.fromarray(rgb.astype(np.uint8)).save(d["pan_seg_file_name"])
    return d


def _panoptic_sample(tmp_path, num_classes: int, *, with_sem_seg: bool) -> dict:
    """One segment per pixel (ids 1..H*W), class id % K, every 7th a crowd; the semantic map
    is each pixel's class (uint8, as ADE20K's)."""
    ids = _pixel_index() + 1
    d = _write_sample(
        tmp_path,
        sem_seg=(ids % num_classes).astype(np.uint8) if with_sem_seg else None,
        pan_ids=ids,
    )
    d["segments_info"] = [
        {"id": int(i), "category_id": int(i) % num_classes, "iscrowd": int(i % 7 == 0)}
        for i in ids.flat
    ]
    return d


def _official_sample(cfg, d, recipe, *, sem_seg: bool, pan_seg: bool, pad: bool):
    """(image (C, H, W) uint8, sem_seg (H, W) int64 or None, pan ids (H, W) int64 or None) as the
    official mappers build them: read, `recipe(aug_input)`, panoptic PNG through the same
    transforms, pad by SIZE_DIVISIBILITY - size (image 128, semantic ignore, panoptic 0)."""
    image = utils.read_image(d["file_name"], cfg.INPUT.FORMAT)
    sem = utils.read_image(d["sem_seg_file_name"]).astype(np.float64) if sem_seg else None
    aug_input = T.AugInput(image, sem_seg=sem)
    transforms = recipe(aug_input)
    image, sem = aug_input.image, aug_input.sem_seg
    pan = None
    if pan_seg:
        rgb = transforms.apply_segmentation(utils.read_image(d["pan_seg_file_name"], "RGB"))
        rgb = rgb.astype(np.int64)
        pan = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
    if pad:
        s = cfg.INPUT.SIZE_DIVISIBILITY
        pad_hw = [(0, s - image.shape[0]), (0, s - image.shape[1])]
        image = np.pad(image, pad_hw + [(0, 0)], constant_values=128)
        sem = None if sem is None else np.pad(sem, pad_hw, constant_values=255)
        pan = None if pan is None else np.pad(pan, pad_hw, constant_values=0)
    image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    return image, None if sem is None else torch.from_numpy(sem.astype(np.int64)), pan


def _semantic_recipe(cfg):
    """The official semantic (and ADE20K panoptic) training augmentations, in their order."""
    augs = [
        T.ResizeShortestEdge(
            cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
        ),
        T.RandomCrop_CategoryAreaConstraint(
            cfg.INPUT.CROP.TYPE,
            cfg.INPUT.CROP.SIZE,
            cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA,
            cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
        ),
        ColorAugSSDTransform(img_format=cfg.INPUT.FORMAT),
        T.RandomFlip(),
    ]
    return T.AugmentationList(augs)


def _detr_recipe(cfg, branches: set):
    """DETR's COCO augmentation as the official mapper draws it: first np.random.rand() > 0.5
    keeps the plain [flip, resize]; otherwise [flip, resize 400-600, random crop, resize]."""
    flip = T.RandomFlip()
    resize = T.ResizeShortestEdge(
        cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
    )

    def recipe(aug_input):
        if np.random.rand() > 0.5:
            branches.add("plain")
            return T.AugmentationList([flip, resize])(aug_input)
        branches.add("crop")
        crop = [
            T.ResizeShortestEdge([400, 500, 600], sample_style="choice"),
            T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE),
        ]
        return T.AugmentationList([flip, *crop, resize])(aug_input)

    return recipe


def _assert_panoptic_targets(out, pan: np.ndarray, segments_info) -> None:
    # The official mapper also keeps an empty mask for a segment cropped away; ours drops it.
    kept = [s for s in segments_info if not s["iscrowd"] and (pan == s["id"]).any()]
    inst = out["instances"]
    assert inst.gt_classes.tolist() == [s["category_id"] for s in kept]
    expected = np.stack([pan == s["id"] for s in kept])
    assert torch.equal(inst.gt_masks.tensor, torch.from_numpy(expected))


def test_detectron2_resizes_float_maps_with_torch_nearest_and_uint8_maps_with_pil():
    """The fact the mappers rely on, pinned: at a non-integer scale the two paths pick other
    source pixels; the float path takes source pixel floor(i * in / out) in each axis."""
    label = (_pixel_index() % 199).astype(np.uint8)
    resize = T.ResizeTransform(H, W, 29, 44)  # 40 -> 29 and 61 -> 44: coprime, no ties
    by_float = resize.apply_segmentation(label.astype(np.float64))
    rows, cols = np.arange(29) * H // 29, np.arange(44) * W // 44
    assert np.array_equal(by_float, label[rows][:, cols])
    by_pil = resize.apply_segmentation(label)
    assert by_pil.dtype == np.uint8 and (by_pil != by_float).mean() > 0.5


@pytest.mark.parametrize("short_edge", SHORT_EDGES)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_semantic_mapper_gives_the_official_sample(tmp_path, short_edge, dtype):
    # uint8: ADE20K-150's labels (one class per pixel, period 199); uint16: ADE20K-full's, here
    # a distinct label at every pixel.
    label = _pixel_index() % 199 if dtype == np.uint8 else _pixel_index() + 256
    d = _write_sample(tmp_path, sem_seg=label.astype(dtype))
    cfg = tiny_cfg(
        "DATASETS.TRAIN", (DATASET,),
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", H * W + 256,
        "INPUT.MIN_SIZE_TRAIN", (short_edge,),
        "INPUT.MAX_SIZE_TRAIN", 1000,
        "INPUT.CROP.SIZE", (32, 32),
        "INPUT.SIZE_DIVISIBILITY", 64,
    )  # fmt: skip
    mapper = MaskFormerSemanticDatasetMapper(cfg)
    for seed in SEEDS:
        _seed(seed)
        out = mapper(d)
        _seed(seed)
        image, sem, _ = _official_sample(
            cfg, d, _semantic_recipe(cfg), sem_seg=True, pan_seg=False, pad=True
        )
        assert torch.equal(out["image"], image)
        assert torch.equal(out["sem_seg"], sem), f"seed {seed}: label map differs"
        classes = sem.unique()
        classes = classes[classes != 255]
        assert torch.equal(out["instances"].gt_classes, classes)
        assert torch.equal(out["instances"].gt_masks.tensor, sem[None] == classes[:, None, None])


@pytest.mark.parametrize("short_edge", SHORT_EDGES)
def test_ade_panoptic_mapper_gives_the_official_sample(tmp_path, short_edge):
    d = _panoptic_sample(tmp_path, 150, with_sem_seg=True)
    cfg = tiny_cfg(
        "DATASETS.TRAIN", (DATASET,),
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 150,
        "INPUT.MIN_SIZE_TRAIN", (short_edge,),
        "INPUT.MAX_SIZE_TRAIN", 1000,
        "INPUT.CROP.SIZE", (32, 32),
        "INPUT.SIZE_DIVISIBILITY", 64,
        config_file="ade20k-panoptic/maskformer_panoptic_R50.yaml",
    )  # fmt: skip
    mapper = MaskFormerPanopticDatasetMapper(cfg)
    for seed in SEEDS:
        _seed(seed)
        out = mapper(d)
        _seed(seed)
        image, sem, pan = _official_sample(
            cfg, d, _semantic_recipe(cfg), sem_seg=True, pan_seg=True, pad=True
        )
        assert torch.equal(out["image"], image)
        assert torch.equal(out["sem_seg"], sem), f"seed {seed}: semantic map differs"
        _assert_panoptic_targets(out, pan, d["segments_info"])


@pytest.mark.parametrize("short_edge", SHORT_EDGES)
def test_detr_panoptic_mapper_gives_the_official_sample(tmp_path, short_edge):
    d = _panoptic_sample(tmp_path, 133, with_sem_seg=False)
    cfg = tiny_cfg(
        "DATASETS.TRAIN", (DATASET,),
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 133,
        "INPUT.MIN_SIZE_TRAIN", (short_edge,),
        "INPUT.MAX_SIZE_TRAIN", 1000,
        config_file="coco-panoptic/maskformer_panoptic_R50.yaml",
    )  # fmt: skip
    mapper = DETRPanopticDatasetMapper(cfg)
    branches = set()
    for seed in range(6):
        _seed(seed)
        out = mapper(d)
        _seed(seed)
        image, _, pan = _official_sample(
            cfg, d, _detr_recipe(cfg, branches), sem_seg=False, pan_seg=True, pad=False
        )
        assert torch.equal(out["image"], image), f"seed {seed}: image differs"
        assert "sem_seg" not in out
        _assert_panoptic_targets(out, pan, d["segments_info"])
    assert branches == {"plain", "crop"}  # both halves of the recipe were compared
