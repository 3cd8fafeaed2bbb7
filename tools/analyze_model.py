#!/usr/bin/env python
"""Parameters and FLOPs of a MaskFormer config at a fixed input size (random weights).

    python tools/analyze_model.py --config-file configs/ade20k/maskformer_R50.yaml

Parameters: `nn.Parameter`s only (FrozenBN statistics and other buffers are not counted), split
into backbone / pixel decoder / transformer decoder / heads (the predictor's query embedding,
input projection, class and mask-embedding heads).

FLOPs: fvcore's count (one multiply-add = one FLOP) through Detectron2's `FlopCountAnalysis`, of
one zero image of INPUT.CROP.SIZE[0] x INPUT.CROP.SIZE[0] (or --size), in eval mode, through the
whole model including the semantic post-processing (the semantic output is switched on, and the
panoptic and instance outputs off, for every config), output at the input size. Attention that
PyTorch runs as one fused op (`scaled_dot_product_attention`, which fvcore does not know) is
counted as its two matrix products.

Comparing with the official figures: the official predictor also computes the class and mask
predictions of every intermediate decoder layer at inference and discards them (~2.2 GFLOPs at
512x512 with 100 queries), and resizes the semantic scores to the output size even when the size
is unchanged; this implementation skips both. "GFLOPs" counts the architecture (the plain
model: the pixel decoder's last convolution applied, then the product with the mask embeddings,
as the paper describes); "as run" counts the model after `optimize_for_inference` (the inference
transforms: that convolution folded into the mask embeddings, frozen batch norm folded).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any, Dict, List

if TYPE_CHECKING:
    import torch

# torch, Detectron2 and maskformer are imported after the arguments are parsed: --help and
# argument errors answer at once.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Parameter groups: name -> qualified-name prefixes.
_PARAM_GROUPS = {
    "backbone": ("backbone.",),
    "pixel decoder": ("sem_seg_head.pixel_decoder.",),
    "transformer decoder": ("sem_seg_head.predictor.transformer.",),
    "heads": ("sem_seg_head.predictor.",),  # the rest of the predictor
}
_FLOP_MODULES = {
    "backbone": "model.backbone",
    "pixel decoder": "model.sem_seg_head.pixel_decoder",
    "predictor": "model.sem_seg_head.predictor",
}


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """FLOPs of `scaled_dot_product_attention(q, k, v)`: q k^T and the weighted sum of v."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(x) for x in inputs[:3])
    *batch, length, dim = q
    source, value_dim = k[-2], v[-1]
    n = 1
    for b in batch:
        n *= b
    return n * length * source * (dim + value_dim)


def parameter_counts(model: torch.nn.Module) -> Dict[str, int]:
    counts: Dict[str, int] = Counter()
    for name, p in model.named_parameters():
        group = next(
            (g for g, prefixes in _PARAM_GROUPS.items() if name.startswith(prefixes)), "other"
        )
        counts[group] += p.numel()
    counts["total"] = sum(p.numel() for p in model.parameters())
    return dict(counts)


def flop_counts(model: torch.nn.Module, size: int) -> Dict[str, Any]:
    import torch
    from detectron2.utils.analysis import FlopCountAnalysis

    image = torch.zeros(3, size, size, device=model.device)
    inputs = [{"image": image, "height": size, "width": size}]
    with torch.no_grad():
        flops = FlopCountAnalysis(model, inputs)
        flops.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
        flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = flops.total()
        by_module = flops.by_module()
    # The tracing wrapper prefixes module names with "model." (the MaskFormer meta-architecture).
    parts = {name: by_module.get(module, 0) for name, module in _FLOP_MODULES.items()}
    parts["post-processing and rest"] = total - sum(parts.values())
    return {"total": total, "parts": parts, "by_operator": dict(flops.by_operator())}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--size", type=int, help="square input size (default: INPUT.CROP.SIZE[0])")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides")
    return p.parse_args(argv)


def main(argv=None) -> Dict[str, Any]:
    args = parse_args(argv)
    import torch
    from detectron2.modeling import build_model

    from maskformer import get_maskformer_cfg
    from maskformer.modeling.inference_transforms import optimize_for_inference
    from maskformer.utils import write_text_atomically

    # The semantic output, whatever the config enables: with random weights no query passes the
    # panoptic/instance thresholds, those outputs then do not depend on the network, and the
    # trace that counts FLOPs drops the whole network (0 FLOPs).
    semantic_only = [
        "MODEL.MASK_FORMER.TEST.SEMANTIC_ON", True,
        "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", False,
        "MODEL.MASK_FORMER.TEST.INSTANCE_ON", False,
    ]  # fmt: skip
    cfg = get_maskformer_cfg(
        args.config_file, ["MODEL.DEVICE", args.device, *semantic_only, *args.opts]
    )
    size = args.size or cfg.INPUT.CROP.SIZE[0]
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    params = parameter_counts(model)
    flops = flop_counts(model, size)
    flops["total_as_run"] = flop_counts(optimize_for_inference(copy.deepcopy(model)), size)["total"]
    print(f"config: {args.config_file}, input {size}x{size}")
    print(f"parameters: {params['total']:,} ({params['total'] / 1e6:.2f} M)")
    for group in _PARAM_GROUPS:
        print(f"  {group:<26} {params.get(group, 0) / 1e6:8.2f} M")
    print(
        f"GFLOPs: {flops['total'] / 1e9:.1f} "
        f"(as run, with the inference transforms: {flops['total_as_run'] / 1e9:.1f})"
    )
    for part, value in flops["parts"].items():
        print(f"  {part:<26} {value / 1e9:8.2f}")
    print(
        "  by operator: " + ", ".join(f"{k} {v / 1e9:.2f}" for k, v in flops["by_operator"].items())
    )
    result = {"config": args.config_file, "size": size, "params": params, "flops": flops}
    if args.json:
        write_text_atomically(args.json, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
