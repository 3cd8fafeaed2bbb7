"""The panoptic training mappers on hand-built data in the COCO panoptic on-disk format."""

import copy
import json
import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from PIL import Image

from maskformer.data import DETRPanopticDatasetMapper, MaskFormerPanopticDatasetMapper
from maskformer.data.datasets import load_panoptic_json, register_panoptic
from tests.common import tiny_cfg
from tests.fixtures.panoptic import (
    METADATA,
    coordinate_image,
    scene,
    write_coco_panoptic,
)
from tests.scripts import load_script

NAME = "test_mapper_coco_panoptic"
# contiguous class of each segment id of `scene()`; 13 is a crowd of cats
CLASS_OF = {1000: 2, 2000: 3, 11: 0, 12: 1, 13: 0}
NON_CROWD = [1000, 2000, 11, 12]  # in segments_info order


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("coco"))
    ids, segments = scene()
    write_coco_panoptic(root, "train", [coordinate_image(*ids.shape)], [ids], [segments])
    # The semantic maps, by the preparation script itself.
    load_script("datasets/prepare_coco_semantic_annos_from_panoptic_annos.py").convert_split(
        os.path.join(root, "annotations", "panoptic_train2017.json"),
        os.path.join(root, "panoptic_train2017"),
        os.path.join(root, "panoptic_semseg_train2017"),
    )
    register_panoptic(
        NAME,
        METADATA,
        image_root=os.path.join(root, "train2017"),
        panoptic_root=os.path.join(root, "panoptic_train2017"),
        panoptic_json=os.path.join(root, "annotations", "panoptic_train2017.json"),
        sem_seg_root=os.path.join(root, "panoptic_semseg_train2017"),
    )
    return DatasetCatalog.get(NAME)


def _cfg(config_file, *opts):
    return tiny_cfg(
        "DATASETS.TRAIN", (NAME,),
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 4,
        "INPUT.MIN_SIZE_TRAIN", (40,),  # the image's size: the resize is the identity
        "INPUT.MAX_SIZE_TRAIN", 1000,
        *opts,
        config_file=config_file,
    )  # fmt: skip


def _detr(*opts):
    return DETRPanopticDatasetMapper(_cfg("coco-panoptic/maskformer_panoptic_R50.yaml", *opts))


def _ade(*opts):
    cfg = _cfg(
        "ade20k-panoptic/maskformer_panoptic_R50.yaml",
        "INPUT.CROP.SIZE", (24, 24),
        "INPUT.SIZE_DIVISIBILITY", 32,
        "INPUT.COLOR_AUG_SSD", False,  # keep pixel values: they locate their source
        *opts,
    )  # fmt: skip
    return MaskFormerPanopticDatasetMapper(cfg)


def _source_ids(image: torch.Tensor) -> np.ndarray:
    """The scene's segment ids at the source pixel of each output pixel of a coordinate image."""
    ids, _ = scene()
    x, y = image[0].numpy().astype(int), image[1].numpy().astype(int)
    return ids[y, x]


def _check_targets(out, expected_ids: np.ndarray, pad: int = 0) -> None:
    present = [s for s in NON_CROWD if (expected_ids == s).any()]
    inst = out["instances"]
    assert inst.gt_classes.tolist() == [CLASS_OF[s] for s in present]
    masks = inst.gt_masks.tensor
    h, w = expected_ids.shape
    assert masks.shape == (len(present), h + pad, w + pad)
    for mask, s in zip(masks, present):
        assert torch.equal(mask[:h, :w], torch.from_numpy(expected_ids == s))
        assert not mask[h:].any() and not mask[:, w:].any()  # padding is void


def test_dataset_dicts_have_contiguous_classes_and_sizes(dataset):
    (d,) = dataset
    assert [s["category_id"] for s in d["segments_info"]] == [2, 3, 0, 1, 0]
    assert [s["isthing"] for s in d["segments_info"]] == [False, False, True, True, True]
    assert (d["height"], d["width"], d["image_id"]) == (40, 60, 1)
    assert d["sem_seg_file_name"].endswith("panoptic_semseg_train2017/000000000001.png")


def test_detr_mapper_one_mask_per_non_crowd_segment_without_padding(dataset):
    mapper = _detr("INPUT.CROP.ENABLED", False)
    flips = set()
    for seed in range(6):
        np.random.seed(seed)
        out = mapper(dataset[0])
        assert out["image"].shape == (3, 40, 60) and out["image"].dtype == torch.uint8
        assert "sem_seg" not in out  # COCO training needs no semantic map
        source = _source_ids(out["image"])
        flips.add(bool(out["image"][0, 0, 0] != 0))
        _check_targets(out, source)
    assert flips == {True, False}  # both flip outcomes were checked


def test_detr_augmentation_is_the_detr_recipe(dataset):
    mapper = _detr()
    (aug,) = mapper.augmentations.augs
    assert type(aug.flip).__name__ == "RandomFlip" and aug.flip.horizontal
    assert [type(a).__name__ for a in aug.crop] == ["ResizeShortestEdge", "RandomCrop"]
    assert tuple(aug.crop[0].short_edge_length) == (400, 500, 600)
    assert (aug.crop[1].crop_type, tuple(aug.crop[1].crop_size)) == ("absolute_range", (384, 600))
    assert tuple(aug.resize.short_edge_length) == (40,)
    assert _detr("INPUT.CROP.ENABLED", False).augmentations.augs[0].crop is None
    # Through the crop branch the masks still tile the (resized) image without padding.
    for seed in range(4):
        np.random.seed(seed)
        out = mapper(dataset[0])
        masks = out["instances"].gt_masks.tensor
        assert masks.shape[1:] == out["image"].shape[1:] and min(out["image"].shape[1:]) == 40
        assert masks.flatten(1).any(1).all() and masks.sum(0).max() <= 1
        assert set(out["instances"].gt_classes.tolist()) <= {0, 1, 2, 3}


def test_ade_mapper_crops_pads_and_drops_cropped_away_segments(dataset):
    mapper = _ade()
    dropped = False
    for seed in range(8):
        np.random.seed(seed)
        out = mapper(dataset[0])
        assert out["image"].shape == (3, 32, 32)
        assert (out["image"][:, 24:, :] == 128).all() and (out["image"][:, :, 24:] == 128).all()
        source = _source_ids(out["image"][:, :24, :24])
        _check_targets(out, source, pad=8)
        # The semantic map went through the same transforms: crowd keeps its class, void is 255.
        expected_sem = np.vectorize(lambda s: CLASS_OF.get(s, 255))(source)
        assert torch.equal(out["sem_seg"][:24, :24], torch.from_numpy(expected_sem))
        assert (out["sem_seg"][24:] == 255).all()
        dropped |= len(out["instances"]) < len(NON_CROWD)
    assert dropped  # some crop lost a segment entirely, and it got no (empty) mask


def _broken(dataset, change):
    d = copy.deepcopy(dataset[0])
    change(d)
    return d


def test_png_id_missing_from_segments_info_names_file_and_id(dataset):
    d = _broken(dataset, lambda d: d["segments_info"].pop(3))  # the dog, id 12
    with pytest.raises(ValueError) as e:
        _detr()(d)
    assert d["pan_seg_file_name"] in str(e.value) and "12" in str(e.value)


def test_listed_segment_missing_from_png_names_file_and_id(dataset):
    extra = {"id": 4242, "category_id": 0, "iscrowd": 0, "isthing": True}
    d = _broken(dataset, lambda d: d["segments_info"].append(extra))
    with pytest.raises(ValueError) as e:
        _detr()(d)
    assert d["pan_seg_file_name"] in str(e.value) and "4242" in str(e.value)


def test_unknown_category_names_file_and_id(dataset):
    d = _broken(dataset, lambda d: d["segments_info"][2].update(category_id=9))
    with pytest.raises(ValueError) as e:
        _ade()(d)
    assert d["pan_seg_file_name"] in str(e.value) and "category_id 9" in str(e.value)


def test_unknown_dataset_category_in_json_names_json_and_id(dataset, tmp_path):
    d = dataset[0]
    json_file = os.path.join(os.path.dirname(os.path.dirname(d["file_name"])), "annotations",
                             "panoptic_train2017.json")  # fmt: skip
    with open(json_file) as f:
        data = json.load(f)
    data["annotations"][0]["segments_info"][1]["category_id"] = 55
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError) as e:
        load_panoptic_json(str(bad), "images", "panoptic", METADATA)
    assert str(bad) in str(e.value) and "category_id 55" in str(e.value)


def test_panoptic_png_that_is_not_rgb_is_refused(dataset, tmp_path):
    gray = tmp_path / "gray.png"
    Image.fromarray(np.zeros((40, 60), np.uint8)).save(gray)
    d = _broken(dataset, lambda d: d.update(pan_seg_file_name=str(gray)))
    with pytest.raises(ValueError, match="gray.png.*must be RGB"):
        _detr()(d)
