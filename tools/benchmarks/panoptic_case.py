"""A synthetic COCO-style panoptic case: ground truth and an imperfect prediction, on disk as
panopticapi reads them and in memory as a model gives them."""

from __future__ import annotations

import json
import os
from typing import Dict, List, Tuple

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from PIL import Image

from maskformer.data.io import panoptic_ids_to_rgb


def synthetic_case(rng, h: int, w: int, segments: int, things: List[int], stuff: List[int]):
    """Ground truth (stuff columns, thing rectangles, some crowds, 2% VOID) and a prediction
    (shifted / relabelled / missed segments plus extras): (H, W) id maps and segment lists."""
    ids = np.zeros((h, w), np.int64)
    new = iter(rng.choice(np.arange(1, 1 << 24), size=segments + 8, replace=False).tolist())
    gt_segments = []
    n_stuff = max(1, segments // 5)
    edges = np.linspace(0, w, n_stuff + 1).astype(int)
    for left, right in zip(edges[:-1], edges[1:]):
        ids[:, left:right] = i = next(new)
        gt_segments.append({"id": i, "category_id": int(rng.choice(stuff)), "iscrowd": 0})
    for _ in range(segments - n_stuff):
        y, x = rng.integers(0, h - 20), rng.integers(0, w - 20)
        ids[y : y + rng.integers(10, 80), x : x + rng.integers(10, 80)] = i = next(new)
        crowd = int(rng.random() < 0.05)
        gt_segments.append({"id": i, "category_id": int(rng.choice(things)), "iscrowd": crowd})
    ids[rng.random((h, w)) < 0.02] = 0
    for s in gt_segments:
        s["area"] = int((ids == s["id"]).sum())
    gt_segments = [s for s in gt_segments if s["area"] > 0]
    pred, pred_segments = np.zeros_like(ids), []
    for k, s in enumerate(gt_segments, start=1):
        if rng.random() < 0.1:
            continue
        mask = np.roll(ids == s["id"], int(rng.integers(-4, 5)), axis=int(rng.integers(0, 2)))
        c = s["category_id"]
        if rng.random() < 0.1:
            c = int(rng.choice(things if c in things else stuff))
        pred[mask] = k
        pred_segments.append({"id": k, "category_id": c})
    for k in range(len(gt_segments) + 1, len(gt_segments) + 4):
        y, x = rng.integers(0, h - 20), rng.integers(0, w - 20)
        pred[y : y + 15, x : x + 15] = k
        pred_segments.append({"id": k, "category_id": int(rng.choice(things))})
    present = set(np.unique(pred).tolist())
    return ids, gt_segments, pred, [s for s in pred_segments if s["id"] in present]


def write_dataset(
    root: str,
    *,
    images: int,
    size: Tuple[int, int],
    segments: int,
    categories: int,
    dataset_name: str,
) -> Dict:
    """`images` synthetic cases (`synthetic_case`) written under `root` as panopticapi reads
    them (PNGs and JSON of ground truth and prediction), with the ground truth registered as
    `dataset_name`'s panoptic metadata.

    Returns:
        "files": the paths of "gt", "pred", "gt.json", "pred.json"; "cats": the categories;
        "records": the dataset dicts the test loader maps (Detectron2's COCO panoptic fields);
        "predictions": per image, a model's output {"panoptic_seg": (ids, segments_info)}.
    """
    num_things = categories * 80 // 133  # COCO's share of thing categories
    cats = [
        {"id": c, "name": f"cat{c}", "isthing": int(c <= num_things), "color": [0, 0, 0]}
        for c in range(1, categories + 1)
    ]
    things = [c["id"] for c in cats if c["isthing"]]
    stuff = [c["id"] for c in cats if not c["isthing"]]
    files = {k: os.path.join(root, k) for k in ("gt", "pred", "gt.json", "pred.json")}
    anns, predictions = {"gt": [], "pred": []}, []
    for kind in ("gt", "pred"):
        os.makedirs(files[kind])
    rng = np.random.default_rng(1)
    for i in range(images):
        gt_ids, gt_segments, pred, pred_segments = synthetic_case(
            rng, *size, segments, things, stuff
        )
        for kind, ids, info in (("gt", gt_ids, gt_segments), ("pred", pred, pred_segments)):
            Image.fromarray(panoptic_ids_to_rgb(ids)).save(os.path.join(files[kind], f"{i}.png"))
            anns[kind].append({"image_id": i, "file_name": f"{i}.png", "segments_info": info})
        # A model's map: int32 ids 1, 2, ... (maskformer.modeling.postprocessing).
        ids = torch.from_numpy(pred.astype(np.int32))
        predictions.append({"panoptic_seg": (ids, pred_segments)})
    for kind in ("gt", "pred"):
        with open(files[kind + ".json"], "w") as f:
            json.dump({"annotations": anns[kind], "categories": cats, "images": []}, f)
    MetadataCatalog.get(dataset_name).set(panoptic_json=files["gt.json"], panoptic_root=files["gt"])
    records = [
        {"image_id": a["image_id"], "segments_info": a["segments_info"],
         "pan_seg_file_name": os.path.join(files["gt"], a["file_name"])}
        for a in anns["gt"]
    ]  # fmt: skip
    return {"files": files, "cats": cats, "records": records, "predictions": predictions}
