"""Each inference transform against the plain model (the reference computation).

Scores within float rounding and identical labels for the exact transforms; a bounded
disagreement for the low-resolution labels (an approximation).
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from detectron2.modeling import build_model
from torch import nn

from maskformer.modeling import MaskFormer
from maskformer.modeling.inference_transforms import (
    BandedPostProcessing,
    MaskProjectionFolded,
    fold_frozen_batchnorm,
    fold_mask_projection,
    folded_mask_logits,
    optimize_for_inference,
    optimize_from_config,
    panoptic_inference_banded,
    semantic_inference_banded,
    semantic_labels_low_res,
)
from maskformer.modeling.mask_former_head import MaskFormerHead
from maskformer.modeling.pixel_decoder import PIXEL_DECODER_REGISTRY
from maskformer.modeling.postprocessing import (
    PostProcessing,
    panoptic_inference,
    semantic_inference,
)
from maskformer.modeling.resample import MapResampler
from tests.common import TINY_SWIN_OPTS, assert_same_labels, randomize_, sample, tiny_cfg

BASELINE = "ade20k/per_pixel_baseline_R50.yaml"
PANOPTIC = ("MODEL.MASK_FORMER.TEST.PANOPTIC_ON", True)
INSTANCE = ("MODEL.MASK_FORMER.TEST.INSTANCE_ON", True)


def _plain_model(*opts, seed=0):
    torch.manual_seed(seed)
    return randomize_(build_model(tiny_cfg(*opts)), seed).eval()


def _inputs():
    """Two images of different sizes (batch padding) with requested output sizes that differ."""
    a, b = sample(45, 61, [0, 1, 2], seed=0), sample(64, 50, [3, 4], seed=1)
    a["height"], a["width"] = 90, 30
    return [a, b]


def _outputs(model, inputs=None):
    with torch.no_grad():
        return model(inputs or _inputs())


# Scores of a transformed model against the plain one: float rounding in sums of up to Q
# terms. Measured over 8 seeds of the test model at 1, 2 and 4 threads (summing order changes
# with the thread count): at most 2.3e-5 for scores up to 6.4, i.e. 3.6e-6 of the largest
# score; 1e-5 of it leaves a margin of about 3.
SCORE_RTOL = 1e-5


def _assert_same_outputs(got, want, score_rtol=SCORE_RTOL):
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        if "sem_seg" in w:
            assert g["sem_seg"].shape == w["sem_seg"].shape
            tol = score_rtol * max(1.0, w["sem_seg"].abs().max().item())
            torch.testing.assert_close(g["sem_seg"], w["sem_seg"], rtol=0, atol=tol)
            assert_same_labels(g["sem_seg"].argmax(0), w["sem_seg"], tol)
        if "panoptic_seg" in w:
            (seg, info), (ref_seg, ref_info) = g["panoptic_seg"], w["panoptic_seg"]
            assert info == ref_info and len(info) > 0
            # Pixels whose two best weighted probabilities tie to float rounding may differ.
            assert (seg == ref_seg).float().mean() > 0.999
        if "instances" in w:
            gi, wi = g["instances"], w["instances"]
            assert torch.equal(gi.pred_classes, wi.pred_classes)
            torch.testing.assert_close(gi.scores, wi.scores, rtol=0, atol=1e-5)
            assert (gi.pred_masks == wi.pred_masks).float().mean() > 0.999


# The model built from keyword arguments is the model built from a config ---------------------


def test_model_from_keyword_arguments_equals_model_from_config():
    cfg = tiny_cfg("MODEL.RESNETS.NORM", "FrozenBN")
    from_cfg = _plain_model("MODEL.RESNETS.NORM", "FrozenBN")
    torch.manual_seed(0)
    from_kwargs = MaskFormer(**MaskFormer.from_config(cfg)).eval()
    from_kwargs.load_state_dict(from_cfg.state_dict())
    assert [type(m) for m in from_kwargs.modules()] == [type(m) for m in from_cfg.modules()]
    got, want = _outputs(from_kwargs), _outputs(from_cfg)
    for g, w in zip(got, want):
        assert torch.equal(g["sem_seg"], w["sem_seg"])


# Frozen batch norm ------------------------------------------------------------------------------


def _conv_bn_net(seed=0):
    g = torch.Generator().manual_seed(seed)
    layers = []
    for cin, cout in [(3, 8), (8, 8)]:
        norm = FrozenBatchNorm2d(cout)
        norm.weight.copy_(torch.rand(cout, generator=g) + 0.5)
        norm.bias.copy_(torch.randn(cout, generator=g))
        norm.running_mean.copy_(torch.randn(cout, generator=g))
        norm.running_var.copy_(torch.rand(cout, generator=g) + 0.5)
        layers.append(Conv2d(cin, cout, 3, padding=1, bias=False, norm=norm, activation=torch.relu))
    layers.append(Conv2d(8, 2, 1, norm=nn.GroupNorm(2, 2)))  # not frozen BN: left alone
    return nn.Sequential(*layers)


def test_folded_frozen_batchnorm_equals_conv_then_norm():
    # float64: the comparison is of the algebra, not of float32 rounding.
    ref = _conv_bn_net().double()
    folded = copy.deepcopy(ref)
    assert fold_frozen_batchnorm(folded) == 2
    assert [m.norm for m in folded[:2]] == [None, None]
    assert isinstance(folded[2].norm, nn.GroupNorm)
    assert all(m.activation is torch.relu for m in folded[:2])
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(folded(x), ref(x), rtol=1e-10, atol=1e-10)


def test_folded_frozen_batchnorm_backbone_equals_plain():
    model = _plain_model("MODEL.RESNETS.NORM", "FrozenBN")
    plain_keys = set(model.state_dict())
    folded = copy.deepcopy(model)
    assert fold_frozen_batchnorm(folded) == 20  # every convolution of a ResNet-18 with its stem
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in folded.modules())
    assert set(model.state_dict()) == plain_keys  # the plain model is untouched
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got, want = folded.backbone(x), model.backbone(x)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-4, msg=name)


# Mask projection --------------------------------------------------------------------------------


@pytest.mark.parametrize("layers, queries", [(1, 4), (3, 5)])
def test_folded_mask_logits_equal_projection_then_product(layers, queries):
    g = torch.Generator().manual_seed(0)
    proj = nn.Conv2d(6, 16, 3, padding=1).double()
    embed = torch.randn(layers, 2, queries, 16, dtype=torch.float64, generator=g)
    feats = torch.randn(2, 6, 7, 9, dtype=torch.float64, generator=g)
    embed.requires_grad_(True)
    folded = folded_mask_logits(embed, feats, proj)
    (grad_folded,) = torch.autograd.grad(folded.square().sum(), embed)
    reference = torch.einsum("lbqe,behw->lbqhw", embed, proj(feats))
    (grad_reference,) = torch.autograd.grad(reference.square().sum(), embed)
    assert folded.shape == (layers, 2, queries, 7, 9)
    torch.testing.assert_close(folded, reference, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad_folded, grad_reference, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("batch", [1, 3])
def test_folded_mask_logits_keep_channels_last_features_channels_last(batch):
    # oneDNN runs the folded convolution channels-last only if the features reach it with
    # channels-last strides; otherwise it copies them to NCHW first (slower, same numbers).
    g = torch.Generator().manual_seed(0)
    proj = nn.Conv2d(8, 16, 3, padding=1).to(memory_format=torch.channels_last)
    embed = torch.randn(1, batch, 4, 16, generator=g)
    feats = torch.randn(batch, 8, 10, 12, generator=g).to(memory_format=torch.channels_last)
    with torch.no_grad():
        folded = folded_mask_logits(embed, feats, proj)
        reference = torch.einsum("lbqe,behw->lbqhw", embed, proj(feats))
    assert folded[0].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(folded, reference, rtol=1e-5, atol=1e-5)


def test_folded_mask_projection_gives_the_plain_logits():
    model = _plain_model()
    folded = copy.deepcopy(model)
    assert fold_mask_projection(folded)  # 8 queries < 32 channels: cheaper
    head = folded.sem_seg_head
    assert isinstance(head.predictor, MaskProjectionFolded)
    assert isinstance(head.pixel_decoder.mask_features, nn.Identity)
    images = model.preprocess_image(_inputs())
    with torch.no_grad():
        features = model.backbone(images.tensor)
        got, want = head(features), model.sem_seg_head(features)
    torch.testing.assert_close(got["pred_logits"], want["pred_logits"], rtol=0, atol=0)
    torch.testing.assert_close(got["pred_masks"], want["pred_masks"], rtol=0, atol=1e-4)


def test_mask_projection_is_not_folded_where_it_would_cost_more():
    model = _plain_model("MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 64)  # 64 queries > 32 channels
    assert not fold_mask_projection(model)
    assert isinstance(model.sem_seg_head.pixel_decoder.mask_features, Conv2d)


@PIXEL_DECODER_REGISTRY.register()
class _ContractOnlyPixelDecoder(nn.Module):
    """A pixel decoder written to the registry's documented contract only."""

    def __init__(self, cfg, input_shape):
        super().__init__()
        self.proj = nn.Conv2d(input_shape["res2"].channels, cfg.MODEL.SEM_SEG_HEAD.MASK_DIM, 1)

    def forward(self, features):
        return self.proj(features["res2"]), {}


def test_a_pixel_decoder_written_to_the_documented_contract_works():
    model = _plain_model("MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "_ContractOnlyPixelDecoder")
    assert isinstance(model.sem_seg_head, MaskFormerHead)
    want = _outputs(model)
    assert not fold_mask_projection(model)  # not a BasePixelDecoder: left as it is
    optimize_for_inference(model)
    _assert_same_outputs(_outputs(model), want)


# Memory order -----------------------------------------------------------------------------------


def test_channels_last_gives_the_plain_outputs():
    model = _plain_model()
    fast = optimize_for_inference(
        copy.deepcopy(model),
        fold_batchnorm=False,
        fold_projection=False,
        banded_postprocessing=False,
    )
    convs = [m for m in fast.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    _assert_same_outputs(_outputs(fast), _outputs(model))


# Band-wise post-processing, through the model -----------------------------------------------


@pytest.mark.parametrize("before_inference", [True, False])
def test_banded_postprocessing_gives_the_plain_outputs(before_inference):
    model = _plain_model(
        "MODEL.MASK_FORMER.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE", before_inference
    )
    banded = copy.deepcopy(model)
    banded.postprocessing = BandedPostProcessing(**model.postprocessing.options())
    _assert_same_outputs(_outputs(banded), _outputs(model))


def test_banded_panoptic_and_instances_give_the_plain_outputs():
    model = _plain_model(*PANOPTIC, *INSTANCE)
    model.thing_ids = (0, 1)
    banded = copy.deepcopy(model)
    banded.postprocessing = BandedPostProcessing(**model.postprocessing.options())
    _assert_same_outputs(_outputs(banded), _outputs(model))


@pytest.mark.parametrize("before_inference", [True, False])
def test_labels_only_output_is_the_argmax_of_the_plain_scores(before_inference):
    model = _plain_model(
        "MODEL.MASK_FORMER.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE", before_inference
    )
    fast = optimize_for_inference(copy.deepcopy(model), semantic_output="labels")
    for got, want in zip(_outputs(fast), _outputs(model)):
        assert set(got) == {"sem_seg_labels"}
        labels = got["sem_seg_labels"]
        assert type(labels) is torch.Tensor and labels.dtype == torch.int64
        assert torch.equal(labels, want["sem_seg"].argmax(0))


def test_low_res_labels_agree_with_the_plain_labels_through_the_model():
    model = _plain_model()
    fast = optimize_for_inference(copy.deepcopy(model), semantic_output="low_res_labels")
    x = sample(64, 64, [0, 1], seed=3)
    x["height"], x["width"] = 640, 960
    got, want = _outputs(fast, [x])[0], _outputs(model, [x])[0]
    assert set(got) == {"sem_seg_labels"} and got["sem_seg_labels"].shape == (640, 960)
    agreement = (got["sem_seg_labels"] == want["sem_seg"].argmax(0)).float().mean()
    assert agreement > 0.97


def test_optimize_for_inference_gives_the_plain_outputs():
    model = _plain_model("MODEL.RESNETS.NORM", "FrozenBN", *PANOPTIC, *INSTANCE)
    fast = optimize_for_inference(copy.deepcopy(model))
    assert isinstance(fast.postprocessing, BandedPostProcessing)
    assert type(model.postprocessing) is PostProcessing  # the plain model is untouched
    _assert_same_outputs(_outputs(fast), _outputs(model))


# Every transform on every kind of model: backbones, pixel decoders, norms, heads.
MODEL_KINDS = {
    "frozen-bn-backbone": ("MODEL.RESNETS.NORM", "FrozenBN"),
    "frozen-bn-pixel-decoder": ("MODEL.SEM_SEG_HEAD.NORM", "FrozenBN"),
    "swin": tuple(TINY_SWIN_OPTS),
    "encoder-pixel-decoder": (
        "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "TransformerEncoderPixelDecoder",
        "MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE", "transformer_encoder",
        "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 1,
    ),
}  # fmt: skip


def _what_runs(model, monkeypatch):
    """Run the model; return the frozen batch norms called, and the parameters used as
    convolution weights (any module's, registered in `model` or not)."""
    norms, weights = [], []
    monkeypatch.setattr(FrozenBatchNorm2d, "forward", lambda self, x: norms.append(self) or x)
    conv2d = F.conv2d
    monkeypatch.setattr(
        F, "conv2d", lambda x, w, *a, **k: weights.append(w) or conv2d(x, w, *a, **k)
    )
    outputs = _outputs(model)
    monkeypatch.undo()
    return outputs, norms, [w for w in weights if isinstance(w, nn.Parameter)]


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS) + ["per-pixel-baseline"])
def test_every_transform_on_every_kind_of_model(kind, monkeypatch):
    if kind == "per-pixel-baseline":
        torch.manual_seed(0)
        cfg = tiny_cfg("MODEL.RESNETS.NORM", "FrozenBN", config_file=BASELINE)
        model = randomize_(build_model(cfg), 0).eval()
    else:
        model = _plain_model(*MODEL_KINDS[kind], *PANOPTIC, *INSTANCE)
    want = _outputs(model)
    fast = optimize_for_inference(copy.deepcopy(model))
    got, norms, weights = _what_runs(fast, monkeypatch)
    # What runs is what the transforms left in the model: no frozen batch norm is called
    # through an alias of a replaced layer, and every convolution weight that runs is one of
    # the model's own, in channels-last order.
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in fast.modules()) and norms == []
    registered = {id(p) for p in fast.parameters()}
    assert weights and all(id(w) in registered for w in weights)
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in weights if w.dim() == 4)
    _assert_same_outputs(got, want)


def test_optimize_from_config_follows_the_keys():
    plain = optimize_from_config(_plain_model(), tiny_cfg("MODEL.MASK_FORMER.TEST.OPTIMIZE", False))
    assert type(plain.postprocessing) is PostProcessing
    for output in ("scores", "labels", "low_res_labels"):
        cfg = tiny_cfg("MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT", output)
        assert optimize_from_config(_plain_model(), cfg).postprocessing.semantic_output == output
    assert optimize_from_config(_plain_model(), tiny_cfg()).postprocessing.semantic_output == (
        "scores"
    )
    with pytest.raises(ValueError, match="SEMANTIC_OUTPUT 'labels'.*OPTIMIZE True"):
        optimize_from_config(
            _plain_model(),
            tiny_cfg(
                "MODEL.MASK_FORMER.TEST.OPTIMIZE", False,
                "MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT", "labels",
            ),
        )  # fmt: skip
    model = _plain_model()
    with pytest.raises(ValueError, match="semantic_output='labels'"):
        optimize_for_inference(model, banded_postprocessing=False, semantic_output="labels")


# Band-wise post-processing, the pure functions ----------------------------------------------


def _upsampled(logits, padded, image, output):
    y = F.interpolate(logits[None], size=padded, mode="bilinear")[0]
    y = y[:, : image[0], : image[1]]
    if tuple(output) != tuple(image):
        y = F.interpolate(y[None], size=output, mode="bilinear")[0]
    return y


GEOMETRIES = [
    ((12, 16), (48, 64), (48, 64), (48, 64)),
    ((12, 16), (48, 64), (45, 61), (90, 30)),
]


@pytest.mark.parametrize("low, padded, image, output", GEOMETRIES)
def test_semantic_banded_equals_reference(low, padded, image, output):
    g = torch.Generator().manual_seed(0)
    mask_cls, logits = torch.randn(7, 5, generator=g), torch.randn(7, *low, generator=g) * 4
    resampler = MapResampler(low, padded, image, output)
    got = semantic_inference_banded(mask_cls, logits, resampler, band_elements=500)
    ref = semantic_inference(mask_cls, _upsampled(logits, padded, image, output))
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    labels = semantic_inference_banded(
        mask_cls, logits, resampler, band_elements=500, labels_only=True
    )
    assert torch.equal(labels, ref.argmax(0))


def _segments_case(seed):
    """Queries of distinct classes on blocky regions, confident enough to pass 0.8 thresholds."""
    g = torch.Generator().manual_seed(seed)
    owner = torch.randint(0, 6, (3, 4), generator=g).repeat_interleave(4, 0).repeat_interleave(4, 1)
    logits = torch.where(owner[None] == torch.arange(6).view(-1, 1, 1), 6.0, -6.0)
    logits = logits + torch.randn(logits.shape, generator=g)
    mask_cls = torch.full((6, 5), -4.0)
    mask_cls[torch.arange(6), torch.tensor([0, 0, 1, 2, 2, 4])] = 4.0  # 2 things, 3 stuff, 1 void
    return mask_cls, logits


@pytest.mark.parametrize("low, padded, image, output", GEOMETRIES)
@pytest.mark.parametrize("threshold", [0.0, 0.8])
def test_panoptic_banded_equals_reference(low, padded, image, output, threshold):
    mask_cls, logits = _segments_case(seed=1)
    resampler = MapResampler(low, padded, image, output)
    args = ([0, 1], threshold, threshold)
    seg, info = panoptic_inference_banded(mask_cls, logits, resampler, *args, band_elements=100)
    ref_seg, ref_info = panoptic_inference(
        mask_cls, _upsampled(logits, padded, image, output), *args
    )
    assert info == ref_info and len(info) >= 3
    assert torch.equal(seg, ref_seg)


def test_low_res_labels_agree_with_exact_labels():
    mask_cls, logits = _segments_case(seed=2)
    low, padded, image, output = (12, 16), (48, 64), (45, 61), (200, 300)
    resampler = MapResampler(low, padded, image, output)
    labels = semantic_labels_low_res(mask_cls, logits, resampler, band_elements=1000)
    exact = semantic_inference(mask_cls, _upsampled(logits, padded, image, output)).argmax(0)
    assert labels.shape == output and labels.dtype == torch.int64
    # Combining before or after the resize differs only near region borders.
    assert (labels == exact).float().mean() > 0.97


def test_unknown_semantic_output_is_refused():
    with pytest.raises(ValueError, match="'probabilities'.*'scores', 'labels', 'low_res_labels'"):
        BandedPostProcessing(semantic_output="probabilities")


def test_transforms_on_one_image_of_odd_size():
    model = _plain_model()
    fast = optimize_for_inference(copy.deepcopy(model))
    x = {"image": torch.rand(3, 33, 47) * 255}
    _assert_same_outputs(_outputs(fast, [x]), _outputs(model, [x]))
