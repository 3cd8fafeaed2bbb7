"""Reading images of every kind as training and the demo see them; atomic image writing."""

import os

import cv2
import numpy as np
import pytest
from PIL import Image

from maskformer.data.io import read_image, save_image_atomically


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    grey16 = (np.arange(30 * 40).reshape(30, 40) * 54).astype(np.uint16)  # 0 .. 64746
    cv2.imwrite(str(tmp_path / "g.png"), grey16)
    assert Image.open(tmp_path / "g.png").mode.startswith("I")
    image = read_image(str(tmp_path / "g.png"), "RGB")
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8
    expected = np.round(grey16 / 257.0)
    assert np.abs(image[..., 0].astype(int) - expected).max() <= 1
    assert (image[..., 0] == image[..., 2]).all()


def test_modes_and_exif(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "l.png")
    Image.fromarray(np.dstack([rgb, rgb[..., :1]]), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    yy, xx = np.mgrid[:20, :30]
    smooth = np.dstack([xx * 8, yy * 12, np.full_like(xx, 128)]).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    assert np.array_equal(read_image(str(tmp_path / "l.png"), "RGB")[..., 1], rgb[..., 0])
    assert np.array_equal(read_image(str(tmp_path / "rgba.png"), "RGB"), rgb)
    assert read_image(str(tmp_path / "p.png"), "BGR").shape == (20, 30, 3)
    rotated = read_image(str(tmp_path / "rot.jpg"), "RGB")
    assert rotated.shape == (30, 20, 3)
    assert np.abs(rotated.astype(int) - np.rot90(smooth, -1)).max() < 12  # JPEG-lossy


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        read_image(str(tmp_path / "missing.jpg"), "RGB")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(OSError, match="text.png: not an image"):
        read_image(str(tmp_path / "text.png"), "RGB")
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match="cut.png"):
        read_image(str(tmp_path / "cut.png"), "RGB")


def test_save_image_atomically(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    for name in ("a.png", "a.jpg", "a.webp", "a.bmp"):
        save_image_atomically(rgb, str(tmp_path / name))
        assert Image.open(tmp_path / name).size == (12, 10)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), rgb)  # RGB order kept
    with pytest.raises(OSError, match="a.xyz"):
        save_image_atomically(rgb, str(tmp_path / "a.xyz"))
    assert sorted(os.listdir(tmp_path)) == ["a.bmp", "a.jpg", "a.png", "a.webp"]  # no leftovers
