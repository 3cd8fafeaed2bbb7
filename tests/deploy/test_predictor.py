"""MaskFormerPredictor: outputs at any size equal the model's own, at bounded memory; weights
that would give random output are refused; drawing with Detectron2's Visualizer, and large
images laid over at full resolution."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances

from maskformer.modeling.inference_transforms import BandedPostProcessing
from maskformer.modeling.postprocessing import PostProcessing
from maskformer.modeling.resample import resized_argmax
from maskformer.predictor import (
    MaskFormerPredictor,
    Prediction,
    UntrainedModelError,
    nearest_resize,
)
from maskformer.visualization import (
    TASKS,
    ColorMode,
    Visualizer,
    _draw,
    _lay_over,
    draw_overlay,
    drawing_metadata,
    drawing_size,
)
from tests.common import randomize_, tiny_cfg


@pytest.mark.parametrize(
    "k, h, w, out_h, out_w",
    [(5, 7, 9, 23, 31), (6, 160, 160, 1, 1), (3, 160, 267, 3, 5), (4, 10, 10, 10, 10)],
)
def test_resized_argmax_is_the_argmax_of_the_bilinear_resize(k, h, w, out_h, out_w):
    scores = torch.randn(k, h, w, generator=torch.Generator().manual_seed(0))
    full = F.interpolate(scores[None], (out_h, out_w), mode="bilinear", align_corners=False)[0]
    # A chunk bound of 3 rows: several bands, and a last band that is shorter.
    banded = resized_argmax(scores, (out_h, out_w), max_chunk_bytes=3 * k * out_w * 4)
    assert torch.equal(banded, full.argmax(0))


def test_nearest_resize_is_opencvs_exact_nearest():
    labels = np.random.default_rng(0).integers(0, 9, (7, 9)).astype(np.uint8)
    for h, w in [(23, 31), (3, 4), (7, 9), (1, 1)]:
        ours = nearest_resize(torch.as_tensor(labels), (h, w)).numpy()
        assert np.array_equal(
            ours, cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
        )


def _semantic_model():
    cfg = tiny_cfg("INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 128)
    model = randomize_(build_model(cfg)).eval()
    return cfg, model


def test_semantic_labels_equal_the_models_full_size_output():
    """Labels computed band by band from the network-resolution scores are those of the
    model's own (K, H, W) output at the full size."""
    cfg, model = _semantic_model()
    predictor = MaskFormerPredictor(model, min_size_test=64, max_size_test=128, max_chunk_bytes=1)
    image = np.random.default_rng(0).integers(0, 256, (90, 150, 3), dtype=np.uint8)
    h, w = predictor.network_size(90, 150)
    assert (h, w) == (64, 107)
    resized = T.ResizeTransform(90, 150, h, w).apply_image(image)
    x = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
    with torch.no_grad():
        full = model([{"image": x, "height": 90, "width": 150}])[0]["sem_seg"]  # (K, 90, 150)
    prediction = predictor(image)
    assert prediction.semantic.shape == (90, 150)
    assert torch.equal(prediction.semantic, full.argmax(0))
    assert prediction.panoptic is None and prediction.instances is None
    assert predictor(image, output_size=(9, 15)).semantic.shape == (9, 15)


def test_panoptic_and_instances_at_the_network_size_equal_the_models():
    cfg = tiny_cfg(
        "INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 128,
        "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", True,
        "MODEL.MASK_FORMER.TEST.INSTANCE_ON", True,
    )  # fmt: skip
    model = randomize_(build_model(cfg)).eval()
    model.thing_ids = (1, 2)
    predictor = MaskFormerPredictor(model, min_size_test=64, max_size_test=128)
    image = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)  # no resize
    x = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
    with torch.no_grad():
        own = model([{"image": x, "height": 64, "width": 96}])[0]
    prediction = predictor(image)
    assert torch.equal(prediction.panoptic[0], own["panoptic_seg"][0])
    assert prediction.panoptic[1] == own["panoptic_seg"][1]
    assert torch.equal(prediction.instances.pred_masks, own["instances"].pred_masks)
    assert torch.equal(prediction.instances.scores, own["instances"].scores)

    # At another size: the same segments, masks resized, boxes tight around them.
    big = predictor(image, output_size=(128, 192))
    ids = big.panoptic[0]
    assert ids.shape == (128, 192)
    assert torch.equal(ids[::2, ::2], prediction.panoptic[0])  # nearest neighbour, exact 2x
    assert set(ids.unique().tolist()) - {0} <= {s["id"] for s in big.panoptic[1]}
    masks = big.instances.pred_masks
    assert masks.shape[1:] == (128, 192) and big.instances.image_size == (128, 192)
    assert torch.equal(big.instances.pred_boxes.tensor, BitMasks(masks).get_bounding_boxes().tensor)


def test_network_size_of_an_elongated_image_keeps_one_pixel():
    _, model = _semantic_model()
    predictor = MaskFormerPredictor(model, min_size_test=64, max_size_test=128)
    assert predictor.network_size(1, 8000) == (1, 128)
    prediction = predictor(np.zeros((1, 8000, 3), np.uint8))
    assert prediction.semantic.shape == (1, 8000)


def test_from_config_refuses_random_weights(tmp_path):
    cfg = tiny_cfg()
    with pytest.raises(UntrainedModelError, match="MODEL.WEIGHTS is empty"):
        MaskFormerPredictor.from_config(cfg)
    assert isinstance(
        MaskFormerPredictor.from_config(cfg, allow_random_weights=True).model, torch.nn.Module
    )
    # A backbone alone (e.g. ImageNet weights): the head would be random.
    model = build_model(cfg)
    backbone = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    torch.save({"model": backbone}, tmp_path / "backbone.pth")
    cfg.MODEL.WEIGHTS = str(tmp_path / "backbone.pth")
    with pytest.raises(UntrainedModelError, match="not trained weights for this config"):
        MaskFormerPredictor.from_config(cfg)
    torch.save({"model": model.state_dict()}, tmp_path / "full.pth")
    cfg.MODEL.WEIGHTS = str(tmp_path / "full.pth")
    loaded = MaskFormerPredictor.from_config(cfg).model
    # Loaded, then transformed for inference (MODEL.MASK_FORMER.TEST.OPTIMIZE).
    assert isinstance(loaded.postprocessing, BandedPostProcessing)
    assert torch.equal(
        loaded.sem_seg_head.predictor.predictor.class_embed.weight,
        model.sem_seg_head.predictor.class_embed.weight,
    )
    cfg.MODEL.MASK_FORMER.TEST.OPTIMIZE = False
    plain = MaskFormerPredictor.from_config(cfg).model
    assert set(plain.state_dict()) == set(model.state_dict())
    assert type(plain.postprocessing) is PostProcessing


def _prediction(h=90, w=120) -> Prediction:
    labels = torch.zeros(h, w, dtype=torch.int64)
    labels[10:50, 20:80] = 2
    labels[20:30, 30:40] = 4
    labels[60:] = 1
    segments = [{"id": i + 1, "category_id": i, "isthing": i in (2, 3)} for i in range(6)]
    masks = torch.zeros(2, h, w, dtype=torch.bool)
    masks[0, 10:50, 20:80] = True
    masks[1, 60:, 5:50] = True
    instances = Instances((h, w))
    instances.pred_masks = masks
    instances.pred_boxes = BitMasks(masks).get_bounding_boxes()
    instances.scores = torch.tensor([0.9, 0.7])
    instances.pred_classes = torch.tensor([2, 3])
    return Prediction(semantic=labels, panoptic=((labels + 1).int(), segments), instances=instances)


@pytest.mark.parametrize("task", TASKS)
def test_laying_over_reproduces_drawing_on_the_image(task):
    """Drawing once on black and once on white, then applying both to the image, gives what
    drawing on the image gives (up to 8-bit rounding)."""
    meta = drawing_metadata("quickstart_sem_seg_val", 6)
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    prediction = _prediction()
    np.random.seed(1)  # instance colours are jittered randomly
    direct = draw_overlay(image, prediction, task, meta)

    def draw(background):
        vis = Visualizer(background, meta, instance_mode=ColorMode.SEGMENTATION)
        return _draw(vis, prediction, task).get_image()

    np.random.seed(1)
    laid = _lay_over(image, draw, (90, 120))
    assert np.abs(direct.astype(int) - laid.astype(int)).max() <= 2
    assert (direct != image).any(axis=2).mean() > 0.5  # most pixels are coloured


def test_a_small_prediction_is_drawn_over_the_full_size_image():
    meta = drawing_metadata("quickstart_sem_seg_val", 6)
    image = np.random.default_rng(0).integers(0, 256, (180, 240, 3), dtype=np.uint8)
    assert drawing_size(180, 240, 90 * 120) == (90, 120)
    assert drawing_size(180, 240, 180 * 240) == (180, 240)
    overlay = draw_overlay(image, _prediction(90, 120), "semantic", meta)
    assert overlay.shape == image.shape
    # The image's own detail survives: far from edges and text, overlay = alpha blend of it.
    patch = (slice(150, 170), slice(200, 230))  # class 1, drawn with alpha 0.8
    color = np.array(meta.stuff_colors[1], np.float32)
    expected = 0.2 * image[patch] + 0.8 * color
    assert np.abs(overlay[patch].astype(np.float32) - expected).max() <= 3


def test_drawing_metadata_errors_name_the_dataset():
    with pytest.raises(ValueError, match="'quickstart_sem_seg_val'.*6 classes.*NUM_CLASSES = 7"):
        drawing_metadata("quickstart_sem_seg_val", 7)
    MetadataCatalog.get("test_predictor_no_classes").set(evaluator_type="sem_seg")
    with pytest.raises(ValueError, match="'test_predictor_no_classes'.*stuff_classes"):
        drawing_metadata("test_predictor_no_classes", 3)
    # Panoptic datasets: thing names indexed by contiguous id, like stuff names.
    meta = drawing_metadata("quickstart_panoptic_val", 7)
    assert meta.thing_classes == meta.stuff_classes
