"""Your own datasets: class lists, tools/register_dataset.py (descriptions read at import, in
other processes too), bad description files, and tools/check_dataset.py on folders with planted
errors."""

import json
import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from maskformer.data.check import check_dataset, format_report
from maskformer.data.datasets import described
from maskformer.data.datasets.custom import (
    read_class_list,
    register_sem_seg_folder,
    unregister,
)
from maskformer.data.datasets.quickstart_panoptic import (
    quickstart_panoptic_metadata,
    write_panoptic_split,
)
from maskformer.data.io import panoptic_ids_to_rgb, read_label_map, rgb_to_panoptic_ids
from tests.common import REPO_ROOT
from tests.scripts import load_script, run_script

register_tool = load_script("tools/register_dataset.py")
check_tool = load_script("tools/check_dataset.py")

CLASSES = ["background", "cat", "dog"]


@pytest.fixture
def datasets_dir(tmp_path, monkeypatch):
    """A fresh $MASKFORMER_DATASETS_DIR; the datasets the test registers are removed after."""
    d = tmp_path / "descriptions"
    monkeypatch.setenv("MASKFORMER_DATASETS_DIR", str(d))
    before = set(DatasetCatalog.list())
    yield d
    for name in set(DatasetCatalog.list()) - before:
        unregister(name)


def _label(h, w, values=(0, 1, 2)):
    """Horizontal bands, one per value."""
    label = np.zeros((h, w), np.uint8)
    for i, v in enumerate(values):
        label[i * h // len(values) : (i + 1) * h // len(values)] = v
    return label


def _image(path, h, w, seed=0):
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


def _semantic_folder(root, planted=True):
    """images/ and labels/ of 5 pairs (mixed extensions, a subfolder); with `planted`, one of
    each error the checker must find."""
    images, labels = root / "images", root / "labels"
    (images / "sub").mkdir(parents=True)
    (labels / "sub").mkdir(parents=True)
    for stem, ext in [
        ("a", ".jpg"),
        ("b", ".PNG"),
        ("sub/c", ".jpg"),
        ("d", ".png"),
        ("e", ".jpg"),
    ]:
        _image(images / (stem + ext), 12, 16)
        Image.fromarray(_label(12, 16)).save(labels / (stem + ".png"))
    (root / "classes.txt").write_text("# my classes\nbackground\n\ncat\ndog\n")
    if planted:
        out_of_range = _label(12, 16, (0, 1, 7))
        out_of_range[0, 0] = 255  # the ignore label is fine
        Image.fromarray(out_of_range).save(labels / "a.png")
        Image.fromarray(_label(13, 16)).save(labels / "b.png")  # size mismatch
        (images / "d.png").write_bytes(b"not an image at all")  # corrupt image
        _image(images / "no_label.jpg", 12, 16)  # image without labels
        Image.fromarray(_label(12, 16)).save(labels / "no_image.png")  # labels without image
    return images, labels


def _register_semantic(name, images, labels, classes, *extra):
    return register_tool.main(
        ["semantic", "--name", name, "--images", str(images), "--labels", str(labels),
         "--classes", str(classes), *extra]
    )  # fmt: skip


def test_class_list(tmp_path):
    (tmp_path / "ok.txt").write_text("# comment\nbackground\n\ntraffic light\n")
    assert read_class_list(str(tmp_path / "ok.txt")) == ["background", "traffic light"]
    (tmp_path / "twice.txt").write_text("a\nb\na\n")
    with pytest.raises(ValueError, match=r"twice.txt, line 3: class 'a' is listed already"):
        read_class_list(str(tmp_path / "twice.txt"))
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="empty.txt: no class names"):
        read_class_list(str(tmp_path / "empty.txt"))


def test_register_semantic_then_check(tmp_path, datasets_dir, capsys):
    images, labels = _semantic_folder(tmp_path, planted=False)
    status = _register_semantic("my_shapes", images, labels, tmp_path / "classes.txt")
    assert status == 0
    assert "registered 'my_shapes' (semantic, 3 classes)" in capsys.readouterr().out
    with open(datasets_dir / "my_shapes.json") as f:
        description = json.load(f)
    assert description["classes"] == CLASSES
    assert os.path.isabs(description["images"]) and os.path.isabs(description["labels"])
    meta = MetadataCatalog.get("my_shapes")
    assert meta.stuff_classes == CLASSES and len(meta.stuff_colors) == 3
    assert (meta.ignore_label, meta.evaluator_type) == (255, "sem_seg")
    dicts = DatasetCatalog.get("my_shapes")
    names = [os.path.relpath(d["file_name"], images) for d in dicts]
    assert names == ["a.jpg", "b.PNG", "d.png", "e.jpg", "sub/c.jpg"]
    assert all(d["sem_seg_file_name"].endswith(".png") for d in dicts)

    # The checker: no errors; pixels and images per class, counted by hand (5 images 12 x 16,
    # 4 rows of each class).
    report = check_dataset("my_shapes", workers=2, progress=False)
    assert report.errors == []
    assert report.pixels.tolist() == [5 * 4 * 16] * 3
    assert report.images.tolist() == [5, 5, 5]
    assert check_tool.main(["my_shapes"]) == 0

    # Registering again updates the description.
    (tmp_path / "classes.txt").write_text("background\ncat\ndog\nbird\n")
    assert _register_semantic("my_shapes", images, labels, tmp_path / "classes.txt") == 0
    assert "updated 'my_shapes'" in capsys.readouterr().out
    assert MetadataCatalog.get("my_shapes").stuff_classes == CLASSES + ["bird"]


def test_checker_names_every_planted_error(tmp_path, datasets_dir, capsys):
    images, labels = _semantic_folder(tmp_path, planted=True)
    assert _register_semantic("planted", images, labels, tmp_path / "classes.txt") == 0
    report = check_dataset("planted", workers=2, progress=False)
    errors = {(os.path.relpath(f.file, tmp_path), f.message) for f in report.errors}
    files = sorted(file for file, _ in errors)
    assert files == [
        "images/d.png", "images/no_label.jpg", "labels/a.png", "labels/b.png", "labels/no_image.png"
    ]  # fmt: skip
    messages = dict(errors)
    assert "label values 7 (64 pixels) are outside the classes 0..2" in messages["labels/a.png"]
    assert "16x13 (W x H) but its image is 16x12" in messages["labels/b.png"]
    assert "not an image" in messages["images/d.png"]
    assert "image without a label map" in messages["images/no_label.jpg"]
    assert "label file without an image" in messages["labels/no_image.png"]
    assert report.ignored_pixels == 1

    # The command in another process: the description written above is registered at import.
    run = subprocess.run(
        [sys.executable, "tools/check_dataset.py", "planted", "--workers", "1"],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1, run.stderr[-2000:]
    for file in files:
        assert os.path.join(str(tmp_path), file) in run.stdout
    assert "planted: 5 errors" in run.stdout
    assert " cat " in run.stdout  # the class frequency table
    text = format_report(report, max_listed=2)
    assert "... and 3 more errors" in text


def test_sem_seg_folder_by_default_takes_images_of_any_extension(tmp_path, datasets_dir):
    images, labels = _semantic_folder(tmp_path, planted=False)  # .jpg, .PNG, .png
    _image(images / "f.jpeg", 12, 16)
    Image.fromarray(_label(12, 16)).save(labels / "f.png")
    register_sem_seg_folder("any_ext", str(images), str(labels), CLASSES)
    names = [os.path.relpath(d["file_name"], images) for d in DatasetCatalog.get("any_ext")]
    assert names == ["a.jpg", "b.PNG", "d.png", "e.jpg", "f.jpeg", "sub/c.jpg"]
    register_sem_seg_folder("png_only", str(images), str(labels), CLASSES, image_ext="png")
    names = [os.path.relpath(d["file_name"], images) for d in DatasetCatalog.get("png_only")]
    assert names == ["b.PNG", "d.png"]


def test_sem_seg_folder_without_images_or_pairs_names_the_folder(tmp_path, datasets_dir):
    images, labels = _semantic_folder(tmp_path, planted=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    register_sem_seg_folder("no_images", str(empty), str(labels), CLASSES)
    with pytest.raises(FileNotFoundError, match=f"'no_images': no image file .* in {empty}$"):
        DatasetCatalog.get("no_images")
    register_sem_seg_folder("no_bmp", str(images), str(labels), CLASSES, image_ext="bmp")
    with pytest.raises(FileNotFoundError, match=r"\(\.bmp, the image_ext given; None takes any"):
        DatasetCatalog.get("no_bmp")
    register_sem_seg_folder("no_pairs", str(images), str(empty), CLASSES)
    with pytest.raises(FileNotFoundError) as e:
        DatasetCatalog.get("no_pairs")
    assert f"none of the 5 images in {images} has a label map" in str(e.value)
    assert f"in {empty} (e.g. image {images / 'a.jpg'})" in str(e.value)


def test_check_dataset_names_the_folder_whose_images_are_gone(tmp_path, datasets_dir):
    images, labels = _semantic_folder(tmp_path, planted=False)
    assert _register_semantic("gone", images, labels, tmp_path / "classes.txt") == 0
    for path in images.rglob("*.*"):
        path.unlink()
    run = run_script("tools/check_dataset.py", "gone")
    assert run.returncode == 1
    (error,) = [line for line in run.stdout.splitlines() if "ERROR" in line]
    assert error.strip() == (
        "ERROR   gone: cannot be loaded: Dataset 'gone': no image file (.jpg, .jpeg, .png, .bmp, "
        f".tif, .tiff, .webp, .npy) in {images}"
    )


def test_register_errors(tmp_path, datasets_dir, capsys):
    images, labels = _semantic_folder(tmp_path, planted=False)
    classes = tmp_path / "classes.txt"
    assert _register_semantic("ade20k_sem_seg_val", images, labels, classes) == 1
    assert "built in" in capsys.readouterr().err
    assert _register_semantic("bad/name", images, labels, classes) == 1
    assert "--name 'bad/name'" in capsys.readouterr().err
    assert _register_semantic("x", tmp_path / "nope", labels, classes) == 1
    err = capsys.readouterr().err
    assert "--images" in err and "no such folder" in err
    assert _register_semantic("x", images, tmp_path, classes) == 1  # no .png stems match
    assert "has a label map of the same name" in capsys.readouterr().err
    assert not os.path.exists(datasets_dir / "x.json")
    # list and remove
    assert _register_semantic("kept", images, labels, classes) == 0
    capsys.readouterr()
    assert register_tool.main(["list"]) == 0
    assert "kept" in capsys.readouterr().out
    assert register_tool.main(["remove", "kept"]) == 0
    assert not os.path.exists(datasets_dir / "kept.json")
    assert register_tool.main(["remove", "kept"]) == 1


def _write(directory, name, data):
    directory.mkdir(exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_bad_description_files_name_the_file_and_key(tmp_path, datasets_dir, caplog):
    good = {
        "format": described.FORMAT, "name": "desc_ok", "type": "semantic",
        "images": str(tmp_path), "labels": str(tmp_path), "classes": ["a", "b"],
    }  # fmt: skip
    cases = {
        "desc_json": ("{not json", "not valid JSON"),
        "desc_nokey": ({k: v for k, v in good.items() if k != "classes"}, "key 'classes': missing"),
        "desc_type": (dict(good, type="instances"), "key 'type': must be one of"),
        "desc_rel": (dict(good, images="images/"), "key 'images': must be an absolute path"),
        "desc_colors": (dict(good, colors=[[1, 2, 3]]), "key 'colors': must be one [R, G, B]"),
        "desc_ignore": (dict(good, ignore_label=1), "key 'ignore_label'"),
        "desc_extra": (dict(good, clases=["a"]), "key 'clases': not a key"),
        "desc_name": (dict(good, name="other"), "key 'name': 'other' does not match"),
        "desc_cats": (
            dict(
                good,
                type="panoptic",
                panoptic_masks=str(tmp_path),
                panoptic_json="/x.json",
                categories=[{"id": 1, "name": "a"}],
            ),
            "categories[0]: 'isthing' must be 0 or 1",
        ),  # fmt: skip
    }
    paths = {}
    for name, (data, _) in cases.items():
        if isinstance(data, dict) and name != "desc_name":
            data = dict(data, name=name)
            if name in ("desc_cats",):
                data.pop("labels"), data.pop("classes")
        paths[name] = _write(datasets_dir, name, data)
    _write(datasets_dir, "desc_ok", good)
    with caplog.at_level(logging.WARNING):
        registered = described.register_described_datasets()
    assert registered == ["desc_ok"]
    for name, (_, problem) in cases.items():
        warning = next(r.getMessage() for r in caplog.records if paths[name] in r.getMessage())
        assert problem in warning, (name, warning)
        with pytest.raises(described.DatasetDescriptionError, match=re.escape(problem)):
            DatasetCatalog.get(name)  # using it raises the same error
    assert MetadataCatalog.get("desc_ok").stuff_classes == ["a", "b"]


def test_register_panoptic_and_check(tmp_path, datasets_dir, capsys):
    root = tmp_path / "pan"
    write_panoptic_split(str(root), "val", 3, seed=5, size_range=(40, 50))
    argv = [
        "panoptic", "--name", "my_pan", "--images", str(root / "val2017"),
        "--panoptic-masks", str(root / "panoptic_val2017"),
        "--panoptic-json", str(root / "annotations" / "panoptic_val2017.json"),
        "--semantic-labels", str(root / "panoptic_semseg_val2017"),
        "--instances-json", str(root / "annotations" / "instances_val2017.json"),
    ]  # fmt: skip
    assert register_tool.main(argv) == 0
    meta = MetadataCatalog.get("my_pan")
    for key, value in quickstart_panoptic_metadata().items():
        assert meta.get(key) == value, key
    assert meta.evaluator_type == "coco_panoptic_seg"
    assert meta.json_file.endswith("instances_val2017.json") and meta.sem_seg_root
    dicts = DatasetCatalog.get("my_pan")
    assert len(dicts) == 3 and all(os.path.isfile(d["file_name"]) for d in dicts)
    report = check_dataset("my_pan", progress=False)
    assert report.errors == [], format_report(report)
    assert report.images[5] == 3  # every image has the wall (contiguous 5)

    # Planted: a segment without segments_info entry; an image without annotation.
    png = dicts[0]["pan_seg_file_name"]
    ids = rgb_to_panoptic_ids(read_label_map(png))
    ids[:4, :4] = 999_999
    Image.fromarray(panoptic_ids_to_rgb(ids)).save(png)
    _image(root / "val2017" / "extra.jpg", 40, 40)
    report = check_dataset("my_pan", progress=False)
    messages = {os.path.basename(f.file): f.message for f in report.errors}
    assert "999999" in messages[os.path.basename(png)]
    assert "no entry in the JSON's segments_info" in messages[os.path.basename(png)]
    assert "image without a panoptic annotation" in messages["extra.jpg"]
    assert check_tool.main(["my_pan", "--workers", "1"]) == 1
    assert check_tool.main(["no_such_dataset"]) == 2


def _panoptic_with_category_zero(root, *, in_categories):
    """A panoptic split whose wall category (a stuff class) gets id 0 in segments_info, and
    also in the categories list if `in_categories`."""
    write_panoptic_split(str(root), "val", 2, seed=5, size_range=(40, 50))
    path = root / "annotations" / "panoptic_val2017.json"
    data = json.loads(path.read_text())
    wall = next(c for c in data["categories"] if not c["isthing"])
    segments = []
    for ann in data["annotations"]:
        for seg in ann["segments_info"]:
            if seg["category_id"] == wall["id"]:
                seg["category_id"] = 0
                segments.append((ann["file_name"], seg["id"]))
    if in_categories:
        wall["id"] = 0
    path.write_text(json.dumps(data))
    return path, segments[0]  # the first one is reported


def test_panoptic_category_id_0_is_refused_at_registration(tmp_path, datasets_dir, capsys):
    path, _ = _panoptic_with_category_zero(tmp_path / "pan", in_categories=True)
    root = tmp_path / "pan"
    argv = [
        "panoptic", "--name", "zero_pan", "--images", str(root / "val2017"),
        "--panoptic-masks", str(root / "panoptic_val2017"), "--panoptic-json", str(path),
    ]  # fmt: skip
    assert register_tool.main(argv) != 0
    err = capsys.readouterr().err
    assert str(path) in err and "category id 0" in err and "reserved for void" in err
    assert "zero_pan" not in DatasetCatalog.list()


def test_panoptic_segment_of_category_0_is_refused_by_check_dataset(tmp_path, datasets_dir, capsys):
    path, (png, segment_id) = _panoptic_with_category_zero(tmp_path / "pan", in_categories=False)
    root = tmp_path / "pan"
    argv = [
        "panoptic", "--name", "zero_seg_pan", "--images", str(root / "val2017"),
        "--panoptic-masks", str(root / "panoptic_val2017"), "--panoptic-json", str(path),
    ]  # fmt: skip
    assert register_tool.main(argv) == 0
    capsys.readouterr()
    assert check_tool.main(["zero_seg_pan", "--workers", "1"]) == 1
    errors = [ln for ln in capsys.readouterr().out.splitlines() if "category_id 0" in ln]
    assert len(errors) == 1
    assert str(path) in errors[0] and png in errors[0] and f"segment {segment_id}" in errors[0]
    assert "reserves for void" in errors[0]
    unregister("zero_seg_pan")
