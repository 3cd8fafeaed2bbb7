#!/usr/bin/env python
"""Convert MaskFormer weights between Hugging Face and this project (the official layout).

Hugging Face -> MaskFormer (a model directory with config.json and model.safetensors or
pytorch_model.bin, as `save_pretrained` writes it or as downloaded from the hub):

    python tools/convert_hf_maskformer.py to-maskformer hf_dir/ model.pth \\
        --config-out maskformer_hf.yaml

writes the weights (`{"model": state dict}`, loadable as MODEL.WEIGHTS) and a config file that
builds the matching model (`--base-config` names the file it inherits the dataset and solver
settings from; default configs/ade20k/maskformer_R50.yaml). MODEL.WEIGHTS can also point at the
.safetensors file directly: the checkpointer converts HF weights on the fly.

MaskFormer -> Hugging Face:

    python tools/convert_hf_maskformer.py to-hf \\
        --config-file configs/ade20k/swin/maskformer_swin_tiny.yaml --weights model.pth hf_dir/

writes config.json and model.safetensors for `MaskFormerForInstanceSegmentation.from_pretrained`.

Both directions give the same class and mask logits on the same (normalised) image. HF's
preprocessing (ImageNet mean/std, RGB) is not part of config.json: use models whose PIXEL_MEAN /
PIXEL_STD are the ImageNet RGB ones. HF's semantic post-processing combines classes and masks at
1/4 resolution and resizes the result, the official one resizes the mask logits first; the two
maps can differ at class boundaries.

What HF's MaskFormerForInstanceSegmentation cannot express (to-hf refuses, saying which): the
R101c DeepLab stem, dilated/grouped ResNets, the "+6 Enc" TransformerEncoderPixelDecoder (COCO
and ADE20K panoptic R50/R101 models), predictor encoder layers, pre-norm layers, a forced input
projection with equal widths, non-GroupNorm pixel-decoder norms, and Swin with absolute position
embeddings, without patch norm or with a custom QK_SCALE.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict

# torch, Detectron2 and maskformer are imported after the arguments are parsed: --help and
# argument errors answer at once.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _nested(flat: Dict[str, Any]) -> Dict[str, Any]:
    """{"MODEL.SWIN.EMBED_DIM": 96} -> {"MODEL": {"SWIN": {"EMBED_DIM": 96}}}."""
    out: Dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def to_maskformer(args) -> None:
    import torch
    import yaml

    from maskformer.checkpoint import read_checkpoint
    from maskformer.interop.hf import hf_to_maskformer, maskformer_cfg_from_hf_config
    from maskformer.utils import write_atomically, write_text_atomically

    src = args.source
    weights, config = src, args.hf_config
    if os.path.isdir(src):
        found = [
            os.path.join(src, f) for f in _HF_WEIGHT_FILES if os.path.isfile(os.path.join(src, f))
        ]
        if not found:
            raise FileNotFoundError(f"{src}: no {' or '.join(_HF_WEIGHT_FILES)} in the directory")
        weights, config = found[0], config or os.path.join(src, "config.json")
    state = hf_to_maskformer(read_checkpoint(weights)["model"])
    data = {"model": state, "__author__": "huggingface"}
    write_atomically(args.output, lambda tmp: torch.save(data, tmp))
    print(f"wrote {len(state)} tensors to {args.output}")
    if config and os.path.isfile(config):
        with open(config) as f:
            overrides = maskformer_cfg_from_hf_config(json.load(f))
        text = yaml.safe_dump(_nested(overrides), sort_keys=False)
        if args.config_out:
            base = os.path.relpath(
                args.base_config, os.path.dirname(os.path.abspath(args.config_out))
            )
            write_text_atomically(
                args.config_out, f"# Converted from {config}\n_BASE_: {base}\n{text}"
            )
            print(f"wrote {args.config_out}")
        else:
            print(text)
    elif args.config_out:
        raise FileNotFoundError("--config-out needs the HF config.json (--hf-config)")


def to_hf(args) -> None:
    from detectron2.modeling import build_model
    from safetensors.torch import save_file

    from maskformer import get_maskformer_cfg
    from maskformer.checkpoint import MaskFormerCheckpointer
    from maskformer.interop.hf import hf_config_from_maskformer_cfg, maskformer_to_hf
    from maskformer.utils import write_atomically, write_text_atomically

    cfg = get_maskformer_cfg(args.config_file, ["MODEL.DEVICE", "cpu", *args.opts])
    hf_config = hf_config_from_maskformer_cfg(cfg)  # refuses early what HF cannot express
    model = build_model(cfg)
    MaskFormerCheckpointer(model, strict=True).load(args.weights)
    state = maskformer_to_hf(model.state_dict())
    os.makedirs(args.output_dir, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in state.items()}
    write_atomically(
        os.path.join(args.output_dir, "model.safetensors"), lambda tmp: save_file(tensors, tmp)
    )
    write_text_atomically(
        os.path.join(args.output_dir, "config.json"), json.dumps(hf_config, indent=2)
    )
    print(f"wrote {len(state)} tensors and config.json to {args.output_dir}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("to-maskformer", help="Hugging Face -> MaskFormer")
    a.add_argument("source", help="HF model directory, or its .safetensors / .bin file")
    a.add_argument("output", help=".pth to write")
    a.add_argument("--hf-config", help="HF config.json (default: the one in the directory)")
    a.add_argument("--config-out", help="write a MaskFormer config file for the model here")
    a.add_argument(
        "--base-config",
        default=os.path.join(_REPO, "configs/ade20k/maskformer_R50.yaml"),
        help="the config file --config-out inherits from",
    )
    a.set_defaults(func=to_maskformer)
    b = sub.add_parser("to-hf", help="MaskFormer -> Hugging Face")
    b.add_argument("--config-file", required=True)
    b.add_argument("--weights", required=True, help="MaskFormer checkpoint (.pkl, .pth)")
    b.add_argument("output_dir")
    b.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides")
    b.set_defaults(func=to_hf)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
