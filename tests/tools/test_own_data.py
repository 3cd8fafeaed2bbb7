"""Your own data without friction: the per-pixel baseline's ignore label comes from the dataset,
register_dataset writes a starting config (train on one split, test on another, sized from the
images) and takes class colours,
`DATASETS.TEST name` on the command line, one final checkpoint (not two copies)."""

import os
import re

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from PIL import Image

from maskformer import get_maskformer_cfg
from tests.common import CONFIG_DIR, sample
from tests.data.datasets.test_custom_datasets import register_tool
from tests.engine.test_train_net import _trainer
from tests.scripts import run_script

PER_PIXEL_TINY = [
    "MODEL.DEVICE", "cpu",
    "MODEL.WEIGHTS", "",
    "MODEL.RESNETS.DEPTH", 18,
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
    "MODEL.RESNETS.NORM", "BN",
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 11,
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", 32,
    "MODEL.SEM_SEG_HEAD.MASK_DIM", 32,
]  # fmt: skip


@pytest.fixture
def datasets_dir(tmp_path, monkeypatch):
    d = tmp_path / "descriptions"
    monkeypatch.setenv("MASKFORMER_DATASETS_DIR", str(d))
    before = set(DatasetCatalog.list()) | set(MetadataCatalog.list())
    yield d
    for name in set(DatasetCatalog.list()) - before:
        DatasetCatalog.remove(name)
    for name in set(MetadataCatalog.list()) - before:
        MetadataCatalog.remove(name)


def test_per_pixel_baseline_takes_the_ignore_label_of_the_dataset(datasets_dir):
    MetadataCatalog.get("street_train").set(
        ignore_label=11, stuff_classes=[str(i) for i in range(11)]
    )
    cfg = get_maskformer_cfg(
        os.path.join(CONFIG_DIR, "ade20k", "per_pixel_baseline_R50.yaml"),
        [*PER_PIXEL_TINY, "DATASETS.TRAIN", ("street_train",)],
    )
    assert cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE == 255
    torch.manual_seed(0)
    model = build_model(cfg).train()
    assert model.sem_seg_head.ignore_value == 11
    # Labels 0..10 and the dataset's void 11: trains (255 would have made 11 a target).
    x = sample(64, 64, [], seed=0)
    labels = torch.randint(0, 12, (64, 64))
    losses = model([{"image": x["image"], "sem_seg": labels}])
    assert torch.isfinite(losses["loss_sem_seg"])


def _street_folder(root, n=3, h=360, w=480):
    images, labels = root / "images", root / "labels"
    images.mkdir()
    labels.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images / f"{i}.png")
        Image.fromarray(rng.integers(0, 12, (h, w), dtype=np.uint8)).save(labels / f"{i}.png")
    (root / "classes.txt").write_text("\n".join(f"class{i}" for i in range(11)) + "\n")
    return images, labels


def _register(capsys, name, images, labels, classes, *extra):
    argv = ["semantic", "--name", name, "--images", str(images), "--labels", str(labels),
            "--classes", str(classes), *map(str, extra)]  # fmt: skip
    assert register_tool.main(argv) == 0
    return capsys.readouterr().out


def _street_splits(tmp_path, capsys, n_train=3, h=360, w=480):
    """street_train and street_val registered (ignore label 11), classes.txt; registration's
    stdout of the validation split."""
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir()
    val.mkdir()
    _register(capsys, "street_train", *_street_folder(train, n_train, h, w),
              train / "classes.txt", "--ignore-label", "11")  # fmt: skip
    out = _register(capsys, "street_val", *_street_folder(val, 2, h, w), val / "classes.txt",
                    "--ignore-label", "11")  # fmt: skip
    return out


def test_config_trains_on_one_split_and_tests_on_the_other(tmp_path, datasets_dir, capsys,
                                                            monkeypatch):  # fmt: skip
    registered = _street_splits(tmp_path, capsys)
    assert "DATASETS" not in registered and "_BASE_" not in registered  # no config trains on val
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = run_script("tools/register_dataset.py", "config", "--train", "street_train",
                     "--test", "street_val", "--out", "configs/street.yaml",
                     cwd=str(elsewhere))  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = elsewhere / "configs" / "street.yaml"
    text = out.read_text()
    # _BASE_ relative to the file: it holds the layout of the checkout, not this machine's path.
    (base,) = re.findall(r"^_BASE_: (.+)$", text, flags=re.M)
    assert not os.path.isabs(base) and not base.startswith("~")
    assert os.path.samefile(out.parent / base, register_tool.QUICKSTART_CONFIG)
    assert "train on 'street_train' (3 images), test on 'street_val' (2 images)" in text
    monkeypatch.chdir(tmp_path)  # it loads from any folder
    cfg = get_maskformer_cfg(str(out))
    assert (cfg.DATASETS.TRAIN, cfg.DATASETS.TEST) == (("street_train",), ("street_val",))
    assert (cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE) == (11, 11)
    assert cfg.MODEL.RESNETS.DEPTH == 18  # the quickstart recipe
    # 480 x 360 images: test at 360, crops of 352 (a multiple of 32), scales 0.5..2 x 360
    # (down to multiples of 8).
    assert (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST) == (360, 480)
    assert tuple(cfg.INPUT.CROP.SIZE) == (352, 352) and cfg.INPUT.SIZE_DIVISIBILITY == 352
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (176, 264, 360, 448, 536, 624, 720)
    assert cfg.INPUT.MAX_SIZE_TRAIN == 960
    assert cfg.TEST.EVAL_PERIOD == 1000 and cfg.SOLVER.MAX_ITER == 2000


def test_config_header_counts_every_image(tmp_path, datasets_dir, capsys):
    _street_splits(tmp_path, capsys, n_train=250, h=8, w=12)
    # From the repository root, where the printed config is to be saved.
    run = run_script("tools/register_dataset.py", "config", "--train", "street_train",
                     "--test", "street_val")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "train on 'street_train' (250 images), test on 'street_val' (2 images)" in run.stdout
    assert f"Input sizes from {register_tool.SIZE_SAMPLE} of the training images" in run.stdout
    assert "\n_BASE_: configs/quickstart/maskformer_R18_quickstart.yaml\n" in run.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--train", "street_train"], "config --train street_train: give --test NAME, a "
         "registered split of other images to evaluate on"),
        (["--train", "street_train", "--test", "street_train"], "config --train street_train: "
         "give --test NAME"),
        (["--train", "street_train", "--test", "street_test"], "--test street_test: not "
         "registered (no {d}/street_test.json; registered: street_train, street_val)"),
    ],
)  # fmt: skip
def test_config_without_a_test_split_says_what_is_missing(tmp_path, datasets_dir, capsys, args,
                                                          message):  # fmt: skip
    _street_splits(tmp_path, capsys, h=8, w=12)
    run = run_script("tools/register_dataset.py", "config", *args, "--out", "my.yaml",
                     cwd=str(tmp_path))  # fmt: skip
    assert run.returncode == 1
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("register_dataset: error: " + message.format(d=datasets_dir))
    assert run.stdout == "" and not (tmp_path / "my.yaml").exists()


def test_register_takes_class_colours(tmp_path, datasets_dir, capsys):
    images, labels = _street_folder(tmp_path, n=1, h=20, w=30)
    colors = tmp_path / "colors.txt"
    colors.write_text("\n".join(["#ff0000", "0 255 0"] + ["10 20 30"] * 9) + "\n")
    _register(capsys, "c_train", images, labels, tmp_path / "classes.txt", "--colors", colors)
    meta = MetadataCatalog.get("c_train")
    assert meta.stuff_colors[:3] == [[255, 0, 0], [0, 255, 0], [10, 20, 30]]


def test_bad_colours_are_refused(tmp_path, datasets_dir, capsys):
    images, labels = _street_folder(tmp_path, n=1, h=20, w=30)
    colors = tmp_path / "colors.txt"
    colors.write_text("1 2 3\n")
    argv = ["semantic", "--name", "c_train", "--images", str(images), "--labels", str(labels),
            "--classes", str(tmp_path / "classes.txt"), "--colors", str(colors)]  # fmt: skip
    assert register_tool.main(argv) == 1
    assert "has 1 colours but there are 11 classes" in capsys.readouterr().err
    colors.write_text("1 2 300\n")
    assert register_tool.main(argv) == 1
    assert "line 1: '1 2 300' is not a colour" in capsys.readouterr().err


def test_dataset_names_on_the_command_line():
    cfg = get_maskformer_cfg("", ["DATASETS.TEST", "camvid_test"])
    assert cfg.DATASETS.TEST == ("camvid_test",)
    cfg = get_maskformer_cfg("", ["DATASETS.TEST", "a_val,b_val", "DATASETS.TRAIN", "a_train"])
    assert cfg.DATASETS.TEST == ("a_val", "b_val") and cfg.DATASETS.TRAIN == ("a_train",)
    cfg = get_maskformer_cfg("", ["DATASETS.TEST", '("x_val",)'])
    assert cfg.DATASETS.TEST == ("x_val",)


@pytest.mark.slow
def test_final_checkpoint_is_written_once(tmp_path):
    trainer, _ = _trainer(
        tmp_path, "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1", "TEST.EVAL_PERIOD", "0"
    )
    trainer.train()
    files = sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth"))
    assert files == ["model_0000000.pth", "model_final.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
