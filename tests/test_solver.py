"""Optimizer parameter groups and full-model gradient clipping."""

import pytest
import torch
from detectron2.modeling import build_model

from maskformer.solver import build_optimizer, with_full_model_gradient_clipping
from tests.common import tiny_cfg


def _groups_by_param(optimizer, model):
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for g in optimizer.param_groups:
        for p in g["params"]:
            out[names[id(p)]] = (g["lr"], g["weight_decay"])
    return out


def test_parameter_groups_follow_the_official_rules():
    cfg = tiny_cfg(
        "SOLVER.BASE_LR", 0.01,
        "SOLVER.WEIGHT_DECAY", 0.05,
        "SOLVER.WEIGHT_DECAY_NORM", 0.001,
        "SOLVER.WEIGHT_DECAY_EMBED", 0.002,
        "SOLVER.BACKBONE_MULTIPLIER", 0.1,
    )  # fmt: skip
    model = build_model(cfg)
    groups = _groups_by_param(build_optimizer(cfg, model), model)
    assert len(groups) == sum(1 for p in model.parameters() if p.requires_grad)
    assert groups["backbone.stem.conv1.weight"] == pytest.approx((0.001, 0.05))
    assert groups["backbone.stem.conv1.norm.weight"] == pytest.approx((0.001, 0.001))  # BN
    assert groups["sem_seg_head.pixel_decoder.layer_1.norm.weight"] == pytest.approx((0.01, 0.001))
    p = "sem_seg_head.predictor.transformer.decoder.layers.0."
    assert groups[p + "norm1.weight"] == pytest.approx((0.01, 0.001))  # LayerNorm
    assert groups[p + "linear1.weight"] == pytest.approx((0.01, 0.05))
    assert groups["sem_seg_head.predictor.query_embed.weight"] == pytest.approx((0.01, 0.002))
    assert groups["sem_seg_head.predictor.class_embed.bias"] == pytest.approx((0.01, 0.05))


def test_position_tables_get_no_weight_decay():
    from maskformer.solver import optimizer_param_groups

    class Attn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.relative_position_bias_table = torch.nn.Parameter(torch.zeros(3, 2))
            self.proj = torch.nn.Linear(2, 2)

    groups = optimizer_param_groups(
        Attn(), base_lr=1.0, weight_decay=0.5, weight_decay_norm=0.0,
        weight_decay_embed=0.0, backbone_multiplier=1.0,
    )  # fmt: skip
    decay = {g["params"][0].shape: g["weight_decay"] for g in groups for _ in g["params"]}
    assert decay[torch.Size([3, 2])] == 0.0 and decay[torch.Size([2, 2])] == 0.5


def test_optimizer_choice_and_error():
    model = torch.nn.Linear(2, 2)
    assert isinstance(build_optimizer(tiny_cfg("SOLVER.OPTIMIZER", "SGD"), model), torch.optim.SGD)
    assert isinstance(build_optimizer(tiny_cfg(), model), torch.optim.AdamW)
    with pytest.raises(ValueError, match="ADAMW"):
        build_optimizer(tiny_cfg("SOLVER.OPTIMIZER", "LAMB"), model)


def test_full_model_clipping_clips_the_global_norm():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    opt = with_full_model_gradient_clipping(torch.optim.SGD, 1.0)([a, b], lr=1.0)
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])  # global norm 5
    opt.step()
    # Clipped to norm 1 jointly: the update is the gradient scaled by 1/5, direction kept.
    assert a.detach().tolist() == pytest.approx([-0.6, 0.0])
    assert b.detach().tolist() == pytest.approx([-0.8])
    cfg = tiny_cfg()
    assert cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE == "full_model"
    assert "FullModelClipping" in type(build_optimizer(cfg, torch.nn.Linear(2, 2))).__name__


@pytest.mark.parametrize(
    "config, warmup_iters, warmup_factor",
    [
        ("ade20k/maskformer_R50.yaml", 0, 1.0),
        ("quickstart/maskformer_R18_quickstart.yaml", 50, 0.01),
    ],
)
def test_trainer_schedule_is_the_official_poly_with_linear_warmup(
    config, warmup_iters, warmup_factor
):
    from maskformer.engine import Trainer

    cfg = tiny_cfg(config_file=config)
    assert (cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.WARMUP_FACTOR) == (warmup_iters, warmup_factor)
    base, max_iter = cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER

    def official(it):  # base * warmup(it) * (1 - it / max_iter) ** 0.9, linear warm-up
        alpha = it / warmup_iters if it < warmup_iters else 1.0
        return base * (warmup_factor * (1 - alpha) + alpha) * (1 - it / max_iter) ** 0.9

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    scheduler = Trainer.build_lr_scheduler(cfg, optimizer)
    for it in range(3):  # stepping walks the schedule
        assert optimizer.param_groups[0]["lr"] == pytest.approx(official(it), rel=1e-12)
        optimizer.step()
        scheduler.step()
    for it in sorted({25, 49, 50, 51, max_iter // 2, max_iter - 1}):
        scheduler.last_epoch = it  # a function of the iteration alone
        assert scheduler.get_lr()[0] == pytest.approx(official(it), rel=1e-12), it
