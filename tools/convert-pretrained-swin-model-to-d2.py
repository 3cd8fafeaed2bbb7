#!/usr/bin/env python
"""Convert an official Swin Transformer ImageNet checkpoint to a Detectron2 .pkl.

    wget https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth
    python tools/convert-pretrained-swin-model-to-d2.py swin_tiny_patch4_window7_224.pth \\
        swin_tiny_patch4_window7_224.pkl

The configs/ade20k/swin/*.yaml files expect swin_{tiny,small}_patch4_window7_224.pkl and
swin_{base,large}_patch4_window12_384_22k.pkl. The input is read with
`torch.load(weights_only=True)`; the output holds only numpy arrays (unlike the official tool's,
which pickles torch tensors and so cannot be read safely), without the classifier head, the final
norm and the attention-mask buffers; its names are matched to `backbone.*` when loaded.
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
    p.add_argument("input", help="official Swin checkpoint (.pth, {'model': state dict})")
    p.add_argument("output", help="Detectron2 .pkl to write")
    args = p.parse_args(argv)
    from maskformer.checkpoint import read_checkpoint
    from maskformer.interop.imagenet import swin_imagenet_to_d2
    from maskformer.utils import write_bytes_atomically

    converted = swin_imagenet_to_d2(read_checkpoint(args.input)["model"])
    write_bytes_atomically(args.output, pickle.dumps(converted))
    print(f"wrote {len(converted['model'])} arrays to {args.output}")


if __name__ == "__main__":
    main()
