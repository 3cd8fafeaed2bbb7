"""D2SwinTransformer: feature shapes on any input size, window bookkeeping, checkpointing."""

import pytest
import torch
from detectron2.modeling import build_model

from maskformer.modeling.backbone.swin import (
    D2SwinTransformer,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from tests.common import TINY_SWIN_OPTS, sample, tiny_cfg


def _swin(**kw):
    torch.manual_seed(0)
    args = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=7)
    args.update(kw)
    return D2SwinTransformer(**args)


@pytest.mark.parametrize("h, w", [(200, 250), (64, 64), (33, 17), (3, 5)])
def test_any_input_size_gives_ceil_strided_features(h, w):
    model = _swin().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, h, w))
    expected_h, expected_w = -(-h // 4), -(-w // 4)
    for i, name in enumerate(["res2", "res3", "res4", "res5"]):
        assert out[name].shape == (2, 16 * 2**i, expected_h, expected_w), name
        assert torch.isfinite(out[name]).all()
        expected_h, expected_w = -(-expected_h // 2), -(-expected_w // 2)
    assert {k: (v.channels, v.stride) for k, v in model.output_shape().items()} == {
        "res2": (16, 4),
        "res3": (32, 8),
        "res4": (64, 16),
        "res5": (128, 32),
    }


def test_200x250_shapes_match_the_official_numbers():
    model = _swin().eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 200, 250))
    assert [tuple(v.shape[-2:]) for v in out.values()] == [(50, 63), (25, 32), (13, 16), (7, 8)]


def test_out_features_subset_and_errors():
    model = _swin(out_features=("res3", "res5")).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert list(out) == ["res3", "res5"]
    assert not hasattr(model, "norm0") and hasattr(model, "norm3")
    with pytest.raises(ValueError, match="res6"):
        _swin(out_features=("res6",))
    with pytest.raises(ValueError, match="NUM_HEADS"):
        _swin(num_heads=(1, 2, 4))
    with pytest.raises(ValueError, match="not divisible"):
        _swin(num_heads=(3, 6, 12, 24))


def test_relative_position_index_by_hand():
    # w = 2: tokens (0,0) (0,1) (1,0) (1,1); index = (dy + 1) * 3 + (dx + 1).
    expected = torch.tensor([[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])
    assert torch.equal(relative_position_index(2), expected)
    assert relative_position_index(7).max() == 13 * 13 - 1


def test_window_partition_round_trip_and_mask():
    x = torch.randn(2, 14, 21, 3)
    windows = window_partition(x, 7)
    assert windows.shape == (2 * 2 * 3, 49, 3)
    assert torch.equal(windows[1].view(7, 7, 3), x[0, :7, 7:14])
    assert torch.equal(window_reverse(windows, 7, 14, 21), x)
    mask = shifted_window_mask(14, 14, 7, 3, "cpu")
    assert mask.shape == (4, 49, 49)
    # The top-left window only holds tokens of one region; the bottom-right one holds four.
    assert (mask[0] == 0).all()
    assert (mask[3] == -100).any() and (mask[3].diagonal() == 0).all()
    # Region sizes in the bottom-right window: 4x4, 4x3, 3x4, 3x3 tokens.
    allowed = (mask[3] == 0).sum(1)
    assert sorted(set(allowed.tolist())) == [9, 12, 16]


def test_only_shifted_windows_carry_information_across_windows():
    x = torch.zeros(1, 3, 56, 56)  # a 14 x 14 token grid: 2 x 2 windows of 7 x 7
    y = x.clone()
    y[..., :4, :4] = 1.0  # changes token (0, 0), in the top-left window
    for depth, crosses in [(1, False), (2, True)]:  # block 1 is the first shifted one
        model = _swin(depths=(depth,), num_heads=(1,), out_features=("res2",)).eval()
        with torch.no_grad():
            diff = (model(x)["res2"] - model(y)["res2"]).abs().amax(1)[0]
        assert diff[:7, :7].min() > 0
        outside = torch.ones_like(diff, dtype=torch.bool)
        outside[:7, :7] = False
        assert bool((diff[outside] > 0).any()) == crosses, depth


def test_gradient_checkpointing_gives_same_outputs_and_gradients():
    kw = dict(drop_path_rate=0.2, attn_drop_rate=0.1)
    plain, ckpt = _swin(**kw).train(), _swin(use_checkpoint=True, **kw).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 60, 44)
    outs = []
    for model in (plain, ckpt):
        torch.manual_seed(1)
        out = model(x)
        sum((v * torch.linspace(0, 1, v.numel()).view_as(v)).sum() for v in out.values()).backward()
        outs.append(out)
    for name in outs[0]:
        torch.testing.assert_close(outs[0][name], outs[1][name], rtol=0, atol=1e-6)
    grads = {n: p.grad for n, p in ckpt.named_parameters()}
    for n, p in plain.named_parameters():
        assert p.grad is not None, n
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-5, atol=1e-6, msg=n)


def test_maskformer_with_swin_trains_and_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(*TINY_SWIN_OPTS))
    model.train()
    losses = model([sample(70, 90, [0, 2], seed=1), sample(64, 64, [4], seed=2)])
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 75, 101) * 255}])
    assert out[0]["sem_seg"].shape == (5, 75, 101)
