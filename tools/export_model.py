#!/usr/bin/env python
"""Export MaskFormer's network, images -> (class logits, mask logits), at a fixed input size.

    python tools/export_model.py --config-file configs/ade20k/maskformer_R50.yaml \
        --format onnx --size 512 512 --output maskformer_R50.onnx \
        --opts MODEL.WEIGHTS model_final_d8dbeb.pkl

With --dynamic (ONNX) the file takes images of any size: what the predictor's and the
demo's onnxruntime backend need (`--backend onnxruntime maskformer_R50.onnx`).

Formats: "pt2", a `torch.export` program (`torch.export.load(path).module()(images)`), and
"onnx" (needs `onnx` and `onnxscript`; inputs "images", outputs "pred_logits" and "pred_masks").
The input is a (B, 3, H, W) float image in the model's channel order (INPUT.FORMAT), 0-255
(normalised inside) or, with --normalized-input, already normalised. The mask logits are at a
quarter of the input padded to MODEL.MASK_FORMER.SIZE_DIVISIBILITY; `maskformer.modeling.
postprocessing` turns both outputs into semantic, panoptic or instance results.

After exporting, the exported model is run on a random image and compared with the eager model
(the ONNX file with onnxruntime, if installed); the maximum differences are printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detectron2.modeling import build_model  # noqa: E402

from maskformer import get_maskformer_cfg  # noqa: E402
from maskformer.checkpoint import MaskFormerCheckpointer  # noqa: E402
from maskformer.export import MaskFormerLogits, export_onnx, export_program  # noqa: E402
from maskformer.modeling.inference_transforms import optimize_from_config  # noqa: E402
from maskformer.utils import write_atomically  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--format", choices=["pt2", "onnx"], required=True)
    p.add_argument("--output", required=True, help="file to write (.pt2 or .onnx)")
    p.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--normalized-input", action="store_true", help="input normalised already")
    p.add_argument(
        "--dynamic",
        action="store_true",
        help="onnx: any height and width (what the onnxruntime backend of the predictor and "
        "demo needs for images of any size)",
    )
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides")
    return p.parse_args(argv)


def run_exported(fmt: str, path: str, images: torch.Tensor):
    """Outputs of the exported file on `images`, or None if its runtime is not installed."""
    if fmt == "pt2":
        return torch.export.load(path).module()(images)
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return [torch.from_numpy(o) for o in session.run(None, {"images": images.numpy()})]


def main(argv=None) -> Dict[str, float]:
    args = parse_args(argv)
    cfg = get_maskformer_cfg(args.config_file, ["MODEL.DEVICE", "cpu", *args.opts])
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        MaskFormerCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    # MODEL.MASK_FORMER.TEST.OPTIMIZE; the exported weights are stored contiguous anyway.
    optimize_from_config(model, cfg, channels_last=False)
    module = MaskFormerLogits(model, normalize=not args.normalized_input)
    if args.dynamic and args.format != "onnx":
        raise SystemExit("--dynamic: ONNX exports only (--format onnx)")
    images = torch.rand(args.batch, 3, *args.size, generator=torch.Generator().manual_seed(0))
    if not args.normalized_input:
        images = images * 255
    # Exported first, written under a temporary name, renamed: never a half-written file.
    if args.format == "pt2":
        program = export_program(module, images)
        write_atomically(args.output, lambda tmp: torch.export.save(program, tmp))
    else:
        write_atomically(
            args.output, lambda tmp: export_onnx(module, images, tmp, dynamic=args.dynamic)
        )
    print(f"wrote {args.output} ({args.format}, input {tuple(images.shape)})")

    with torch.no_grad():
        expected = module(images)
    got = run_exported(args.format, args.output, images)
    if got is None:
        print("onnxruntime is not installed: the exported model was not checked")
        return {}
    diffs = {
        name: float((g - e).abs().max())
        for name, g, e in zip(("pred_logits", "pred_masks"), got, expected)
    }
    print("max |exported - eager|: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    return diffs


if __name__ == "__main__":
    main()
