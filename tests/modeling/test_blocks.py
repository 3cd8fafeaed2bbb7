"""Position encoding, pixel decoders and the transformer predictor: values and shapes."""

import math

import pytest
import torch
from detectron2.layers import ShapeSpec

from maskformer.modeling.layers import MLP, PositionEmbeddingSine
from maskformer.modeling.pixel_decoder import BasePixelDecoder, TransformerEncoderPixelDecoder
from maskformer.modeling.transformer_predictor import TransformerPredictor

SHAPES = {
    "res2": ShapeSpec(channels=8, stride=4),
    "res3": ShapeSpec(channels=16, stride=8),
    "res4": ShapeSpec(channels=24, stride=16),
    "res5": ShapeSpec(channels=40, stride=32),
}


def _features(b=2, h=64, w=96):
    return {k: torch.randn(b, s.channels, h // s.stride, w // s.stride) for k, s in SHAPES.items()}


def test_position_embedding_hand_values():
    pe = PositionEmbeddingSine(num_pos_feats=4, normalize=True)
    out = pe(torch.zeros(1, 3, 2, 3))
    assert out.shape == (1, 8, 2, 3)
    eps = 1e-6
    y = 1 / (2 + eps) * 2 * math.pi  # row 0 of 2, normalised to (0, 2 pi]
    x = 2 / (3 + eps) * 2 * math.pi  # column 1 of 3
    dim_t = [1.0, 1.0, 10000**0.5, 10000**0.5]
    expected_y = [
        math.sin(y / dim_t[0]),
        math.cos(y / dim_t[1]),
        math.sin(y / dim_t[2]),
        math.cos(y / dim_t[3]),
    ]
    expected_x = [
        math.sin(x / dim_t[0]),
        math.cos(x / dim_t[1]),
        math.sin(x / dim_t[2]),
        math.cos(x / dim_t[3]),
    ]
    assert out[0, :4, 0, 1].tolist() == pytest.approx(expected_y, abs=1e-6)
    assert out[0, 4:, 0, 1].tolist() == pytest.approx(expected_x, abs=1e-6)


def test_position_embedding_mask_equals_no_mask_when_nothing_is_padded():
    pe = PositionEmbeddingSine(16, normalize=True)
    x = torch.zeros(2, 1, 5, 7)
    assert torch.allclose(pe(x), pe(x, mask=torch.zeros(2, 5, 7, dtype=torch.bool)))


def test_mlp_shape_and_relu_placement():
    torch.manual_seed(0)  # the outcome depends on the weights: not on the tests run before
    mlp = MLP(4, 8, 3, 3)
    assert [tuple(layer.weight.shape) for layer in mlp.layers] == [(8, 4), (8, 8), (3, 8)]
    with torch.no_grad():
        mlp.layers[-1].weight.zero_()
        mlp.layers[-1].bias.fill_(-1.0)
    assert (mlp(torch.randn(5, 4)) == -1).all()  # no ReLU after the last layer


def test_base_pixel_decoder_shapes_and_keys():
    dec = BasePixelDecoder(SHAPES, conv_dim=32, mask_dim=16, norm="GN")
    mask_features, extra = dec(_features())
    assert mask_features.shape == (2, 16, 16, 24)
    assert extra == {}
    names = [k for k in dec.state_dict() if k.endswith("weight") and "norm" not in k]
    assert names == [
        "adapter_1.weight",
        "layer_1.weight",
        "adapter_2.weight",
        "layer_2.weight",
        "adapter_3.weight",
        "layer_3.weight",
        "layer_4.weight",
        "mask_features.weight",
    ]
    assert dec.layer_4.weight.shape == (32, 40, 3, 3)


def test_transformer_encoder_pixel_decoder_shapes():
    dec = TransformerEncoderPixelDecoder(
        SHAPES,
        transformer_dropout=0.0,
        transformer_nheads=4,
        transformer_dim_feedforward=64,
        transformer_enc_layers=2,
        transformer_pre_norm=False,
        conv_dim=32,
        mask_dim=16,
        norm="GN",
    )
    mask_features, extra = dec(_features())
    assert mask_features.shape == (2, 16, 16, 24)
    assert extra["transformer_encoder"].shape == (2, 32, 2, 3)
    assert dec.layer_4.weight.shape == (32, 32, 3, 3)  # consumes the encoder output
    assert len(dec.transformer.encoder.layers) == 2


@pytest.mark.parametrize("deep_supervision", [True, False])
def test_predictor_output_shapes(deep_supervision):
    pred = TransformerPredictor(
        in_channels=40,
        num_classes=5,
        hidden_dim=32,
        num_queries=7,
        nheads=4,
        dropout=0.0,
        dim_feedforward=64,
        enc_layers=0,
        dec_layers=3,
        pre_norm=False,
        deep_supervision=deep_supervision,
        mask_dim=16,
        enforce_input_project=False,
    )
    pred.train()
    out = pred(torch.randn(2, 40, 2, 3), torch.randn(2, 16, 16, 24))
    assert out["pred_logits"].shape == (2, 7, 6)
    assert out["pred_masks"].shape == (2, 7, 16, 24)
    assert len(out.get("aux_outputs", [])) == (2 if deep_supervision else 0)
    for aux in out.get("aux_outputs", []):
        assert aux["pred_logits"].shape == (2, 7, 6) and aux["pred_masks"].shape == (2, 7, 16, 24)
    pred.eval()  # inference never needs the intermediate layers
    out_eval = pred(torch.randn(2, 40, 2, 3), torch.randn(2, 16, 16, 24))
    assert "aux_outputs" not in out_eval


def test_predictor_input_projection_only_when_needed():
    kw = dict(
        num_classes=5,
        hidden_dim=32,
        num_queries=7,
        nheads=4,
        dropout=0.0,
        dim_feedforward=64,
        enc_layers=0,
        dec_layers=1,
        pre_norm=True,
        deep_supervision=False,
        mask_dim=16,
    )
    same = TransformerPredictor(in_channels=32, enforce_input_project=False, **kw)
    assert not any(k.startswith("input_proj") for k in same.state_dict())
    forced = TransformerPredictor(in_channels=32, enforce_input_project=True, **kw)
    assert forced.input_proj.weight.shape == (32, 32, 1, 1)
