"""Inputs of C != 3 channels: reading TIFF / .npy, the training and evaluation mappers, the
model, the demo, and the adaptation of pretrained RGB first convolutions."""

import logging
import os

import cv2
import numpy as np
import pytest
import timm
import torch
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model
from PIL import Image

from maskformer import get_maskformer_cfg
from maskformer.checkpoint import MaskFormerCheckpointer
from maskformer.data.dataset_mapper import InferenceDatasetMapper, MaskFormerSemanticDatasetMapper
from maskformer.data.io import display_rgb, read_image, read_multichannel_image
from maskformer.modeling.backbone.timm_backbone import parse_timm_kwargs
from maskformer.predictor import MaskFormerPredictor
from tests.common import REPO_ROOT, TINY_SWIN_OPTS, sample, tiny_cfg
from tests.modeling.backbone.test_timm_backbone import KINDS, timm_cfg
from tests.scripts import load_script

# Five channels: colour, near-infrared, depth.
FIVE = [
    "INPUT.FORMAT", "RGBND",
    "MODEL.PIXEL_MEAN", [120.0, 110.0, 100.0, 1000.0, 5.0],
    "MODEL.PIXEL_STD", [60.0, 60.0, 60.0, 500.0, 2.0],
    "INPUT.COLOR_AUG_SSD", False,
]  # fmt: skip


def _five_channel_sample(h, w, classes, seed):
    s = sample(h, w, classes, seed)
    g = torch.Generator().manual_seed(seed)
    s["image"] = torch.cat([s["image"], torch.rand(2, h, w, generator=g) * 1000])
    return s


def test_npy_and_multipage_tiff_read_as_stored(tmp_path):
    rng = np.random.default_rng(0)
    bands = rng.integers(0, 65535, (12, 16, 5), dtype=np.uint16)
    np.save(tmp_path / "x.npy", bands)
    assert np.array_equal(read_image(str(tmp_path / "x.npy"), "RGBND"), bands)
    # One band per page, in page order.
    cv2.imwritemulti(str(tmp_path / "x.tif"), [bands[..., i] for i in range(5)])
    assert np.array_equal(read_multichannel_image(str(tmp_path / "x.tif"), 5), bands)
    # A 4-channel TIFF: the file's channel order, not OpenCV's BGRA (OpenCV writes the array
    # it is given as B, G, R, A).
    bgra = rng.integers(0, 65535, (12, 16, 4), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "four.tif"), bgra)
    assert np.array_equal(read_image(str(tmp_path / "four.tif"), "RGBN"), bgra[..., [2, 1, 0, 3]])
    with pytest.raises(ValueError, match=r"x.npy has shape \(12, 16, 5\).*\(H, W, 4\)"):
        read_image(str(tmp_path / "x.npy"), "RGBN")
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        read_image(str(tmp_path / "nope.npy"), "RGBN")


def test_display_rgb_uses_the_first_three_channels():
    image = np.zeros((2, 2, 5), np.uint16)
    image[..., 0] = 65535
    image[..., 1] = 257 * 100
    image[..., 3] = 65535
    rgb = display_rgb(image)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[0, 0].tolist() == [255, 100, 0]
    floats = np.stack([np.full((2, 2), v, np.float32) for v in (-1.0, 0.0, 1.0, 9.0)], axis=2)
    assert display_rgb(floats)[0, 0].tolist() == [0, 128, 255]  # min..max of the 3 drawn


def test_training_mapper_reads_five_channels(tmp_path):
    bands = np.random.default_rng(0).integers(0, 4000, (40, 48, 5), dtype=np.uint16)
    np.save(tmp_path / "a.npy", bands)
    label = np.zeros((40, 48), np.uint8)
    label[20:] = 2
    Image.fromarray(label).save(tmp_path / "a.png")
    cfg = tiny_cfg(*FIVE, "INPUT.CROP.ENABLED", False, "INPUT.MIN_SIZE_TRAIN", (40,))
    cfg.INPUT.SIZE_DIVISIBILITY = -1
    d = {"file_name": str(tmp_path / "a.npy"), "sem_seg_file_name": str(tmp_path / "a.png")}
    out = MaskFormerSemanticDatasetMapper(cfg, True)(d)
    assert out["image"].dtype == torch.float32 and out["image"].shape == (5, 40, 48)
    # Resize to the same size and maybe a flip: the values are the stored ones.
    stored = torch.as_tensor(bands.astype(np.float32)).permute(2, 0, 1)
    assert torch.equal(out["image"], stored) or torch.equal(out["image"], stored.flip(-1))
    assert out["instances"].gt_classes.tolist() == [0, 2]

    test_out = InferenceDatasetMapper(cfg)({"file_name": str(tmp_path / "a.npy")})
    assert test_out["image"].shape == (5, 512, 614)  # ResizeShortestEdge to MIN_SIZE_TEST 512


def test_format_and_normalisation_must_agree():
    with pytest.raises(ValueError, match="INPUT.FORMAT 'RGBN' has 4 channels.*PIXEL_MEAN has 5"):
        MaskFormerSemanticDatasetMapper(tiny_cfg(*FIVE, "INPUT.FORMAT", "RGBN"), True)
    with pytest.raises(ValueError, match="INPUT.COLOR_AUG_SSD"):
        MaskFormerSemanticDatasetMapper(tiny_cfg(*FIVE, "INPUT.COLOR_AUG_SSD", True), True)


@pytest.mark.parametrize(
    "backbone", ["resnet", "swin", "timm-convnext", "timm-vit"], ids=lambda b: b
)
def test_five_channel_model_trains_and_infers(backbone):
    opts = {"resnet": [], "swin": TINY_SWIN_OPTS}
    cfg = (
        timm_cfg(backbone[5:], *FIVE)
        if backbone.startswith("timm")
        else tiny_cfg(*opts[backbone], *FIVE)
    )
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = [_five_channel_sample(64, 64, [0, 3], 1), _five_channel_sample(64, 64, [1], 2)]
    sum(model(batch).values()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        out = model([{"image": batch[0]["image"][:, :50, :60]}])[0]
    assert out["sem_seg"].shape == (5, 50, 60)


def test_rgb_checkpoint_into_four_channels_adapts_the_first_convolution(tmp_path, caplog):
    torch.manual_seed(0)
    rgb = build_model(tiny_cfg())
    path = tmp_path / "rgb.pth"
    torch.save({"model": rgb.state_dict()}, path)
    four = build_model(
        tiny_cfg(
            "INPUT.FORMAT", "RGBN", "MODEL.PIXEL_MEAN", [0.0] * 4, "MODEL.PIXEL_STD", [1.0] * 4
        )
    )
    key = "backbone.stem.conv1.weight"
    with caplog.at_level(logging.INFO):
        MaskFormerCheckpointer(four).load(str(path))
    w3, w4 = rgb.state_dict()[key], four.state_dict()[key]
    assert w4.shape[1] == 4
    # The documented rule: R, G, B, R filters, scaled by 3/4.
    assert torch.allclose(w4, torch.cat([w3, w3[:, :1]], 1) * 0.75)
    assert f"{key} was pretrained on 3 input channels; adapted to the model's 4" in caplog.text


def test_name_matched_imagenet_backbone_into_one_channel(tmp_path):
    torch.manual_seed(0)
    rgb = build_model(tiny_cfg())
    backbone = {k[len("backbone.") :]: v for k, v in rgb.state_dict().items() if "backbone" in k}
    path = tmp_path / "imagenet.pth"
    torch.save({"model": backbone, "matching_heuristics": True, "__author__": "test"}, path)
    grey = build_model(
        tiny_cfg("INPUT.FORMAT", "L", "MODEL.PIXEL_MEAN", [100.0], "MODEL.PIXEL_STD", [50.0])
    )
    MaskFormerCheckpointer(grey).load(str(path))
    key = "backbone.stem.conv1.weight"
    expected = rgb.state_dict()[key].sum(1, keepdim=True)
    assert torch.allclose(grey.state_dict()[key], expected)


def test_timm_pretrained_file_into_five_channels(tmp_path):
    name, kwargs = KINDS["convnext"]
    torch.manual_seed(1)
    full = timm.create_model(name, pretrained=False, **parse_timm_kwargs(kwargs))
    path = str(tmp_path / "convnext.pth")
    torch.save(full.state_dict(), path)
    model = build_model(timm_cfg("convnext", *FIVE, "MODEL.TIMM.PRETRAINED_WEIGHTS", path))
    w3 = full.state_dict()["stem.0.weight"]
    w5 = model.backbone.features.state_dict()["stem_0.weight"]
    assert torch.allclose(w5, torch.cat([w3, w3[:, :2]], 1) * 0.6)


def test_demo_draws_a_five_channel_npy(tmp_path):
    demo = load_script("demo/demo.py")
    cfg = get_maskformer_cfg(
        os.path.join(REPO_ROOT, "configs", "quickstart", "maskformer_R18_quickstart.yaml"),
        ["MODEL.DEVICE", "cpu", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 5, *FIVE],
    )
    torch.manual_seed(0)
    predictor = MaskFormerPredictor(
        build_model(cfg).eval(), min_size_test=64, max_size_test=128, input_format="RGBND"
    )
    bands = np.random.default_rng(0).integers(0, 4000, (40, 56, 5), dtype=np.uint16)
    np.save(tmp_path / "scene.npy", bands)
    out = str(tmp_path / "scene.png")
    metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0])
    planned = [(str(tmp_path / "scene.npy"), out)]
    done, errors = demo.run_images(predictor, metadata, "semantic", planned, 10**6)
    assert (done, errors) == (1, [])
    assert cv2.imread(out).shape[:2] == (40, 56)
