"""The MaskFormer meta-architecture end to end on a tiny config."""

import pytest
import torch
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model

from maskformer.engine import amp_precision
from maskformer.modeling import MaskFormer
from tests.common import randomize_, sample, tiny_cfg


def _model(*opts):
    torch.manual_seed(0)
    return build_model(tiny_cfg(*opts))


def test_training_step_reaches_every_parameter():
    model = _model()
    model.train()
    batch = [sample(64, 96, [0, 3, 4], seed=1), sample(64, 96, [], seed=2)]
    losses = model(batch)
    assert {"loss_ce", "loss_mask", "loss_dice", "loss_ce_0", "loss_dice_1"} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_training_step_with_only_empty_targets():
    model = _model()
    model.train()
    losses = model([sample(64, 64, [], seed=1), sample(64, 64, [], seed=2)])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_mask"].item() == 0.0
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_eval_on_odd_sized_images_returns_input_size():
    model = _model()
    model.eval()
    inputs = [
        {"image": torch.rand(3, 200, 250) * 255},
        {"image": torch.rand(3, 171, 333) * 255, "height": 171, "width": 333},
    ]
    with torch.no_grad():
        out = model(inputs)
    assert out[0]["sem_seg"].shape == (5, 200, 250)
    assert out[1]["sem_seg"].shape == (5, 171, 333)
    assert all(torch.isfinite(o["sem_seg"]).all() for o in out)


def test_eval_resizes_to_requested_output_size():
    model = _model()
    model.eval()
    image = torch.rand(3, 96, 128) * 255
    with torch.no_grad():
        out = model([{"image": image, "height": 48, "width": 64}])[0]["sem_seg"]
        full = model([{"image": image}])[0]["sem_seg"]
    assert out.shape == (5, 48, 64) and full.shape == (5, 96, 128)
    # As the official model: the scores at the image size, resized bilinearly.
    want = torch.nn.functional.interpolate(full[None], (48, 64), mode="bilinear")[0]
    torch.testing.assert_close(out, want, rtol=0, atol=1e-6)


def test_postprocessing_before_inference_gives_close_scores():
    model = _model()
    model.eval()
    image = {"image": torch.rand(3, 90, 120) * 255}
    with torch.no_grad():
        after = model([image])[0]["sem_seg"]
        model.postprocessing.sem_seg_postprocess_before_inference = True
        before = model([image])[0]["sem_seg"]
    # Same size, no resize involved: combining then cropping equals cropping then combining.
    assert torch.allclose(before, after, atol=1e-5)


def test_panoptic_output_is_consistent():
    model = _model(
        "MODEL.MASK_FORMER.TEST.PANOPTIC_ON",
        True,
        "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD",
        0.0,
        "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD",
        0.0,
    )
    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 70, 90) * 255}])[0]
    seg, info = out["panoptic_seg"]
    assert seg.shape == (70, 90) and out["sem_seg"].shape == (5, 70, 90)
    ids = set(seg.unique().tolist()) - {0}
    assert ids == {s["id"] for s in info}


def test_instance_output_at_output_size_with_mask_boxes():
    model = _model(
        "MODEL.MASK_FORMER.TEST.SEMANTIC_ON", False,
        "MODEL.MASK_FORMER.TEST.INSTANCE_ON", True,
        "TEST.DETECTIONS_PER_IMAGE", 7,
    )  # fmt: skip
    model.eval()
    model.thing_ids = [1, 3]
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 96, 128) * 255, "height": 60, "width": 80}])[0]
    assert set(out) == {"instances"}  # semantic output off
    inst = out["instances"]
    assert inst.image_size == (60, 80) and 0 < len(inst) <= 7
    assert inst.pred_masks.shape == (len(inst), 60, 80) and inst.pred_masks.dtype == torch.bool
    assert set(inst.pred_classes.tolist()) <= {1, 3}
    assert (inst.scores[:-1] >= inst.scores[1:]).all()
    for mask, box in zip(inst.pred_masks, inst.pred_boxes.tensor):
        if mask.any():
            ys, xs = torch.nonzero(mask, as_tuple=True)
            expected = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert box.tolist() == [float(v) for v in expected]


def test_every_output_switched_off_is_refused():
    with pytest.raises(ValueError, match="SEMANTIC_ON, PANOPTIC_ON, INSTANCE_ON"):
        _model("MODEL.MASK_FORMER.TEST.SEMANTIC_ON", False)


def test_thing_ids_outside_the_classes_are_refused_when_used():
    cfg = tiny_cfg("MODEL.MASK_FORMER.TEST.PANOPTIC_ON", True)
    kwargs = MaskFormer.from_config(cfg)
    with pytest.raises(ValueError, match=r"\[7\].*config's first DATASETS.TEST.*NUM_CLASSES"):
        MaskFormer(**{**kwargs, "thing_ids": [0, 7]})  # K = 5
    assert MaskFormer(**{**kwargs, "thing_ids": [4, 0]}).thing_ids == (0, 4)
    semantic_only = MaskFormer.from_config(tiny_cfg())
    assert MaskFormer(**{**semantic_only, "thing_ids": [0, 7]}).thing_ids == (0, 7)  # unused
    # The same check for the dataset a model is evaluated on.
    MetadataCatalog.get("test_model_bad_things").thing_dataset_id_to_contiguous_id = {3: 0, 9: 7}
    model = _model("MODEL.MASK_FORMER.TEST.PANOPTIC_ON", True).eval()
    with pytest.raises(ValueError, match=r"\[7\] of 'test_model_bad_things'"):
        model([{"image": torch.rand(3, 64, 64) * 255}], dataset_name="test_model_bad_things")


def test_thing_ids_come_from_the_dataset_evaluated_on():
    MetadataCatalog.get("test_model_things_1_3").thing_dataset_id_to_contiguous_id = {5: 1, 6: 3}
    model = _model(
        "MODEL.MASK_FORMER.TEST.SEMANTIC_ON", False, "MODEL.MASK_FORMER.TEST.INSTANCE_ON", True
    ).eval()
    model.thing_ids = None  # every class can be an instance
    inputs = [{"image": torch.rand(3, 64, 64) * 255}]
    with torch.no_grad():
        everything = model(inputs)[0]["instances"]
        things = model(inputs, dataset_name="test_model_things_1_3")[0]["instances"]
    assert set(everything.pred_classes.tolist()) - {1, 3}  # other classes too
    assert len(things) > 0 and set(things.pred_classes.tolist()) <= {1, 3}
    assert model.thing_ids is None  # the model is not changed


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
    assert abs(total_amp.item() / total32.item() - 1) < tolerance


def test_amp_precision_names():
    assert amp_precision("", "cuda") is None
    assert amp_precision("bfloat16", "cuda") is torch.bfloat16
    assert amp_precision("float16", "cpu") is torch.float16
    with pytest.raises(ValueError, match="'fp16'.*bfloat16"):
        amp_precision("fp16", "cuda")
