"""train_net.py refuses, in one line and before writing anything, what would give wrong numbers
or cannot run: weights that do not fit the config under --eval-only, unknown config keys, datasets
that are not registered or not on disk; fine-tuning from weights of another class count works."""

import os
import subprocess
import sys

import pytest
import torch
from detectron2.modeling import build_model

import train_net
from maskformer import get_maskformer_cfg
from tests.common import CONFIG_DIR, REPO_ROOT, cfg_opts
from tests.engine.test_train_net import QUICKSTART, TINY


def _checkpoint(path, **overrides):
    """Weights of the tiny quickstart model with some config keys changed (random values)."""
    opts = list(TINY) + cfg_opts(overrides)
    cfg = get_maskformer_cfg(os.path.join(CONFIG_DIR, QUICKSTART), opts)
    torch.manual_seed(0)
    torch.save({"model": build_model(cfg).state_dict()}, path)
    return str(path)


def _argv(output_dir, *extra, eval_only=True):
    argv = ["--config-file", os.path.join(CONFIG_DIR, QUICKSTART)]
    argv += ["--eval-only"] * eval_only
    return argv + [*TINY, "OUTPUT_DIR", str(output_dir), *extra]


def _refused(capsys, output_dir, *extra, eval_only=True):
    """Run train_net's command line; return its one-line error. Asserts nothing was written."""
    status = train_net.cli(_argv(output_dir, *extra, eval_only=eval_only))
    stderr = capsys.readouterr().err
    # Only the script's own lines: other tests' log handlers may write here too.
    err = [ln for ln in stderr.splitlines() if ln.startswith("train_net.py:")]
    assert status == 2
    assert len(err) == 1 and err[0].startswith("train_net.py: error: "), stderr
    assert not os.path.exists(output_dir), os.listdir(output_dir)
    return err[0]


def test_eval_only_refuses_weights_of_another_class_count(tmp_path, capsys):
    weights = _checkpoint(tmp_path / "seven.pth", **{"MODEL.SEM_SEG_HEAD.NUM_CLASSES": 7})
    line = _refused(capsys, tmp_path / "out", "MODEL.WEIGHTS", weights)
    assert weights in line
    assert "sem_seg_head.predictor.class_embed.weight (8, 32) in file, (7, 32) in model" in line
    assert "MODEL.SEM_SEG_HEAD.NUM_CLASSES" in line


def test_eval_only_refuses_weights_of_another_query_count(tmp_path, capsys):
    weights = _checkpoint(tmp_path / "q.pth", **{"MODEL.MASK_FORMER.NUM_OBJECT_QUERIES": 4})
    line = _refused(capsys, tmp_path / "out", "MODEL.WEIGHTS", weights)
    assert "sem_seg_head.predictor.query_embed.weight (4, 32) in file, (8, 32) in model" in line
    assert "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES" in line


def test_eval_only_refuses_weights_without_a_head(tmp_path, capsys):
    path = tmp_path / "backbone.pth"
    state = torch.load(_checkpoint(path), weights_only=True)["model"]
    torch.save({"model": {k: v for k, v in state.items() if k.startswith("backbone.")}}, path)
    line = _refused(capsys, tmp_path / "out", "MODEL.WEIGHTS", str(path))
    assert "missing in file" in line and "sem_seg_head." in line


def test_eval_only_refuses_no_weights(tmp_path, capsys):
    line = _refused(capsys, tmp_path / "out", "MODEL.WEIGHTS", "")
    assert "MODEL.WEIGHTS is empty" in line


def test_strict_loading_refuses_an_extra_tensor(tmp_path, capsys):
    path = tmp_path / "extra.pth"
    state = torch.load(_checkpoint(path), weights_only=True)["model"]
    state["sem_seg_head.predictor.extra.weight"] = torch.zeros(2)
    torch.save({"model": state}, path)
    line = _refused(capsys, tmp_path / "out", "MODEL.WEIGHTS", str(path), "MODEL.WEIGHTS_STRICT",
                    "True")  # fmt: skip
    assert "sem_seg_head.predictor.extra.weight" in line and str(path) in line


def test_unknown_config_key_and_dataset_are_one_line(tmp_path, capsys):
    line = _refused(capsys, tmp_path / "out", "MODEL.MASK_FORMER.NUM_QUERIES", "8")
    assert "MODEL.MASK_FORMER.NUM_QUERIES" in line
    line = _refused(capsys, tmp_path / "out", "DATASETS.TEST", "('quickstart_sem_seg_vall',)")
    assert "quickstart_sem_seg_vall" in line and "quickstart_sem_seg_val" in line


def test_eval_only_refuses_a_value_the_inference_transforms_do_not_take(tmp_path, capsys):
    weights = _checkpoint(tmp_path / "w.pth")
    line = _refused(capsys, tmp_path / "out", "MODEL.WEIGHTS", weights,
                    "MODEL.MASK_FORMER.TEST.PRECISION", "float16")  # fmt: skip
    assert "PRECISION is 'float16'" in line and "'bfloat16', 'float32'" in line
    line = _refused(capsys, tmp_path / "out", "MODEL.WEIGHTS", weights,
                    "MODEL.MASK_FORMER.TEST.OPTIMIZE", "False",
                    "MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT", "labels")  # fmt: skip
    assert "SEMANTIC_OUTPUT 'labels'" in line and "OPTIMIZE True" in line
    line = _refused(capsys, tmp_path / "out", "MODEL.WEIGHTS", weights,
                    "MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT", "logits")  # fmt: skip
    assert "SEMANTIC_OUTPUT is 'logits'" in line and "scores, labels, low_res_labels" in line


@pytest.mark.parametrize("output", ["labels", "low_res_labels"])
def test_eval_only_refuses_labels_where_a_consumer_reads_scores(tmp_path, capsys, output):
    weights = _checkpoint(tmp_path / "w.pth")
    key = "MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT"
    # Test-time augmentation averages the scores.
    line = _refused(capsys, tmp_path / "out", "MODEL.WEIGHTS", weights, key, output,
                    "TEST.AUG.ENABLED", "True")  # fmt: skip
    assert f"SEMANTIC_OUTPUT is '{output}'" in line and "test-time augmentation" in line
    # Detectron2's Cityscapes evaluator takes the argmax of "sem_seg" itself.
    line = _refused(capsys, tmp_path / "out", "MODEL.WEIGHTS", weights, key, output,
                    "DATASETS.TEST", "cityscapes_fine_sem_seg_val")  # fmt: skip
    assert "'cityscapes_fine_sem_seg_val' (evaluator_type 'cityscapes_sem_seg')" in line


def test_training_on_a_dataset_that_is_not_on_disk_writes_nothing(tmp_path, capsys):
    env_root = os.environ.get("DETECTRON2_DATASETS", "datasets")
    line = _refused(capsys, tmp_path / "out", "DATASETS.TRAIN", "('ade20k_sem_seg_train',)",
                    eval_only=False)  # fmt: skip
    assert "ade20k_sem_seg_train" in line and "does not exist" in line and env_root in line


@pytest.mark.slow
def test_fine_tuning_from_another_class_count_lists_the_reinitialised_tensors(tmp_path):
    weights = _checkpoint(tmp_path / "seven.pth", **{"MODEL.SEM_SEG_HEAD.NUM_CLASSES": 7})
    args = train_net.default_argument_parser().parse_args(
        _argv(
            tmp_path / "out",
            "MODEL.WEIGHTS",
            weights,
            "SOLVER.MAX_ITER",
            "1",
            "TEST.EVAL_PERIOD",
            "0",
            eval_only=False,
        )  # fmt: skip
    )
    train_net.main(args)
    assert os.path.isfile(tmp_path / "out" / "model_final.pth")
    with open(tmp_path / "out" / "log.txt") as f:
        log = f.read()
    assert "shape mismatch, not loaded: sem_seg_head.predictor.class_embed.weight" in log


def test_exit_status_of_the_script(tmp_path):
    weights = _checkpoint(tmp_path / "seven.pth", **{"MODEL.SEM_SEG_HEAD.NUM_CLASSES": 7})
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "train_net.py", *_argv(out, "MODEL.WEIGHTS", weights)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": REPO_ROOT, "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("train_net.py: error:")]
    assert len(errors) == 1 and "MODEL.SEM_SEG_HEAD.NUM_CLASSES" in errors[0]
    assert "Traceback" not in proc.stderr
    assert "Skip loading" not in proc.stderr  # refused before the loader skips anything
    assert not out.exists()


def test_num_gpus_without_cuda_says_what_it_does_and_checks_before_starting_workers(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out"
    argv = ["--config-file", os.path.join(CONFIG_DIR, "ade20k", "maskformer_R50.yaml")]
    status = train_net.cli(argv + ["--num-gpus", "8", "OUTPUT_DIR", str(out)])
    err = [ln for ln in capsys.readouterr().err.splitlines() if "warn" not in ln.lower()]
    assert status == 2
    assert err[0].startswith("CUDA is not available: --num-gpus 8 starts 8 CPU processes")
    assert err[-1].startswith("train_net.py: error: DATASETS.TRAIN: Dataset 'ade20k_sem_seg_train'")
    assert not out.exists()


HIDE_PROJECTS = """
import sys

class HideDetectron2Projects:
    def find_spec(self, name, path=None, target=None):
        if name == "detectron2.projects" or name.startswith("detectron2.projects."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, HideDetectron2Projects())
sys.argv = ["train_net.py", "--help"]
import runpy
runpy.run_path("train_net.py", run_name="__main__")
"""


def test_detectron2_without_its_projects_says_how_to_install_it():
    proc = subprocess.run(
        [sys.executable, "-c", HIDE_PROJECTS],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": REPO_ROOT},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: MaskFormer needs detectron2.projects")
    assert "pip install -e detectron2" in last and "INSTALL.md" in last
