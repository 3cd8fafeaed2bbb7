"""Every config file loads; every model config builds; unsafe YAML is refused."""

import glob
import os

import pytest
import torch
from detectron2.modeling import build_model

from maskformer import get_maskformer_cfg
from maskformer.config import UnsafeConfigError
from tests.common import CONFIG_DIR

ALL_CONFIGS = sorted(glob.glob(os.path.join(CONFIG_DIR, "**", "*.yaml"), recursive=True))
MODEL_CONFIGS = [c for c in ALL_CONFIGS if not os.path.basename(c).startswith("Base-")]


def _id(path):
    return os.path.relpath(path, CONFIG_DIR)


def test_there_are_configs():
    assert any(c.endswith("ade20k/maskformer_R50.yaml") for c in MODEL_CONFIGS)


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=_id)
def test_config_loads(path):
    get_maskformer_cfg(path)


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=_id)
def test_config_builds_and_runs_a_forward(path):
    """Full-size model with random weights, one 64x64 image: the outputs the config turns on,
    at the image's size."""
    cfg = get_maskformer_cfg(path, ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert sum(p.numel() for p in model.parameters()) > 0
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 64, 64) * 255}])[0]
    # The per-pixel baselines (Detectron2's SemanticSegmentor) have no MaskFormer test options.
    test = cfg.MODEL.MASK_FORMER.TEST
    is_mask_former = cfg.MODEL.META_ARCHITECTURE == "MaskFormer"
    if test.SEMANTIC_ON or not is_mask_former:
        assert out["sem_seg"].shape == (cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, 64, 64)
        assert torch.isfinite(out["sem_seg"]).all()
    if is_mask_former and test.PANOPTIC_ON:
        assert out["panoptic_seg"][0].shape == (64, 64)
    if is_mask_former and test.INSTANCE_ON:
        assert out["instances"].image_size == (64, 64)
    expected = {"sem_seg"} if not is_mask_former else {
        k for k, on in [("sem_seg", test.SEMANTIC_ON), ("panoptic_seg", test.PANOPTIC_ON),
                        ("instances", test.INSTANCE_ON)] if on
    }  # fmt: skip
    assert set(out) == expected


def test_python_tag_is_refused_with_file_and_tag(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("MODEL:\n  WEIGHTS: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(UnsafeConfigError) as e:
        get_maskformer_cfg(str(evil))
    assert str(evil) in str(e.value) and "!!python/object/apply:os.system" in str(e.value)
    assert "line 2" in str(e.value)


def test_python_tag_in_a_base_file_is_refused(tmp_path):
    (tmp_path / "base.yaml").write_text("SEED: !!python/name:os.getpid ''\n")
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: base.yaml\nSEED: 3\n")
    with pytest.raises(UnsafeConfigError, match="base.yaml"):
        get_maskformer_cfg(str(child))


def test_missing_config_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        get_maskformer_cfg(str(tmp_path / "nope.yaml"))
