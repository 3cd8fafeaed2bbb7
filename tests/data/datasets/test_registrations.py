"""Every dataset registration on a miniature of its on-disk layout: catalog, metadata, training
mapper and evaluator; missing data gives an error that names the path and the script."""

import json
import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

from maskformer.data.dataset_mapper import MaskFormerSemanticDatasetMapper
from maskformer.data.datasets import register_all
from maskformer.data.datasets.ade20k_full import register_ade20k_full_sem_seg
from maskformer.data.datasets.ade20k_full_categories import ADE20K_FULL_ID_TO_CONTIGUOUS
from maskformer.data.datasets.cityscapes import register_cityscapes_sem_seg
from maskformer.data.datasets.coco_stuff import register_coco_stuff_sem_seg
from maskformer.data.datasets.coco_stuff_categories import COCO_STUFF_ID_TO_CONTIGUOUS
from maskformer.data.datasets.mapillary_vistas import register_mapillary_vistas_sem_seg
from maskformer.data.datasets.mapillary_vistas_categories import MAPILLARY_VISTAS_COLORS
from maskformer.data.io import load_sem_seg_label
from maskformer.evaluation import EvaluationOptions, build_evaluator
from tests.common import tiny_cfg
from tests.fixtures import miniatures as mini
from tests.scripts import load_script

DEFAULT_ROOT = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


@pytest.fixture
def root(tmp_path):
    """A fresh $DETECTRON2_DATASETS; the normal registrations are restored afterwards."""
    yield str(tmp_path)
    register_all(DEFAULT_ROOT)


def _check_metadata(name, num_classes, ignore_label, evaluator_type="sem_seg"):
    meta = MetadataCatalog.get(name)
    assert len(meta.stuff_classes) == num_classes
    assert len(meta.stuff_colors) == num_classes
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in meta.stuff_colors)
    assert meta.ignore_label == ignore_label
    assert meta.evaluator_type == evaluator_type


def _map(name, num_classes, dataset_dict):
    """The training mapper on one dataset dict, without crop, resize or colour jitter."""
    cfg = tiny_cfg(
        "DATASETS.TRAIN", (name,),
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", num_classes,
        "INPUT.CROP.ENABLED", False,
        "INPUT.MIN_SIZE_TRAIN", (mini.H,),
        "INPUT.MAX_SIZE_TRAIN", 1000,
        "INPUT.COLOR_AUG_SSD", False,
        "INPUT.SIZE_DIVISIBILITY", 32,
    )  # fmt: skip
    return MaskFormerSemanticDatasetMapper(cfg, True)(dataset_dict)


def _one_hot(label, num_classes):
    """Scores that predict `label` exactly (class 0 on unlabelled pixels)."""
    label = torch.as_tensor(label)
    label = torch.where((label >= 0) & (label < num_classes), label, torch.zeros_like(label))
    return torch.nn.functional.one_hot(label, num_classes).permute(2, 0, 1).float()


def _evaluate_perfect(name, num_classes, output_dir=None):
    dicts = DatasetCatalog.get(name)
    # The per-image JSON is written on request only.
    options = EvaluationOptions(semantic_json=output_dir is not None)
    evaluator = build_evaluator(name, output_dir, options)
    evaluator.reset()
    for d in dicts:
        label = load_sem_seg_label(d["sem_seg_file_name"])
        evaluator.process([d], [{"sem_seg": _one_hot(label, num_classes)}])
    return evaluator.evaluate()


def test_ade20k_full_from_raw_download_to_evaluation(root):
    other = next(i for i in range(1, 5000) if i not in ADE20K_FULL_ID_TO_CONTIGUOUS)
    mini.write_ade20k_full_raw(
        root,
        {
            "ADE_train_00000001.jpg": [2978, 3148, 1223, 0],  # wall, adding machine, heater
            "ADE_val_00000001.jpg": [3148, other, 2978],
        },
    )
    prepare = load_script("datasets/prepare_ade20k_full_sem_seg.py")
    assert prepare.main(["--root", os.path.join(root, "ADE20K_2021_17_01"), "--workers", "1"]) == 0
    register_ade20k_full_sem_seg(root)

    train = DatasetCatalog.get("ade20k_full_sem_seg_train")
    val = DatasetCatalog.get("ade20k_full_sem_seg_val")
    assert [os.path.basename(d["file_name"]) for d in train] == ["ADE_train_00000001.jpg"]
    assert [os.path.basename(d["sem_seg_file_name"]) for d in val] == ["ADE_val_00000001.tif"]
    _check_metadata("ade20k_full_sem_seg_train", 847, 65535)
    assert MetadataCatalog.get("ade20k_full_sem_seg_val").stuff_classes[846].startswith("adding")

    label = load_sem_seg_label(val[0]["sem_seg_file_name"])
    assert sorted(np.unique(label).tolist()) == [0, 846, 65535]
    out = _map("ade20k_full_sem_seg_train", 847, train[0])
    # 16-bit labels survive the mapper: 846 and 268 are not truncated to 8 bits.
    assert sorted(out["instances"].gt_classes.tolist()) == [0, 268, 846]
    assert set(out["sem_seg"].unique().tolist()) == {0, 268, 846, 65535}

    results = _evaluate_perfect("ade20k_full_sem_seg_val", 847)
    assert results["sem_seg"]["mIoU"] == pytest.approx(100.0)


def test_coco_stuff_10k_from_raw_download_to_evaluation(root):
    s = mini._blocks([2, 172, 82, 1])  # person, wood, banner, unlabeled (v1.0 indices)
    mini.write_coco_stuff_10k_raw(
        root,
        {
            "train": {"COCO_train2014_000000000077": s},
            "test": {"COCO_train2014_000000000078": mini._blocks([5, 1])},
        },
    )
    prepare = load_script("datasets/prepare_coco_stuff_10k_sem_seg.py")
    base = os.path.join(root, "coco", "coco_stuff_10k")
    assert prepare.main(["--root", base, "--workers", "1"]) == 0
    register_coco_stuff_sem_seg(root)

    for name in ("coco_2017_train_stuff_10k_sem_seg", "coco_2017_test_stuff_10k_sem_seg"):
        _check_metadata(name, 171, 255)
        assert len(DatasetCatalog.get(name)) == 1
    train = DatasetCatalog.get("coco_2017_train_stuff_10k_sem_seg")
    out = _map("coco_2017_train_stuff_10k_sem_seg", 171, train[0])
    assert sorted(out["instances"].gt_classes.tolist()) == [0, 80, 170]

    results = _evaluate_perfect("coco_2017_test_stuff_10k_sem_seg", 171)
    assert results["sem_seg"]["mIoU"] == pytest.approx(100.0)


def test_coco_stuff_164k_from_raw_download_to_evaluation(root, tmp_path):
    # stuffthingmaps values are COCO id - 1: 0 person, 181 wood, 11 (id 12, never annotated).
    mini.write_coco_stuff_164k_raw(
        root,
        {
            "train2017": {"000000000009": mini._blocks([0, 181, 11, 255])},
            "val2017": {"000000000139": mini._blocks([91, 0])},  # banner (id 92), person
        },
    )
    prepare = load_script("datasets/prepare_coco_stuff_164k_sem_seg.py")
    assert prepare.main(["--root", os.path.join(root, "coco"), "--workers", "1"]) == 0
    register_coco_stuff_sem_seg(root)

    _check_metadata("coco_2017_train_stuff_sem_seg", 171, 255)
    train = DatasetCatalog.get("coco_2017_train_stuff_sem_seg")
    assert os.path.basename(train[0]["file_name"]) == "000000000009.jpg"
    out = _map("coco_2017_train_stuff_sem_seg", 171, train[0])
    assert sorted(out["instances"].gt_classes.tolist()) == [0, 170]

    # The evaluator writes COCO category ids into its JSON predictions; the PQ tool maps them
    # back to the label values.
    output_dir = str(tmp_path / "eval")
    results = _evaluate_perfect("coco_2017_val_stuff_sem_seg", 171, output_dir)
    assert results["sem_seg"]["mIoU"] == pytest.approx(100.0)
    with open(os.path.join(output_dir, "sem_seg_predictions.json")) as f:
        predictions = json.load(f)
    assert sorted(p["category_id"] for p in predictions) == [1, 92]
    pq_tool = load_script("tools/evaluate_pq_for_semantic_segmentation.py")
    pq = pq_tool.evaluate("coco_2017_val_stuff_sem_seg", predictions)
    assert (pq["PQ"], pq["SQ"], pq["RQ"], pq["n"]) == (1.0, 1.0, 1.0, 2)
    assert COCO_STUFF_ID_TO_CONTIGUOUS[92] == 80


def test_mapillary_vistas(root):
    mini.write_mapillary_vistas(
        root,
        {
            "training": {"a1": mini._blocks([13, 64, 65])},  # road, ego vehicle, unlabelled
            "validation": {"b1": mini._blocks([0, 27])},
        },
        MAPILLARY_VISTAS_COLORS,
    )
    register_mapillary_vistas_sem_seg(root)
    _check_metadata("mapillary_vistas_sem_seg_train", 65, 65)
    train = DatasetCatalog.get("mapillary_vistas_sem_seg_train")
    # Palette PNGs are read as their class indices, not as colours.
    assert sorted(np.unique(load_sem_seg_label(train[0]["sem_seg_file_name"])).tolist()) == [
        13,
        64,
        65,
    ]
    out = _map("mapillary_vistas_sem_seg_train", 65, train[0])
    assert sorted(out["instances"].gt_classes.tolist()) == [13, 64]
    # Padding uses the dataset's ignore label 65, not 255.
    assert out["sem_seg"].shape == (32, 32) and (out["sem_seg"][mini.H :] == 65).all()
    results = _evaluate_perfect("mapillary_vistas_sem_seg_val", 65)
    assert results["sem_seg"]["mIoU"] == pytest.approx(100.0)


def test_cityscapes(root):
    ids = mini._blocks([7, 8, 26, 0], h=mini.H, w=mini.W)  # road, sidewalk, car, unlabeled
    mini.write_cityscapes(
        root,
        {
            "train": {"aachen_000000_000019": ids},
            "val": {"frankfurt_000000_000294": mini._blocks([7, 11, 24, 21])},
        },
    )
    register_cityscapes_sem_seg(root)
    _check_metadata("cityscapes_fine_sem_seg_train", 19, 255, "cityscapes_sem_seg")
    train = DatasetCatalog.get("cityscapes_fine_sem_seg_train")
    assert train[0]["sem_seg_file_name"].endswith("aachen_000000_000019_gtFine_labelTrainIds.png")
    assert (train[0]["height"], train[0]["width"]) == (mini.H, mini.W)
    out = _map("cityscapes_fine_sem_seg_train", 19, train[0])
    assert sorted(out["instances"].gt_classes.tolist()) == [0, 1, 13]

    pytest.importorskip("cityscapesscripts")  # CityscapesSemSegEvaluator runs its evaluation
    results = _evaluate_perfect("cityscapes_fine_sem_seg_val", 19)
    assert results["sem_seg"]["IoU"] == pytest.approx(100.0)
    # Everything predicted as road: road IoU 1/4 (one stripe of four), building, person and
    # vegetation 0; classes absent from both are not averaged: 25 / 4.
    evaluator = build_evaluator("cityscapes_fine_sem_seg_val")
    evaluator.reset()
    for d in DatasetCatalog.get("cityscapes_fine_sem_seg_val"):
        evaluator.process([d], [{"sem_seg": _one_hot(np.zeros((mini.H, mini.W), np.int64), 19)}])
    assert evaluator.evaluate()["sem_seg"]["IoU"] == pytest.approx(6.25)


@pytest.mark.parametrize(
    "name, path_part, script",
    [
        ("ade20k_full_sem_seg_val", "ADE20K_2021_17_01", "prepare_ade20k_full_sem_seg.py"),
        ("coco_2017_test_stuff_10k_sem_seg", "coco_stuff_10k", "prepare_coco_stuff_10k"),
        ("coco_2017_val_stuff_sem_seg", "val2017", "prepare_coco_stuff_164k_sem_seg.py"),
        ("mapillary_vistas_sem_seg_val", "mapillary_vistas", "no preparation"),
        ("cityscapes_fine_sem_seg_val", "leftImg8bit", "csCreateTrainIdLabelImgs"),
    ],
)
def test_missing_data_names_the_path_and_the_script(root, name, path_part, script):
    register_all(root)
    with pytest.raises(FileNotFoundError) as e:
        DatasetCatalog.get(name)
    message = str(e.value)
    assert root in message and path_part in message and script in message


def test_cityscapes_without_train_id_maps_says_how_to_make_them(root):
    mini.write_cityscapes(root, {"val": {"frankfurt_000000_000294": mini._blocks([7, 26])}})
    gt_dir = os.path.join(root, "cityscapes", "gtFine", "val", "frankfurt")
    for f in os.listdir(gt_dir):
        if f.endswith("labelTrainIds.png"):
            os.remove(os.path.join(gt_dir, f))
    register_cityscapes_sem_seg(root)
    with pytest.raises(FileNotFoundError, match="labelTrainIds.*csCreateTrainIdLabelImgs"):
        DatasetCatalog.get("cityscapes_fine_sem_seg_val")
