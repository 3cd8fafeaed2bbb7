"""The dataset preparation scripts on tiny raw data in the downloads' formats: exact label
conversion, $DETECTRON2_DATASETS, idempotent re-runs, atomic writes, the ADE20K-Full resolution
option."""

import os

import numpy as np
import pytest
from PIL import Image

from maskformer.data.datasets.ade20k_full_categories import ADE20K_FULL_ID_TO_CONTIGUOUS
from maskformer.data.io import read_label_map
from tests.fixtures import miniatures as mini
from tests.scripts import load_script

ADE_FULL = "datasets/prepare_ade20k_full_sem_seg.py"
COCO_10K = "datasets/prepare_coco_stuff_10k_sem_seg.py"
COCO_164K = "datasets/prepare_coco_stuff_164k_sem_seg.py"
ADE_150 = "datasets/prepare_ade20k_sem_seg.py"


def _mtimes(directory):
    return {
        os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
        for d, _, files in os.walk(directory)
        for f in files
    }


# --- ADE20K-Full ---------------------------------------------------------------------------------


def test_ade20k_full_labels_images_and_rerun(tmp_path, monkeypatch, capsys):
    other = next(i for i in range(1, 5000) if i not in ADE20K_FULL_ID_TO_CONTIGUOUS)
    raw = mini.write_ade20k_full_raw(
        str(tmp_path),
        {
            "ADE_train_00000001.jpg": [2978, 1223, other, 0],
            "ADE_frame_00000007.jpg": [3148],  # not "ADE_val_": training
            "ADE_val_00000001.jpg": [312, 3148],
        },
    )
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))  # the default --root
    prepare = load_script(ADE_FULL)
    assert prepare.main(["--workers", "1"]) == 0
    base = tmp_path / "ADE20K_2021_17_01"
    assert sorted(os.listdir(base / "annotations_detectron2" / "training")) == [
        "ADE_frame_00000007.tif",
        "ADE_train_00000001.tif",
    ]
    label = read_label_map(str(base / "annotations_detectron2/training/ADE_train_00000001.tif"))
    assert label.dtype == np.uint16
    expected = np.vectorize(lambda i: ADE20K_FULL_ID_TO_CONTIGUOUS.get(i, 65535))(
        raw["ADE_train_00000001.jpg"]
    )
    np.testing.assert_array_equal(label, expected)
    assert sorted(np.unique(label).tolist()) == [0, 268, 65535]
    val = read_label_map(str(base / "annotations_detectron2/validation/ADE_val_00000001.tif"))
    assert sorted(np.unique(val).tolist()) == [1, 846]
    # The original resolution is kept, and the JPEG is copied byte for byte.
    src = base / "images/ADE/validation/urban/street/ADE_val_00000001.jpg"
    dst = base / "images_detectron2/validation/ADE_val_00000001.jpg"
    assert dst.read_bytes() == src.read_bytes()
    assert label.shape == (mini.H, mini.W)

    # A re-run writes nothing; a lost output is made again, alone.
    before = _mtimes(base / "annotations_detectron2")
    capsys.readouterr()
    assert prepare.main(["--workers", "1"]) == 0
    assert "3 images, 3 already converted" in capsys.readouterr().out
    assert _mtimes(base / "annotations_detectron2") == before
    os.remove(base / "annotations_detectron2/validation/ADE_val_00000001.tif")
    assert prepare.main(["--workers", "1"]) == 0
    assert "3 images, 2 already converted" in capsys.readouterr().out
    assert not [f for f in _mtimes(base) if f.endswith(".tmp")]


def test_ade20k_full_max_short_side_and_its_record(tmp_path, capsys):
    mini.write_ade20k_full_raw(
        str(tmp_path), {"ADE_train_00000001.jpg": [2978, 3148, 0]}, size=(40, 60)
    )
    prepare = load_script(ADE_FULL)
    base = str(tmp_path / "ADE20K_2021_17_01")
    # Two worker processes: the job function must survive pickling.
    assert prepare.main(["--root", base, "--max-short-side", "24", "--workers", "2"]) == 0
    label = read_label_map(
        os.path.join(base, "annotations_detectron2/training/ADE_train_00000001.tif")
    )
    with Image.open(os.path.join(base, "images_detectron2/training/ADE_train_00000001.jpg")) as im:
        assert im.size == (36, 24)  # short side 40 -> 24, long side 60 -> round(60 / 40 * 24)
    assert label.shape == (24, 36)
    # Nearest-neighbour: no invented label values at the stripe borders.
    assert sorted(np.unique(label).tolist()) == [0, 846, 65535]
    # Outputs made at another resolution are not silently mixed with new ones.
    capsys.readouterr()
    assert prepare.main(["--root", base, "--workers", "1"]) == 1
    assert "max_short_side" in capsys.readouterr().err
    assert prepare.main(["--root", base, "--max-short-side", "24", "--workers", "1"]) == 0


def test_ade20k_full_shrunk_size_follows_the_official_rule():
    prepare = load_script(ADE_FULL)
    assert prepare.shrunk_size(600, 800, 512) == (512, 683)
    assert prepare.shrunk_size(800, 600, 512) == (683, 512)
    assert prepare.shrunk_size(512, 2000, 512) == (512, 2000)  # never enlarged
    assert prepare.shrunk_size(1000, 3000, None) == (1000, 3000)


def test_ade20k_full_without_the_download_says_what_to_unzip(tmp_path, capsys):
    assert load_script(ADE_FULL).main(["--root", str(tmp_path / "ADE20K_2021_17_01")]) == 1
    assert "index_ade20k.pkl" in capsys.readouterr().err


# --- COCO-Stuff ----------------------------------------------------------------------------------


def test_coco_stuff_10k_labels(tmp_path, monkeypatch):
    s = mini._blocks([2, 81, 82, 172, 1])  # person, toothbrush, banner, wood, unlabeled
    mini.write_coco_stuff_10k_raw(
        str(tmp_path),
        {"train": {"COCO_train2014_000000000077": s}, "test": {"COCO_train2014_000000000078": s}},
    )
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    assert load_script(COCO_10K).main(["--workers", "1"]) == 0
    base = tmp_path / "coco" / "coco_stuff_10k"
    for split, name in (("train", "000000000077"), ("test", "000000000078")):
        label = read_label_map(
            str(base / "annotations_detectron2" / split / f"COCO_train2014_{name}.png")
        )
        np.testing.assert_array_equal(label, mini._blocks([0, 79, 80, 170, 255]))
        image = base / "images_detectron2" / split / f"COCO_train2014_{name}.jpg"
        assert image.read_bytes() == (base / "images" / f"COCO_train2014_{name}.jpg").read_bytes()


def test_coco_stuff_10k_reads_matlab_v73_files(tmp_path):
    h5py = pytest.importorskip("h5py")
    prepare = load_script(COCO_10K)
    s = mini._blocks([2, 172, 1])
    path = str(tmp_path / "x.mat")
    # A v7.3 MAT-file is HDF5 behind a 512-byte user block that starts with MATLAB's 128-byte
    # header (text, subsystem offset, version 0x0200, endian indicator "IM").
    with h5py.File(path, "w", userblock_size=512) as f:
        f["S"] = s.T.astype(np.uint8)  # column-major MATLAB arrays are stored transposed
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116)
    with open(path, "r+b") as f:
        f.write(header + b"\0" * 8 + b"\x00\x02" + b"IM")
    np.testing.assert_array_equal(prepare.read_mat_labels(path), s)


def test_coco_stuff_10k_rejects_labels_of_another_version(tmp_path):
    prepare = load_script(COCO_10K)
    with pytest.raises(ValueError, match=r"x\.mat.*v1\.0"):
        prepare.to_contiguous(np.array([[2, 183]]), "x.mat")


def test_coco_stuff_164k_labels(tmp_path):
    # COCO id - 1: person 0, toothbrush 89, id 12 (never annotated) 11, banner 91, wood 181.
    raw = mini._blocks([0, 89, 11, 91, 181, 255])
    mini.write_coco_stuff_164k_raw(str(tmp_path), {"val2017": {"000000000139": raw}})
    os.makedirs(tmp_path / "coco" / "stuffthingmaps_trainval2017" / "train2017")
    prepare = load_script(COCO_164K)
    assert prepare.main(["--root", str(tmp_path / "coco"), "--workers", "1"]) == 0
    label = read_label_map(
        str(tmp_path / "coco/stuffthingmaps_detectron2/val2017/000000000139.png")
    )
    np.testing.assert_array_equal(label, mini._blocks([0, 79, 255, 80, 170, 255]))


# --- ADE20K-150 ----------------------------------------------------------------------------------


def test_ade20k_150_labels_and_leftover_temporary_files(tmp_path):
    base = tmp_path / "ADEChallengeData2016"
    for split in ("training", "validation"):
        os.makedirs(base / "annotations" / split)
        Image.fromarray(mini._blocks([0, 1, 150]).astype(np.uint8)).save(
            base / "annotations" / split / f"ADE_{split}_1.png"
        )
    # A file left by a killed run has a name no loader lists, and is replaced.
    out_dir = base / "annotations_detectron2" / "training"
    os.makedirs(out_dir)
    (out_dir / "ADE_training_1.png.tmp").write_bytes(b"truncated")
    assert load_script(ADE_150).main(["--root", str(base), "--workers", "1"]) == 0
    label = read_label_map(str(out_dir / "ADE_training_1.png"))
    np.testing.assert_array_equal(label, mini._blocks([255, 0, 149]))
    assert sorted(os.listdir(out_dir)) == ["ADE_training_1.png"]


def test_ade20k_150_keeps_an_existing_255_as_ignore(tmp_path):
    # A source edited by another tool may already mark pixels 255 ("ignore"); 255 - 1 would be
    # 254, a class id no model has.
    base = tmp_path / "ADEChallengeData2016"
    for split in ("training", "validation"):
        os.makedirs(base / "annotations" / split)
        Image.fromarray(mini._blocks([255, 0, 1, 150]).astype(np.uint8)).save(
            base / "annotations" / split / "ADE_x.png"
        )
    assert load_script(ADE_150).main(["--root", str(base), "--workers", "1"]) == 0
    label = read_label_map(str(base / "annotations_detectron2" / "validation" / "ADE_x.png"))
    np.testing.assert_array_equal(label, mini._blocks([255, 255, 0, 149]))
