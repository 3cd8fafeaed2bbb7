"""The whole evaluation path (mapper, post-processing, PQ / mIoU / AP evaluators) scoring perfect
predictions 100; the same PQ whether the test loader's workers or the evaluator decode the
ground truth."""

import functools
import types

import pytest
import torch

import train_net
from maskformer.data import build as data_build
from maskformer.data.datasets.quickstart_panoptic import (
    register_quickstart_panoptic,
    write_panoptic_split,
)
from maskformer.data.io import read_label_map, rgb_to_panoptic_ids
from maskformer.evaluation import panoptic
from maskformer.modeling.meta_arch import thing_ids_of
from tests.engine.test_train_net_panoptic import TINY, args
from tests.fixtures.panoptic import child_pids

BIG = 20.0


def _oracle_forward(self, batched_inputs, dataset_name=None, *, shift=0):
    """Perfect predictions from the ground truth: one query per segment (crowds included), with
    certain classes and +-BIG mask logits, plus "no object" queries; then the real inference.
    With `shift`, every other segment's mask is moved `shift` pixels to the right."""
    images = self.preprocess_image(batched_inputs)
    num_classes = self.criterion.num_classes
    h, w = images.tensor.shape[-2:]
    queries = 1 + max(len(x["segments_info"]) for x in batched_inputs)
    logits = torch.zeros(len(batched_inputs), queries, num_classes + 1)
    logits[:, :, num_classes] = BIG
    masks = torch.full((len(batched_inputs), queries, h, w), -BIG)
    for b, x in enumerate(batched_inputs):
        file = x["pan_seg_file_name"]
        ids = torch.from_numpy(rgb_to_panoptic_ids(read_label_map(file), file))
        assert ids.shape == (x["image"].shape[1], x["image"].shape[2])  # no test-time resize
        for q, segment in enumerate(x["segments_info"]):
            logits[b, q, num_classes] = 0.0
            logits[b, q, segment["category_id"]] = BIG
            mask = torch.roll(ids == segment["id"], shift * (q % 2), dims=1)
            masks[b, q, : ids.shape[0], : ids.shape[1]] = torch.where(mask, BIG, -BIG)
    outputs = {"pred_logits": logits, "pred_masks": masks}
    thing_ids = self.thing_ids if dataset_name is None else thing_ids_of(dataset_name)
    return self.inference(outputs, batched_inputs, images, thing_ids)


def test_perfect_predictions_score_100_pq_miou_and_ap(tmp_path):
    write_panoptic_split(str(tmp_path), "train", 1, seed=3, size_range=(64, 64))
    write_panoptic_split(str(tmp_path), "val", 3, seed=4, size_range=(64, 64))
    register_quickstart_panoptic("test_oracle_panoptic", str(tmp_path))
    cfg = train_net.setup(
        args(
            tmp_path / "out",
            *TINY,
            "DATASETS.TRAIN", '("test_oracle_panoptic_train",)',
            "DATASETS.TEST", '("test_oracle_panoptic_val",)',
            "MODEL.MASK_FORMER.TEST.SEMANTIC_ON", "True",
            "MODEL.MASK_FORMER.TEST.INSTANCE_ON", "True",
        )
    )  # fmt: skip
    assert cfg.MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD == 0.8  # the COCO recipe's
    model = train_net.Trainer.build_model(cfg)
    model.thing_ids = None  # the evaluation loop must pass the dataset's own
    model.forward = types.MethodType(_oracle_forward, model)
    children_before = set(child_pids())
    results = train_net.Trainer.test(cfg, model)
    assert model.thing_ids is None  # not changed
    pq = results["panoptic_seg"]
    assert (pq["PQ"], pq["SQ"], pq["RQ"]) == (100.0, 100.0, 100.0)
    assert pq["PQ_th"] == 100.0 and pq["PQ_st"] == 100.0
    assert results["sem_seg"]["mIoU"] == pytest.approx(100.0)
    assert results["segm"]["AP"] == pytest.approx(100.0)
    assert results["bbox"]["AP"] == pytest.approx(100.0)  # boxes of the masks: exact
    assert set(child_pids()) <= children_before  # no PQ worker left behind


def test_ground_truth_decoded_by_the_loader_gives_the_same_pq(tmp_path, monkeypatch):
    """train_net's evaluation of imperfect predictions (shifted segments: TP, FP and FN, with
    crowds and void bands in the ground truth): the evaluator reading the PNGs, and the test
    loader decoding them in the main process and in a worker process."""
    write_panoptic_split(str(tmp_path), "val", 4, seed=5, size_range=(64, 64))
    register_quickstart_panoptic("test_loader_gt_panoptic", str(tmp_path))
    read_png = panoptic.read_panoptic_ids
    results = {}
    for in_loader, workers in ((False, 0), (True, 0), (True, 1)):
        cfg = train_net.setup(
            args(
                tmp_path / f"out_{in_loader}_{workers}",
                *TINY,
                "DATASETS.TEST", '("test_loader_gt_panoptic_val",)',
                "DATALOADER.NUM_WORKERS", str(workers),
            )
        )  # fmt: skip
        if not in_loader:  # a test loader that leaves the ground truth to the evaluator
            monkeypatch.setattr(data_build, "WithPanopticGroundTruth", lambda mapper: mapper)

        def evaluator_reads(file_name, in_loader=in_loader):
            assert not in_loader, f"the evaluator read {file_name}; the loader had decoded it"
            return read_png(file_name)

        monkeypatch.setattr(panoptic, "read_panoptic_ids", evaluator_reads)
        model = train_net.Trainer.build_model(cfg)
        model.forward = types.MethodType(functools.partial(_oracle_forward, shift=9), model)
        results[in_loader, workers] = train_net.Trainer.test(cfg, model)["panoptic_seg"]
        monkeypatch.undo()
    reference = results[False, 0]
    assert 0 < reference["PQ"] < 100 and reference["RQ"] < 100
    assert results[True, 0] == reference and results[True, 1] == reference
