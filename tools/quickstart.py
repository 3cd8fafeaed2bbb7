#!/usr/bin/env python
"""Train and evaluate MaskFormer on the generated quickstart dataset, then draw a few predictions.

    python tools/quickstart.py [--output-dir output/quickstart] [KEY VALUE ...]

The dataset (coloured, textured shapes on clutter; see maskformer/data/datasets/quickstart.py)
is generated once into $MASKFORMER_CACHE. Training uses the same code path as the real recipes
(`train_net.Trainer`), at a size that finishes in minutes on a laptop CPU. At the end it writes
`overlays/*.png` (image | prediction | ground truth) and prints the validation mIoU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# torch, Detectron2 and maskformer are imported after the arguments are parsed: --help and
# argument errors answer at once.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CONFIG = os.path.join(ROOT, "configs", "quickstart", "maskformer_R18_quickstart.yaml")


def draw_overlays(cfg, model, dataset_name: str, out_dir: str, count: int) -> None:
    """Image | prediction | ground truth, one PNG per validation image."""
    import numpy as np
    import torch
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data import transforms as T
    from detectron2.utils.visualizer import ColorMode, Visualizer

    from maskformer.data.io import read_image, read_label_map, save_image_atomically

    os.makedirs(out_dir, exist_ok=True)
    meta = MetadataCatalog.get(dataset_name)
    resize = T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    model.eval()
    for d in DatasetCatalog.get(dataset_name)[:count]:
        image = read_image(d["file_name"], "RGB")
        h, w = image.shape[:2]
        resized = resize.get_transform(image).apply_image(image)
        x = torch.as_tensor(resized.transpose(2, 0, 1).copy())
        with torch.no_grad():
            pred = model([{"image": x, "height": h, "width": w}])[0]["sem_seg"].argmax(0)
        gt = read_label_map(d["sem_seg_file_name"])
        panels = [image]
        for seg in (pred.cpu().numpy(), gt):
            vis = Visualizer(image, meta, instance_mode=ColorMode.SEGMENTATION)
            panels.append(vis.draw_sem_seg(seg, alpha=0.6).get_image())
        name = os.path.splitext(os.path.basename(d["file_name"]))[0] + ".png"
        path = os.path.join(out_dir, name)
        save_image_atomically(np.concatenate(panels, axis=1), path)


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--output-dir", default=os.path.join(ROOT, "output", "quickstart"))
    p.add_argument("--overlays", type=int, default=6, help="validation images to draw")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = p.parse_args(argv)
    import train_net

    start = time.perf_counter()
    train_args = train_net.default_argument_parser().parse_args(
        ["--config-file", CONFIG, "OUTPUT_DIR", args.output_dir, *args.opts]
    )
    cfg = train_net.setup(train_args)
    trainer = train_net.Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()  # evaluates on DATASETS.TEST at the last iteration
    results = trainer._last_eval_results
    miou = float(results["sem_seg"]["mIoU"])

    overlay_dir = os.path.join(cfg.OUTPUT_DIR, "overlays")
    draw_overlays(cfg, trainer.model, cfg.DATASETS.TEST[0], overlay_dir, args.overlays)
    minutes = (time.perf_counter() - start) / 60
    print(f"\nquickstart: {cfg.SOLVER.MAX_ITER} iterations, {minutes:.1f} min")
    print(f"quickstart: validation mIoU = {miou:.1f} (on {cfg.DATASETS.TEST[0]})")
    print(f"quickstart: overlays (image | prediction | ground truth) in {overlay_dir}")
    print(f"quickstart: checkpoint {os.path.join(cfg.OUTPUT_DIR, 'model_final.pth')}")
    return miou


if __name__ == "__main__":
    main()
