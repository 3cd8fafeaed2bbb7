"""Two processes equal one: `train_net.py --num-gpus 2` (gloo, on the CPU) against one process
with the same global batch and seed, for training with each norm, for evaluation (semantic,
panoptic and instance metrics) and for `--resume` of a killed run. docs/distributed.md has the
measurements behind the tolerances."""

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.evaluation import DatasetEvaluator
from detectron2.layers import batch_norm

import train_net
from maskformer.data.build import ResumableBatchSampler
from maskformer.data.datasets.described import (
    FORMAT,
    read_description,
    register_description,
    write_description,
)
from maskformer.data.datasets.quickstart_panoptic import (
    QUICKSTART_PANOPTIC_CATEGORIES,
    register_quickstart_panoptic,
    write_panoptic_split,
)
from maskformer.data.io import panoptic_ids_to_rgb
from maskformer.engine import build_config, load_for_evaluation
from maskformer.modeling.criterion import SetCriterion, num_masks_across_processes
from tests.common import REPO_ROOT, randomize_, wait_for_first_checkpoint
from tests.engine.test_train_net import QUICKSTART, TINY
from tests.engine.test_train_net_panoptic import PANOPTIC
from tests.engine.test_train_net_panoptic import TINY as PANOPTIC_TINY

STEPS = 4
# Global batch 4: 2 images per process. No test set: nothing is evaluated after training.
TRAIN = [*TINY, "SOLVER.IMS_PER_BATCH", "4", "DATASETS.TEST", "()"]
NORMS = {
    # The published recipes: frozen backbone statistics, GroupNorm in the pixel decoder.
    "FrozenBN": ["MODEL.RESNETS.NORM", "FrozenBN", "MODEL.SEM_SEG_HEAD.NORM", "GN"],
    # A from-scratch backbone with statistics over all processes (SyncBN is CUDA-only).
    "naiveSyncBN": ["MODEL.RESNETS.NORM", "naiveSyncBN", "MODEL.SEM_SEG_HEAD.NORM", "GN"],
}
# Float rounding, the largest of several measurements (one process at 1 and at 2 threads, two
# processes against the equal one-process computation): after 4 steps, 1.9e-6 of the update
# (||w2 - w1|| / ||w1 - w0|| over all weights) and 1.9e-5 of one tensor's norm; the gradient of
# the first step, 1.2e-6 of its norm and 1.2e-5 of one tensor's. The tolerances are 50x that;
# the real differences measured (docs/distributed.md) are 0.18 and more.
TOLERANCE = 1e-4
TENSOR_TOLERANCE = 1e-3
# One thread per process, also for the 1-process evaluation: the same kernels on every image.
ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1")


def _command(output_dir, *opts, config=QUICKSTART, eval_only=False, resume=False):
    return [
        sys.executable, "train_net.py", "--num-gpus", "2",
        "--dist-url", "auto",  # a free port: the default is the same for every run of this user
        "--config-file", f"configs/{config}",
        *["--eval-only"] * eval_only, *["--resume"] * resume,
        *opts, "OUTPUT_DIR", str(output_dir),
    ]  # fmt: skip


def _group_members(pgid):
    """Live processes of process group `pgid` (from /proc; Linux)."""
    members = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(pid))
    return members


def _kill_group(proc):
    """SIGKILL `proc` and its workers (its own process group); returns the processes of the
    group still alive 30 s later."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    deadline = time.time() + 30
    while _group_members(proc.pid) and time.time() < deadline:
        time.sleep(0.05)
    return _group_members(proc.pid)


def _two_processes(output_dir, *opts, env=ONE_THREAD, **kwargs):
    """Run train_net.py on 2 CPU processes; returns its log. No worker outlives a timeout."""
    proc = subprocess.Popen(
        _command(output_dir, *opts, **kwargs),
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        log, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    assert proc.returncode == 0, log[-3000:]
    assert "World size: 2" in log
    return log


_loss_labels = SetCriterion.loss_labels


def _loss_labels_per_half(self, logits, targets, indices):
    # The cross-entropy of each half of the batch (one process's images in a 2-process run),
    # weighted-averaged over its queries as each process does, then averaged as DDP does.
    h = len(targets) // 2
    halves = [slice(0, h), slice(h, None)]
    return sum(_loss_labels(self, logits[s], targets[s], indices[s]) for s in halves) / 2


def _all_reduce_of_two_halves():
    """(module, name, value) patches that make Detectron2's NaiveSyncBatchNorm compute, in one
    process holding both halves of the batch, what it computes in a 2-process run: the mean of
    the halves' statistics, i.e. the whole batch's."""
    world = SimpleNamespace(get_world_size=lambda: 2)
    return [
        (batch_norm, "comm", world),
        (batch_norm, "dist", world),
        (batch_norm, "differentiable_all_reduce", lambda x: x * 2),  # the sum of 2 halves
    ]


def _one_process(output_dir, *opts, as_two_halves=True, naive_sync_bn=False):
    """Train in this process; returns (initial weights, final checkpoint).

    Args:
        as_two_halves: compute the classification loss per half of the batch, as two processes
            do (the official criterion normalises it per process).
        naive_sync_bn: NaiveSyncBatchNorm with its multi-process statistics, which it only
            computes with more than one process (one process falls back to BatchNorm2d).
    """
    argv = ["--config-file", os.path.join(REPO_ROOT, "configs", QUICKSTART)]
    args = train_net.default_argument_parser().parse_args(
        argv + [*opts, "OUTPUT_DIR", str(output_dir)]
    )
    with pytest.MonkeyPatch.context() as patch:
        if as_two_halves:
            patch.setattr(SetCriterion, "loss_labels", _loss_labels_per_half)
        if naive_sync_bn:
            for target, name, value in _all_reduce_of_two_halves():
                patch.setattr(target, name, value)
        trainer = train_net.Trainer(train_net.setup(args))
        trainer.resume_or_load(resume=False)
        initial = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        trainer.train()
    return initial, _checkpoint(output_dir / "model_final.pth")


def _checkpoint(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def _relative(pairs):
    """(||b - a|| / ||a|| over all (a, b) pairs of tensors, the largest for one pair)."""
    diff2 = norm2 = worst = 0.0
    for a, b in pairs:
        a, b = a.double(), b.double()
        diff2 += float((b - a).pow(2).sum())
        norm2 += float(a.pow(2).sum())
        worst = max(worst, float((b - a).norm() / a.norm()))
    return math.sqrt(diff2 / norm2), worst


def _update_differences(initial, reference, other):
    """(||w_other - w_ref|| / ||w_ref - w_initial|| over all weights, the largest
    ||w_other - w_ref|| / ||w_ref|| of one tensor). Tensors that training left unchanged
    (frozen statistics, constant buffers) must be equal."""
    ref, oth = reference["model"], other["model"]
    changed = []
    for name, value in ref.items():
        if not value.is_floating_point():
            continue
        if torch.equal(value, initial[name]):
            assert torch.equal(oth[name], value), f"{name}: changed by one run only"
        else:
            changed.append(name)
    update, _ = _relative((ref[n] - initial[n], oth[n] - initial[n]) for n in changed)
    _, tensor = _relative((ref[n], oth[n]) for n in changed)
    return update, tensor


def _gradient_differences(reference, other):
    """The relative difference of the gradients of the first step (`_relative`), from Adam's
    first moments after that step (0.1 x the clipped gradient)."""
    moments = [c["trainer"]["_trainer"]["optimizer"]["state"] for c in (reference, other)]
    assert moments[0].keys() == moments[1].keys()
    return _relative((moments[0][i]["exp_avg"], moments[1][i]["exp_avg"]) for i in moments[0])


@pytest.fixture(scope="module")
def published_run(tmp_path_factory):
    """The final checkpoint and folder of STEPS steps of the published norms on 2 processes,
    which evaluate on the quickstart validation set at the end."""
    out = tmp_path_factory.mktemp("two-processes")
    test = ["DATASETS.TEST", '("quickstart_sem_seg_val",)']
    _two_processes(out, *TRAIN, *NORMS["FrozenBN"], "SOLVER.MAX_ITER", str(STEPS), *test)
    return _checkpoint(out / "model_final.pth"), out


@pytest.mark.slow
def test_two_processes_train_as_one_with_frozen_bn_and_gn(published_run, tmp_path):
    opts = [*TRAIN, *NORMS["FrozenBN"], "SOLVER.MAX_ITER", str(STEPS)]
    initial, one = _one_process(tmp_path, *opts)
    update, tensor = _update_differences(initial, one, published_run[0])
    assert update < TOLERANCE and tensor < TENSOR_TOLERANCE, (update, tensor)


@pytest.mark.slow
def test_two_process_training_evaluates_at_the_end(published_run):
    with open(published_run[1] / "metrics.json") as f:
        assert any("sem_seg/mIoU" in json.loads(line) for line in f)


@pytest.mark.slow
def test_classification_loss_is_normalised_per_process(published_run, tmp_path):
    # As in the official training, each process divides its cross-entropy by the weights of its
    # own queries (no-object weight 0.1, others 1): one process over the whole batch differs.
    opts = [*TRAIN, *NORMS["FrozenBN"], "SOLVER.MAX_ITER", str(STEPS)]
    initial, one = _one_process(tmp_path, *opts, as_two_halves=False)
    assert _update_differences(initial, one, published_run[0])[0] > 100 * TOLERANCE  # 0.18


@pytest.mark.slow
def test_two_processes_compute_the_gradient_of_one_with_naive_sync_bn(tmp_path):
    # Compared after the first step: NaiveSyncBatchNorm's float32 E[x^2] - E[x]^2 amplifies
    # float rounding over the steps (to 1.6e-3 of the update after 4 steps).
    opts = [*TRAIN, *NORMS["naiveSyncBN"], "SOLVER.MAX_ITER", "1"]
    _two_processes(tmp_path / "two", *opts)
    _, one = _one_process(tmp_path / "one", *opts, naive_sync_bn=True)
    two = _checkpoint(tmp_path / "two" / "model_final.pth")
    gradient, tensor = _gradient_differences(one, two)
    assert gradient < TOLERANCE and tensor < TENSOR_TOLERANCE, (gradient, tensor)


def test_sync_bn_is_refused_on_cpu_processes(tmp_path, capsys):
    argv = ["--num-gpus", "2", "--config-file", os.path.join(REPO_ROOT, "configs", QUICKSTART)]
    status = train_net.cli(
        argv + [*TRAIN, "MODEL.RESNETS.NORM", "SyncBN", "OUTPUT_DIR", str(tmp_path / "out")]
    )
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("train_net.py:")]
    assert status == 2
    assert err == [
        "train_net.py: error: MODEL.RESNETS.NORM is SyncBN (torch.nn.SyncBatchNorm), which runs "
        "on CUDA only, and this run trains in 2 CPU processes: use naiveSyncBN (Detectron2's "
        "NaiveSyncBatchNorm, synchronised over gloo) or one process"
    ]
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("world_size", [2, 4])
@pytest.mark.parametrize("grouped", [False, True])
def test_ranks_split_the_one_process_batch(world_size, grouped):
    portrait = [i % 3 == 0 for i in range(50)] if grouped else None

    def batches(batch_size, rank=0, ranks=1):
        sampler = ResumableBatchSampler(
            50, batch_size, seed=4, portrait=portrait, rank=rank, world_size=ranks
        )
        return list(itertools.islice(iter(sampler), 30))  # 30 steps: several epochs

    one = batches(2 * world_size)
    ranks = [batches(2, r, world_size) for r in range(world_size)]
    for step, batch in enumerate(one):
        # The same (image, augmentation seed) tokens, rank 0's first: the order of the batch.
        assert [t for r in ranks for t in r[step]] == batch, step
        if grouped:
            assert len({portrait[i] for i, _ in batch}) == 1


def _average_worker(rank, world_size, port, results):
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        results[rank] = num_masks_across_processes([3, 0][rank], torch.device("cpu"))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_num_masks_is_averaged_over_processes():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_average_worker, args=(2, port, results), nprocs=2, join=True)
    # 3 masks on one process, none on the other: both normalise by 1.5, not by 3 or by 0.
    assert dict(results) == {0: 1.5, 1: 1.5}


@pytest.mark.slow
def test_killed_two_process_run_resumes_exactly(published_run, tmp_path):
    opts = [*TRAIN, *NORMS["FrozenBN"], "SOLVER.MAX_ITER", str(STEPS)]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _command(killed, *opts, "SOLVER.CHECKPOINT_PERIOD", "1"),
        cwd=REPO_ROOT,
        env=ONE_THREAD,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the parent and its 2 workers: one group to kill
    )
    try:
        wait_for_first_checkpoint(proc, killed)
        assert proc.poll() is None, "training ended before it could be killed"
    finally:
        left = _kill_group(proc)
    assert left == [], f"processes left after SIGKILL of the group: {left}"
    assert not (killed / "model_final.pth").exists()
    assert not [f for f in os.listdir(killed) if ".tmp" in f]  # nothing half-written

    log = _two_processes(killed, *opts, resume=True)
    starts = [int(s) for s in _after(log, "Starting training from iteration ")]
    assert len(starts) == 1 and 0 < starts[0] < STEPS, starts
    # Weights, Adam's moments (which sum every step's gradients), the LR schedule, the
    # iteration and the data sampler's state, as after the uninterrupted run.
    _assert_same(_checkpoint(killed / "model_final.pth"), published_run[0])


def _assert_same(a, b, where="checkpoint"):
    if isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in b:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(b, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(b, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def _after(log, marker):
    """The word after each `marker` in `log`."""
    return [part.split()[0] for part in log.split(marker)[1:]]


# Evaluation: a random model, scored against ground truth made from its own panoptic
# predictions with every third segment given another class of its kind, so that every metric
# lies strictly between 0 and 100 and every image counts.
EVAL_DATA = "two_process_eval"
EVAL = [
    *PANOPTIC_TINY,
    "MODEL.MASK_FORMER.TEST.SEMANTIC_ON", "True",
    "MODEL.MASK_FORMER.TEST.INSTANCE_ON", "True",
    # Every query with a class keeps its segment: a random model's scores are low.
    "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "0.0",
    "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD", "0.0",
]  # fmt: skip


class _Predictions(DatasetEvaluator):
    def __init__(self):
        self.outputs = []

    def reset(self):
        self.outputs = []

    def process(self, inputs, outputs):
        for x, y in zip(inputs, outputs):
            ids, segments = y["panoptic_seg"]
            self.outputs.append((x["file_name"], ids.numpy().copy(), segments))

    def evaluate(self):
        return {}


def _other_class(contiguous, things):
    # The next class of the same kind (things are 0 .. things - 1, stuff after them).
    if contiguous < things:
        return (contiguous + 1) % things
    stuff = len(QUICKSTART_PANOPTIC_CATEGORIES) - things
    return things + (contiguous - things + 1) % stuff


def _write_ground_truth(root, predictions):
    """COCO panoptic ground truth (PNGs, JSON, semantic labels, instances) of `predictions`,
    every third segment relabelled; returns the description registering it."""
    things = sum(c["isthing"] for c in QUICKSTART_PANOPTIC_CATEGORIES)
    dataset_id = [c["id"] for c in QUICKSTART_PANOPTIC_CATEGORIES]  # contiguous -> dataset id
    for d in ("panoptic", "semantic"):
        os.makedirs(root / d)
    images, annotations, instances = [], [], []
    for i, (file_name, ids, segments) in enumerate(sorted(predictions, key=lambda p: p[0])):
        stem = os.path.splitext(os.path.basename(file_name))[0]
        h, w = ids.shape
        semantic = np.full((h, w), 255, np.uint8)
        infos = []
        for k, s in enumerate(segments):
            mask = ids == s["id"]
            c = s["category_id"] if (i + k) % 3 else _other_class(s["category_id"], things)
            semantic[mask] = c
            ys, xs = np.nonzero(mask)
            box = [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]
            info = {"id": s["id"], "category_id": dataset_id[c], "iscrowd": 0,
                    "area": int(mask.sum()), "bbox": box}  # fmt: skip
            infos.append(info)
            if c < things:
                rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                n = len(instances) + 1
                instances.append(dict(info, id=n, image_id=i + 1, segmentation=rle))
        rgb = panoptic_ids_to_rgb(ids.astype(np.int64))
        cv2.imwrite(str(root / "panoptic" / f"{stem}.png"), rgb[:, :, ::-1])
        cv2.imwrite(str(root / "semantic" / f"{stem}.png"), semantic)
        images.append({"id": i + 1, "file_name": os.path.basename(file_name), "height": h,
                       "width": w})  # fmt: skip
        annotations.append({"image_id": i + 1, "file_name": f"{stem}.png", "segments_info": infos})
    with open(root / "panoptic.json", "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": QUICKSTART_PANOPTIC_CATEGORIES}, f)  # fmt: skip
    with open(root / "instances.json", "w") as f:
        thing_categories = [c for c in QUICKSTART_PANOPTIC_CATEGORIES if c["isthing"]]
        json.dump({"images": images, "annotations": instances,
                   "categories": thing_categories}, f)  # fmt: skip
    return {
        "format": FORMAT,
        "name": f"{EVAL_DATA}_val",
        "type": "panoptic",
        "images": os.path.dirname(predictions[0][0]),
        "panoptic_masks": str(root / "panoptic"),
        "panoptic_json": str(root / "panoptic.json"),
        "categories": QUICKSTART_PANOPTIC_CATEGORIES,
        "semantic_labels": str(root / "semantic"),
        "instances_json": str(root / "instances.json"),
    }


def _eval_args(output_dir, *opts):
    argv = ["--config-file", os.path.join(REPO_ROOT, "configs", PANOPTIC), "--eval-only"]
    return train_net.default_argument_parser().parse_args(
        argv + [*EVAL, *opts, "OUTPUT_DIR", str(output_dir)]
    )


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory):
    """(results, output folder) of the same weights evaluated by one and by two processes."""
    root = tmp_path_factory.mktemp("eval")
    # 5 images: 3 for rank 0, 2 for rank 1.
    write_panoptic_split(str(root / "source"), "val", 5, seed=5, size_range=(64, 96))
    register_quickstart_panoptic(f"{EVAL_DATA}_source", str(root / "source"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        source = ["DATASETS.TEST", f'("{EVAL_DATA}_source_val",)']
        cfg = build_config(_eval_args(root / "predict", *source))
        model = randomize_(train_net.Trainer.build_model(cfg), seed=9)  # things and stuff
        weights = ["MODEL.WEIGHTS", str(root / "random.pth")]
        torch.save({"model": model.state_dict()}, weights[1])
        cfg = build_config(_eval_args(root / "predict", *weights, *source))
        predictions = _Predictions()
        train_net.Trainer.test(cfg, load_for_evaluation(cfg, resume=False), [predictions])
        description = _write_ground_truth(root / "gt", predictions.outputs)
        descriptions = root / "descriptions"  # for the 2 processes; this one registers it now
        register_description(read_description(write_description(description, str(descriptions))))

        test = ["DATASETS.TEST", f'("{EVAL_DATA}_val",)']
        one = train_net.main(_eval_args(root / "one", *weights, *test))
    finally:
        torch.set_num_threads(threads)
    log = _two_processes(
        root / "two",
        *EVAL, *weights, *test,
        config=PANOPTIC,
        eval_only=True,
        env=dict(ONE_THREAD, MASKFORMER_DATASETS_DIR=str(descriptions)),
    )  # fmt: skip
    folder = os.path.join("inference", f"{EVAL_DATA}_val")
    return (one, root / "one" / folder), (_copypaste(log), root / "two" / folder)


def _copypaste(log):
    """{task: {metric: "value"}} of Detectron2's "copypaste:" lines (4 decimals)."""
    lines = [ln.split("copypaste: ", 1)[1] for ln in log.splitlines() if "copypaste: " in ln]
    results = {}
    for task, keys, values in zip(lines[::3], lines[1::3], lines[2::3]):
        assert task.startswith("Task: "), lines
        results[task[len("Task: ") :]] = dict(zip(keys.split(","), values.split(",")))
    return results


@pytest.mark.slow
def test_two_processes_evaluate_as_one(evaluations):
    (one, one_dir), (two, two_dir) = evaluations
    assert set(one) == set(two) == {"sem_seg", "panoptic_seg", "bbox", "segm"}
    for task in ("sem_seg", "panoptic_seg", "segm"):
        main = {"sem_seg": "mIoU", "panoptic_seg": "PQ", "segm": "AP"}[task]
        assert 0 < one[task][main] < 100, (task, one[task])  # every image counts
    for task, metrics in two.items():  # the summaries, as Detectron2 prints them
        assert metrics == {k: f"{v:.4f}" for k, v in one[task].items() if "-" not in k}, task
    # Every semantic and panoptic metric, per class too, at full precision.
    with open(one_dir / "metrics.json") as f, open(two_dir / "metrics.json") as g:
        assert json.load(f) == json.load(g)
    confusion = "sem_seg_confusion_matrix.npy"
    assert np.array_equal(np.load(one_dir / confusion), np.load(two_dir / confusion))
    # Instance AP, per class too, is computed from these predictions.
    instances = []
    for d in (one_dir, two_dir):
        with open(d / "coco_instances_results.json") as f:
            instances.append(sorted(json.load(f), key=json.dumps))
    assert len(instances[0]) > 0 and instances[0] == instances[1]
