#!/usr/bin/env python
"""Register your own dataset once, for train_net.py, demo/demo.py and the tools.

    python tools/register_dataset.py semantic --name my_train --images DIR --labels DIR \\
        --classes classes.txt [--ignore-label 255] [--image-ext jpg] [--colors colors.txt]
    python tools/register_dataset.py panoptic --name my_val --images DIR \\
        --panoptic-masks DIR --panoptic-json FILE [--semantic-labels DIR] [--instances-json FILE]
    python tools/register_dataset.py config --train my_train --test my_val [--out my.yaml]
    python tools/register_dataset.py list
    python tools/register_dataset.py remove my_train

semantic: images (any of .jpg .jpeg .png .bmp .tif .tiff .webp, in subfolders too) and
single-channel PNG label maps of the same relative name, valued 0..K-1 by the line of the class
in classes.txt (one name per line, label 0 first), ignore_label elsewhere. --colors: the
drawing colour of each class, one "R G B" (0..255) or "#rrggbb" per line in class order
(default: generated, well-separated hues).
panoptic: the COCO panoptic format; the classes are the JSON's categories.
config: a starting config that trains on one registered semantic split and tests on another,
with input sizes derived from the training images (--out: written there, its _BASE_ relative
to it; else printed).

The description is written to $MASKFORMER_DATASETS_DIR (default ~/.config/maskformer/datasets)
as <name>.json; train_net.py, the demo and the tools register it by that name
(`maskformer.data.datasets.register_described_datasets()` in your own code). Registering a
name again updates it. Then check the data: python tools/check_dataset.py <name>
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

# Detectron2 and maskformer (and so torch) are imported after the arguments are parsed, so that
# --help and argument errors answer at once.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

QUICKSTART_CONFIG = os.path.join(
    REPO_ROOT, "configs", "quickstart", "maskformer_R18_quickstart.yaml"
)
# Images whose sizes (file headers) the starting config is derived from, spread over the split.
SIZE_SAMPLE = 200


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
    sem.add_argument(
        "--colors", metavar="FILE", help='one "R G B" or "#rrggbb" per line, in class order'
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
    config = sub.add_parser(
        "config", help="a starting config: train on one registered semantic split, test on another"
    )
    config.add_argument("--train", required=True, metavar="NAME", help="the training split")
    config.add_argument("--test", metavar="NAME", help="the split to evaluate on")
    config.add_argument("--out", metavar="FILE", help="write the config here (else print it)")
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
    from detectron2.data import DatasetCatalog

    from maskformer.data.datasets import described

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


def read_colors(path: str, num_classes: int) -> List[List[int]]:
    """One colour per class from a text file: "R G B" (0..255) or "#rrggbb" per line; blank
    lines and "#" comments (a "#" followed by a space or nothing) skipped."""
    colors = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            text = line.strip()
            if not text or text == "#" or text.startswith("# "):
                continue
            try:
                if text.startswith("#"):
                    rgb = [int(text[i : i + 2], 16) for i in (1, 3, 5)] if len(text) == 7 else []
                else:
                    rgb = [int(v) for v in text.replace(",", " ").split()]
            except ValueError:
                rgb = []
            if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
                raise RegistrationError(
                    f"--colors {path}, line {number}: '{text}' is not a colour; expected "
                    "'R G B' (0..255) or '#rrggbb'"
                )
            colors.append(rgb)
    if len(colors) != num_classes:
        raise RegistrationError(
            f"--colors {path} has {len(colors)} colours but there are {num_classes} classes"
        )
    return colors


def _image_size(path: str) -> Tuple[int, int]:
    """(height, width) from the file header."""
    import numpy as np
    from PIL import Image

    if path.lower().endswith(".npy"):
        return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape[:2])
    with Image.open(path) as im:
        return im.height, im.width


def sampled_sizes(images: Sequence[str], count: int = SIZE_SAMPLE) -> List[Tuple[int, int]]:
    """(height, width) of up to `count` of `images`, spread over the list; unreadable images are
    skipped (the checker reports them)."""
    sizes = []
    n = min(count, len(images))
    for image in (images[i * len(images) // n] for i in range(n)):
        try:
            sizes.append(_image_size(image))
        except (OSError, ValueError):
            continue
    return sizes


def starting_config(
    *,
    train: str,
    test: str,
    num_train: int,
    num_test: int,
    num_classes: int,
    ignore_label: int,
    sizes: Sequence[Tuple[int, int]],
    base: str,
) -> str:
    """A config that trains on the dataset `train` and evaluates on `test`: the quickstart
    recipe (a small ResNet-18 from scratch, `base`, as the file's _BASE_) with the datasets'
    classes, ignore label and input sizes.

    Sizes, from the training images' (`sizes`) median short side S and largest long side L:
    training scales 0.5..2 x S (down to multiples of 8), testing at S, crops of S (down to a
    multiple of 32, at most 512) to which images and labels are padded.
    """
    import numpy as np

    short = int(np.median([min(h, w) for h, w in sizes]))
    long = max(max(h, w) for h, w in sizes)
    crop = max(32, min(512, short // 32 * 32))
    scales = sorted({max(32, int(short * r) // 8 * 8) for r in np.arange(0.5, 2.01, 0.25)})
    return "\n".join(
        [
            f"# Starting config: train on '{train}' ({num_train} images), test on '{test}' "
            f"({num_test} images).",
            f"# Input sizes from {len(sizes)} of the training images: median short side {short}, "
            f"largest long side {long}.",
            "# _BASE_ is relative to the folder of this file.",
            f"_BASE_: {base}",
            "MODEL:",
            "  SEM_SEG_HEAD:",
            f"    NUM_CLASSES: {num_classes}",
            f"    IGNORE_VALUE: {ignore_label}",
            "DATASETS:",
            f'  TRAIN: ("{train}",)',
            f'  TEST: ("{test}",)',
            "INPUT:",
            f"  MIN_SIZE_TRAIN: ({', '.join(str(s) for s in scales)})",
            f"  MAX_SIZE_TRAIN: {2 * long}",
            f"  MIN_SIZE_TEST: {short}",
            f"  MAX_SIZE_TEST: {long}",
            "  CROP:",
            f"    SIZE: ({crop}, {crop})",
            f"  SIZE_DIVISIBILITY: {crop}",
            "SOLVER:",
            "  MAX_ITER: 2000  # your run's length",
            "  CHECKPOINT_PERIOD: 1000",
            "TEST:",
            "  EVAL_PERIOD: 1000",
            f"OUTPUT_DIR: output/{train}",
            "",
        ]
    )


def describe_semantic(args) -> Dict:
    from maskformer.data.datasets import described
    from maskformer.data.datasets.custom import pair_sem_seg_files, read_class_list

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
    colors = read_colors(args.colors, len(classes)) if args.colors else None
    return {
        "format": described.FORMAT,
        "name": args.name,
        "type": "semantic",
        "images": images,
        "labels": labels,
        "classes": classes,
        "ignore_label": args.ignore_label,
        "image_ext": args.image_ext,
        **({"colors": colors} if colors else {}),
    }


def describe_panoptic(args) -> Dict:
    from maskformer.data.datasets import described
    from maskformer.data.datasets.panoptic import read_panoptic_categories

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


def _semantic_split(directory: str, name: str, flag: str) -> Tuple[Dict, List[str]]:
    """The description of the registered semantic dataset `name` and its paired images."""
    from maskformer.data.datasets import described
    from maskformer.data.datasets.custom import pair_sem_seg_files

    path = os.path.join(directory, name + ".json")
    if not os.path.isfile(path):
        known = [line.split()[0] for line in list_descriptions(directory)]
        raise RegistrationError(
            f"{flag} {name}: not registered (no {path}; registered: {', '.join(known) or 'none'})"
            f"; register it first: python tools/register_dataset.py semantic --name {name} ..."
        )
    d = described.read_description(path)
    if d["type"] != "semantic":
        raise RegistrationError(
            f"{flag} {name}: a {d['type']} dataset; the starting config is the semantic "
            "quickstart recipe (for panoptic data start from configs/coco-panoptic/)"
        )
    pairs, _, _ = pair_sem_seg_files(d["images"], d["labels"], d.get("image_ext"))
    if not pairs:
        raise RegistrationError(
            f"{flag} {name}: no image in {d['images']} has a label map in {d['labels']} any more"
        )
    return d, [image for image, _ in pairs]


def write_starting_config(args, directory: str) -> None:
    """The `config` command: print or write (atomically) the starting config."""
    from maskformer.utils import write_text_atomically

    train, train_images = _semantic_split(directory, args.train, "--train")
    test, test_images = _semantic_split(directory, args.test, "--test")
    for key, flag in (("classes", "--classes"), ("ignore_label", "--ignore-label")):
        if train[key] != test[key]:
            raise RegistrationError(
                f"--train {args.train} and --test {args.test} are registered with different "
                f"{key.replace('_', ' ')} ({train[key]} and {test[key]}); register both with "
                f"the same {flag}"
            )
    sizes = sampled_sizes(train_images)
    if not sizes:
        raise RegistrationError(
            f"--train {args.train}: none of its images could be read "
            f"(python tools/check_dataset.py {args.train} lists them)"
        )
    folder = os.path.dirname(os.path.abspath(args.out)) if args.out else os.getcwd()
    text = starting_config(
        train=args.train,
        test=args.test,
        num_train=len(train_images),
        num_test=len(test_images),
        num_classes=len(train["classes"]),
        ignore_label=train["ignore_label"],
        sizes=sizes,
        base=os.path.relpath(QUICKSTART_CONFIG, folder).replace(os.sep, "/"),
    )
    if args.out:
        os.makedirs(folder, exist_ok=True)
        write_text_atomically(args.out, text)
        print(f"register_dataset: starting config written to {args.out}")
    else:
        print("register_dataset: a starting config (save it in this folder, or use --out FILE):")
        print(text)


def list_descriptions(directory: str) -> List[str]:
    """One line per description file in `directory`: name, type, classes, images."""
    from maskformer.data.datasets import described

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
    if args.command == "config" and args.test in (None, args.train):
        print(
            f"register_dataset: error: config --train {args.train}: give --test NAME, a "
            "registered split of other images to evaluate on (register a held-out part of your "
            "images like the training split); a score on the training images would not show "
            "over-fitting",
            file=sys.stderr,
        )
        return 1
    # Detectron2 and fvcore script functions with torch.jit when imported: a deprecation in
    # their code that a user of this tool cannot act on.
    warnings.filterwarnings(
        "ignore", message="`torch.jit.script` is deprecated", category=FutureWarning
    )
    from maskformer.data.datasets import described
    from maskformer.data.datasets.custom import unregister

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
        if args.command == "config":
            write_starting_config(args, directory)
            return 0
        _check_name(args.name, directory)
        describe = describe_semantic if args.command == "semantic" else describe_panoptic
        description = describe(args)
        updated = os.path.isfile(os.path.join(directory, args.name + ".json"))
        path = described.write_description(description, directory)
    except (RegistrationError, ValueError, OSError) as e:
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
    if kind == "semantic":
        print(
            "register_dataset: a starting config, once the training and the validation split "
            "are registered: python tools/register_dataset.py config --train TRAIN_NAME "
            "--test VAL_NAME --out my.yaml"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
