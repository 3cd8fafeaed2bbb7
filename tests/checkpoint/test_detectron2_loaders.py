"""Published model-zoo pickles through Detectron2's own loaders: DetectionCheckpointer and
DefaultPredictor give the model the file describes (the heads rename the published names). A
pickle Detectron2 cannot read (no "__author__") is refused by it, loudly, and read by
MaskFormerCheckpointer: importing maskformer does not change Detectron2's loader."""

import pickle

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model

from maskformer.checkpoint import MaskFormerCheckpointer
from tests.common import randomize_, tiny_cfg

ENCODER_OPTS = (
    "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "TransformerEncoderPixelDecoder",
    "MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE", "transformer_encoder",
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 1,
)  # fmt: skip


def _cfg(*opts, config_file=None):
    return tiny_cfg("INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 96, *opts,
                    config_file=config_file)  # fmt: skip


def _published_pickle(path, model, *, author, protocol):
    """A model-zoo file: latin-1 pickle of numpy arrays, pixel decoder under `sem_seg_head.`."""
    state = {
        k.replace("sem_seg_head.pixel_decoder.", "sem_seg_head."): v.numpy()
        for k, v in model.state_dict().items()
    }
    assert "sem_seg_head.adapter_1.weight" in state and "sem_seg_head.mask_features.weight" in state
    assert not any(".pixel_decoder." in k for k in state)
    data = {"model": state}
    if author is not None:
        data["__author__"] = author
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=protocol)
    return str(path)


@pytest.fixture(
    scope="module",
    params=[
        ((), None),
        (ENCODER_OPTS, None),
        (("MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 5), "ade20k/per_pixel_baseline_plus_R50.yaml"),
    ],
    ids=["maskformer", "encoder-pixel-decoder", "per-pixel-plus"],
)
def source(request):
    opts, config_file = request.param
    cfg = _cfg(*opts, config_file=config_file)
    torch.manual_seed(0)
    return cfg, randomize_(build_model(cfg).eval(), seed=3)


def _assert_loaded(target, model):
    expected = model.state_dict()
    assert sorted(target.state_dict()) == sorted(expected)
    assert [k for k, v in target.state_dict().items() if not torch.equal(v, expected[k])] == []


@pytest.mark.parametrize("protocol", [2, 4])
def test_detection_checkpointer_loads_every_tensor(tmp_path, source, protocol):
    cfg, model = source
    path = _published_pickle(
        tmp_path / "model_final.pkl", model, author="Detectron2 Model Zoo", protocol=protocol
    )
    torch.manual_seed(1)
    target = build_model(cfg).eval()
    assert DetectionCheckpointer(target).load(path) is not None
    _assert_loaded(target, model)


def test_unsigned_pickle_is_refused_by_detectron2_and_read_by_ours(tmp_path, source):
    cfg, model = source
    path = _published_pickle(tmp_path / "model_final.pkl", model, author=None, protocol=2)
    torch.manual_seed(1)
    target = build_model(cfg).eval()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match="Unsupported type found in checkpoint"):
        DetectionCheckpointer(target).load(path)
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())
    MaskFormerCheckpointer(target).load(path)
    _assert_loaded(target, model)


@pytest.mark.parametrize("protocol", [2, 4])
def test_default_predictor_equals_the_original_model(tmp_path, source, protocol):
    cfg, model = source
    path = _published_pickle(
        tmp_path / "model_final.pkl", model, author="Detectron2 Model Zoo", protocol=protocol
    )
    image = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    cfg = cfg.clone()
    cfg.MODEL.WEIGHTS = path
    got = DefaultPredictor(cfg)(image)["sem_seg"]
    # The original model on the input DefaultPredictor gives it (resized, in INPUT.FORMAT).
    image_in = image[:, :, ::-1] if cfg.INPUT.FORMAT == "RGB" else image
    resized = DefaultPredictor(cfg).aug.get_transform(image).apply_image(image_in)
    tensor = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
    with torch.no_grad():
        expected = model([{"image": tensor, "height": 70, "width": 90}])[0]["sem_seg"]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_current_layout_loads_unchanged(tmp_path, source):
    cfg, model = source
    torch.manual_seed(2)
    target = build_model(cfg).eval()
    result = target.load_state_dict(model.state_dict(), strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    expected = model.state_dict()
    assert [k for k, v in target.state_dict().items() if not torch.equal(v, expected[k])] == []
