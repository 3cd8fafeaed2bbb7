"""train_net.py --eval-only with TEST.AUG.ENABLED adds "_TTA" results."""

import os

import pytest
import torch
from detectron2.modeling import build_model

import train_net
from maskformer import get_maskformer_cfg
from maskformer.data.datasets import register_sem_seg_folder
from maskformer.data.datasets.custom import unregister
from maskformer.data.datasets.quickstart import QUICKSTART_CLASSES, write_shapes_split
from tests.common import REPO_ROOT
from tests.engine.test_train_net import TINY

DATASET = "tta_test_sem_seg_val"
CONFIG = os.path.join(REPO_ROOT, "configs", "quickstart", "maskformer_R18_quickstart.yaml")


@pytest.fixture
def tiny_dataset(tmp_path):
    write_shapes_split(str(tmp_path), "val", count=2, seed=3, size_range=(70, 90))
    register_sem_seg_folder(
        DATASET,
        str(tmp_path / "images" / "val"),
        str(tmp_path / "annotations_detectron2" / "val"),
        QUICKSTART_CLASSES,
    )
    yield
    unregister(DATASET)


def _eval_only(output_dir, weights, *extra):
    argv = [
        "--config-file",
        CONFIG,
        "--eval-only",
        *TINY,
        "OUTPUT_DIR", str(output_dir),
        "MODEL.WEIGHTS", str(weights),
        "DATASETS.TEST", f"('{DATASET}',)",
        "TEST.AUG.ENABLED", "True",
        "TEST.AUG.MAX_SIZE", "1000",
        *extra,
    ]  # fmt: skip
    return train_net.main(train_net.default_argument_parser().parse_args(argv))


def test_eval_only_with_tta(tmp_path, tiny_dataset):
    # Random weights, saved as a checkpoint, as --eval-only expects.
    torch.manual_seed(0)
    model = build_model(get_maskformer_cfg(CONFIG, TINY))
    weights = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, weights)

    # One scale (the test size, 64) and no flip: the TTA numbers are the plain ones.
    res = _eval_only(
        tmp_path / "a", weights, "TEST.AUG.MIN_SIZES", "(64,)", "TEST.AUG.FLIP", "False"
    )
    assert set(res) == {"sem_seg", "sem_seg_TTA"}
    assert res["sem_seg_TTA"]["mIoU"] == pytest.approx(res["sem_seg"]["mIoU"], abs=1e-9)
    assert os.path.isdir(tmp_path / "a" / "inference_TTA" / DATASET)

    res = _eval_only(tmp_path / "b", weights, "TEST.AUG.MIN_SIZES", "(48, 80)")
    assert set(res) == {"sem_seg", "sem_seg_TTA"}
    assert 0.0 <= res["sem_seg_TTA"]["mIoU"] <= 100.0
