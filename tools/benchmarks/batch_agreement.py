#!/usr/bin/env python
"""How often an image predicted alone and in a batch with a larger image get the same label.

    python tools/benchmarks/batch_agreement.py \\
        --config-file configs/quickstart/maskformer_R18_quickstart.yaml [--pairs 4] \\
        [--dataset NAME] --opts MODEL.WEIGHTS output/quickstart/model_final.pth

In a batch, every image is padded to the largest one; the padding enters the convolutions near
the border and the attention of the transformer (neither is masked, as in the official code), so
the smaller image's output changes. Takes 2 x --pairs images of the dataset at the network
resolution and pairs the smallest with the largest, and so on; prints, per pair, the share of
the smaller image's pixels whose semantic label is the same alone and batched, then the mean
and the minimum.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--pairs", type=int, default=4, help="image pairs to compare (default 4)")
    p.add_argument("--dataset", help="registered dataset to take images from (DATASETS.TEST[0])")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config KEY VALUE pairs")
    return p.parse_args(argv)


def agreement(model, small, large) -> float:
    """Share of `small`'s pixels labelled the same alone and batched with `large`.

    Args:
        small, large: (3, h, w) float images in the model's channel order, `large` larger.
    """
    import torch

    from maskformer.modeling.postprocessing import semantic_labels

    def inputs(img):
        return {"image": img, "height": img.shape[1], "width": img.shape[2]}

    with torch.no_grad():
        alone = semantic_labels(model([inputs(small)])[0])
        batched = semantic_labels(model([inputs(small), inputs(large)])[0])
    return float((alone == batched).float().mean())


def main(argv: Optional[Sequence[str]] = None) -> List[float]:
    args = parse_args(argv)
    import numpy as np
    import torch
    from detectron2.data import DatasetCatalog
    from detectron2.data import transforms as T
    from detectron2.modeling import build_model

    from maskformer.checkpoint import MaskFormerCheckpointer
    from maskformer.data.datasets import register_described_datasets
    from maskformer.data.io import read_image
    from tools.benchmarks import common

    register_described_datasets()

    cfg = common.load_cfg(args.config_file, device="cpu", opts=args.opts)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    MaskFormerCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    dataset = args.dataset or cfg.DATASETS.TEST[0]
    resize = T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    images = []
    for d in DatasetCatalog.get(dataset)[: 2 * args.pairs]:
        img = read_image(d["file_name"], cfg.INPUT.FORMAT)
        img = resize.get_transform(img).apply_image(img)
        images.append(torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1))).float())
    if len(images) < 2:
        sys.exit(f"dataset {dataset}: {len(images)} image(s); pairs need at least 2")
    images.sort(key=lambda x: x.shape[1] * x.shape[2])
    shares = []
    for i in range(min(args.pairs, len(images) // 2)):
        # The i-th smallest image with the i-th largest one.
        small, large = images[i], images[-1 - i]
        share = agreement(model, small, large)
        shares.append(share)
        print(
            f"pair {i}: {tuple(small.shape[1:])} with {tuple(large.shape[1:])}: "
            f"{100 * share:.2f}% of pixels agree"
        )
    print(common.machine_line(torch.device("cpu")))
    print(
        f"{os.path.relpath(args.config_file)}, {cfg.MODEL.WEIGHTS}, {dataset}: "
        f"mean {100 * sum(shares) / len(shares):.2f}%, min {100 * min(shares):.2f}% "
        f"({len(shares)} pairs)"
    )
    return shares


if __name__ == "__main__":
    main()
