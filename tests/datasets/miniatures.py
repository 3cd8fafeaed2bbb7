"""Miniature copies of the datasets' on-disk layouts: a few tiny images in the real formats.

Each writer takes a root (the $DETECTRON2_DATASETS of the test) and returns what it wrote, so
that tests can compare the prepared and registered data with the raw values.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
from typing import Dict, Iterator, List

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


# --- Cityscapes panoptic and instances, from polygon annotations -------------------------------

CITYSCAPES_SIZE = (64, 128)  # H, W: Cityscapes' 1:2 aspect ratio


def cityscapes_box(x0: int, y0: int, x1: int, y1: int) -> List[List[int]]:
    """A rectangle as a Cityscapes polygon; rendered, it covers columns x0..x1 and rows y0..y1."""
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


# Two streets per split, as (label, polygon) lists for `write_cityscapes_annotated`. Every object
# of a thing class has at least 100 pixels (Cityscapes' AP ignores smaller ones).
CITYSCAPES_SCENES = {
    "train": {
        "aachen_000000_000019": [
            ("sky", cityscapes_box(0, 0, 127, 25)),
            ("building", cityscapes_box(0, 8, 60, 40)),
            ("road", cityscapes_box(0, 36, 127, 63)),
            ("car", cityscapes_box(20, 30, 50, 50)),
            ("person", cityscapes_box(70, 20, 80, 50)),
        ],
        "aachen_000001_000019": [
            ("vegetation", cityscapes_box(0, 0, 127, 35)),
            ("sidewalk", cityscapes_box(0, 36, 127, 63)),
            ("rider", cityscapes_box(30, 20, 42, 45)),
            ("bicycle", cityscapes_box(28, 38, 46, 55)),
        ],
    },
    "val": {
        "frankfurt_000000_000294": [
            ("sky", cityscapes_box(0, 0, 127, 25)),
            ("building", cityscapes_box(0, 10, 50, 40)),
            ("road", cityscapes_box(0, 32, 127, 63)),
            ("car", cityscapes_box(55, 30, 85, 50)),
            ("car", cityscapes_box(90, 28, 115, 52)),
            ("person", cityscapes_box(10, 18, 22, 50)),
            ("cargroup", cityscapes_box(116, 36, 127, 56)),  # a crowd
            ("ego vehicle", cityscapes_box(0, 58, 127, 63)),  # void
            ("license plate", cityscapes_box(60, 44, 66, 47)),  # not rendered
        ],
        "frankfurt_000000_000576": [
            ("sky", cityscapes_box(0, 0, 127, 20)),
            ("vegetation", cityscapes_box(64, 5, 127, 40)),
            ("sidewalk", cityscapes_box(0, 41, 127, 63)),
            ("person", cityscapes_box(30, 15, 45, 55)),
            ("car", cityscapes_box(80, 35, 120, 60)),
        ],
    },
}


def random_cityscapes_scene(rng: np.random.Generator, size=CITYSCAPES_SIZE) -> List:
    """Polygons of a street: sky, building, vegetation, sidewalk and road bands, then objects of
    thing classes (some groups, i.e. crowds), an ego-vehicle strip (void) and a licence plate
    (never rendered), in drawing order."""
    h, w = size
    horizon, kerb = int(rng.integers(h // 4, h // 2)), int(rng.integers(h // 2 + 4, h - 12))
    objects = [
        ("sky", cityscapes_box(0, 0, w - 1, horizon)),
        ("building", cityscapes_box(0, 4, int(rng.integers(w // 4, w // 2)), kerb)),
        ("vegetation", cityscapes_box(int(rng.integers(w // 2, w - 20)), 8, w - 1, kerb)),
        ("sidewalk", cityscapes_box(0, kerb - 6, w - 1, kerb)),
        ("road", cityscapes_box(0, kerb + 1, w - 1, h - 1)),
    ]
    for _ in range(int(rng.integers(3, 7))):
        label = str(rng.choice(["car", "person", "rider", "bicycle", "truck"]))
        if rng.random() < 0.15:
            label += "group"
        bw, bh = int(rng.integers(8, 30)), int(rng.integers(8, 24))
        x, y = int(rng.integers(0, w - bw)), int(rng.integers(horizon // 2, h - bh))
        objects.append((label, cityscapes_box(x, y, x + bw, y + bh)))
    objects.append(("ego vehicle", cityscapes_box(0, h - 4, w - 1, h - 1)))
    objects.append(("license plate", cityscapes_box(w // 2, h - 10, w // 2 + 6, h - 7)))
    return objects


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v


def write_cityscapes_annotated(
    root: str, scenes: Dict[str, Dict[str, List]], size=CITYSCAPES_SIZE
) -> None:
    """cityscapes/ as in the official zips, from polygons, then prepared as a user prepares it.

    `scenes`: split -> {"<city>_<seq>_<frame>": [(label name, polygon [[x, y], ...]), ...]},
    drawn in order (later objects in front). Writes leftImg8bit/<split>/<city>/
    X_leftImg8bit.png (random pixels) and gtFine/<split>/<city>/X_gtFine_polygons.json, with the
    label maps of the zip rendered by cityscapesscripts' own drawing code: X_gtFine_labelIds.png
    and X_gtFine_instanceIds.png (16 bit: label id * 1000 + k for each object of a thing class,
    the label id for groups and stuff). Then runs cityscapesscripts' preparation:
    createTrainIdLabelImgs (X_gtFine_labelTrainIds.png) and createPanopticImgs
    (gtFine/cityscapes_panoptic_<split>.json and gtFine/cityscapes_panoptic_<split>/
    X_gtFine_panoptic.png).
    """
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation import createTrainIdLabelImgs
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
    from cityscapesscripts.preparation.json2labelImg import json2labelImg

    base = os.path.join(root, "cityscapes")
    h, w = size
    for split, items in scenes.items():
        for i, (stem, objects) in enumerate(items.items()):
            city = stem.split("_")[0]
            _image(
                os.path.join(base, "leftImg8bit", split, city, f"{stem}_leftImg8bit.png"), i, h, w
            )
            gt = os.path.join(base, "gtFine", split, city, f"{stem}_gtFine_")
            os.makedirs(os.path.dirname(gt), exist_ok=True)
            polygons = [{"label": label, "polygon": polygon} for label, polygon in objects]
            with open(gt + "polygons.json", "w") as f:
                json.dump({"imgHeight": h, "imgWidth": w, "objects": polygons}, f)
            json2labelImg(gt + "polygons.json", gt + "labelIds.png", "ids")
            annotation = Annotation()
            annotation.fromJsonFile(gt + "polygons.json")
            # json2instanceImg draws in 32-bit mode "I", which current Pillow cannot write as
            # PNG; the zip's files are 16-bit.
            instance_ids = np.array(createInstanceImage(annotation, "ids"))
            Image.fromarray(instance_ids.astype(np.uint16)).save(gt + "instanceIds.png")
    with contextlib.redirect_stdout(io.StringIO()), _environment(CITYSCAPES_DATASET=base):
        createTrainIdLabelImgs.main()
        convert2panoptic(os.path.join(base, "gtFine"), setNames=list(scenes))


def read_cityscapes_instance_ids(root: str, split: str, image_id: str) -> np.ndarray:
    """(H, W) int64: the zip's X_gtFine_instanceIds.png of image "<city>_<seq>_<frame>"."""
    city = image_id.split("_")[0]
    path = os.path.join(
        root, "cityscapes", "gtFine", split, city, f"{image_id}_gtFine_instanceIds.png"
    )
    return np.array(Image.open(path)).astype(np.int64)
