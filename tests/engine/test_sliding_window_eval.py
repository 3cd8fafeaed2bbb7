"""MODEL.MASK_FORMER.TEST.SLIDING_WINDOW through the entry points: train_net.py --eval-only and
test-time augmentation on a generated quickstart dataset, the predictor and the demo run the model
on windows (one window covering each image gives the plain numbers exactly), and panoptic or
instance output with the key set is refused in one line before anything is built or written."""

import json
import os

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from PIL import Image

import train_net
from maskformer.config import ConfigValueError, get_maskformer_cfg
from maskformer.data.datasets import register_sem_seg_folder
from maskformer.data.datasets.custom import unregister
from maskformer.data.datasets.quickstart import QUICKSTART_CLASSES, write_shapes_split
from maskformer.engine import check_config
from maskformer.modeling.meta_arch import MaskFormer
from maskformer.predictor import MaskFormerPredictor
from tests.common import CONFIG_DIR
from tests.deploy.test_demo import SEMANTIC_CONFIG, SEMANTIC_OPTS, _rgb, _weights, demo
from tests.engine.test_setup_checks import _demo_line
from tests.engine.test_train_net_refusals import _argv, _checkpoint, _refused

DATASET = "sliding_window_test_sem_seg_val"
KEY = "MODEL.MASK_FORMER.TEST.SLIDING_WINDOW"
# Larger than the images after the test resize (short side 64, long side under 90): one window.
COVERING = [f"{KEY}.SIZE", "[128, 128]", f"{KEY}.STRIDE", "[128, 128]"]
# 32 x 48 windows, 24 x 32 apart: 2 to 3 rows and 2 columns of windows per image.
SMALL = [f"{KEY}.SIZE", "[32, 48]", f"{KEY}.STRIDE", "[24, 32]"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("quickstart")
    write_shapes_split(str(root), "val", count=3, seed=5, size_range=(70, 90))
    register_sem_seg_folder(
        DATASET,
        str(root / "images" / "val"),
        str(root / "annotations_detectron2" / "val"),
        QUICKSTART_CLASSES,
    )
    yield ["DATASETS.TEST", f"('{DATASET}',)"]
    unregister(DATASET)


@pytest.fixture
def network_inputs(monkeypatch):
    """The (H, W) of the images of every call of a MaskFormer, one list per call."""
    calls = []
    forward = MaskFormer.forward

    def recorded(model, batched_inputs, *args, **kwargs):
        calls.append([tuple(x["image"].shape[-2:]) for x in batched_inputs])
        return forward(model, batched_inputs, *args, **kwargs)

    monkeypatch.setattr(MaskFormer, "forward", recorded)
    return calls


def _eval_only(output_dir, *opts):
    args = train_net.default_argument_parser().parse_args(_argv(output_dir, *opts))
    return train_net.main(args)


def _predictions(output_dir):
    # Every image's label map, as the evaluator's RLEs (TEST.EVAL_SEM_SEG_JSON).
    with open(os.path.join(output_dir, "inference", DATASET, "sem_seg_predictions.json")) as f:
        return json.load(f)


def test_eval_only_in_windows(tmp_path, dataset, network_inputs):
    opts = ["MODEL.WEIGHTS", _checkpoint(tmp_path / "w.pth"), *dataset]
    opts += ["TEST.EVAL_SEM_SEG_JSON", "True"]
    plain = _eval_only(tmp_path / "plain", *opts)["sem_seg"]
    whole = [size for call in network_inputs for size in call]
    assert len(whole) == 3 and all(min(s) == 64 for s in whole)

    # One window covering each image: the plain labels and metrics, exactly.
    covering = _eval_only(tmp_path / "covering", *opts, *COVERING)["sem_seg"]
    assert _predictions(tmp_path / "covering") == _predictions(tmp_path / "plain")
    # (The metrics of a class the images do not have are NaN in both.)
    assert np.array_equal(list(covering.values()), list(plain.values()), equal_nan=True)
    assert list(covering) == list(plain)

    network_inputs.clear()
    small = _eval_only(tmp_path / "small", *opts, *SMALL, "TEST.IMS_PER_BATCH", "4")
    assert 0.0 <= small["sem_seg"]["mIoU"] <= 100.0
    # Every network input is a window, up to 4 of them per call.
    assert {s for call in network_inputs for s in call} == {(32, 48)}
    assert max(len(call) for call in network_inputs) == 4
    # ceil((H - 32) / 24) + 1 rows and ceil((W - 48) / 32) + 1 columns of windows per image.
    windows = sum(len(call) for call in network_inputs)
    assert windows == sum((-(-(h - 32) // 24) + 1) * (-(-(w - 48) // 32) + 1) for h, w in whole)


# The per-pixel baseline (Detectron2's SemanticSegmentor) at test size: a MaskFormer with
# random weights predicts one class everywhere (its queries' class scores hardly differ), this one
# a different class per pixel, so equal label maps say more.
PER_PIXEL = [
    "--config-file", os.path.join(CONFIG_DIR, "ade20k", "per_pixel_baseline_R50.yaml"),
    "--eval-only",
    "MODEL.RESNETS.DEPTH", "18",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "MODEL.RESNETS.NORM", "BN",
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "6",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", "32",
    "MODEL.SEM_SEG_HEAD.MASK_DIM", "32",
    "INPUT.MIN_SIZE_TEST", "64",
    "DATALOADER.NUM_WORKERS", "0",
    "MODEL.DEVICE", "cpu",
    "TEST.EVAL_SEM_SEG_JSON", "True",
]  # fmt: skip


def test_a_window_covering_each_image_gives_the_plain_label_maps(tmp_path, dataset):
    weights = tmp_path / "w.pth"
    torch.manual_seed(0)
    cfg = get_maskformer_cfg(PER_PIXEL[1], PER_PIXEL[3:])
    torch.save({"model": build_model(cfg).state_dict()}, weights)

    def evaluate(out, *opts):
        argv = [*PER_PIXEL, "MODEL.WEIGHTS", str(weights), *dataset, "OUTPUT_DIR", str(out), *opts]
        train_net.main(train_net.default_argument_parser().parse_args(argv))
        return _predictions(out)

    plain = evaluate(tmp_path / "plain")
    assert len({p["category_id"] for p in plain}) >= 4  # several classes in the label maps
    assert evaluate(tmp_path / "covering", *COVERING) == plain


def test_test_time_augmentation_runs_each_scale_in_windows(tmp_path, dataset, network_inputs):
    weights = ["MODEL.WEIGHTS", _checkpoint(tmp_path / "w.pth")]
    # One scale, the test size, no flip: the augmented copy is the image itself, so TTA in
    # windows gives the windowed numbers.
    res = _eval_only(tmp_path / "tta", *weights, *dataset, *SMALL, "TEST.AUG.ENABLED", "True",
                     "TEST.AUG.MIN_SIZES", "(64,)", "TEST.AUG.MAX_SIZE", "1000",
                     "TEST.AUG.FLIP", "False")  # fmt: skip
    assert set(res) == {"sem_seg", "sem_seg_TTA"}
    assert res["sem_seg_TTA"]["mIoU"] == pytest.approx(res["sem_seg"]["mIoU"], abs=1e-9)
    assert {s for call in network_inputs for s in call} == {(32, 48)}


def test_panoptic_or_instance_output_with_windows_is_refused_in_one_line(tmp_path, capsys):
    for flag in ("PANOPTIC_ON", "INSTANCE_ON"):
        line = _refused(capsys, tmp_path / "out", *SMALL, f"MODEL.MASK_FORMER.TEST.{flag}",
                        "True")  # fmt: skip
        assert f"{KEY}.SIZE [32, 48]" in line and f"set MODEL.MASK_FORMER.TEST.{flag} False" in line
    line = _demo_line(capsys, tmp_path, *SMALL, "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", "True")
    assert "panoptic and instance outputs cannot be merged across windows" in line
    cfg = get_maskformer_cfg(
        SEMANTIC_CONFIG, [*SEMANTIC_OPTS, *SMALL, "MODEL.MASK_FORMER.TEST.INSTANCE_ON", "True"]
    )
    with pytest.raises(ConfigValueError, match="INSTANCE_ON False"):
        MaskFormerPredictor.from_config(cfg, allow_random_weights=True)
    # The Cityscapes config in windows passes every set-up check.
    config = os.path.join(CONFIG_DIR, "cityscapes", "maskformer_R101_sliding_window.yaml")
    for eval_only in (True, False):
        check_config(get_maskformer_cfg(config), eval_only=eval_only)


def test_predictor_and_demo_in_windows(tmp_path, capsys, network_inputs):
    weights = ["MODEL.WEIGHTS", _weights(tmp_path / "w.pth", SEMANTIC_CONFIG, SEMANTIC_OPTS)]
    image = _rgb(90, 150)  # network size 64 x 107 (INPUT.MIN_SIZE_TEST 64)

    def predictor(*opts):
        cfg = get_maskformer_cfg(SEMANTIC_CONFIG, [*SEMANTIC_OPTS, *weights, *opts])
        return MaskFormerPredictor.from_config(cfg)

    plain = predictor()(image).semantic
    # One window over the network-size image: the plain labels at the image size, bit for bit
    # (the windows give them at the output size themselves, band by band).
    network_inputs.clear()
    assert torch.equal(predictor(*COVERING)(image).semantic, plain)
    assert network_inputs == [[(64, 107)]]
    network_inputs.clear()
    windowed = predictor(*SMALL, "TEST.IMS_PER_BATCH", "3")(image, output_size=(45, 75))
    assert windowed.semantic.shape == (45, 75)
    # 3 rows x 3 columns of windows, 3 per call.
    assert network_inputs == [[(32, 48)] * 3] * 3

    path, out = tmp_path / "photo.png", tmp_path / "overlay.png"
    Image.fromarray(image).save(path)
    argv = ["--config-file", SEMANTIC_CONFIG, "--input", str(path), "--output", str(out)]
    network_inputs.clear()
    assert demo.main(argv + ["--opts", *SEMANTIC_OPTS, *weights, *SMALL]) == 0
    assert os.path.isfile(out) and np.asarray(Image.open(out)).shape == (90, 150, 3)
    assert {s for call in network_inputs for s in call} == {(32, 48)}
    capsys.readouterr()
