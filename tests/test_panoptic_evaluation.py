"""PQ with bounded worker processes (hand-computed), and the whole evaluation path (mapper,
post-processing, PQ / mIoU / AP evaluators) scoring perfect predictions 100; the same PQ whether
the test loader's workers or the evaluator decode the ground truth."""

import functools
import json
import multiprocessing
import os
import types

import numpy as np
import panopticapi.evaluation
import pytest
import torch
from PIL import Image

import train_net
from maskformer.data.datasets.quickstart_panoptic import (
    register_quickstart_panoptic,
    write_panoptic_split,
)
from maskformer.data.io import panoptic_ids_to_rgb, read_label_map, rgb_to_panoptic_ids
from maskformer.evaluation import panoptic, panoptic_evaluation, pq_compute_multi_core
from maskformer.modeling.meta_arch import thing_ids_of
from tests.panoptic_common import child_pids
from tests.test_train_net_panoptic import TINY, args

BIG = 20.0
_ORIGINAL_SINGLE_CORE = panopticapi.evaluation.pq_compute_single_core


def _write_pq_case(root):
    """Two identical 4 x 10 images: GT cat (id 3) on columns 0-4, wall (id 20) on 5-9; the
    prediction has the cat on 0-3 (IoU 16/20) and the wall on 4-9 (IoU 20/24)."""
    categories = [
        {"id": 3, "name": "cat", "isthing": 1, "color": [200, 0, 0]},
        {"id": 20, "name": "wall", "isthing": 0, "color": [90, 90, 90]},
    ]
    gt = np.zeros((4, 10), np.int64)
    gt[:, :5], gt[:, 5:] = 1, 2
    pred = np.zeros((4, 10), np.int64)
    pred[:, :4], pred[:, 4:] = 7, 8
    data = {}
    for kind, ids, segs in (
        ("gt", gt, [(1, 3), (2, 20)]),
        ("pred", pred, [(7, 3), (8, 20)]),
    ):
        os.makedirs(os.path.join(root, kind))
        anns = []
        for image_id in (1, 2):
            Image.fromarray(panoptic_ids_to_rgb(ids)).save(
                os.path.join(root, kind, f"{image_id}.png")
            )
            # panopticapi takes ground-truth areas from the JSON, predicted ones from the PNG.
            info = [
                {"id": i, "category_id": c, "iscrowd": 0, "area": int((ids == i).sum())}
                for i, c in segs
            ]
            anns.append(
                {"image_id": image_id, "file_name": f"{image_id}.png", "segments_info": info}
            )
        data[kind] = {"annotations": anns, "categories": categories, "images": []}
        with open(os.path.join(root, kind + ".json"), "w") as f:
            json.dump(data[kind], f)
    return data


def _matched(data):
    return list(zip(data["gt"]["annotations"], data["pred"]["annotations"]))


def _recording_single_core(proc_id, *args):
    """panopticapi's per-process worker, noting which process ran which chunk."""
    with open(os.path.join(os.environ["PQ_WORKER_LOG"], f"{os.getpid()}-{proc_id}"), "w"):
        pass
    return _ORIGINAL_SINGLE_CORE(proc_id, *args)


def test_pq_hand_computed_with_bounded_workers_and_none_left(tmp_path, monkeypatch):
    import panopticapi.evaluation as pq_module

    data = _write_pq_case(str(tmp_path))
    original = pq_module.pq_compute_multi_core
    log = tmp_path / "workers"
    log.mkdir()
    monkeypatch.setenv("PQ_WORKER_LOG", str(log))
    monkeypatch.setattr(pq_module, "pq_compute_single_core", _recording_single_core)
    children_before = set(child_pids())
    with panoptic_evaluation.bounded_pq_workers(2):
        res = pq_module.pq_compute(
            str(tmp_path / "gt.json"), str(tmp_path / "pred.json"),
            str(tmp_path / "gt"), str(tmp_path / "pred"),
        )  # fmt: skip
    assert pq_module.pq_compute_multi_core is original  # restored
    assert res["Things"]["pq"] == pytest.approx(0.8)
    assert res["Stuff"]["pq"] == pytest.approx(20 / 24)
    assert res["All"]["pq"] == pytest.approx((0.8 + 20 / 24) / 2)
    assert res["All"]["rq"] == 1.0 and res["All"]["n"] == 2
    assert set(child_pids()) <= children_before  # the pool is closed and joined
    runs = [name.split("-") for name in os.listdir(log)]
    # The images are split into one chunk per allowed worker; which worker takes which chunk
    # is the pool's choice (on a busy machine one may take both).
    assert sorted(int(chunk) for _, chunk in runs) == list(range(min(2, os.cpu_count())))
    workers = {int(pid) for pid, _ in runs}
    assert 1 <= len(workers) <= 2 and os.getpid() not in workers
    categories = {c["id"]: c for c in data["gt"]["categories"]}
    one = pq_compute_multi_core(
        _matched(data), str(tmp_path / "gt"), str(tmp_path / "pred"), categories, num_workers=1
    )
    assert one.pq_average(categories, isthing=None)[0]["pq"] == pytest.approx(res["All"]["pq"])


def test_one_worker_starts_no_process(tmp_path, monkeypatch):
    data = _write_pq_case(str(tmp_path))

    def no_pool(*args, **kwargs):
        raise AssertionError("a process pool was started")

    monkeypatch.setattr(multiprocessing, "Pool", no_pool)
    categories = {c["id"]: c for c in data["gt"]["categories"]}
    stat = pq_compute_multi_core(
        _matched(data), str(tmp_path / "gt"), str(tmp_path / "pred"), categories, num_workers=1
    )
    assert stat.pq_average(categories, isthing=True)[0]["pq"] == pytest.approx(0.8)


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
            "TEST.PANOPTIC_EVAL_WORKERS", "2",
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
                "TEST.PANOPTIC_EVAL_GT_IN_LOADER", str(in_loader),
                "DATALOADER.NUM_WORKERS", str(workers),
                "TEST.PANOPTIC_EVAL_WORKERS", "0",
            )
        )  # fmt: skip

        def evaluator_reads(file_name, in_loader=in_loader):
            assert not in_loader, f"the evaluator read {file_name}; the loader had decoded it"
            return read_png(file_name)

        monkeypatch.setattr(panoptic, "read_panoptic_ids", evaluator_reads)
        model = train_net.Trainer.build_model(cfg)
        model.forward = types.MethodType(functools.partial(_oracle_forward, shift=9), model)
        results[in_loader, workers] = train_net.Trainer.test(cfg, model)["panoptic_seg"]
    reference = results[False, 0]
    assert 0 < reference["PQ"] < 100 and reference["RQ"] < 100
    assert results[True, 0] == reference and results[True, 1] == reference
