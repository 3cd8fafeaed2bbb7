"""The fast paths of inference and training against the straightforward (official) computation.

Each test computes the same quantity both ways on a tiny model or random tensors: folded vs
unfolded convolutions, band-by-band vs full-resolution post-processing, the all-layer loss in
chunks vs the per-layer official composition, point-sampled vs dense losses, mixed vs full
precision.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d
from detectron2.modeling import build_model
from detectron2.modeling.postprocessing import sem_seg_postprocess

from maskformer.engine import amp_precision
from maskformer.modeling.criterion import (
    CPU_LOSS_CHUNK,
    SetCriterion,
    dense_mask_losses,
    point_mask_losses,
)
from maskformer.modeling.layers.frozen_bn import FrozenBNConv2d
from maskformer.modeling.losses import dice_loss, focal_and_dice_per_mask, sigmoid_focal_loss
from maskformer.modeling.matcher import HungarianMatcher
from maskformer.modeling.postprocessing import (
    SemSegLabels,
    panoptic_inference,
    semantic_inference,
)
from maskformer.modeling.transformer_predictor import mask_logits
from tests.common import randomize_, sample, tiny_cfg
from tests.modeling import test_criterion

# The mask logits with and without folding, in float32 (the bound for identical outputs).
LOGIT_TOL = 1e-4


# Folding the pixel decoder's last convolution into the mask embeddings -------------------------


@pytest.mark.parametrize("layers, queries", [(1, 4), (3, 5)])
def test_folded_mask_logits_equal_projection_then_product(layers, queries):
    g = torch.Generator().manual_seed(0)
    proj = torch.nn.Conv2d(6, 16, 3, padding=1).double()
    embed = torch.randn(layers, 2, queries, 16, dtype=torch.float64, generator=g)
    feats = torch.randn(2, 6, 7, 9, dtype=torch.float64, generator=g)
    embed.requires_grad_(True)
    folded = mask_logits(embed, feats, proj)
    (grad_folded,) = torch.autograd.grad(folded.square().sum(), embed)
    reference = torch.einsum("lbqe,behw->lbqhw", embed, proj(feats))
    (grad_reference,) = torch.autograd.grad(reference.square().sum(), embed)
    assert folded.shape == (layers, 2, queries, 7, 9)
    torch.testing.assert_close(folded, reference, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad_folded, grad_reference, rtol=1e-10, atol=1e-10)
    # Unfoldable projections (norm or activation) are applied as they are.
    relu = Conv2d(6, 16, 3, padding=1, activation=torch.relu).double()
    expected = torch.einsum("lbqe,behw->lbqhw", embed, relu(feats))
    torch.testing.assert_close(mask_logits(embed, feats, relu), expected)


def _eval_model(*opts, seed=0):
    torch.manual_seed(seed)
    model = build_model(tiny_cfg(*opts)).eval()
    return randomize_(model, seed)


def _inputs():
    """Two images of different sizes (batch padding) with requested output sizes that differ."""
    a, b = sample(45, 61, [0, 1, 2], seed=0), sample(64, 50, [3, 4], seed=1)
    a["height"], a["width"] = 90, 30
    return [a, b]


def test_model_logits_with_and_without_folding():
    model = _eval_model()
    predictor = model.sem_seg_head.predictor
    images = model.preprocess_image(_inputs())
    with torch.no_grad():
        features = model.backbone(images.tensor)
        folded = model.sem_seg_head(features)
        predictor.fold_mask_projection = False
        reference = model.sem_seg_head(features)
    torch.testing.assert_close(folded["pred_logits"], reference["pred_logits"], rtol=0, atol=0)
    torch.testing.assert_close(
        folded["pred_masks"], reference["pred_masks"], rtol=0, atol=LOGIT_TOL
    )


def test_frozen_bn_backbone_equals_unfolded():
    model = _eval_model("MODEL.RESNETS.NORM", "FrozenBN")
    folded = [m for m in model.backbone.modules() if type(m) is FrozenBNConv2d]
    assert len(folded) == 20  # every convolution of a ResNet-18 with its stem
    reference = copy.deepcopy(model)
    for m in reference.backbone.modules():
        if type(m) is FrozenBNConv2d:
            m.__class__ = Conv2d
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got, want = model.backbone(x), reference.backbone(x)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-4, msg=name)


def test_channels_last_weights_and_outputs_equal_contiguous():
    # The same weights in channels-last and in contiguous memory order.
    no_dropout = ("MODEL.MASK_FORMER.DROPOUT", 0.0)
    fast = _eval_model(*no_dropout, "MODEL.MASK_FORMER.CHANNELS_LAST", True)
    ref = build_model(tiny_cfg(*no_dropout, "MODEL.MASK_FORMER.CHANNELS_LAST", False))
    ref.load_state_dict(fast.state_dict())
    convs = [m for m in fast.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert all(m.weight.is_contiguous() for m in ref.modules() if isinstance(m, torch.nn.Conv2d))
    fast.eval(), ref.eval()
    with torch.no_grad():
        got, want = fast(_inputs()), ref(_inputs())
    for g, w in zip(got, want):
        torch.testing.assert_close(g["sem_seg"], w["sem_seg"], rtol=0, atol=1e-5)
        assert torch.equal(g["sem_seg"].argmax(0), w["sem_seg"].argmax(0))
    # Training: same losses and gradients; the gradients keep their weights' memory order.
    batch = [sample(64, 64, [0, 1, 2], seed=0), sample(64, 48, [3, 4], seed=1)]
    fast.train(), ref.train()
    losses_fast, losses_ref = fast(batch), ref(batch)
    for k in losses_ref:
        torch.testing.assert_close(losses_fast[k], losses_ref[k], rtol=1e-5, atol=1e-6, msg=k)
    sum(losses_fast.values()).backward()
    sum(losses_ref.values()).backward()
    grads_ref = dict(ref.named_parameters())
    for name, p in fast.named_parameters():
        if p.grad is None:
            assert grads_ref[name].grad is None, name
            continue
        # Relative to each tensor's largest gradient: float rounding, summed in another order.
        want = grads_ref[name].grad
        assert (p.grad - want).abs().max() <= 1e-4 * want.abs().max() + 1e-7, name


# Band-by-band post-processing inside the model ---------------------------------------------------


def _official_postprocessing(model, batched_inputs):
    """The official inference: upsample all Q masks to the padded size, then crop and resize."""
    images = model.preprocess_image(batched_inputs)
    model.sem_seg_head.predictor.fold_mask_projection = False
    outputs = model.sem_seg_head(model.backbone(images.tensor))
    masks = F.interpolate(
        outputs["pred_masks"], size=images.tensor.shape[-2:], mode="bilinear", align_corners=False
    )
    results = []
    for cls, mask, x, size in zip(
        outputs["pred_logits"], masks, batched_inputs, images.image_sizes
    ):
        h, w = x["height"], x["width"]
        at_output = sem_seg_postprocess(mask, size, h, w)
        if model.sem_seg_postprocess_before_inference:
            sem = semantic_inference(cls, at_output)
        else:
            sem = semantic_inference(cls, mask[:, : size[0], : size[1]])
            sem = sem_seg_postprocess(sem, size, h, w)
        pan = panoptic_inference(cls, at_output, model.thing_ids, 0.0, 0.0)
        results.append({"sem_seg": sem, "panoptic_seg": pan})
    return results


@pytest.mark.parametrize("before_inference", [True, False])
def test_model_inference_equals_official_postprocessing(before_inference):
    model = _eval_model(
        "MODEL.MASK_FORMER.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE", before_inference,
        "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", True,
        "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", 0.0,
        "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD", 0.0,
    )  # fmt: skip
    model.thing_ids = [0, 1]
    inputs = _inputs()
    with torch.no_grad():
        got = model(inputs)
        want = _official_postprocessing(model, inputs)
    for g, w in zip(got, want):
        assert g["sem_seg"].shape == w["sem_seg"].shape
        torch.testing.assert_close(g["sem_seg"], w["sem_seg"], rtol=0, atol=1e-4)
        assert torch.equal(g["sem_seg"].argmax(0), w["sem_seg"].argmax(0))
        (seg, info), (ref_seg, ref_info) = g["panoptic_seg"], w["panoptic_seg"]
        assert info == ref_info and len(info) > 0
        # Pixels whose two best weighted probabilities tie to float rounding may differ.
        assert (seg == ref_seg).float().mean() > 0.999


def test_low_res_labels_through_the_model():
    model = _eval_model("MODEL.MASK_FORMER.TEST.SEM_SEG_LOW_RES_LABELS", True)
    x = sample(64, 64, [0, 1], seed=3)
    x["height"], x["width"] = 640, 960
    with torch.no_grad():
        labels = model([x])[0]["sem_seg"]
        model.sem_seg_low_res_labels = False
        exact = model([x])[0]["sem_seg"]
    assert isinstance(labels, SemSegLabels) and labels.shape == exact.shape
    # What SemSegEvaluator and the Visualizer call.
    agreement = (labels.argmax(dim=0) == exact.argmax(dim=0)).float().mean()
    assert agreement > 0.97
    assert labels.scores.shape == exact.shape[1:] and bool((labels.scores >= 0).all())


# Training: all layers' mask losses together, in chunks ---------------------------------

# The criterion tests' random outputs (K = 4 classes, 3 layers) and targets.
K = test_criterion.K


def _outputs(**kw):
    return test_criterion._outputs(requires_grad=True, **kw)


def _targets():
    return test_criterion._targets(counts=(3, 1))


def _reference_losses(criterion, outputs, targets):
    """Per layer: match, upsample the matched masks, the autograd focal and dice losses."""
    num_masks = float(sum(len(t["labels"]) for t in targets))
    losses = {}
    layers = [outputs, *outputs["aux_outputs"]]
    for i, layer in enumerate(layers):
        indices = criterion.matcher(layer, targets)
        src = torch.cat([layer["pred_masks"][b, s] for b, (s, _) in enumerate(indices)])
        tgt = torch.cat([t["masks"][j] for t, (_, j) in zip(targets, indices)]).float()
        src = F.interpolate(src[:, None], size=tgt.shape[-2:], mode="bilinear")[:, 0]
        suffix = "" if i == 0 else f"_{i - 1}"
        losses["loss_ce" + suffix] = criterion.loss_labels(layer["pred_logits"], targets, indices)
        focal = sigmoid_focal_loss(src.flatten(1), tgt.flatten(1), num_masks)
        losses["loss_mask" + suffix] = 20.0 * focal
        losses["loss_dice" + suffix] = dice_loss(src.flatten(1), tgt.flatten(1), num_masks)
    return losses


def test_batched_losses_and_gradients_equal_the_per_layer_reference():
    criterion = SetCriterion(K, HungarianMatcher(1, 20, 1))
    targets = _targets()
    outputs, reference_outputs = _outputs(), _outputs()
    got = criterion(outputs, targets)
    want = _reference_losses(criterion, reference_outputs, targets)
    assert got.keys() == want.keys() and len(got) == 9
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=0, msg=k)
    sum(got.values()).backward()
    sum(want.values()).backward()
    for layer, ref in zip(
        [outputs, *outputs["aux_outputs"]], [reference_outputs, *reference_outputs["aux_outputs"]]
    ):
        for key in ("pred_masks", "pred_logits"):
            torch.testing.assert_close(layer[key].grad, ref[key].grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (0.5, 1.0), (-1.0, 3.0)])
def test_per_mask_losses_are_the_official_losses_mask_by_mask(alpha, gamma):
    g = torch.Generator().manual_seed(0)
    x = 4 * torch.randn(3, 50, generator=g, dtype=torch.float64)
    t = (torch.rand(3, 50, generator=g) > 0.6).double()
    t[2] = 0  # a mask with no positive pixel
    focal, dice = focal_and_dice_per_mask(x, t, alpha, gamma)
    for m in range(3):
        official = sigmoid_focal_loss(x[m : m + 1], t[m : m + 1], 1, alpha, gamma)
        torch.testing.assert_close(focal[m], official)
        torch.testing.assert_close(dice[m], dice_loss(x[m : m + 1], t[m : m + 1], 1))


def test_dense_losses_in_chunks_equal_one_piece():
    g = torch.Generator().manual_seed(0)
    src = (3 * torch.randn(9, 5, 6, generator=g)).requires_grad_(True)
    tgt = torch.rand(9, 20, 24, generator=g) > 0.5
    assert CPU_LOSS_CHUNK < 9  # several chunks, the last one partial
    focal, dice = dense_mask_losses(src, tgt)
    (grad,) = torch.autograd.grad(focal.sum() + 2 * dice.sum(), src)
    up = F.interpolate(src[:, None], size=(20, 24), mode="bilinear", align_corners=False)[:, 0]
    want = focal_and_dice_per_mask(up.flatten(1), tgt.flatten(1))
    (want_grad,) = torch.autograd.grad(want[0].sum() + 2 * want[1].sum(), src)
    torch.testing.assert_close(focal, want[0])
    torch.testing.assert_close(dice, want[1])
    torch.testing.assert_close(grad, want_grad)
    empty = dense_mask_losses(src[:0], tgt[:0])
    assert empty[0].shape == (0,) and empty[0].requires_grad


# Point-sampled losses and matching -------------------------------------------------------------


def test_point_losses_at_the_pixel_centres_are_the_full_resolution_losses():
    g = torch.Generator().manual_seed(0)
    src = 3 * torch.randn(4, 6, 5, generator=g)
    tgt = torch.rand(4, 24, 20, generator=g) > 0.5
    ys, xs = torch.meshgrid(torch.arange(24), torch.arange(20), indexing="ij")
    centres = torch.stack([(xs + 0.5) / 20, (ys + 0.5) / 24], -1).view(1, -1, 2).expand(4, -1, -1)
    focal, dice = point_mask_losses(src, tgt, centres)
    up = F.interpolate(src[:, None], size=(24, 20), mode="bilinear", align_corners=False)[:, 0]
    want_focal, want_dice = focal_and_dice_per_mask(up.flatten(1), tgt.flatten(1).float())
    torch.testing.assert_close(focal, want_focal, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dice, want_dice, rtol=1e-5, atol=1e-6)


def test_point_losses_hand_computed():
    # Logit 0 everywhere (p = 0.5) against an all-ones target, at P = 10 points:
    # focal = alpha (1 - p)^2 log(1 / p) = 0.25 * 0.25 * log 2, whatever the points;
    # dice = 1 - (2 * 0.5 P + 1) / (0.5 P + P + 1) = 1 - 11 / 16.
    coords = torch.rand(2, 10, 2)
    focal, dice = point_mask_losses(torch.zeros(2, 3, 3), torch.ones(2, 12, 12), coords)
    torch.testing.assert_close(focal, torch.full((2,), 0.0625 * 0.6931471805599453))
    torch.testing.assert_close(dice, torch.full((2,), 5 / 16))


def test_point_sampled_criterion_matches_and_cuts_the_loss_to_points():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)
    # Targets constant on 4 x 4 blocks, so that the 8 x 8 predictions can equal them.
    blocks = [torch.rand(2, 8, 8, generator=g) > 0.5 for _ in range(2)]
    targets = [
        {"labels": torch.tensor([0, 3]), "masks": b.repeat_interleave(4, 1).repeat_interleave(4, 2)}
        for b in blocks
    ]
    outputs = _outputs(h=8, w=8)
    # Predictions that are the (downsampled) targets, strongly: every matcher finds them.
    with torch.no_grad():
        for b, block in enumerate(blocks):
            for layer in [outputs, *outputs["aux_outputs"]]:
                layer["pred_masks"][b, :2] = 20 * (block.float() - 0.5)
    dense = HungarianMatcher(1, 20, 1)(outputs, targets)
    points = HungarianMatcher(1, 20, 1, num_points=256)(outputs, targets)
    for (qi, ti), (qp, tp) in zip(dense, points):
        assert torch.equal(qi[ti.argsort()], qp[tp.argsort()])
        assert torch.equal(qi[ti.argsort()], torch.arange(len(ti)))
    criterion = SetCriterion(K, HungarianMatcher(1, 20, 1, num_points=256), num_points=256)
    losses = criterion(outputs, targets)
    assert all(torch.isfinite(v) for v in losses.values()) and len(losses) == 9
    sum(losses.values()).backward()
    assert torch.isfinite(outputs["pred_masks"].grad).all()
    # Inverted masks (matched to other, random queries) cost far more at the sampled points.
    with torch.no_grad():
        for layer in [outputs, *outputs["aux_outputs"]]:
            layer["pred_masks"][:, :2] *= -1
    inverted = criterion(outputs, targets)
    # (About 2x on these data; misaligned point coordinates would make both alike.)
    for suffix in ("", "_0", "_1"):
        assert inverted["loss_dice" + suffix] > 1.5 * losses["loss_dice" + suffix]
        assert inverted["loss_mask" + suffix] > 1.5 * losses["loss_mask" + suffix]


# Mixed precision --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, tolerance", [(torch.bfloat16, 0.05), (torch.float16, 0.01)])
def test_amp_loss_matches_fp32_on_a_fixed_batch(dtype, tolerance):
    torch.manual_seed(0)
    model = build_model(tiny_cfg("MODEL.MASK_FORMER.DROPOUT", 0.0))
    randomize_(model, seed=0)
    batch = [sample(64, 64, [0, 1, 2], seed=0), sample(64, 64, [3, 4], seed=1)]
    model.train()
    fp32 = model(batch)
    with torch.autocast("cpu", dtype=dtype):
        amp = model(batch)
    assert all(v.dtype == torch.float32 for v in amp.values())  # the losses run in fp32
    total32, total_amp = sum(fp32.values()), sum(amp.values())
    assert torch.isfinite(total_amp)
    assert abs(float(total_amp) / float(total32) - 1) < tolerance


def test_amp_precision_names():
    assert amp_precision("") is None
    assert amp_precision("bfloat16") is torch.bfloat16
    assert amp_precision("float16") is torch.float16
    with pytest.raises(ValueError, match="'fp16'.*bfloat16"):
        amp_precision("fp16")
