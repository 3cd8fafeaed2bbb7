"""datasets/prepare_*.py for panoptic data, on hand-built files in the real on-disk layouts, and
the datasets they feed (ADE20K panoptic registration and mapper, COCO semantic maps)."""

import os
import shutil

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from PIL import Image

from maskformer.data import MaskFormerPanopticDatasetMapper
from maskformer.data.datasets.ade20k import register_ade20k_panoptic
from maskformer.data.datasets.coco import coco_panoptic_metadata
from maskformer.data.datasets.quickstart_panoptic import write_panoptic_split
from maskformer.data.io import panoptic_ids_to_rgb, rgb_to_panoptic_ids
from tests.common import tiny_cfg
from tests.fixtures.panoptic import CATEGORIES, coordinate_image, scene
from tests.fixtures.panoptic import write_coco_panoptic as write_coco
from tests.scripts import load_script

coco_script = load_script("datasets/prepare_coco_semantic_annos_from_panoptic_annos.py")
ade_script = load_script("datasets/prepare_ade20k_pan_seg.py")

# ADE20K SceneParsing indices (raw label = index + 1) used below.
WALL, SKY, FLOOR, BED, WINDOW = 0, 2, 3, 7, 8


def test_panoptic_id_encoding_round_trip():
    ids = np.array([[0, 1, 255], [256, 65536, 2**24 - 1]])
    rgb = panoptic_ids_to_rgb(ids)
    assert rgb[1, 0].tolist() == [0, 1, 0] and rgb[1, 1].tolist() == [0, 0, 1]
    assert np.array_equal(rgb_to_panoptic_ids(rgb), ids)
    with pytest.raises(ValueError, match="2\\^24"):
        panoptic_ids_to_rgb(np.array([[2**24]]))


def test_coco_contiguous_ids_are_detectron2s():
    ids = coco_script.contiguous_ids(COCO_CATEGORIES)
    assert ids == coco_panoptic_metadata()["stuff_dataset_id_to_contiguous_id"]
    assert ids[1] == 0 and ids[90] == 79 and ids[92] == 80 and len(ids) == 133


def test_coco_semantic_maps_by_hand_idempotent_and_atomic(tmp_path):
    ids, segments = scene()
    write_coco(str(tmp_path), "val", [coordinate_image(*ids.shape)], [ids], [segments])
    args = (
        str(tmp_path / "annotations" / "panoptic_val2017.json"),
        str(tmp_path / "panoptic_val2017"),
        str(tmp_path / "panoptic_semseg_val2017"),
    )
    assert coco_script.convert_split(*args) == 1
    sem = np.array(Image.open(tmp_path / "panoptic_semseg_val2017" / "000000000001.png"))
    # Things first, then stuff, by id: cat 3 -> 0, dog 7 -> 1, wall 20 -> 2, floor 31 -> 3.
    expected = np.select(
        [ids == 1000, ids == 2000, ids == 11, ids == 12, ids == 13], [2, 3, 0, 1, 0], 255
    )
    assert np.array_equal(sem, expected)  # the crowd keeps its class; void is 255
    assert coco_script.convert_split(*args) == 0  # nothing left to do
    assert os.listdir(args[2]) == ["000000000001.png"]  # no temporary files


def test_coco_semantic_map_refuses_unlisted_ids(tmp_path):
    ids, segments = scene()
    write_coco(str(tmp_path), "val", [coordinate_image(*ids.shape)], [ids], [segments[:-1]])
    with pytest.raises(ValueError, match=r"panoptic_val2017/000000000001.png.*\[13\]"):
        coco_script.convert_split(
            str(tmp_path / "annotations" / "panoptic_val2017.json"),
            str(tmp_path / "panoptic_val2017"),
            str(tmp_path / "panoptic_semseg_val2017"),
        )


def test_coco_semantic_script_agrees_with_the_generated_dataset(tmp_path):
    write_panoptic_split(str(tmp_path), "val", 3, seed=5, size_range=(48, 64))
    shutil.move(tmp_path / "panoptic_semseg_val2017", tmp_path / "expected")
    assert coco_script.main(["--root", str(tmp_path), "--splits", "val2017", "--workers", "2"]) == 0
    for name in sorted(os.listdir(tmp_path / "expected")):
        made = np.array(Image.open(tmp_path / "panoptic_semseg_val2017" / name))
        assert np.array_equal(made, np.array(Image.open(tmp_path / "expected" / name))), name


def test_coco_semantic_script_says_what_is_missing(tmp_path, capsys):
    assert coco_script.main(["--root", str(tmp_path)]) == 1
    assert "panoptic_val2017.json does not exist" in capsys.readouterr().err


def _ade_annotations():
    """A 20 x 30 SceneParsing label map and instance annotation, and what they should give."""
    semantic = np.full((20, 30), WALL + 1, np.uint8)
    semantic[10:] = FLOOR + 1
    semantic[0, 25:] = 0  # "other": void
    semantic[2:7, 2:9] = BED + 1
    semantic[12:17, 20:27] = WINDOW + 1  # a thing without an instance: void
    semantic[14:16, 3:5] = SKY + 1  # stuff covered entirely by an instance: no segment
    instance = np.zeros((20, 30, 3), np.uint8)
    instance[2:7, 2:9] = (1, 1, 0)  # instance class 1 = bed, instance 1
    instance[12:19, 2:7] = (2, 2, 0)  # instance class 2 = window, instance 2 (over the floor)
    return semantic, instance


def test_ade20k_panoptic_conversion_by_hand():
    semantic, instance = _ade_annotations()
    pan, info = ade_script.ade20k_to_panoptic(semantic, instance, "x.jpg")
    by_category = {s["category_id"]: s for s in info}
    assert sorted(by_category) == [WALL, FLOOR, BED, WINDOW]  # sky is gone
    regions = {
        BED: (slice(2, 7), slice(2, 9)),
        WINDOW: (slice(12, 19), slice(2, 7)),
    }
    for category, region in regions.items():
        assert (pan[region] == by_category[category]["id"]).all()
    assert (pan[0, 25:] == 0).all() and (pan[12:17, 20:27] == 0).all()
    assert by_category[WINDOW]["bbox"] == [2, 12, 5, 7]
    for s in info:
        assert s["area"] == int((pan == s["id"]).sum()) and s["iscrowd"] == 0
    assert by_category[FLOOR]["area"] == 10 * 30 - 35 - 5 * 7  # minus window and instance
    # Stuff ids are the category colour, as in COCO; all ids differ and are reproducible.
    assert by_category[WALL]["id"] == 120 + 256 * 120 + 65536 * 120
    assert set(np.unique(pan).tolist()) == {0} | {s["id"] for s in info}
    again, _ = ade_script.ade20k_to_panoptic(semantic, instance, "x.jpg")
    assert np.array_equal(pan, again)
    bad = instance.copy()
    bad[2, 2, 0] = 3  # instance 1 with two classes
    with pytest.raises(ValueError, match="x.jpg: instance 1"):
        ade_script.ade20k_to_panoptic(semantic, bad, "x.jpg")


def _write_raw_ade20k(root):
    semantic, instance = _ade_annotations()
    for folder in ("training", "validation"):
        for sub in ("images", "annotations", "annotations_instance"):
            os.makedirs(os.path.join(root, sub, folder), exist_ok=True)
        name = f"ADE_{folder}_00000001"
        # PNG data under the .jpg name keeps the coordinate pixels exact.
        Image.fromarray(coordinate_image(20, 30)).save(
            os.path.join(root, "images", folder, name + ".jpg"), "PNG"
        )
        Image.fromarray(semantic).save(os.path.join(root, "annotations", folder, name + ".png"))
        Image.fromarray(instance).save(
            os.path.join(root, "annotations_instance", folder, name + ".png")
        )


def test_ade20k_panoptic_end_to_end(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    _write_raw_ade20k(str(root))
    assert ade_script.main(["--root", str(root), "--workers", "1"]) == 0
    assert not ade_script.convert_split(str(root), "val")  # done already: skipped
    assert load_script("datasets/prepare_ade20k_sem_seg.py").main(["--root", str(root)]) == 0
    register_ade20k_panoptic(str(tmp_path), prefix="test_ade20k_panoptic")
    meta = MetadataCatalog.get("test_ade20k_panoptic_train")
    assert meta.evaluator_type == "ade20k_panoptic_seg" and len(meta.stuff_classes) == 150
    assert len(meta.thing_dataset_id_to_contiguous_id) == 100
    (d,) = DatasetCatalog.get("test_ade20k_panoptic_train")
    assert d["image_id"] == "ADE_training_00000001"
    assert {(s["category_id"], s["isthing"]) for s in d["segments_info"]} == {
        (WALL, False), (FLOOR, False), (BED, True), (WINDOW, True)
    }  # fmt: skip

    cfg = tiny_cfg(
        "DATASETS.TRAIN", ("test_ade20k_panoptic_train",),
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 150,
        "INPUT.MIN_SIZE_TRAIN", (20,),
        "INPUT.CROP.ENABLED", False,
        "INPUT.COLOR_AUG_SSD", False,
        "INPUT.SIZE_DIVISIBILITY", 32,
        config_file="ade20k-panoptic/maskformer_panoptic_R50.yaml",
    )  # fmt: skip
    out = MaskFormerPanopticDatasetMapper(cfg)(d)
    pan = rgb_to_panoptic_ids(np.array(Image.open(d["pan_seg_file_name"])))
    image = out["image"][:, :20, :30]
    pan = pan[image[1].numpy(), image[0].numpy()]  # undo a flip, if any
    inst = out["instances"]
    assert sorted(inst.gt_classes.tolist()) == [WALL, FLOOR, BED, WINDOW]
    for c, mask in zip(inst.gt_classes.tolist(), inst.gt_masks.tensor):
        segment = next(s for s in d["segments_info"] if s["category_id"] == c)
        assert torch.equal(mask[:20, :30], torch.from_numpy(pan == segment["id"]))
        assert not mask[20:].any() and not mask[:, 30:].any()
    assert out["sem_seg"].shape == (32, 32) and (out["sem_seg"][20:] == 255).all()


def test_quickstart_panoptic_categories_follow_coco_conventions():
    cats = {c["id"] for c in CATEGORIES}
    assert len(cats) == 4  # the hand-built test categories are distinct
    from maskformer.data.datasets.quickstart_panoptic import quickstart_panoptic_metadata

    meta = quickstart_panoptic_metadata()
    assert sorted(meta["thing_dataset_id_to_contiguous_id"].values()) == [0, 1, 2, 3, 4]
    assert len(meta["stuff_dataset_id_to_contiguous_id"]) == 7
