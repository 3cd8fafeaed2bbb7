"""train_net.py end to end on the generated quickstart dataset: train, evaluate, eval-only and
kill-and-resume in one process (two processes: tests/engine/test_distributed.py)."""

import json
import math
import os
import signal
import subprocess
import sys

import pytest
import torch
from detectron2.engine import HookBase

import train_net
from tests.common import REPO_ROOT, tiny_cfg, wait_for_first_checkpoint

QUICKSTART = "quickstart/maskformer_R18_quickstart.yaml"
# Small enough for a few seconds per run on 2 CPU cores.
TINY = [
    "MODEL.MASK_FORMER.HIDDEN_DIM", "32",
    "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "8",
    "MODEL.MASK_FORMER.DEC_LAYERS", "2",
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD", "64",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32",
    "MODEL.SEM_SEG_HEAD.MASK_DIM", "32",
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "6",
    "INPUT.MIN_SIZE_TRAIN", "(64,)",
    "INPUT.CROP.SIZE", "(64, 64)",
    "INPUT.SIZE_DIVISIBILITY", "64",
    "INPUT.MIN_SIZE_TEST", "64",
    "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.WARMUP_ITERS", "2",
    "DATALOADER.NUM_WORKERS", "0",
    "MODEL.DEVICE", "cpu",
]  # fmt: skip


def _opts(output_dir, *extra):
    return [*TINY, "OUTPUT_DIR", str(output_dir), *extra]


def _args(output_dir, *extra, eval_only=False, resume=False):
    argv = ["--config-file", os.path.join(REPO_ROOT, "configs", QUICKSTART)]
    argv += ["--eval-only"] * eval_only + ["--resume"] * resume
    return train_net.default_argument_parser().parse_args(argv + _opts(output_dir, *extra))


class LossRecorder(HookBase):
    def __init__(self):
        self.losses, self.lrs = {}, {}

    def after_step(self):
        storage = self.trainer.storage
        self.losses[self.trainer.iter] = storage.history("total_loss").latest()
        self.lrs[self.trainer.iter] = storage.history("lr").latest()


def _trainer(output_dir, *extra, resume=False):
    cfg = train_net.setup(_args(output_dir, *extra))
    trainer = train_net.Trainer(cfg)
    trainer.resume_or_load(resume=resume)
    recorder = LossRecorder()
    trainer.register_hooks([recorder])
    return trainer, recorder


@pytest.mark.slow
def test_train_then_evaluate_then_eval_only(tmp_path):
    trainer, recorder = _trainer(tmp_path, "SOLVER.MAX_ITER", "4", "TEST.EVAL_PERIOD", "4")
    trainer.train()
    results = trainer._last_eval_results
    miou = results["sem_seg"]["mIoU"]
    assert 0.0 <= miou <= 100.0
    assert sorted(recorder.losses) == [0, 1, 2, 3]
    files = os.listdir(tmp_path)
    assert {"model_final.pth", "last_checkpoint", "metrics.json", "config.yaml"} <= set(files)
    assert any(f.startswith("events.out.tfevents") for f in files)
    with open(tmp_path / "metrics.json") as f:
        assert any("sem_seg/mIoU" in json.loads(line) for line in f)

    # --eval-only on the saved checkpoint gives the same numbers.
    args = _args(tmp_path / "eval", "MODEL.WEIGHTS", str(tmp_path / "model_final.pth"),
                 eval_only=True)  # fmt: skip
    again = train_net.main(args)
    assert again["sem_seg"]["mIoU"] == pytest.approx(miou, abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_short_amp_run_stays_finite(tmp_path, precision):
    extra = ["SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.PRECISION", precision]
    trainer, recorder = _trainer(tmp_path, *extra, "SOLVER.MAX_ITER", "6", "TEST.EVAL_PERIOD", "0")
    assert trainer._trainer.precision == getattr(torch, precision)
    # float16 needs loss scaling (a GradScaler that is on); bfloat16 does not.
    assert trainer._trainer.grad_scaler.is_enabled() == (precision == "float16")
    trainer.train()
    assert sorted(recorder.losses) == list(range(6))
    assert all(math.isfinite(v) for v in recorder.losses.values())
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


@pytest.mark.slow
def test_killed_run_resumes_exactly(tmp_path):
    extra = ["SOLVER.MAX_ITER", "24", "SOLVER.CHECKPOINT_PERIOD", "4", "TEST.EVAL_PERIOD", "0"]
    killed = tmp_path / "killed"
    cmd = [sys.executable, "train_net.py", "--config-file", f"configs/{QUICKSTART}"]
    proc = subprocess.Popen(
        cmd + _opts(killed, *extra),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_first_checkpoint(proc, killed)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not [f for f in os.listdir(killed) if ".tmp" in f]  # nothing half-written

    resumed, resumed_rec = _trainer(killed, *extra, resume=True)
    start = resumed.start_iter
    assert 0 < start < 24, f"resumed at {start}"
    assert resumed.data_sampler.start_batch == start
    resumed.train()

    full, full_rec = _trainer(tmp_path / "full", *extra)
    full.train()
    assert sorted(resumed_rec.losses) == list(range(start, 24))
    for it in range(start, 24):
        assert resumed_rec.lrs[it] == pytest.approx(full_rec.lrs[it], rel=1e-12)
        assert resumed_rec.losses[it] == pytest.approx(full_rec.losses[it], rel=1e-5), it


def test_config_used_by_the_tests_is_the_quickstart_recipe():
    cfg = tiny_cfg(config_file=QUICKSTART)
    assert cfg.DATASETS.TRAIN == ("quickstart_sem_seg_train",)
    assert cfg.INPUT.DATASET_MAPPER_NAME == "mask_former_semantic"


def test_unknown_mapper_name_lists_valid_names():
    from maskformer.data import build_train_mapper

    with pytest.raises(KeyError, match="mask_former_semantic"):
        build_train_mapper(tiny_cfg("INPUT.DATASET_MAPPER_NAME", "nope"))
