"""train_net.py with the COCO panoptic and instance recipes (shrunk) on generated COCO-panoptic
data: train and evaluate PQ / mIoU / AP, evaluate the same weights for AP with the instance
config, and post-process per evaluated dataset."""

import json
import os

import pytest
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from torch import nn

import train_net
from maskformer.data.datasets.panoptic import register_panoptic
from maskformer.data.datasets.quickstart_panoptic import (
    quickstart_panoptic_metadata,
    register_quickstart_panoptic,
    write_panoptic_split,
)
from tests.common import REPO_ROOT
from tests.fixtures.panoptic import child_pids

PANOPTIC = "coco-panoptic/maskformer_panoptic_R50.yaml"
INSTANCE = "coco-instance/maskformer_instance_R50.yaml"
DATA = "test_train_panoptic"
# The R50 + 6 enc recipes at a size that runs in seconds on 2 CPU cores.
TINY = [
    "MODEL.WEIGHTS", "",
    "MODEL.RESNETS.DEPTH", "18",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "MODEL.RESNETS.NORM", "BN",
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "7",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32",
    "MODEL.SEM_SEG_HEAD.MASK_DIM", "32",
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", "1",
    "MODEL.MASK_FORMER.HIDDEN_DIM", "32",
    "MODEL.MASK_FORMER.NHEADS", "4",
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD", "64",
    "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "8",
    "MODEL.MASK_FORMER.DEC_LAYERS", "2",
    "INPUT.MIN_SIZE_TRAIN", "(64,)",
    "INPUT.MAX_SIZE_TRAIN", "128",
    "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "128",
    "SOLVER.IMS_PER_BATCH", "2",
    "DATALOADER.NUM_WORKERS", "0",
    "MODEL.DEVICE", "cpu",
]  # fmt: skip


def args(output_dir, *opts, config=PANOPTIC, eval_only=False):
    argv = ["--config-file", os.path.join(REPO_ROOT, "configs", config)]
    argv += ["--eval-only"] * eval_only
    return train_net.default_argument_parser().parse_args(
        argv + [*opts, "OUTPUT_DIR", str(output_dir)]
    )


def _data_opts():
    return ["DATASETS.TRAIN", f'("{DATA}_train",)', "DATASETS.TEST", f'("{DATA}_val",)']


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train the panoptic recipe for 2 iterations, evaluating at the end."""
    root = tmp_path_factory.mktemp("data")
    write_panoptic_split(str(root), "train", 6, seed=1, size_range=(64, 80))
    write_panoptic_split(str(root), "val", 3, seed=2, size_range=(64, 80))
    register_quickstart_panoptic(DATA, str(root))
    out = tmp_path_factory.mktemp("out")
    children_before = set(child_pids())
    cfg = train_net.setup(
        args(
            out, *TINY, *_data_opts(),
            "MODEL.MASK_FORMER.TEST.SEMANTIC_ON", "True",
            "MODEL.MASK_FORMER.TEST.INSTANCE_ON", "True",
            "SOLVER.MAX_ITER", "2",
            "TEST.EVAL_PERIOD", "2",
        )
    )  # fmt: skip
    trainer = train_net.Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return out, trainer._last_eval_results, set(child_pids()) - children_before


def _in_range(metrics, keys):
    for k in keys:
        assert 0.0 <= metrics[k] <= 100.0, (k, metrics[k])


def test_training_then_pq_miou_and_ap_with_no_worker_left(trained):
    out, results, new_children = trained
    assert set(results) == {"sem_seg", "panoptic_seg", "bbox", "segm"}
    _in_range(results["panoptic_seg"], ["PQ", "SQ", "RQ", "PQ_th", "PQ_st"])
    _in_range(results["sem_seg"], ["mIoU", "pACC"])
    _in_range(results["segm"], ["AP", "AP50"])
    _in_range(results["bbox"], ["AP", "AP50"])
    # AP is over the 5 thing classes only (stuff predictions would not even map to COCO ids).
    assert {k for k in results["segm"] if k.startswith("AP-")} == {
        f"AP-{n}" for n in quickstart_panoptic_metadata()["thing_classes"]
    }
    assert os.path.exists(out / "model_final.pth")
    with open(out / "inference" / f"{DATA}_val" / "metrics.json") as f:  # the report
        report = json.load(f)
    assert report["panoptic_seg"]["summary"]["PQ"] == pytest.approx(results["panoptic_seg"]["PQ"])
    assert report["sem_seg"]["summary"]["mIoU"] == pytest.approx(results["sem_seg"]["mIoU"])
    assert new_children == set()  # the PQ worker processes are gone


def test_instance_config_evaluates_the_same_weights_for_ap(trained, tmp_path):
    out, _, _ = trained
    cfg_args = args(
        tmp_path, *TINY, *_data_opts(), "MODEL.WEIGHTS", str(out / "model_final.pth"),
        config=INSTANCE, eval_only=True,
    )  # fmt: skip
    results = train_net.main(cfg_args)
    assert set(results) == {"bbox", "segm"}  # instance output only
    _in_range(results["segm"], ["AP", "AP50", "AP75"])


class _RecordThingIds(nn.Module):
    """The model's post-processing, recording the thing ids it is called with."""

    def __init__(self, postprocessing):
        super().__init__()
        self.postprocessing = postprocessing
        self.calls = []

    def forward(self, *args):
        self.calls.append(args[-1])  # the thing_ids argument
        return self.postprocessing(*args)


class _ThingIdsRecorder(DatasetEvaluator):
    """The thing ids the post-processing received while one dataset was evaluated."""

    def __init__(self, recording: _RecordThingIds):
        self.recording, self.seen = recording, set()

    def reset(self):
        self.recording.calls.clear()

    def process(self, inputs, outputs):
        assert "panoptic_seg" in outputs[0]

    def evaluate(self):
        self.seen = set(self.recording.calls)
        return {"thing_ids": {"distinct": float(len(self.seen))}}


def test_each_test_dataset_is_post_processed_with_its_own_things(trained, tmp_path):
    # The same images registered again with only "disc" and "square" as things.
    meta = MetadataCatalog.get(f"{DATA}_val")
    other = dict(quickstart_panoptic_metadata(), thing_dataset_id_to_contiguous_id={11: 0, 12: 1})
    register_panoptic(
        f"{DATA}_val_two_things",
        other,
        image_root=meta.image_root,
        panoptic_root=meta.panoptic_root,
        panoptic_json=meta.panoptic_json,
    )
    cfg = train_net.setup(
        args(tmp_path, *TINY, *_data_opts(),
             "DATASETS.TEST", f'("{DATA}_val", "{DATA}_val_two_things")')
    )  # fmt: skip
    model = train_net.Trainer.build_model(cfg)
    assert model.thing_ids == (0, 1, 2, 3, 4)  # the first test dataset's, by default
    model.thing_ids = None
    model.postprocessing = _RecordThingIds(model.postprocessing)
    recorders = [_ThingIdsRecorder(model.postprocessing), _ThingIdsRecorder(model.postprocessing)]
    results = train_net.Trainer.test(cfg, model, recorders)
    assert set(results) == {f"{DATA}_val", f"{DATA}_val_two_things"}
    assert recorders[0].seen == {(0, 1, 2, 3, 4)}
    assert recorders[1].seen == {(0, 1)}
    assert model.thing_ids is None  # not changed
