"""timm backbones through Detectron2's registry: shapes by stride, one training step, refusals,
local pretrained weights."""

import os

import pytest
import timm
import torch
from detectron2.modeling import build_backbone, build_model

from maskformer.modeling.backbone import TimmBackbone, TimmSimpleFeaturePyramid
from maskformer.modeling.backbone.timm_backbone import parse_timm_kwargs
from tests.common import sample, tiny_cfg

# Small variants of each kind, random weights (pretrained=False; nothing is downloaded).
KINDS = {
    "convnext": ("convnext_atto", ["dims=(16, 32, 64, 128)", "depths=(1, 1, 1, 1)"]),
    "resnet": ("resnet18", ["layers=[1, 1, 1, 1]"]),
    "efficientnet": ("efficientnet_b0", []),
    "vit": (
        "vit_tiny_patch16_224",
        ["depth=2", "embed_dim=64", "num_heads=2", "img_size=64", "dynamic_img_size=True"],
    ),
}


def timm_cfg(kind, *opts):
    name, kwargs = KINDS[kind]
    return tiny_cfg(
        "MODEL.BACKBONE.NAME",
        "build_timm_backbone",
        "MODEL.TIMM.NAME",
        name,
        "MODEL.TIMM.KWARGS",
        kwargs,
        "MODEL.TIMM.PYRAMID_CHANNELS",
        32,
        *opts,
    )


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_features_are_named_by_stride(kind):
    cfg = timm_cfg(kind)
    backbone = build_backbone(cfg)
    shapes = backbone.output_shape()
    assert {k: v.stride for k, v in shapes.items()} == {
        "res2": 4,
        "res3": 8,
        "res4": 16,
        "res5": 32,
    }
    expected_type = TimmSimpleFeaturePyramid if kind == "vit" else TimmBackbone
    assert type(backbone) is expected_type
    with torch.no_grad():
        out = backbone.eval()(torch.rand(1, 3, 64, 96))
    for k, v in shapes.items():
        assert out[k].shape == (1, v.channels, 64 // v.stride, 96 // v.stride)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_training_step_reaches_every_parameter(kind):
    torch.manual_seed(0)
    model = build_model(timm_cfg(kind)).train()
    losses = model([sample(64, 64, [0, 2, 4], seed=1), sample(64, 64, [1], seed=2)])
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert any(n.startswith("backbone.") for n, p in model.named_parameters() if p.requires_grad)


def test_explicit_out_indices_choose_the_features():
    cfg = timm_cfg("resnet", "MODEL.TIMM.OUT_INDICES", [2, 3, 4])
    shapes = build_backbone(cfg).output_shape()
    assert {k: v.stride for k, v in shapes.items()} == {"res3": 8, "res4": 16, "res5": 32}


def test_unknown_name_is_refused_with_close_names():
    with pytest.raises(ValueError) as e:
        build_backbone(timm_cfg("convnext", "MODEL.TIMM.NAME", "convnext_tinyy"))
    msg = str(e.value)
    assert "MODEL.TIMM.NAME 'convnext_tinyy'" in msg and "no model of that name" in msg
    assert "'convnext_tiny'" in msg


def test_model_without_features_is_refused_naming_it():
    # A bad argument makes timm's feature extraction fail: the error names model and reason.
    with pytest.raises(ValueError, match="MODEL.TIMM.NAME 'resnet18'.*features_only"):
        build_backbone(timm_cfg("resnet", "MODEL.TIMM.OUT_INDICES", [7]))


def test_stride_that_is_not_a_power_of_two_is_refused_with_the_fix():
    name, kwargs = KINDS["vit"]
    cfg = timm_cfg("vit", "MODEL.TIMM.KWARGS", [*kwargs, "patch_size=14", "img_size=56"])
    with pytest.raises(ValueError, match=r"stride \[14\], not a power of 2.*'patch_size=16'"):
        build_backbone(cfg)


def test_documented_efficientnet_example_builds():
    opts = ["MODEL.TIMM.NAME", "efficientnet_b3"]
    cfg = tiny_cfg(*opts, config_file="ade20k/timm/maskformer_convnext_tiny.yaml")
    backbone = build_backbone(cfg)
    assert [v.stride for v in backbone.output_shape().values()] == [4, 8, 16, 32]


def test_empty_name_is_refused():
    with pytest.raises(ValueError, match="MODEL.TIMM.NAME is empty"):
        build_backbone(timm_cfg("resnet", "MODEL.TIMM.NAME", ""))


def test_kwargs_are_literals():
    assert parse_timm_kwargs(["img_size=512", "dynamic_img_size=True", "act=gelu"]) == {
        "img_size": 512,
        "dynamic_img_size": True,
        "act": "gelu",
    }
    with pytest.raises(ValueError, match="name=value"):
        parse_timm_kwargs(["img_size"])


def _full_model_file(tmp_path, name, kwargs, seed=1):
    torch.manual_seed(seed)
    full = timm.create_model(name, pretrained=False, **parse_timm_kwargs(kwargs))
    path = os.path.join(tmp_path, "weights.pth")
    torch.save(full.state_dict(), path)
    return full.state_dict(), path


@pytest.mark.parametrize("kind", ["convnext", "vit"])
def test_pretrained_weights_come_from_the_local_file(tmp_path, kind):
    name, kwargs = KINDS[kind]
    state, path = _full_model_file(tmp_path, name, kwargs)
    torch.manual_seed(0)
    backbone = build_backbone(timm_cfg(kind, "MODEL.TIMM.PRETRAINED_WEIGHTS", path))
    net = backbone.net if kind == "vit" else backbone
    loaded = {k.removeprefix("model."): v for k, v in net.features.state_dict().items()}
    key = "stem.0.weight" if kind == "convnext" else "patch_embed.proj.weight"
    flat_key = key.replace("stem.0", "stem_0")
    got = loaded.get(key, loaded.get(flat_key))
    assert torch.equal(got, state[key])


def test_missing_pretrained_file_is_refused(tmp_path):
    missing = str(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError, match="MODEL.TIMM.PRETRAINED_WEIGHTS.*nope"):
        build_backbone(timm_cfg("convnext", "MODEL.TIMM.PRETRAINED_WEIGHTS", missing))
