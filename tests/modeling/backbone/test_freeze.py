"""MODEL.BACKBONE.FREEZE for any backbone: no gradients, eval-mode normalisation in
model.train(), left out of the optimizer; the ViT pyramid still trains."""

import copy

import pytest
import torch
from detectron2.modeling import build_model

from maskformer.modeling.backbone import freeze_
from maskformer.modeling.backbone.freeze import is_frozen
from maskformer.solver import build_optimizer
from tests.common import TINY_SWIN_OPTS, sample, tiny_cfg
from tests.modeling.backbone.test_timm_backbone import timm_cfg

CASES = {
    "detectron2-resnet-bn": lambda *o: tiny_cfg(*o),
    "swin": lambda *o: tiny_cfg(*TINY_SWIN_OPTS, *o),
    "timm-resnet-bn": lambda *o: timm_cfg("resnet", *o),
    "timm-vit": lambda *o: timm_cfg("vit", *o),
}


def _norm_statistics(module):
    return {k: v.clone() for k, v in module.state_dict().items() if "running_" in k}


@pytest.mark.parametrize("case", sorted(CASES))
def test_frozen_backbone_gets_no_gradient_and_keeps_its_statistics(case):
    torch.manual_seed(0)
    cfg = CASES[case]("MODEL.BACKBONE.FREEZE", True)
    model = build_model(cfg).train()
    frozen = model.backbone.net if case == "timm-vit" else model.backbone
    before = copy.deepcopy(frozen.state_dict())
    stats = _norm_statistics(frozen)
    assert ("bn" in case) == bool(stats)
    losses = model([sample(64, 64, [0, 2], seed=1), sample(64, 64, [1, 3], seed=2)])
    sum(losses.values()).backward()
    assert not frozen.training and all(not m.training for m in frozen.modules())
    assert all(not p.requires_grad and p.grad is None for p in frozen.parameters())
    # Nothing about the frozen part moved: weights and BatchNorm statistics.
    after = frozen.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # Everything else trains (for the ViT: its pyramid layers too).
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(
        p.grad is not None for n, p in model.named_parameters() if p.requires_grad
    )
    if case == "timm-vit":
        assert any(n.startswith("backbone.simfp_") for n in trainable)


def test_frozen_backbone_is_not_in_the_optimizer():
    cfg = tiny_cfg("MODEL.BACKBONE.FREEZE", True)
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    backbone = {id(p) for p in model.backbone.parameters()}
    assert not in_optimizer & backbone
    head = {id(p) for p in model.sem_seg_head.parameters()}
    assert head <= in_optimizer


def test_unfrozen_backbone_trains_in_train_mode():
    model = build_model(tiny_cfg()).train()
    assert model.backbone.training
    assert all(p.requires_grad for p in model.backbone.parameters())


def test_freeze_survives_train_calls_and_deepcopy():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Dropout())
    parent = torch.nn.Sequential(freeze_(net), torch.nn.Linear(2, 2))
    parent.train()
    assert parent.training and parent[1].training
    assert not any(m.training for m in net.modules())
    copied = copy.deepcopy(parent)
    copied.train()
    assert is_frozen(copied[0]) and not copied[0][1].training
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(net(x), net(x))  # eval: dropout off, BN uses its running statistics
