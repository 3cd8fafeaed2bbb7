#!/usr/bin/env python
"""Convert a torchvision ImageNet ResNet to a Detectron2 backbone-initialisation .pkl.

    wget https://download.pytorch.org/models/resnet50-0676ba61.pth -O r50.pth
    python tools/convert-torchvision-to-d2.py r50.pth R-50.pkl

then set `MODEL.WEIGHTS: R-50.pkl` with `RESNETS.STRIDE_IN_1X1: False` and the RGB ImageNet
`PIXEL_MEAN`/`PIXEL_STD` (as configs/ade20k/maskformer_R50.yaml does). The input is read with
`torch.load(weights_only=True)`; the output holds only numpy arrays, in Detectron2's model-zoo
format, and its names are matched to `backbone.*` when loaded.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys

# maskformer (and so torch) is imported after the arguments are parsed: --help and argument
# errors answer at once.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("input", help="torchvision ResNet state dict (.pth)")
    p.add_argument("output", help="Detectron2 .pkl to write")
    args = p.parse_args(argv)
    from maskformer.checkpoint import read_checkpoint
    from maskformer.interop.imagenet import torchvision_resnet_to_d2
    from maskformer.utils import write_bytes_atomically

    state = read_checkpoint(args.input)["model"]
    converted = torchvision_resnet_to_d2(state)
    write_bytes_atomically(args.output, pickle.dumps(converted))
    print(f"wrote {len(converted['model'])} arrays to {args.output}")


if __name__ == "__main__":
    main()
