"""SemanticEvaluator: the numbers of Detectron2's SemSegEvaluator on the same predictions (from
labels or from scores), strict ground truth, the report files, the optional JSON."""

import csv
import json
import math
import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import SemSegEvaluator
from PIL import Image

from maskformer.data.io import load_sem_seg_label
from maskformer.evaluation import SemanticEvaluator, confusion_matrix, semantic_metrics
from maskformer.evaluation.reports import bar_chart, confusion_heat_map

K = 12
IGNORE = 255
NAMES = [f"class{i}" for i in range(K)]
ABSENT = (4, 9)  # never in the ground truth; class 9 is predicted, class 4 is not


def _register(root, name, gts):
    records = []
    for i, gt in enumerate(gts):
        path = os.path.join(root, f"gt{i}.png")
        Image.fromarray(gt).save(path)
        records.append({"file_name": f"img{i}.jpg", "sem_seg_file_name": path})
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(
        stuff_classes=NAMES, ignore_label=IGNORE, evaluator_type="sem_seg"
    )
    return records


@pytest.fixture
def dataset(tmp_path):
    """5 images of different sizes: blocky ground truth with ignored pixels, no class 4 or 9;
    scores whose argmax agrees with it on about 70% of the pixels and predicts class 9."""
    rng = np.random.default_rng(0)
    present = [c for c in range(K) if c not in ABSENT]
    gts, scores = [], []
    for h, w in ((48, 64), (33, 50), (64, 64), (20, 90), (41, 41)):
        gt = rng.choice(present, size=(h // 8 + 1, w // 8 + 1)).repeat(8, 0).repeat(8, 1)[:h, :w]
        gt = gt.astype(np.uint8)
        gt[rng.random((h, w)) < 0.1] = IGNORE
        s = torch.from_numpy(rng.normal(size=(K, h, w))).float()
        agree = torch.from_numpy(rng.random((h, w)) < 0.7) & torch.from_numpy(gt != IGNORE)
        idx = torch.from_numpy(np.where(gt == IGNORE, 0, gt).astype(np.int64))
        s.scatter_add_(0, idx[None], 10.0 * agree[None].float())
        s[4] -= 100  # never predicted
        gts.append(gt)
        scores.append(s)
    name = "test_semantic_eval_" + os.path.basename(tmp_path)
    records = _register(str(tmp_path), name, gts)
    yield name, records, scores
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _run(evaluator, records, outputs):
    evaluator.reset()
    for r, o in zip(records, outputs):
        evaluator.process([r], [o])
    return evaluator.evaluate()["sem_seg"]


def test_same_numbers_as_detectron2_from_labels_and_from_scores(dataset, tmp_path):
    name, records, scores = dataset
    reference = _run(
        SemSegEvaluator(name, output_dir=None, sem_seg_loading_fn=load_sem_seg_label),
        records,
        [{"sem_seg": s} for s in scores],
    )
    labels = [{"sem_seg_labels": s.argmax(0)} for s in scores]
    ours = _run(SemanticEvaluator(name, output_dir=str(tmp_path / "out")), records, labels)
    from_scores = _run(SemanticEvaluator(name), records, [{"sem_seg": s} for s in scores])
    keys = [k for k in reference if not k.startswith(("BoundaryIoU", "min(IoU"))]
    assert len(keys) == 4 + 2 * K
    for k in keys:
        for result in (ours, from_scores):
            if math.isnan(reference[k]):
                assert math.isnan(result[k]), k
            else:
                assert result[k] == pytest.approx(reference[k], rel=1e-12, abs=1e-12), k
    assert math.isnan(ours["IoU-class4"]) and math.isnan(ours["ACC-class9"])  # absent from GT
    assert 0 < ours["mIoU"] < 100 and ours["mDice"] > ours["mIoU"]


def test_confusion_matrix_and_metrics_by_hand():
    gt = np.array([[0, 0, 1], [1, 2, IGNORE]])
    pred = np.array([[0, 1, 1], [1, 1, 2]])
    conf = confusion_matrix(pred, gt, 3, IGNORE)
    np.testing.assert_array_equal(conf, [[1, 1, 0], [0, 2, 0], [0, 1, 0]])
    m = semantic_metrics(conf)
    # IoU: 0: 1/2; 1: 2/(2 + 4 - 2); 2: 0/(1 + 0). Dice: 2/3, 4/6, 0.
    np.testing.assert_allclose(m["IoU"], [1 / 2, 2 / 4, 0])
    np.testing.assert_allclose(m["Dice"], [2 / 3, 4 / 6, 0])
    np.testing.assert_allclose(m["Precision"], [1, 2 / 4, np.nan])
    assert m["pACC"] == pytest.approx(3 / 5)


def test_ground_truth_outside_the_classes_raises_naming_file_value_and_count(dataset, tmp_path):
    name, records, scores = dataset
    bad = np.asarray(Image.open(records[2]["sem_seg_file_name"])).copy()
    bad[3, 3] = K + 5
    Image.fromarray(bad).save(records[2]["sem_seg_file_name"])
    evaluator = SemanticEvaluator(name)
    evaluator.reset()
    evaluator.process([records[0]], [{"sem_seg_labels": scores[0].argmax(0)}])
    with pytest.raises(ValueError, match=rf"gt2\.png.*\[{K + 5}\].*\[0, {K}\) \({K} classes\)"):
        evaluator.process([records[2]], [{"sem_seg_labels": scores[2].argmax(0)}])


def test_prediction_of_another_size_raises(dataset):
    name, records, scores = dataset
    evaluator = SemanticEvaluator(name)
    with pytest.raises(ValueError, match="gt0.png: ground truth is 48 x 64 but the prediction"):
        evaluator.process([records[0]], [{"sem_seg_labels": scores[1].argmax(0)}])


def test_report_files_hold_the_numbers(dataset, tmp_path):
    name, records, scores = dataset
    out = tmp_path / "report"
    evaluator = SemanticEvaluator(name, output_dir=str(out))
    res = _run(evaluator, records, [{"sem_seg_labels": s.argmax(0)} for s in scores])
    assert not (out / "sem_seg_predictions.json").exists()  # only on request
    with open(out / "sem_seg_per_class.csv") as f:
        rows = {r["class"]: r for r in csv.DictReader(f)}
    assert float(rows["class3"]["IoU"]) == pytest.approx(res["IoU-class3"], abs=1e-4)
    assert float(rows["class3"]["ACC"]) == pytest.approx(res["ACC-class3"], abs=1e-4)
    assert rows["class4"]["IoU"] == "nan"
    table = (out / "sem_seg_per_class.md").read_text()
    assert f"| class3 | {res['IoU-class3']:.2f} |" in table
    metrics = json.loads((out / "metrics.json").read_text())["sem_seg"]
    assert metrics["summary"]["mIoU"] == pytest.approx(res["mIoU"])
    assert metrics["per_class"]["class4"]["IoU"] is None
    conf = np.load(out / "sem_seg_confusion_matrix.npy")
    assert conf.shape == (K, K) and conf[:, 4].sum() == 0 and conf[4].sum() == 0
    tp, union = conf[7, 7], conf[7].sum() + conf[:, 7].sum() - conf[7, 7]
    assert 100 * tp / union == pytest.approx(res["IoU-class7"])
    for png in ("sem_seg_confusion_matrix.png", "sem_seg_per_class_IoU.png"):
        assert Image.open(out / png).size[0] >= 600

    # What the pictures draw: rows normalised; bars sorted, worst at the top, absent left out.
    heat = confusion_heat_map(conf, NAMES).axes[0].images[0].get_array()
    np.testing.assert_allclose(heat[7], conf[7] / conf[7].sum())
    assert np.ma.getmaskarray(heat)[4].all()  # NaN: drawn empty
    iou = np.array([res[f"IoU-{n}"] for n in NAMES])
    bars = bar_chart(iou, NAMES, "IoU").axes[0].patches
    drawn = sorted(((b.get_y(), b.get_width()) for b in bars), reverse=True)  # top first
    assert [w for _, w in drawn] == pytest.approx(sorted(iou[~np.isnan(iou)]))


def test_predictions_json_on_request(dataset, tmp_path):
    import pycocotools.mask as mask_util

    name, records, scores = dataset
    out = tmp_path / "json"
    evaluator = SemanticEvaluator(name, output_dir=str(out), write_predictions_json=True)
    _run(evaluator, records[:1], [{"sem_seg_labels": scores[0].argmax(0)}])
    results = json.loads((out / "sem_seg_predictions.json").read_text())
    labels = scores[0].argmax(0).numpy()
    assert sorted(r["category_id"] for r in results) == np.unique(labels).tolist()
    for r in results:
        rle = dict(r["segmentation"], counts=r["segmentation"]["counts"].encode())
        np.testing.assert_array_equal(mask_util.decode(rle), labels == r["category_id"])


def test_boundary_iou_of_a_perfect_and_a_shifted_prediction(tmp_path):
    gt = np.zeros((64, 64), np.uint8)
    gt[:, 32:] = 1
    gt[10:30, 5:20] = 2
    name = "test_semantic_boundary"
    records = _register(str(tmp_path), name, [gt])
    try:
        evaluator = SemanticEvaluator(name, boundary_iou=True)
        perfect = torch.from_numpy(gt.astype(np.int64))
        res = _run(evaluator, records, [{"sem_seg_labels": perfect}])
        assert res["mBoundaryIoU"] == pytest.approx(100.0)
        assert math.isnan(res["BoundaryIoU-class5"])
        shifted = torch.roll(perfect, 3, dims=1)
        res = _run(evaluator, records, [{"sem_seg_labels": shifted}])
        assert 0 < res["mBoundaryIoU"] < res["mIoU"] < 100  # boundaries punish the shift more
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
