"""train_net.py with the Cityscapes panoptic recipe (shrunk) on a miniature Cityscapes made by
cityscapesscripts' converters: training on cityscapes_fine_panoptic_train, then evaluation of
cityscapes_fine_panoptic_val for mIoU, PQ and mask AP, after training and with --eval-only."""

import json
import os

import pytest

import train_net
from maskformer.data.datasets import register_all
from tests.common import REPO_ROOT
from tests.fixtures import miniatures as mini

pytest.importorskip("cityscapesscripts")

CONFIG = os.path.join(REPO_ROOT, "configs", "cityscapes", "maskformer_panoptic_R50.yaml")
DEFAULT_ROOT = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
# The R50 + 6 enc recipe at a size that runs in seconds on 2 CPU cores; its datasets, mapper,
# crop, colour jitter, AMP and three outputs as they are.
TINY = [
    "MODEL.WEIGHTS", "",
    "MODEL.RESNETS.DEPTH", "18",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "MODEL.RESNETS.NORM", "BN",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32",
    "MODEL.SEM_SEG_HEAD.MASK_DIM", "32",
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", "1",
    "MODEL.MASK_FORMER.HIDDEN_DIM", "32",
    "MODEL.MASK_FORMER.NHEADS", "4",
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD", "64",
    "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "8",
    "MODEL.MASK_FORMER.DEC_LAYERS", "2",
    "INPUT.MIN_SIZE_TRAIN", "(64, 80)",
    "INPUT.MAX_SIZE_TRAIN", "160",
    "INPUT.CROP.SIZE", "(48, 96)",
    "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "128",
    "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.MAX_ITER", "2",
    "DATALOADER.NUM_WORKERS", "0",
    "MODEL.DEVICE", "cpu",
]  # fmt: skip
KEYS = {"sem_seg", "panoptic_seg", "segm"}  # mIoU, PQ, mask AP


def _args(*opts, eval_only=False):
    argv = ["--config-file", CONFIG] + ["--eval-only"] * eval_only + [*TINY, *opts]
    return train_net.default_argument_parser().parse_args(argv)


def _in_range(results):
    assert set(results) == KEYS
    for task, keys in (
        ("sem_seg", ["mIoU", "pACC"]),
        ("panoptic_seg", ["PQ", "SQ", "RQ", "PQ_th", "PQ_st"]),
        ("segm", ["AP", "AP50"]),
    ):
        for k in keys:
            assert 0.0 <= results[task][k] <= 100.0, (task, k, results[task][k])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("data"))
    mini.write_cityscapes_annotated(root, mini.CITYSCAPES_SCENES)
    register_all(root)
    out = tmp_path_factory.mktemp("out")
    try:
        trainer = train_net.Trainer(train_net.setup(_args("OUTPUT_DIR", str(out))))
        trainer.resume_or_load(resume=False)
        trainer.train()
        yield out, trainer._last_eval_results
    finally:
        register_all(DEFAULT_ROOT)


@pytest.mark.slow
def test_training_ends_with_miou_pq_and_ap(trained):
    out, results = trained
    _in_range(results)
    assert os.path.exists(out / "model_final.pth")
    with open(out / "inference" / "cityscapes_fine_panoptic_val" / "metrics.json") as f:
        report = json.load(f)  # the per-class report of the evaluation after training
    assert {"sem_seg", "panoptic_seg"} <= set(report)
    assert len(report["panoptic_seg"]["per_class"]) == 19


@pytest.mark.slow
def test_eval_only_gives_miou_pq_and_ap(trained, tmp_path, monkeypatch):
    out, _ = trained
    monkeypatch.chdir(tmp_path)
    results = train_net.main(
        _args("MODEL.WEIGHTS", str(out / "model_final.pth"), "OUTPUT_DIR", str(tmp_path / "eval"),
              eval_only=True)
    )  # fmt: skip
    _in_range(results)
    assert not os.path.exists(tmp_path / "matches.json")
