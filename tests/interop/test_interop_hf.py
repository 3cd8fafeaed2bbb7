"""Hugging Face MaskFormer <-> ours: converted weights give the same class and mask logits and
the same semantic maps, in both directions, for the Swin and ResNet variants."""

import json
import os

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from torch import nn
from transformers import (
    MaskFormerConfig,
    MaskFormerForInstanceSegmentation,
    MaskFormerImageProcessor,
    MaskFormerSwinConfig,
    ResNetConfig,
)

from maskformer import get_maskformer_cfg
from maskformer.checkpoint import MaskFormerCheckpointer
from maskformer.interop.hf import (
    UnsupportedConversionError,
    hf_config_from_maskformer_cfg,
    hf_to_maskformer,
    maskformer_cfg_from_hf_config,
    maskformer_to_hf,
)
from maskformer.modeling import semantic_inference
from tests.common import (
    CONFIG_DIR,
    TINY_SWIN_OPTS,
    assert_same_labels,
    cfg_opts,
    randomize_,
    tiny_cfg,
)
from tests.scripts import load_script

STAGES = ["stage1", "stage2", "stage3", "stage4"]
# A tiny bottleneck ResNet shaped like R50 (3, 4, 6, 3 blocks), 1/4 of its width.
TINY_R50_OPTS = [
    "MODEL.RESNETS.DEPTH", 50,
    "MODEL.RESNETS.WIDTH_PER_GROUP", 16,
    "MODEL.RESNETS.STEM_OUT_CHANNELS", 16,
    "MODEL.RESNETS.NORM", "FrozenBN",
]  # fmt: skip


# An image that needs no padding: HF's model does not pad, ours pads to a multiple of 32.
IMAGE = torch.randint(0, 256, (3, 64, 96), generator=torch.Generator().manual_seed(0)).float()


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _hf_model(backbone: str) -> MaskFormerForInstanceSegmentation:
    if backbone == "swin":
        bb = MaskFormerSwinConfig(
            embed_dim=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], window_size=7,
            drop_path_rate=0.0, out_features=STAGES,
        )  # fmt: skip
    else:
        bb = ResNetConfig(
            embedding_size=16, hidden_sizes=[64, 128, 256, 512], depths=[3, 4, 6, 3],
            layer_type="bottleneck", downsample_in_bottleneck=backbone == "resnet-stride-in-1x1",
            out_features=STAGES,
        )  # fmt: skip
    decoder = {
        "model_type": "detr",
        "d_model": 32,
        "decoder_layers": 3,
        "decoder_attention_heads": 4,
        "encoder_attention_heads": 4,
        "decoder_ffn_dim": 64,
        "num_queries": 8,
    }
    config = MaskFormerConfig(
        backbone_config=bb,
        decoder_config=decoder,
        fpn_feature_size=32,
        mask_feature_size=32,
        num_labels=5,
    )
    torch.manual_seed(0)
    hf = randomize_(MaskFormerForInstanceSegmentation(config), seed=1).eval()
    pixels = _hf_pixels()
    _make_queries_disagree(
        lambda: hf(pixel_values=pixels), hf.class_predictor, hf.mask_embedder.get_submodule("2.0")
    )
    return hf


def _make_queries_disagree(run, class_head: nn.Linear, mask_head: nn.Linear) -> None:
    """Re-centre the class and mask-embedding heads so that the queries disagree.

    A randomly initialised decoder makes all queries nearly alike (their class logits vary by
    ~0.01), so one class would win every pixel and comparing semantic maps would prove little.
    Subtracting each head's mean output over the queries of IMAGE (through the bias) and
    amplifying the rest gives the queries different classes and masks, and the maps several
    classes. Both implementations then get these weights by conversion.
    """
    outputs = {}
    hooks = [
        head.register_forward_hook(lambda m, i, out, key=key: outputs.__setitem__(key, out))
        for key, head in (("class", class_head), ("mask", mask_head))
    ]
    with torch.no_grad():
        run()
        for hook in hooks:
            hook.remove()
        for key, head, scale in (("class", class_head, 10.0), ("mask", mask_head, 10.0)):
            mean = outputs[key].reshape(-1, head.out_features).mean(0)
            head.weight *= scale
            head.bias.copy_(scale * (head.bias - mean))


def _hf_pixels() -> torch.Tensor:
    """IMAGE as HF's image processor prepares it (rescale, ImageNet mean/std; no resize)."""
    processor = MaskFormerImageProcessor(do_resize=False)
    image = IMAGE.permute(1, 2, 0).numpy().astype(np.uint8)
    return processor(image, return_tensors="pt")["pixel_values"]


def _compare(ours, hf, check_spread=True):
    """Largest |difference| of class logits and mask logits on IMAGE (with `check_spread`, also
    checks that the predictions vary and that the semantic maps of both agree)."""
    with torch.no_grad():
        images = ours.preprocess_image([{"image": IMAGE}])
        # Same preprocessing: our normalisation (PIXEL_MEAN/STD) is HF's processor's, up to
        # float rounding; both models then get the very same tensor.
        torch.testing.assert_close(images.tensor, _hf_pixels(), rtol=0, atol=1e-5)
        theirs = hf(pixel_values=images.tensor)
        mine = ours.sem_seg_head(ours.backbone(images.tensor))
        their_map = MaskFormerImageProcessor().post_process_semantic_segmentation(theirs)[0]
        my_scores = semantic_inference(mine["pred_logits"][0], mine["pred_masks"][0])
        their_scores = semantic_inference(
            theirs.class_queries_logits[0], theirs.masks_queries_logits[0]
        )
        my_map = my_scores.argmax(0)
    logits = (mine["pred_logits"] - theirs.class_queries_logits).abs().max().item()
    masks = (mine["pred_masks"] - theirs.masks_queries_logits).abs().max().item()
    # Not a degenerate comparison: the predictions vary over queries, pixels and classes.
    if check_spread:
        assert mine["pred_logits"].std(1).min() > 1e-3 and mine["pred_masks"].std() > 0.1
        assert my_map.unique().numel() >= 2
        # Labels agree wherever the two implementations' scores do not tie within their
        # float-rounding difference.
        score_diff = (my_scores - their_scores).abs().max().item()
        assert_same_labels(their_map, my_scores, score_diff)
    return logits, masks


@pytest.mark.parametrize("backbone", ["swin", "resnet", "resnet-stride-in-1x1"])
def test_hf_weights_give_the_same_predictions(backbone):
    hf = _hf_model(backbone)
    overrides = maskformer_cfg_from_hf_config(hf.config.to_dict())
    cfg = get_maskformer_cfg(
        os.path.join(CONFIG_DIR, "ade20k/maskformer_R50.yaml"),
        ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", *cfg_opts(overrides)],
    )
    ours = build_model(cfg).eval()
    ours.load_state_dict(hf_to_maskformer(hf.state_dict()), strict=True)
    logits, masks = _compare(ours, hf)
    print(f"{backbone}: max |logit diff| {logits:.2e}, max |mask diff| {masks:.2e}")
    assert logits < 1e-4 and masks < 1e-4
    # The comparison sees a mix-up: keys and values of one attention layer swapped.
    state = hf_to_maskformer(hf.state_dict())
    key = "sem_seg_head.predictor.transformer.decoder.layers.0.multihead_attn.in_proj_weight"
    q, k, v = state[key].chunk(3)
    state[key] = torch.cat([q, v, k])
    ours.load_state_dict(state)
    assert max(_compare(ours, hf, check_spread=False)) > 1e-3


def test_hf_save_pretrained_files_load_through_the_checkpointer(tmp_path):
    # Files use the other spelling of the decoder's names (out_proj, fc1) than the modules.
    hf = _hf_model("swin")
    hf.save_pretrained(tmp_path)
    cfg = get_maskformer_cfg(
        os.path.join(CONFIG_DIR, "ade20k/maskformer_R50.yaml"),
        ["MODEL.DEVICE", "cpu", *cfg_opts(maskformer_cfg_from_hf_config(hf.config.to_dict()))],
    )
    ours = build_model(cfg).eval()
    checkpointer = MaskFormerCheckpointer(ours, strict=True)
    checkpointer.load(str(tmp_path / "model.safetensors"))
    assert checkpointer.last_report.layout == "huggingface"
    logits, masks = _compare(ours, hf)
    assert logits < 1e-4 and masks < 1e-4


@pytest.mark.parametrize("backbone", ["swin", "resnet"])
def test_ours_to_hf_round_trip(tmp_path, backbone):
    from safetensors.torch import save_file

    cfg = tiny_cfg(*(TINY_SWIN_OPTS if backbone == "swin" else TINY_R50_OPTS))
    torch.manual_seed(0)
    ours = randomize_(build_model(cfg), seed=2).eval()
    predictor = ours.sem_seg_head.predictor
    _make_queries_disagree(
        lambda: ours([{"image": IMAGE}]), predictor.class_embed, predictor.mask_embed.layers[2]
    )
    state = maskformer_to_hf(ours.state_dict())
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(hf_config_from_maskformer_cfg(cfg)))
    hf, info = MaskFormerForInstanceSegmentation.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info  # nothing missing, unexpected or mismatched
    logits, masks = _compare(ours, hf.eval())
    print(f"{backbone} (ours -> HF): max |logit diff| {logits:.2e}, max |mask diff| {masks:.2e}")
    assert logits < 1e-4 and masks < 1e-4
    back = hf_to_maskformer(hf.state_dict())
    mine = ours.state_dict()
    assert set(back) == set(mine)
    assert all(torch.equal(back[k], mine[k]) for k in mine)


def test_what_hf_cannot_express_is_refused_by_name():
    r101c = get_maskformer_cfg(os.path.join(CONFIG_DIR, "ade20k/maskformer_R101c.yaml"))
    with pytest.raises(UnsupportedConversionError, match="DeepLab"):
        hf_config_from_maskformer_cfg(r101c)
    panoptic = get_maskformer_cfg(
        os.path.join(CONFIG_DIR, "coco-panoptic/maskformer_panoptic_R50.yaml")
    )
    with pytest.raises(UnsupportedConversionError, match="TransformerEncoderPixelDecoder"):
        hf_config_from_maskformer_cfg(panoptic)
    enc = tiny_cfg(
        "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "TransformerEncoderPixelDecoder",
        "MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE", "transformer_encoder",
        "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 1,
    )  # fmt: skip
    model = build_model(enc)
    with pytest.raises(UnsupportedConversionError, match="pixel_decoder.input_proj"):
        maskformer_to_hf(model.state_dict())


def _load_tool():
    return load_script("tools/convert_hf_maskformer.py")


def test_conversion_tool_both_ways(tmp_path):
    tool = _load_tool()
    hf = _hf_model("resnet")
    hf.save_pretrained(tmp_path / "hf")
    tool.main(
        ["to-maskformer", str(tmp_path / "hf"), str(tmp_path / "model.pth"),
         "--config-out", str(tmp_path / "maskformer_hf.yaml")]
    )  # fmt: skip
    cfg = get_maskformer_cfg(str(tmp_path / "maskformer_hf.yaml"), ["MODEL.DEVICE", "cpu"])
    assert cfg.MODEL.RESNETS.DEPTH == 50 and cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == 5
    ours = build_model(cfg).eval()
    MaskFormerCheckpointer(ours, strict=True).load(str(tmp_path / "model.pth"))
    logits, masks = _compare(ours, hf)
    assert logits < 1e-4 and masks < 1e-4

    tool.main(
        ["to-hf", "--config-file", str(tmp_path / "maskformer_hf.yaml"),
         "--weights", str(tmp_path / "model.pth"), str(tmp_path / "back")]
    )  # fmt: skip
    again = MaskFormerForInstanceSegmentation.from_pretrained(tmp_path / "back").eval()
    logits, masks = _compare(ours, again)
    assert logits < 1e-4 and masks < 1e-4
