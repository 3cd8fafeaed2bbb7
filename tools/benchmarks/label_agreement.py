#!/usr/bin/env python
"""How often an inference path labels a pixel as the plain float32 model does, on your images
with your trained weights.

Every path (tools/benchmarks/paths.py) runs as `MaskFormerPredictor` runs it: the config's
MODEL.WEIGHTS, each image at the network resolution, labels brought to the image's own size
(or --output-size). Prints, per path, the share of pixels whose label equals the reference
path's (default: plain, OPTIMIZE False), mean and worst over the images.

    python tools/benchmarks/label_agreement.py \\
        --config-file configs/ade20k/maskformer_R50.yaml --paths bf16 low-res-labels \\
        --images photo1.jpg photo2.jpg --opts MODEL.WEIGHTS model_final.pth

The agreement depends on the model and the images (how close the winning class scores are), so
measure it on yours: random weights give a near-constant label map, and a figure on it means
nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tools.benchmarks.paths import PATHS  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--images", nargs="+", required=True, metavar="FILE")
    p.add_argument("--paths", nargs="+", choices=list(PATHS), default=["bf16"])
    p.add_argument("--reference", choices=list(PATHS), default="plain")
    p.add_argument("--output-size", type=int, nargs=2, metavar=("H", "W"))
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json", metavar="FILE", help="also write the figures to this JSON file")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config KEY VALUE pairs")
    return p.parse_args(argv)


def predictors(cfg, names: Sequence[str], workdir: str) -> Dict:
    """name -> `MaskFormerPredictor` of that path; "onnxruntime" exports the trained network
    to `workdir` first."""
    import copy

    import torch

    from maskformer.export import MaskFormerLogits, export_onnx
    from maskformer.predictor import MaskFormerPredictor, UntrainedModelError
    from tools.benchmarks.common import path_cfg

    built = {}
    try:
        for name in names:
            if PATHS[name].get("backend") != "onnxruntime":
                built[name] = MaskFormerPredictor.from_config(path_cfg(cfg, name))
                continue
            plain = MaskFormerPredictor.from_config(path_cfg(cfg, "plain")).model
            onnx_file = os.path.join(workdir, "network.onnx")
            example = torch.rand(1, 3, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST) * 255
            export_onnx(MaskFormerLogits(copy.deepcopy(plain)), example, onnx_file, dynamic=True)
            built[name] = MaskFormerPredictor.from_config(
                path_cfg(cfg, name), backend="onnxruntime", model_file=onnx_file
            )
    except UntrainedModelError as e:
        sys.exit(f"label agreement needs trained weights: {e}")
    return built


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    args = parse_args(argv)
    import statistics
    import tempfile

    import torch

    from maskformer.data.io import read_image
    from tools.benchmarks import common

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = common.load_cfg(args.config_file, device="cpu", opts=args.opts)
    names = [args.reference] + [n for n in args.paths if n != args.reference]
    with tempfile.TemporaryDirectory() as workdir:
        run = predictors(cfg, names, workdir)
        agreement = {name: [] for name in names[1:]}
        for path in args.images:
            image = read_image(path, "RGB")
            want = run[args.reference](image, args.output_size).semantic
            for name in agreement:
                got = run[name](image, args.output_size).semantic
                agreement[name].append(float((got == want).double().mean()))
    print(common.machine_line(torch.device("cpu")))
    print(f"config: {args.config_file}; weights {cfg.MODEL.WEIGHTS}; {len(args.images)} images")
    res: Dict[str, float] = {}
    for name, values in agreement.items():
        res[f"{name}_agreement_mean"] = statistics.mean(values)
        res[f"{name}_agreement_min"] = min(values)
        print(
            f"{name:>14}: labels = {args.reference}'s at {res[f'{name}_agreement_mean']:.4%} of "
            f"the pixels (mean of {len(values)} images; worst {res[f'{name}_agreement_min']:.4%})"
        )
    common.write_json(args.json, res)
    return res


if __name__ == "__main__":
    main()
