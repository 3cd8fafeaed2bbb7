"""Panoptic id maps: reading COCO panoptic PNGs (OpenCV for 8-bit RGB(A), PIL otherwise, the same
ids and errors), their compact form (lossless, small codes), and the test mapper that attaches it
to each image (original resolution), for panoptic output only."""

import threading

import numpy as np
import pytest
from PIL import Image

from maskformer.config import get_maskformer_cfg
from maskformer.data.build import WithPanopticGroundTruth, build_test_loader
from maskformer.data.datasets.quickstart_panoptic import (
    register_quickstart_panoptic,
    write_panoptic_split,
)
from maskformer.data.io import panoptic_ids_to_rgb, read_label_map, rgb_to_panoptic_ids
from maskformer.data.panoptic_ids import ID_LIMIT, CompactIds, compact_ids, read_panoptic_ids


def _random_ids(rng, h=37, w=53, n=12):
    """(H, W) int64 ids: n random 24-bit ids (R, G and B all used) and VOID."""
    values = np.concatenate([[0], rng.choice(np.arange(1, ID_LIMIT), n, replace=False)])
    return values[rng.integers(0, n + 1, (h, w))]


def _expand(compact: CompactIds) -> np.ndarray:
    return compact.ids[compact.index]


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_png_ids_are_r_plus_256_g_plus_65536_b(tmp_path, mode):
    ids = _random_ids(np.random.default_rng(0))
    rgb = panoptic_ids_to_rgb(ids)
    if mode == "RGBA":
        rgb = np.dstack([rgb, np.full(ids.shape, 7, np.uint8)])  # alpha is not part of the id
    path = str(tmp_path / "pan.png")
    Image.fromarray(rgb, mode).save(path)
    read = read_panoptic_ids(path)
    assert read.dtype == np.uint32 and read.shape == ids.shape
    np.testing.assert_array_equal(read, ids)
    # What the training mapper (and panopticapi) reads from the same file.
    np.testing.assert_array_equal(read, rgb_to_panoptic_ids(read_label_map(path)[..., :3]))


def test_one_pixel_by_hand(tmp_path):
    path = str(tmp_path / "one.png")
    Image.fromarray(np.array([[[1, 2, 3], [0, 0, 0]]], np.uint8)).save(path)
    np.testing.assert_array_equal(read_panoptic_ids(path), [[1 + 256 * 2 + 65536 * 3, 0]])


def test_other_images_are_read_by_pil_as_before(tmp_path):
    ids = _random_ids(np.random.default_rng(1))
    tiff = str(tmp_path / "pan.tiff")
    Image.fromarray(panoptic_ids_to_rgb(ids)).save(tiff)
    np.testing.assert_array_equal(read_panoptic_ids(tiff), ids)
    grey = str(tmp_path / "grey.png")
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(grey)
    with pytest.raises(ValueError, match=r"grey\.png: a panoptic PNG must be 8-bit RGB.*\(4, 5\)"):
        read_panoptic_ids(grey)
    palette = str(tmp_path / "palette.png")
    Image.fromarray(np.zeros((4, 5), np.uint8)).convert("P").save(palette)
    with pytest.raises(ValueError, match=r"palette\.png: a panoptic PNG must be 8-bit RGB"):
        read_panoptic_ids(palette)


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Label file not found: .*nothing\.png"):
        read_panoptic_ids(str(tmp_path / "nothing.png"))
    path = tmp_path / "cut.png"
    Image.fromarray(panoptic_ids_to_rgb(_random_ids(np.random.default_rng(2)))).save(path)
    path.write_bytes(path.read_bytes()[:60])  # the header survives, the pixels do not
    with pytest.raises(OSError, match=r"Cannot read label file .*cut\.png"):
        read_panoptic_ids(str(path))


def test_compact_by_hand():
    """Large ids: code 1 is VOID, then the listed ids in order (a listed id need not occur),
    then the ids not listed; code 0 is unused."""
    ids = np.array([[0, 300, 300], [70000, 300, 500]], np.uint32)
    compact = compact_ids(ids, [300, 999, 70000])
    assert compact.index.dtype == np.uint8
    np.testing.assert_array_equal(compact.index, [[1, 2, 2], [4, 2, 5]])
    np.testing.assert_array_equal(compact.ids, [0, 0, 300, 999, 70000, 500])


def test_small_ids_are_their_own_codes():
    ids = np.array([[0, 3, 3], [1, 255, 3]], np.int32)
    compact = compact_ids(ids, [3, 1])
    assert compact.index.dtype == np.uint8
    np.testing.assert_array_equal(compact.index, ids)
    np.testing.assert_array_equal(compact.ids, np.arange(256))


@pytest.mark.parametrize("dtype", [np.uint32, np.int32, np.int64])
def test_compact_is_lossless(dtype):
    rng = np.random.default_rng(3)
    ids = _random_ids(rng).astype(dtype)
    present = [int(i) for i in np.unique(ids) if i]
    for listed in ([], present, present[::2], present + [ID_LIMIT + 5, -3, present[0]]):
        compact = compact_ids(ids, listed)
        assert compact.index.dtype == np.uint8 and compact.index.shape == ids.shape
        np.testing.assert_array_equal(_expand(compact), ids)


def test_many_codes_widen_the_index():
    rng = np.random.default_rng(4)
    ids = rng.choice(np.arange(1000, ID_LIMIT), 300, replace=False)[rng.integers(0, 300, (40, 40))]
    for listed in ([], np.unique(ids).tolist()):
        compact = compact_ids(ids, listed)
        assert compact.index.dtype == np.uint16
        np.testing.assert_array_equal(_expand(compact), ids)


def test_compact_refuses_what_is_no_segment_id():
    with pytest.raises(ValueError, match=r"gt\.png: segment ids must be in \[0, 2\^24\), got -1"):
        compact_ids(np.array([[-1, 4]]), what="gt.png")
    with pytest.raises(ValueError, match=r"got 0\.\.16777216"):
        compact_ids(np.array([[0, ID_LIMIT]]))
    with pytest.raises(ValueError, match="expected integer segment ids, got dtype float32"):
        compact_ids(np.zeros((2, 2), np.float32))
    empty = compact_ids(np.zeros((0, 3), np.int64))
    assert empty.index.shape == (0, 3) and _expand(empty).shape == (0, 3)


def test_threads_compact_different_images_at_once():
    """The id -> code table is per thread: concurrent images do not see each other's codes."""
    rng = np.random.default_rng(5)
    maps = [_random_ids(rng, 64, 64, 20) for _ in range(8)]
    errors = []

    def work(ids):
        listed = [int(i) for i in np.unique(ids) if i]
        for _ in range(30):
            if not np.array_equal(_expand(compact_ids(ids, listed)), ids):
                errors.append("mismatch")

    threads = [threading.Thread(target=work, args=(m,)) for m in maps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_mapper_adds_the_compact_ground_truth(tmp_path):
    ids = _random_ids(np.random.default_rng(6))
    path = str(tmp_path / "pan.png")
    Image.fromarray(panoptic_ids_to_rgb(ids)).save(path)
    segments = [{"id": int(i), "category_id": 1} for i in np.unique(ids) if i]
    record = {"file_name": "x.jpg", "pan_seg_file_name": path, "segments_info": segments}
    mapper = WithPanopticGroundTruth(lambda d: {"image": "loaded", **d})
    result = mapper(record)
    assert result["image"] == "loaded" and result["pan_seg_file_name"] == path
    np.testing.assert_array_equal(_expand(result["pan_seg_gt"]), ids)
    assert result["pan_seg_gt"].index.dtype == np.uint8
    assert "pan_seg_gt" not in record  # the dataset dict is not changed
    semantic = {"file_name": "y.jpg", "sem_seg_file_name": "y.png"}
    assert mapper(semantic) == {"image": "loaded", **semantic}


def test_test_loader_decodes_the_ground_truth_for_panoptic_output_only(tmp_path):
    write_panoptic_split(str(tmp_path), "val", 2, seed=1, size_range=(40, 48))
    register_quickstart_panoptic("test_loader_pan_seg_gt", str(tmp_path))
    name = "test_loader_pan_seg_gt_val"
    for panoptic_on in (True, False):
        cfg = get_maskformer_cfg(
            "",
            [
                "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", str(panoptic_on),
                "DATALOADER.NUM_WORKERS", "0",
                "INPUT.MIN_SIZE_TEST", "32",
            ],
        )  # fmt: skip
        inputs = [x for batch in build_test_loader(cfg, name) for x in batch]
        assert len(inputs) == 2
        for x in inputs:
            assert ("pan_seg_gt" in x) == panoptic_on
            if "pan_seg_gt" in x:
                png = read_panoptic_ids(x["pan_seg_file_name"])
                np.testing.assert_array_equal(_expand(x["pan_seg_gt"]), png)
                assert x["pan_seg_gt"].index.shape == (x["height"], x["width"])
