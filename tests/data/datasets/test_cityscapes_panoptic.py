"""Cityscapes panoptic on a miniature made the way users make it (polygons -> the zip's label
maps -> cityscapesscripts' createTrainIdLabelImgs and createPanopticImgs): registration, the
dataset dicts against the raw instance-id maps and against Detectron2's loader, the panoptic
training mapper's targets, and the errors when a preparation step was skipped."""

import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from maskformer.data.dataset_mapper import MaskFormerPanopticDatasetMapper
from maskformer.data.datasets import register_all
from maskformer.data.datasets.cityscapes import register_cityscapes_panoptic
from maskformer.modeling.meta_arch import thing_ids_of
from tests.common import tiny_cfg
from tests.fixtures import miniatures as mini

pytest.importorskip("cityscapesscripts")
from cityscapesscripts.helpers.labels import id2label  # noqa: E402

DEFAULT_ROOT = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
SCENES = mini.CITYSCAPES_SCENES


@pytest.fixture
def root(tmp_path):
    """$DETECTRON2_DATASETS with the miniature; the normal registrations restored afterwards."""
    mini.write_cityscapes_annotated(str(tmp_path), SCENES)
    register_all(str(tmp_path))
    yield str(tmp_path)
    register_all(DEFAULT_ROOT)


def _expected_segments(instance_ids):
    """{segment id: (train id, is crowd)} of the evaluated classes, from the zip's map: stuff and
    groups are coded by their label id, objects by label id * 1000 + k."""
    segments = {}
    for i in np.unique(instance_ids).tolist():
        label = id2label[i // 1000 if i >= 1000 else i]
        if not label.ignoreInEval:
            segments[i] = (label.trainId, label.hasInstances and i < 1000)
    return segments


def test_registration_loads_the_converted_split(root):
    val = DatasetCatalog.get("cityscapes_fine_panoptic_val")
    assert [d["image_id"] for d in val] == sorted(SCENES["val"])
    meta = MetadataCatalog.get("cityscapes_fine_panoptic_val")
    assert meta.evaluator_type == "cityscapes_panoptic_seg"
    assert meta.gt_dir == os.path.join(root, "cityscapes", "gtFine", "val")
    assert len(meta.stuff_classes) == 19 and meta.thing_classes[13] == "car"
    # The model post-processes for the 8 thing classes: train ids person (11) .. bicycle (18).
    assert thing_ids_of("cityscapes_fine_panoptic_val") == list(range(11, 19))
    for d in val:
        assert (d["height"], d["width"]) == mini.CITYSCAPES_SIZE
        for key in ("file_name", "sem_seg_file_name", "pan_seg_file_name"):
            assert os.path.isfile(d[key]), key
        assert d["sem_seg_file_name"].endswith(d["image_id"] + "_gtFine_labelTrainIds.png")
        # Segments, classes (train ids), crowds and areas as the zip's instance-id map has them.
        instance_ids = mini.read_cityscapes_instance_ids(root, "val", d["image_id"])
        got = {s["id"]: (s["category_id"], bool(s["iscrowd"])) for s in d["segments_info"]}
        assert got == _expected_segments(instance_ids)
        for s in d["segments_info"]:
            assert s["area"] == (instance_ids == s["id"]).sum()
    first = {s["id"]: s for s in val[0]["segments_info"]}
    assert set(first) == {7, 11, 23, 24000, 26000, 26001, 26}  # no ego vehicle, no licence plate
    assert first[26]["iscrowd"] == 1 and first[26]["category_id"] == 13  # the car group
    assert len(DatasetCatalog.get("cityscapes_fine_panoptic_train")) == 2


def test_same_dicts_as_detectron2s_loader(root):
    """Where Detectron2's own loader works, ours gives its dicts (plus height, width, isthing)."""
    from detectron2.data.datasets.cityscapes_panoptic import load_cityscapes_panoptic

    meta = MetadataCatalog.get("cityscapes_fine_panoptic_val")
    theirs = load_cityscapes_panoptic(
        meta.image_root, meta.panoptic_root, meta.panoptic_json, meta.as_dict()
    )
    ours = DatasetCatalog.get("cityscapes_fine_panoptic_val")
    for mine in ours:
        for s in mine["segments_info"]:
            assert s.pop("isthing") == (s["category_id"] >= 11)
        del mine["height"], mine["width"]
    assert sorted(ours, key=lambda d: d["image_id"]) == sorted(theirs, key=lambda d: d["image_id"])


def test_root_with_a_dot_in_its_path(tmp_path):
    # Detectron2's loader derives the train-id map's name by cutting the image path at its
    # first ".", which goes wrong here.
    data = str(tmp_path / "data.v2")
    mini.write_cityscapes_annotated(data, {"val": SCENES["val"]})
    try:
        register_cityscapes_panoptic(data)
        for d in DatasetCatalog.get("cityscapes_fine_panoptic_val"):
            assert os.path.isfile(d["sem_seg_file_name"])
    finally:
        register_all(DEFAULT_ROOT)


def _map(d, *opts):
    """The panoptic training mapper of the Cityscapes recipe, without crop, resize or colour
    jitter (its random flip stays)."""
    cfg = tiny_cfg(
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 19,
        "INPUT.CROP.ENABLED", False,
        "INPUT.MIN_SIZE_TRAIN", (mini.CITYSCAPES_SIZE[0],),
        "INPUT.MAX_SIZE_TRAIN", 1000,
        "INPUT.COLOR_AUG_SSD", False,
        *opts,
        config_file="cityscapes/maskformer_panoptic_R50.yaml",
    )  # fmt: skip
    return MaskFormerPanopticDatasetMapper(cfg, True)(d)


def _targets(out):
    """{(class, flat mask indices)} of a mapper output's instances."""
    inst = out["instances"]
    return {
        (int(c), np.flatnonzero(m.numpy()).tobytes())
        for c, m in zip(inst.gt_classes, inst.gt_masks.tensor)
    }


def test_training_targets_are_the_segments_of_the_instance_id_map(root):
    flips = set()
    for split in ("train", "val"):
        for d in DatasetCatalog.get(f"cityscapes_fine_panoptic_{split}"):
            image = np.array(Image.open(d["file_name"]))
            instance_ids = mini.read_cityscapes_instance_ids(root, split, d["image_id"])
            train_ids = np.array(Image.open(d["sem_seg_file_name"]))
            for seed in range(4):  # both outcomes of the random flip
                torch.manual_seed(seed)
                np.random.seed(seed)
                out = _map(d)
                got_image = out["image"].permute(1, 2, 0).numpy()
                flipped = not np.array_equal(got_image, image)
                flips.add(flipped)
                if flipped:
                    assert np.array_equal(got_image, image[:, ::-1])
                flip = (lambda a: a[:, ::-1]) if flipped else (lambda a: a)
                ids = flip(instance_ids)
                expected = {
                    (c, np.flatnonzero(ids == i).tobytes())
                    for i, (c, crowd) in _expected_segments(ids).items()
                    if not crowd  # crowds get no target mask
                }
                assert _targets(out) == expected
                # The train-id map rides along (the crop looks at it).
                assert np.array_equal(out["sem_seg"].numpy(), flip(train_ids))
    assert flips == {False, True}


@pytest.mark.parametrize(
    "remove, message",
    [
        ("cityscapes_panoptic_val.json", "panoptic JSON .* csCreatePanopticImgs"),
        ("cityscapes_panoptic_val", "panoptic PNG.* createPanopticImgs"),
        ("_gtFine_labelTrainIds.png", "train-id map.* createTrainIdLabelImgs"),
        ("leftImg8bit", "image directory .*leftImg8bit"),
    ],
)
def test_a_skipped_preparation_step_is_named(root, remove, message):
    import shutil

    base = os.path.join(root, "cityscapes")
    if remove.endswith(".json"):
        os.remove(os.path.join(base, "gtFine", remove))
    elif remove.startswith("_"):
        folder = os.path.join(base, "gtFine", "val", "frankfurt")
        for f in os.listdir(folder):
            if f.endswith(remove):
                os.remove(os.path.join(folder, f))
    elif remove == "leftImg8bit":
        shutil.rmtree(os.path.join(base, remove))
    else:
        shutil.rmtree(os.path.join(base, "gtFine", remove))
    with pytest.raises(FileNotFoundError, match=message) as e:
        DatasetCatalog.get("cityscapes_fine_panoptic_val")
    assert base in str(e.value)
