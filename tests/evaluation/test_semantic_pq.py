"""PQ of semantic segmentation (every class one stuff segment per image), by hand, and the tool
on the JSON predictions that Detectron2's SemSegEvaluator writes."""

import json

import numpy as np
import pytest
import torch
from detectron2.evaluation import SemSegEvaluator
from PIL import Image

from maskformer.data.datasets import register_sem_seg_folder
from maskformer.data.datasets.custom import unregister
from maskformer.data.io import load_sem_seg_label
from maskformer.evaluation.semantic_pq import stuff_pq_counts, summarize_pq
from tests.scripts import load_script

I = 255  # noqa: E741  (ignore label, short to keep the maps readable)

# Image 1. Class 0: |gt| 8, |pred| 7, all inside: IoU 7/8, a match.
# Class 1: |gt| 6, |pred| 5, 4 shared: IoU 4 / (5 + 6 - 4) = 4/7, a match.
# Class 2: predicted only, on 2 labelled + 2 unlabelled pixels: half on void is not "more than
# half", so a false positive.
GT1 = [[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [1, 1, I, I]]
PRED1 = [[0, 0, 0, 0], [0, 0, 0, 1], [1, 1, 1, 1], [2, 2, 2, 2]]
# Image 2. Class 2: |gt| 4, |pred| 6 of which 4 on void, 2 shared: IoU 2 / (6 + 4 - 2 - 4) = 1/2,
# not a match: a false negative, and no false positive (4/6 of it on void).
# Class 1: predicted on labelled class-2 pixels: a false positive.
GT2 = [[2, 2, I, I], [2, 2, I, I]]
PRED2 = [[1, 2, 2, 2], [1, 2, 2, 2]]
CLASSES = ["a", "b", "c", "never seen"]

# Per class: PQ = IoU sum / (TP + FP/2 + FN/2), SQ = IoU sum / TP, RQ = TP / (TP + FP/2 + FN/2).
# a: 7/8, 7/8, 1.  b: (4/7)/1.5, 4/7, 1/1.5.  c: 0, 0, 0.  "never seen" is not averaged.
EXPECTED_PQ = (7 / 8 + (4 / 7) / 1.5 + 0) / 3
EXPECTED_SQ = (7 / 8 + 4 / 7 + 0) / 3
EXPECTED_RQ = (1 + 1 / 1.5 + 0) / 3


def _counts(pred, gt):
    return stuff_pq_counts(np.array(pred), np.array(gt), len(CLASSES), I)


def test_counts_of_each_image():
    c1 = _counts(PRED1, GT1)
    np.testing.assert_allclose(c1[0], [1, 0, 0, 7 / 8])
    np.testing.assert_allclose(c1[1], [1, 0, 0, 4 / 7])
    np.testing.assert_allclose(c1[2], [0, 1, 0, 0])
    np.testing.assert_allclose(c1[3], [0, 0, 0, 0])
    c2 = _counts(PRED2, GT2)
    np.testing.assert_allclose(c2[:3], [[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])


def test_summary_over_images():
    results = summarize_pq(_counts(PRED1, GT1) + _counts(PRED2, GT2), CLASSES)
    assert results["n"] == 3
    assert results["PQ"] == pytest.approx(EXPECTED_PQ)
    assert results["SQ"] == pytest.approx(EXPECTED_SQ)
    assert results["RQ"] == pytest.approx(EXPECTED_RQ)
    per_class = {c["name"]: c for c in results["per_class"]}
    assert sorted(per_class) == ["a", "b", "c"]
    assert per_class["b"]["PQ"] == pytest.approx((4 / 7) / 1.5)
    assert (per_class["b"]["TP"], per_class["b"]["FP"], per_class["b"]["FN"]) == (1, 1, 0)


def test_unlabelled_pixels_leave_the_union():
    # 4 labelled pixels, all predicted; 4 more predicted on void: IoU 4 / (8 + 4 - 4 - 4) = 1.
    counts = _counts([[0, 0, 0, 0], [0, 0, 0, 0]], [[0, 0, 0, 0], [I, I, I, I]])
    np.testing.assert_allclose(counts[0], [1, 0, 0, 1.0])


def test_perfect_and_empty_predictions():
    gt = np.array(GT1)
    perfect = summarize_pq(_counts(np.where(gt == I, 0, gt), gt), CLASSES)
    assert (perfect["PQ"], perfect["SQ"], perfect["RQ"]) == (1.0, 1.0, 1.0)
    nothing = summarize_pq(_counts(np.full(gt.shape, -1), gt), CLASSES)
    assert (nothing["PQ"], nothing["n"]) == (0.0, 2)


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="neither classes"):
        _counts([[0]], [[7]])
    with pytest.raises(ValueError, match="must be < 4"):
        _counts([[4]], [[0]])


@pytest.fixture
def pq_dataset(tmp_path):
    image_dir, label_dir = tmp_path / "images", tmp_path / "labels"
    image_dir.mkdir()
    label_dir.mkdir()
    for name, gt in (("one", GT1), ("two", GT2)):
        gt = np.array(gt, dtype=np.uint8)
        Image.fromarray(np.zeros((*gt.shape, 3), np.uint8)).save(image_dir / f"{name}.jpg")
        Image.fromarray(gt).save(label_dir / f"{name}.png")
    register_sem_seg_folder("pq_test_sem_seg", str(image_dir), str(label_dir), CLASSES)
    yield str(image_dir)
    unregister("pq_test_sem_seg")


def test_tool_on_the_evaluators_json(tmp_path, pq_dataset, capsys):
    # SemSegEvaluator turns score maps into the JSON (an RLE per image and predicted class).
    evaluator = SemSegEvaluator(
        "pq_test_sem_seg", output_dir=str(tmp_path / "eval"), sem_seg_loading_fn=load_sem_seg_label
    )
    evaluator.reset()
    for name, pred in (("one", PRED1), ("two", PRED2)):
        scores = torch.nn.functional.one_hot(torch.tensor(pred), len(CLASSES)).permute(2, 0, 1)
        evaluator.process([{"file_name": f"{pq_dataset}/{name}.jpg"}], [{"sem_seg": scores}])
    evaluator.evaluate()
    json_file = tmp_path / "eval" / "sem_seg_predictions.json"

    tool = load_script("tools/evaluate_pq_for_semantic_segmentation.py")
    out = tmp_path / "pq.json"
    argv = ["--dataset-name", "pq_test_sem_seg", "--json-file", str(json_file)]
    assert tool.main([*argv, "--output", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["PQ"] == pytest.approx(EXPECTED_PQ)
    assert results["SQ"] == pytest.approx(EXPECTED_SQ)
    assert results["RQ"] == pytest.approx(EXPECTED_RQ)
    assert results["images"] == 2
    printed = capsys.readouterr().out
    assert f"{100 * EXPECTED_PQ:.1f}" in printed and "never seen" not in printed
