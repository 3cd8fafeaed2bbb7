#!/usr/bin/env python
"""Register your own dataset once, for train_net.py, demo/demo.py and the tools.

    python tools/register_dataset.py semantic --name my_train --images DIR --labels DIR \\
        --classes classes.txt [--ignore-label 255] [--image-ext jpg]
    python tools/register_dataset.py panoptic --name my_val --images DIR \\
        --panoptic-masks DIR --panoptic-json FILE [--semantic-labels DIR] [--instances-json FILE]
    python tools/register_dataset.py list
    python tools/register_dataset.py remove my_train

semantic: images (any of .jpg .jpeg .png .bmp .tif .tiff .webp, in subfolders too) and
single-channel PNG label maps of the same relative name, valued 0..K-1 by the line of the class
in classes.txt (one name per line, label 0 first), ignore_label elsewhere.
panoptic: the COCO panoptic format; the classes are the JSON's categories.

The description is written to $MASKFORMER_DATASETS_DIR (default ~/.config/maskformer/datasets)
as <name>.json; every later `import maskformer` registers it. Registering a name again updates
it. Then check the data: python tools/check_dataset.py <name>
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detectron2.data import DatasetCatalog  # noqa: E402

from maskformer.data.datasets import described  # noqa: E402
from maskformer.data.datasets.custom import (  # noqa: E402
    pair_sem_seg_files,
    read_class_list,
    unregister,
)
from maskformer.data.datasets.panoptic import read_panoptic_categories  # noqa: E402


class RegistrationError(ValueError):
    """The arguments do not describe a usable dataset; nothing was written."""


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--datasets-dir",
        default=None,
        help="where descriptions live (default: $MASKFORMER_DATASETS_DIR or "
        "~/.config/maskformer/datasets)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sem = sub.add_parser("semantic", help="a folder of images and a folder of PNG label maps")
    sem.add_argument("--name", required=True, help="dataset name, e.g. my_data_train")
    sem.add_argument("--images", required=True, metavar="DIR")
    sem.add_argument("--labels", required=True, metavar="DIR", help="PNG label maps")
    sem.add_argument("--classes", required=True, metavar="FILE", help="one class name per line")
    sem.add_argument("--ignore-label", type=int, default=255, help="label of unlabelled pixels")
    sem.add_argument(
        "--image-ext", default=None, help="only images with this extension (default: any)"
    )
    pan = sub.add_parser("panoptic", help="COCO panoptic format")
    pan.add_argument("--name", required=True)
    pan.add_argument("--images", required=True, metavar="DIR")
    pan.add_argument("--panoptic-masks", required=True, metavar="DIR", help="the RGB PNGs")
    pan.add_argument("--panoptic-json", required=True, metavar="FILE")
    pan.add_argument(
        "--semantic-labels", metavar="DIR", help="label maps (contiguous ids, things first)"
    )
    pan.add_argument("--instances-json", metavar="FILE", help="COCO instances JSON, for AP")
    sub.add_parser("list", help="the registered descriptions")
    rm = sub.add_parser("remove", help="delete a description")
    rm.add_argument("name")
    return p


def _existing(path: Optional[str], flag: str, folder: bool) -> Optional[str]:
    if path is None:
        return None
    ok = os.path.isdir(path) if folder else os.path.isfile(path)
    if not ok:
        raise RegistrationError(f"{flag} {path}: no such {'folder' if folder else 'file'}")
    return os.path.abspath(path)


def _check_name(name: str, directory: str) -> None:
    if not described.NAME_PATTERN.match(name):
        raise RegistrationError(
            f"--name {name!r}: use letters, digits, '_', '.', '-' (it becomes a file name)"
        )
    ours = os.path.isfile(os.path.join(directory, name + ".json"))
    if name in DatasetCatalog.list() and not ours:
        raise RegistrationError(
            f"--name {name}: a dataset of that name is built in (or registered by other code); "
            "choose another name"
        )


def describe_semantic(args) -> Dict:
    images = _existing(args.images, "--images", folder=True)
    labels = _existing(args.labels, "--labels", folder=True)
    try:
        classes = read_class_list(args.classes)
    except OSError as e:
        raise RegistrationError(f"--classes {args.classes}: {e.strerror or e}") from None
    pairs, unlabelled, orphans = pair_sem_seg_files(images, labels, args.image_ext)
    if not pairs:
        raise RegistrationError(
            f"no image in {images} has a label map of the same name (.png) in {labels}"
        )
    print(
        f"register_dataset: {len(pairs)} images with label maps, {len(unlabelled)} images "
        f"without, {len(orphans)} label maps without an image"
    )
    return {
        "format": described.FORMAT,
        "name": args.name,
        "type": "semantic",
        "images": images,
        "labels": labels,
        "classes": classes,
        "ignore_label": args.ignore_label,
        "image_ext": args.image_ext,
    }


def describe_panoptic(args) -> Dict:
    description = {
        "format": described.FORMAT,
        "name": args.name,
        "type": "panoptic",
        "images": _existing(args.images, "--images", folder=True),
        "panoptic_masks": _existing(args.panoptic_masks, "--panoptic-masks", folder=True),
        "panoptic_json": _existing(args.panoptic_json, "--panoptic-json", folder=False),
    }
    description["categories"] = read_panoptic_categories(description["panoptic_json"])
    semantic = _existing(args.semantic_labels, "--semantic-labels", folder=True)
    instances = _existing(args.instances_json, "--instances-json", folder=False)
    if semantic:
        description["semantic_labels"] = semantic
    if instances:
        description["instances_json"] = instances
    return description


def list_descriptions(directory: str) -> List[str]:
    """One line per description file in `directory`: name, type, classes, images."""
    if not os.path.isdir(directory):
        return []
    lines = []
    for entry in sorted(f for f in os.listdir(directory) if f.endswith(".json")):
        path = os.path.join(directory, entry)
        try:
            d = described.read_description(path)
        except described.DatasetDescriptionError as e:
            lines.append(f"{entry[:-5]:<28} INVALID: {e}")
            continue
        count = len(d["classes"]) if d["type"] == "semantic" else len(d["categories"])
        lines.append(f"{d['name']:<28} {d['type']:<9} {count:>4} classes  {d['images']}")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    directory = args.datasets_dir or described.datasets_dir()
    if args.command == "list":
        lines = list_descriptions(directory)
        print(f"register_dataset: {len(lines)} datasets described in {directory}")
        for line in lines:
            print("  " + line)
        return 0
    if args.command == "remove":
        path = os.path.join(directory, args.name + ".json")
        if not os.path.isfile(path):
            print(f"register_dataset: error: no description {path}", file=sys.stderr)
            return 1
        os.remove(path)
        print(f"register_dataset: removed {path}")
        return 0
    try:
        _check_name(args.name, directory)
        describe = describe_semantic if args.command == "semantic" else describe_panoptic
        description = describe(args)
        updated = os.path.isfile(os.path.join(directory, args.name + ".json"))
        path = described.write_description(description, directory)
    except (RegistrationError, ValueError) as e:
        print(f"register_dataset: error: {e}", file=sys.stderr)
        return 1
    # Also usable in this process (e.g. when called from Python), replacing an older version.
    unregister(args.name)
    described.register_description(description)
    kind = description["type"]
    count = len(description["classes" if kind == "semantic" else "categories"])
    print(
        f"register_dataset: {'updated' if updated else 'registered'} '{args.name}' ({kind}, "
        f"{count} classes): {path}"
    )
    print(f"register_dataset: next, check it: python tools/check_dataset.py {args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
