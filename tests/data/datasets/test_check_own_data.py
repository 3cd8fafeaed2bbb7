"""check_dataset on your own data: one summary line for a forgotten ignore label, and the
suggested class weights (median frequency balancing) from the counted pixels."""

import numpy as np
from PIL import Image

from maskformer.data.check import check_dataset
from tests.data.datasets.test_custom_datasets import (  # noqa: F401  (fixture)
    _image,
    _label,
    _register_semantic,
    check_tool,
    datasets_dir,
)


def _folder(root, n, label_values):
    images, labels = root / "images", root / "labels"
    images.mkdir()
    labels.mkdir()
    for i in range(n):
        _image(images / f"{i}.jpg", 12, 16, seed=i)
        Image.fromarray(_label(12, 16, label_values(i))).save(labels / f"{i}.png")
    (root / "classes.txt").write_text("road\ncar\nsky\n")
    return images, labels


def test_forgotten_ignore_label_is_one_line_with_the_hint(tmp_path, datasets_dir):  # noqa: F811
    # Value 3 (the dataset's void) in all 6 label maps, registered without --ignore-label.
    images, labels = _folder(tmp_path, 6, lambda i: (0, 1, 3))
    assert _register_semantic("voided", images, labels, tmp_path / "classes.txt") == 0
    report = check_dataset("voided", workers=1, progress=False)
    assert len(report.errors) == 1
    message = report.errors[0].message
    assert "label value 3 is outside the classes 0..2" in message
    assert "in 6 of 6 label files" in message and "--ignore-label 3" in message


def test_a_rare_bad_value_is_still_reported_per_file(tmp_path, datasets_dir):  # noqa: F811
    images, labels = _folder(tmp_path, 4, lambda i: (0, 1, 9) if i == 2 else (0, 1, 2))
    assert _register_semantic("one_bad", images, labels, tmp_path / "classes.txt") == 0
    report = check_dataset("one_bad", workers=1, progress=False)
    assert [f.file for f in report.errors] == [str(labels / "2.png")]


def test_suggested_class_weights(tmp_path, datasets_dir, capsys):  # noqa: F811
    # Images 0-1: road / car / sky bands of 64 pixels each; images 2-3: road and car only
    # (96 each). Every image has 192 labelled pixels.
    images, labels = _folder(tmp_path, 4, lambda i: (0, 1, 2) if i < 2 else (0, 1))
    assert _register_semantic("imbalanced", images, labels, tmp_path / "classes.txt") == 0
    report = check_dataset("imbalanced", workers=1, progress=False)
    assert report.pixels.tolist() == [2 * 64 + 2 * 96] * 2 + [2 * 64]
    assert report.present_pixels.tolist() == [4 * 192, 4 * 192, 2 * 192]
    # f = 320/768, 320/768, 128/384 -> median 5/12 -> weights 1, 1, 1.25
    assert check_tool.main(["imbalanced", "--class-weights"]) == 0
    out = capsys.readouterr().out
    assert "MODEL.MASK_FORMER.CLASS_WEIGHTS: [1, 1, 1.25]" in out
    np.testing.assert_allclose(
        [1, 1, 1.25], [float(x) for x in out.split("WEIGHTS: [")[1].split("]")[0].split(",")]
    )
