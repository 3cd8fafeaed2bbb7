"""The semantic training mapper on files written in the real on-disk formats."""

import numpy as np
import pytest
import torch
from PIL import Image

from maskformer.data.dataset_mapper import MaskFormerSemanticDatasetMapper
from tests.common import tiny_cfg

IGNORE = 255


def _write(tmp_path, label, image=None, name="a"):
    h, w = label.shape
    if image is None:
        image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img_path = tmp_path / f"{name}.jpg"
    Image.fromarray(image).save(img_path, quality=95)
    lbl_path = tmp_path / f"{name}.png"
    Image.fromarray(label).save(lbl_path)  # uint16 arrays become 16-bit PNGs
    return {"file_name": str(img_path), "sem_seg_file_name": str(lbl_path)}


def _mapper(*opts):
    cfg = tiny_cfg(
        "DATASETS.TRAIN", ("quickstart_sem_seg_train",),
        "INPUT.MIN_SIZE_TRAIN", (48,),
        "INPUT.MAX_SIZE_TRAIN", 1000,
        "INPUT.CROP.SIZE", (32, 32),
        "INPUT.SIZE_DIVISIBILITY", 64,
        *opts,
    )  # fmt: skip
    return MaskFormerSemanticDatasetMapper(cfg, True)


def _label(h=48, w=64):
    label = np.zeros((h, w), np.uint8)
    label[:, 20:40] = 3
    label[30:, :] = 1
    label[:4] = IGNORE
    return label


def test_outputs_dtypes_shapes_and_padding(tmp_path):
    d = _write(tmp_path, _label())
    out = _mapper()(d)
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (3, 64, 64)
    assert out["sem_seg"].dtype == torch.int64 and out["sem_seg"].shape == (64, 64)
    # 32x32 crop padded to 64: image with 128, labels with the ignore value.
    assert (out["image"][:, 32:, :] == 128).all() and (out["image"][:, :, 32:] == 128).all()
    assert (out["sem_seg"][32:, :] == IGNORE).all() and (out["sem_seg"][:, 32:] == IGNORE).all()
    inst = out["instances"]
    assert inst.gt_classes.dtype == torch.int64
    masks = inst.gt_masks.tensor
    assert masks.dtype == torch.bool and masks.shape[1:] == (64, 64)
    # One mask per class present, the ignore label excluded, masks equal to the label map.
    present = sorted(set(out["sem_seg"].unique().tolist()) - {IGNORE})
    assert inst.gt_classes.tolist() == present
    for c, m in zip(inst.gt_classes, masks):
        assert torch.equal(m, out["sem_seg"] == c)
    assert "file_name" in out and d == {k: out[k] for k in d}  # input keys kept, input not mutated


def test_no_padding_without_size_divisibility(tmp_path):
    out = _mapper("INPUT.SIZE_DIVISIBILITY", -1)(_write(tmp_path, _label()))
    assert out["image"].shape == (3, 32, 32) and out["sem_seg"].shape == (32, 32)


def test_only_ignore_gives_empty_instances(tmp_path):
    out = _mapper()(_write(tmp_path, np.full((48, 64), IGNORE, np.uint8)))
    assert len(out["instances"]) == 0 and out["instances"].gt_masks.tensor.shape == (0, 64, 64)


def test_sixteen_bit_labels(tmp_path):
    label = _label().astype(np.uint16)
    d = _write(tmp_path, label)
    assert Image.open(d["sem_seg_file_name"]).mode.startswith("I;16")
    out = _mapper()(d)
    assert set(out["instances"].gt_classes.tolist()) <= {0, 1, 3}


def test_out_of_range_label_names_file_and_value(tmp_path):
    label = _label()
    label[10, 10] = 7  # K = 5 in the tiny config
    d = _write(tmp_path, label)
    with pytest.raises(ValueError) as e:
        _mapper()(d)
    assert d["sem_seg_file_name"] in str(e.value) and "7" in str(e.value)


def test_unreadable_image_names_file(tmp_path):
    d = _write(tmp_path, _label())
    with open(d["file_name"], "wb") as f:
        f.write(b"this is not a jpeg")
    with pytest.raises(OSError, match=str(d["file_name"])):
        _mapper()(d)


def test_truncated_image_names_file(tmp_path):
    d = _write(tmp_path, _label())
    data = open(d["file_name"], "rb").read()
    with open(d["file_name"], "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(OSError, match=str(d["file_name"])):
        _mapper()(d)


def test_missing_image_names_file(tmp_path):
    d = _write(tmp_path, _label())
    d["file_name"] = str(tmp_path / "gone.jpg")
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        _mapper()(d)


def test_label_size_mismatch_names_both_files(tmp_path):
    d = _write(tmp_path, _label())
    Image.fromarray(_label(40, 64)).save(d["sem_seg_file_name"])
    with pytest.raises(ValueError) as e:
        _mapper()(d)
    assert d["sem_seg_file_name"] in str(e.value) and d["file_name"] in str(e.value)


def test_augmentations_follow_the_config(tmp_path):
    mapper = _mapper("INPUT.COLOR_AUG_SSD", True)
    names = [
        type(getattr(a, "tfm", a)).__name__  # Detectron2 wraps plain transforms
        for a in mapper.augmentations.augs
    ]
    assert names == [
        "ResizeShortestEdge", "RandomCrop_CategoryAreaConstraint", "ColorAugSSDTransform",
        "RandomFlip",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="training"):
        MaskFormerSemanticDatasetMapper(tiny_cfg(), False)
