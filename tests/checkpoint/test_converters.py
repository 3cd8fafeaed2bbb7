"""ImageNet converters: torchvision ResNet and official Swin checkpoints become backbone
initialisations that MaskFormerCheckpointer matches to `backbone.*`."""

import pickle

import torch
import torchvision
from detectron2.modeling import build_model

from maskformer.checkpoint import MaskFormerCheckpointer, read_pickle
from tests.common import TINY_SWIN_OPTS, randomize_, tiny_cfg
from tests.scripts import load_script


def _tool(name):
    return load_script(f"tools/{name}")


def test_torchvision_resnet18_gives_the_same_features(tmp_path):
    tv = randomize_(torchvision.models.resnet18(), seed=0).eval()
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    _tool("convert-torchvision-to-d2.py").main(
        [str(tmp_path / "r18.pth"), str(tmp_path / "R-18.pkl")]
    )
    converted = read_pickle(str(tmp_path / "R-18.pkl"))
    assert converted["__author__"] == "torchvision" and converted["matching_heuristics"]
    assert "stem.conv1.norm.running_var" in converted["model"]
    assert not any(k.startswith("stem.fc") for k in converted["model"])

    torch.manual_seed(0)
    model = build_model(tiny_cfg()).eval()
    head_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("sem_seg")}
    checkpointer = MaskFormerCheckpointer(model)
    checkpointer.load(str(tmp_path / "R-18.pkl"))
    report = checkpointer.last_report
    assert report.layout == "name-matched (torchvision)"
    assert report.unexpected == [] and report.shape_mismatches == []
    assert all(k.startswith(("sem_seg_head.", "criterion.")) for k in report.missing)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in head_before.items())

    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        ours = model.backbone(x)
        y = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        for i, layer in enumerate([tv.layer1, tv.layer2, tv.layer3, tv.layer4]):
            y = layer(y)
            torch.testing.assert_close(ours[f"res{i + 2}"], y, rtol=1e-4, atol=1e-5)


def test_official_swin_imagenet_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(*TINY_SWIN_OPTS)).eval()
    # An official-format ImageNet checkpoint of the same Swin: its backbone keys without the
    # prefix and the per-stage norms, plus the classifier head, final norm and attention masks.
    imagenet = randomize_(build_model(tiny_cfg(*TINY_SWIN_OPTS)), seed=5).state_dict()
    state = {
        k[len("backbone.") :]: v
        for k, v in imagenet.items()
        if k.startswith("backbone.") and not k.startswith("backbone.norm")
    }
    state.update(
        {
            "norm.weight": torch.ones(256),
            "norm.bias": torch.zeros(256),
            "head.weight": torch.zeros(1000, 256),
            "head.bias": torch.zeros(1000),
            "layers.0.blocks.1.attn_mask": torch.zeros(64, 49, 49),
        }
    )
    torch.save({"model": state}, tmp_path / "swin_imagenet.pth")
    tool = _tool("convert-pretrained-swin-model-to-d2.py")
    tool.main([str(tmp_path / "swin_imagenet.pth"), str(tmp_path / "swin.pkl")])
    with open(tmp_path / "swin.pkl", "rb") as f:
        converted = pickle.load(f)
    assert not any(k.startswith(("head.", "norm.")) or "attn_mask" in k for k in converted["model"])

    norms_before = {k: v.clone() for k, v in model.state_dict().items() if "backbone.norm" in k}
    checkpointer = MaskFormerCheckpointer(model)
    checkpointer.load(str(tmp_path / "swin.pkl"))
    report = checkpointer.last_report
    assert report.unexpected == [] and report.shape_mismatches == []
    loaded = model.state_dict()
    for k, v in state.items():
        if k in converted["model"]:
            assert torch.equal(loaded["backbone." + k], v), k
    # The per-output norms are not in ImageNet weights: they keep their initialisation.
    assert sorted(k for k in report.missing if k.startswith("backbone")) == sorted(norms_before)
    assert all(torch.equal(loaded[k], v) for k, v in norms_before.items())
