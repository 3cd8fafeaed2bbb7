"""Miniature copies of the datasets' on-disk layouts: a few tiny images in the real formats.

Each writer takes a root (the $DETECTRON2_DATASETS of the test) and returns what it wrote, so
that tests can compare the prepared and registered data with the raw values.
"""

from __future__ import annotations

import json
import os
import pickle
from typing import Dict, List

import numpy as np
from PIL import Image

H, W = 24, 32  # small and not square


def _image(path: str, seed: int, h: int = H, w: int = W) -> np.ndarray:
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ext = os.path.splitext(path)[1]
    Image.fromarray(image).save(path, **({"quality": 95} if ext == ".jpg" else {}))
    return image


def _blocks(values: List[int], h: int = H, w: int = W, dtype=np.int64) -> np.ndarray:
    """A label map of vertical stripes, one per value, in order."""
    label = np.empty((h, w), dtype=dtype)
    for i, v in enumerate(values):
        label[:, i * w // len(values) : (i + 1) * w // len(values)] = v
    return label


# --- ADE20K-Full, as unzipped from ADE20K_2021_17_01.zip ---------------------------------------


def ade_seg_png(ade_ids: np.ndarray) -> np.ndarray:
    """Encode ADE class ids like ADE20K's *_seg.png: R / 10 * 256 + G = id (B: instances)."""
    rgb = np.zeros((*ade_ids.shape, 3), dtype=np.uint8)
    # R carries id // 256 in its tens; add 0..9 noise to the units, which decoding must drop.
    noise = (np.arange(ade_ids.size).reshape(ade_ids.shape) % 10).astype(np.int64)
    rgb[..., 0] = ade_ids // 256 * 10 + noise
    rgb[..., 1] = ade_ids % 256
    rgb[..., 2] = 7
    return rgb


def write_ade20k_full_raw(root: str, ade_ids: Dict[str, List[int]], size=(H, W)) -> Dict:
    """ADE20K_2021_17_01/{index_ade20k.pkl, images/ADE/<split>/<scene>/X.jpg + X_seg.png}.

    `ade_ids`: file name -> ADE class ids, one stripe each. Returns {file name: ade id map}.
    """
    base = os.path.join(root, "ADE20K_2021_17_01")
    folders, names, written = [], [], {}
    for i, (name, ids) in enumerate(sorted(ade_ids.items())):
        split = "validation" if name.startswith("ADE_val_") else "training"
        folder = f"ADE20K_2021_17_01/images/ADE/{split}/urban/street"
        directory = os.path.join(root, folder)
        _image(os.path.join(directory, name), seed=i, h=size[0], w=size[1])
        id_map = _blocks(ids, *size)
        Image.fromarray(ade_seg_png(id_map)).save(
            os.path.join(directory, name.replace(".jpg", "_seg.png"))
        )
        folders.append(folder)
        names.append(name)
        written[name] = id_map
    with open(os.path.join(base, "index_ade20k.pkl"), "wb") as f:
        pickle.dump({"folder": folders, "filename": names, "objectnames": ["-"] * 3688}, f)
    return written


# --- COCO-Stuff --------------------------------------------------------------------------------


def write_coco_stuff_10k_raw(root: str, labels: Dict[str, Dict[str, np.ndarray]]) -> None:
    """coco/coco_stuff_10k/{imageLists/<split>.txt, images/X.jpg, annotations/X.mat (S)}.

    `labels`: split -> {name: S map (v1.0 indices)}. Written as MATLAB v5 files by scipy.
    """
    import scipy.io

    base = os.path.join(root, "coco", "coco_stuff_10k")
    os.makedirs(os.path.join(base, "imageLists"), exist_ok=True)
    os.makedirs(os.path.join(base, "annotations"), exist_ok=True)
    for split, items in labels.items():
        with open(os.path.join(base, "imageLists", f"{split}.txt"), "w") as f:
            f.write("".join(name + "\n" for name in items))
        for i, (name, s) in enumerate(items.items()):
            _image(os.path.join(base, "images", name + ".jpg"), seed=i, h=s.shape[0], w=s.shape[1])
            scipy.io.savemat(
                os.path.join(base, "annotations", name + ".mat"),
                {"S": s.astype(np.uint16), "names": np.array(["unlabeled"], dtype=object)},
            )


def write_coco_stuff_164k_raw(root: str, labels: Dict[str, Dict[str, np.ndarray]]) -> None:
    """coco/{train2017,val2017}/X.jpg and coco/stuffthingmaps_trainval2017/<split>/X.png."""
    for split, items in labels.items():
        for i, (name, label) in enumerate(items.items()):
            _image(os.path.join(root, "coco", split, name + ".jpg"), seed=i)
            path = os.path.join(root, "coco", "stuffthingmaps_trainval2017", split, name + ".png")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            Image.fromarray(label.astype(np.uint8)).save(path)


# --- Mapillary Vistas v1.2 ---------------------------------------------------------------------


def write_mapillary_vistas(root: str, labels: Dict[str, Dict[str, np.ndarray]], palette) -> None:
    """mapillary_vistas/<split>/{images/X.jpg, labels/X.png (palette PNG of class indices)}."""
    flat = [v for color in palette for v in color] + [0, 0, 0]  # index 65: unlabelled
    for split, items in labels.items():
        for i, (name, label) in enumerate(items.items()):
            _image(os.path.join(root, "mapillary_vistas", split, "images", name + ".jpg"), i)
            im = Image.fromarray(label.astype(np.uint8), mode="P")
            im.putpalette(flat)
            path = os.path.join(root, "mapillary_vistas", split, "labels", name + ".png")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            im.save(path)


# --- Cityscapes --------------------------------------------------------------------------------

# Cityscapes label id -> train id for the classes used here (cityscapesscripts' table).
CITYSCAPES_LABEL_TO_TRAIN = {0: 255, 7: 0, 8: 1, 11: 2, 21: 8, 23: 10, 24: 11, 26: 13}


def write_cityscapes(root: str, label_ids: Dict[str, Dict[str, np.ndarray]]) -> None:
    """cityscapes/leftImg8bit/<split>/<city>/X_leftImg8bit.png and gtFine/<split>/<city>/
    X_gtFine_{labelIds,labelTrainIds,instanceIds}.png + X_gtFine_polygons.json.

    `label_ids`: split -> {"<city>_<seq>_<frame>": label-id map}.
    """
    for split, items in label_ids.items():
        for i, (stem, ids) in enumerate(items.items()):
            city = stem.split("_")[0]
            img_dir = os.path.join(root, "cityscapes", "leftImg8bit", split, city)
            gt_dir = os.path.join(root, "cityscapes", "gtFine", split, city)
            os.makedirs(gt_dir, exist_ok=True)
            h, w = ids.shape
            _image(os.path.join(img_dir, f"{stem}_leftImg8bit.png"), seed=i, h=h, w=w)
            train = np.vectorize(CITYSCAPES_LABEL_TO_TRAIN.get)(ids).astype(np.uint8)
            # Instance ids: label id for stuff, label id * 1000 + k for things (person, car).
            inst = (ids.astype(np.int32) * np.where(np.isin(ids, [24, 26]), 1000, 1)).astype(
                np.uint16
            )
            gt = os.path.join(gt_dir, f"{stem}_gtFine_")
            Image.fromarray(ids.astype(np.uint8)).save(gt + "labelIds.png")
            Image.fromarray(train).save(gt + "labelTrainIds.png")
            Image.fromarray(inst).save(gt + "instanceIds.png")
            with open(gt + "polygons.json", "w") as f:
                json.dump({"imgHeight": h, "imgWidth": w, "objects": []}, f)
