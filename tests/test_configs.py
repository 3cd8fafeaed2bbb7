"""Every config file loads; every model config builds; unsafe YAML is refused."""

import ast
import fnmatch
import glob
import os

import pytest
import torch
import yaml
from detectron2.modeling import META_ARCH_REGISTRY, build_model

from maskformer import get_maskformer_cfg
from maskformer.config import UnsafeConfigError
from tests.common import CONFIG_DIR, REPO_ROOT

ALL_CONFIGS = sorted(glob.glob(os.path.join(CONFIG_DIR, "**", "*.yaml"), recursive=True))
MODEL_CONFIGS = [c for c in ALL_CONFIGS if not os.path.basename(c).startswith("Base-")]


def _id(path):
    return os.path.relpath(path, CONFIG_DIR)


def test_there_are_configs():
    assert any(c.endswith("ade20k/maskformer_R50.yaml") for c in MODEL_CONFIGS)


def _leaves(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        elif key != "_BASE_":
            yield prefix + key, value


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=_id)
def test_config_loads_with_every_value_it_sets(path):
    cfg = get_maskformer_cfg(path)
    with open(path) as f:
        written = yaml.safe_load(f)
    leaves = list(_leaves(written))
    assert leaves
    for key, value in leaves:
        got = cfg
        for part in key.split("."):
            got = got[part]
        if isinstance(value, str) and not isinstance(got, str):  # yacs evaluates "(a, b)", "1e-6"
            value = ast.literal_eval(value)
        if isinstance(got, (list, tuple)):
            got, value = list(got), list(value) if isinstance(value, (list, tuple)) else [value]
        assert got == value, key


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=_id)
def test_config_builds_on_the_meta_device(path):
    """As train_net.py's parent process checks weights: the names and shapes, no memory."""
    cfg = get_maskformer_cfg(path, ["MODEL.DEVICE", "cpu"])
    with torch.device("meta"):
        model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    state = model.state_dict()
    assert state and all(v.device.type == "meta" for v in state.values())


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


def _documented_outputs():
    """docs/configs.md's table: (config patterns, outputs, test dataset, evaluator_type)."""
    with open(os.path.join(REPO_ROOT, "docs", "configs.md")) as f:
        text = f.read().split("## Outputs and evaluators", 1)[1]
    rows = []
    for line in text.split("| configs | outputs |", 1)[1].split("\n\n", 1)[0].splitlines()[2:]:
        patterns, outputs, dataset, evaluator = (c.strip() for c in line.strip("|").split("|"))
        rows.append(
            (
                [p.strip("` ") for p in patterns.split(",")],
                {o.strip() for o in outputs.split(",")},
                dataset.strip("`"),
                evaluator,
            )
        )
    return rows


def test_documented_outputs_and_evaluators_are_the_configs():
    from detectron2.data import MetadataCatalog

    rows = _documented_outputs()
    for path in MODEL_CONFIGS:
        name = _id(path)
        matching = [r for r in rows if any(fnmatch.fnmatchcase(name, p) for p in r[0])]
        assert len(matching) == 1, (name, len(matching))
        _, outputs, dataset, evaluator = matching[0]
        cfg = get_maskformer_cfg(path)
        test = cfg.MODEL.MASK_FORMER.TEST
        on = {"semantic"}
        if cfg.MODEL.META_ARCHITECTURE == "MaskFormer":
            flags = (("semantic", test.SEMANTIC_ON), ("panoptic", test.PANOPTIC_ON))
            on = {k for k, v in (*flags, ("instance", test.INSTANCE_ON)) if v}
        assert (on, cfg.DATASETS.TEST[0]) == (outputs, dataset), name
        assert MetadataCatalog.get(dataset).get("evaluator_type") == evaluator, name
