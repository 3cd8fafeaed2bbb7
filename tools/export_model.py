#!/usr/bin/env python
"""Export MaskFormer's network, images -> (class logits, mask logits), at a fixed input size.

    python tools/export_model.py --config-file configs/ade20k/maskformer_R50.yaml \\
        --format onnx --size 512 512 --output maskformer_R50.onnx \\
        --opts MODEL.WEIGHTS model_final_d8dbeb.pkl  # the config's model, MODEL_ZOO.md

With --dynamic (ONNX) the file takes images of any size: what the predictor's and the
demo's onnxruntime backend need (`--backend onnxruntime maskformer_R50.onnx`).

Formats: "pt2", a `torch.export` program (`torch.export.load(path).module()(images)`), and
"onnx" (needs `onnx` and `onnxscript`; inputs "images", outputs "pred_logits" and "pred_masks").
The input is a (B, 3, H, W) float image in the model's channel order (INPUT.FORMAT), 0-255
(normalised inside) or, with --normalized-input, already normalised. The mask logits are at a
quarter of the input padded to MODEL.MASK_FORMER.SIZE_DIVISIBILITY; `maskformer.modeling.
postprocessing` turns both outputs into semantic, panoptic or instance results.

Weights that leave a tensor of the model random (or no weights) are refused unless
--allow-random-weights. Exit status 2 and one line for config, checkpoint or argument errors.
After exporting, the exported model is run on a random image and compared with the eager model
(the ONNX file with onnxruntime, if installed); the maximum differences are printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Dict

# torch, Detectron2 and maskformer are imported after the arguments are parsed: --help and
# argument errors answer at once.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--format", choices=["pt2", "onnx"], required=True)
    p.add_argument("--output", required=True, help="file to write (.pt2 or .onnx)")
    p.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--normalized-input", action="store_true", help="input normalised already")
    p.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="export even if MODEL.WEIGHTS is empty or leaves tensors of the model random",
    )
    p.add_argument(
        "--dynamic",
        action="store_true",
        help="onnx: any height and width (what the onnxruntime backend of the predictor and "
        "demo needs for images of any size)",
    )
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides")
    return p.parse_args(argv)


def run_exported(fmt: str, path: str, images):
    """Outputs of the exported file on `images`, or None if its runtime is not installed."""
    import torch

    if fmt == "pt2":
        return torch.export.load(path).module()(images)
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return [torch.from_numpy(o) for o in session.run(None, {"images": images.numpy()})]


def main(argv=None) -> Dict[str, float]:
    """Export; returns the largest differences between the exported and the eager model.

    Raises:
        SetupError: the config, the weights or the arguments do not give a trained model.
    """
    args = parse_args(argv)
    if args.dynamic and args.format != "onnx":
        raise SetupError("--dynamic: ONNX exports only (--format onnx)")
    # Detectron2 and fvcore script functions with torch.jit when imported: a deprecation in
    # their code that a user of this tool cannot act on.
    warnings.filterwarnings(
        "ignore", message="`torch.jit.script` is deprecated", category=FutureWarning
    )
    import torch

    from maskformer.export import MaskFormerLogits, export_onnx, export_program
    from maskformer.utils import write_atomically

    cfg, model = _trained_model(args)
    module = MaskFormerLogits(model, normalize=not args.normalized_input)
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


class SetupError(RuntimeError):
    """Nothing was exported: a config, checkpoint or argument problem, in one line."""


def _trained_model(args):
    import yaml
    from detectron2.modeling import build_model

    from maskformer import get_maskformer_cfg
    from maskformer.checkpoint import (
        CheckpointError,
        MaskFormerCheckpointer,
        UntrainedModelError,
    )
    from maskformer.config import ConfigKeyError, UnsafeConfigError
    from maskformer.modeling.inference_transforms import optimize_from_config

    try:
        cfg = get_maskformer_cfg(args.config_file, ["MODEL.DEVICE", "cpu", *args.opts])
        model = build_model(cfg)
        if cfg.MODEL.WEIGHTS:
            # Refused before loading, so that Detectron2's list of the tensors the file lacks
            # does not precede the one-line refusal.
            checkpointer = MaskFormerCheckpointer(
                model,
                strict=cfg.MODEL.WEIGHTS_STRICT,
                require_trained=not args.allow_random_weights,
            )
            checkpointer.load(cfg.MODEL.WEIGHTS)
        elif not args.allow_random_weights:
            raise SetupError(
                "MODEL.WEIGHTS is empty: the exported network would have random weights "
                "(--opts MODEL.WEIGHTS file, or --allow-random-weights)"
            )
    except UntrainedModelError as e:
        raise SetupError(f"{' '.join(str(e).split())}; or --allow-random-weights") from None
    except (CheckpointError, ConfigKeyError, UnsafeConfigError, FileNotFoundError) as e:
        raise SetupError(" ".join(str(e).split())) from None
    except yaml.YAMLError as e:
        message = " ".join(str(e).split())
        raise SetupError(f"{args.config_file}: not valid YAML ({message})") from None
    # MODEL.MASK_FORMER.TEST.OPTIMIZE; the exported weights are stored contiguous anyway.
    optimize_from_config(model, cfg, channels_last=False)
    return cfg, model


if __name__ == "__main__":
    try:
        main()
    except SetupError as e:
        print(f"export_model: error: {e}", file=sys.stderr)
        sys.exit(2)
