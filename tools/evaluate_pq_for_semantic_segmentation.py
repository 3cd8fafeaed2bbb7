#!/usr/bin/env python
"""PQ, SQ and RQ of saved semantic segmentation predictions, every class treated as stuff.

    python tools/evaluate_pq_for_semantic_segmentation.py --dataset-name ade20k_sem_seg_val \\
        --json-file output/inference/ade20k_sem_seg_val/sem_seg_predictions.json

The JSON is the `sem_seg_predictions.json` that the semantic evaluator writes with
`TEST.EVAL_SEM_SEG_JSON True` (as Detectron2's SemSegEvaluator does: one RLE per image and
predicted class); the ground truth comes from the registered dataset (its label maps
and ignore label). Each class is one segment per image, matched when IoU > 0.5
(maskformer/evaluation/semantic_pq.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from typing import Dict, List

import numpy as np

# Detectron2 and maskformer (and so torch) are imported after the arguments are parsed: --help
# and argument errors answer at once.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def decode_prediction(annotations: List[Dict], shape, id_to_contiguous) -> np.ndarray:
    """One image's per-class RLEs -> (H, W) class ids, -1 where no class was predicted."""
    from pycocotools import mask as mask_util

    pred = np.full(shape, -1, dtype=np.int64)
    for ann in annotations:
        rle = dict(ann["segmentation"])
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
        mask = mask_util.decode(rle).astype(bool)
        if mask.shape != tuple(shape):
            raise ValueError(
                f"{ann['file_name']}: predicted mask is {mask.shape[1]}x{mask.shape[0]} but the "
                f"ground truth is {shape[1]}x{shape[0]}"
            )
        category = ann["category_id"]
        if id_to_contiguous is not None:
            if category not in id_to_contiguous:
                raise KeyError(
                    f"{ann['file_name']}: category_id {category} is not a class of the dataset"
                )
            category = id_to_contiguous[category]
        pred[mask] = category
    return pred


def evaluate(dataset_name: str, predictions: List[Dict]) -> Dict[str, object]:
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from tqdm import tqdm

    from maskformer.data.io import load_sem_seg_label
    from maskformer.evaluation.semantic_pq import stuff_pq_counts, summarize_pq

    meta = MetadataCatalog.get(dataset_name)
    classes = meta.stuff_classes
    ignore_label = meta.ignore_label
    id_to_contiguous = meta.get("stuff_dataset_id_to_contiguous_id")
    if id_to_contiguous is not None:
        id_to_contiguous = {int(k): v for k, v in id_to_contiguous.items()}
    gt_files = {d["file_name"]: d["sem_seg_file_name"] for d in DatasetCatalog.get(dataset_name)}
    by_image: Dict[str, List[Dict]] = defaultdict(list)
    for ann in predictions:
        by_image[ann["file_name"]].append(ann)
    unknown = sorted(set(by_image) - set(gt_files))
    if unknown:
        raise KeyError(
            f"{len(unknown)} predicted images are not in dataset '{dataset_name}', e.g. "
            f"{unknown[0]}; evaluate with the dataset the predictions were made on"
        )
    counts = np.zeros((len(classes), 4))
    for file_name in tqdm(sorted(by_image), desc="PQ", unit="img"):
        gt = load_sem_seg_label(gt_files[file_name])
        pred = decode_prediction(by_image[file_name], gt.shape, id_to_contiguous)
        counts += stuff_pq_counts(pred, gt, len(classes), ignore_label)
    results = summarize_pq(counts, classes)
    results["images"] = len(by_image)
    results["dataset_images"] = len(gt_files)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset-name", required=True, help="a registered semantic dataset")
    parser.add_argument("--json-file", required=True, help="sem_seg_predictions.json")
    parser.add_argument("--output", default="", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    from detectron2.data import DatasetCatalog
    from tabulate import tabulate

    from maskformer.data.datasets import register_described_datasets

    register_described_datasets()  # the built-in ones are registered on import; yours here
    from maskformer.utils import write_text_atomically

    if args.dataset_name not in DatasetCatalog.list():
        print(f"error: dataset '{args.dataset_name}' is not registered", file=sys.stderr)
        return 1
    with open(args.json_file) as f:
        predictions = json.load(f)
    results = evaluate(args.dataset_name, predictions)

    if results["images"] < results["dataset_images"]:
        print(
            f"note: only {results['images']} of {results['dataset_images']} images have predictions"
        )
    rows = [
        [c["name"], 100 * c["PQ"], 100 * c["SQ"], 100 * c["RQ"], c["TP"], c["FP"], c["FN"]]
        for c in results["per_class"]
    ]
    print(tabulate(rows, ["class", "PQ", "SQ", "RQ", "TP", "FP", "FN"], floatfmt=".1f"))
    print()
    print(
        tabulate(
            [["All", 100 * results["PQ"], 100 * results["SQ"], 100 * results["RQ"], results["n"]]],
            ["", "PQ", "SQ", "RQ", "classes"],
            floatfmt=".1f",
        )
    )
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        write_text_atomically(args.output, json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
