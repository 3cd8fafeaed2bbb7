"""PanopticEvaluator and pq_image_stats: panopticapi's pq_compute numbers (to 1e-9) on generated
predictions with VOID, crowds, wrong categories and unmatched segments; bounded threads; the
report; the prediction PNGs + JSON on request; the ground truth given by the test loader instead
of read from the PNGs (the same numbers)."""

import json
import os
import threading

import numpy as np
import pytest
import torch
from detectron2.data import MetadataCatalog
from PIL import Image

from maskformer.data.io import panoptic_ids_to_rgb, read_label_map, rgb_to_panoptic_ids
from maskformer.data.panoptic_ids import compact_ids, read_panoptic_ids
from maskformer.evaluation import (
    PanopticEvaluator,
    panoptic,
    pq_compact_stats,
    pq_image_stats,
    pq_summary,
)
from tools.benchmarks.reference_pq import panopticapi_pq

# Dataset ids not contiguous; things first.
THINGS = [3, 5, 8, 13, 21]
STUFF = [40, 41, 44, 50, 60, 61]
CATEGORIES = [
    {"id": c, "name": f"cat{c}", "isthing": int(c in THINGS), "color": [c, c, c]}
    for c in THINGS + STUFF
]
CONTIGUOUS = {c: i for i, c in enumerate(THINGS + STUFF)}


def _unique_ids(rng, n):
    return rng.choice(np.arange(1, 1 << 24), size=n, replace=False)


def _ground_truth(rng, h, w):
    """(H, W) ids and segments_info: stuff bands, things (some crowds), VOID pixels."""
    ids = np.zeros((h, w), np.int64)
    new = iter(_unique_ids(rng, 64).tolist())
    segments = []
    bands = np.sort(rng.choice(np.arange(5, h - 5), size=2, replace=False))
    for top, bottom in zip([0, *bands], [*bands, h]):
        i = next(new)
        ids[top:bottom] = i
        segments.append({"id": i, "category_id": int(rng.choice(STUFF)), "iscrowd": 0})
    for _ in range(rng.integers(3, 8)):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        i = next(new)
        ids[y : y + rng.integers(4, 16), x : x + rng.integers(4, 16)] = i
        crowd = int(rng.random() < 0.25)
        segments.append({"id": i, "category_id": int(rng.choice(THINGS)), "iscrowd": crowd})
    ids[rng.random((h, w)) < 0.03] = 0  # VOID pixels
    ids[:, rng.integers(0, w)] = 0  # and a VOID line
    for s in segments:
        s["area"] = int((ids == s["id"]).sum())
    return ids, [s for s in segments if s["area"] > 0]


def _prediction(rng, gt_ids, gt_segments):
    """Segments of the ground truth, shifted / relabelled / dropped, plus unmatched extras (some
    on VOID or crowds); model ids 1..S with contiguous categories and "isthing"."""
    h, w = gt_ids.shape
    ids = np.zeros_like(gt_ids)
    category = {}
    next_id = 1
    for s in gt_segments:
        if rng.random() < 0.1:
            continue  # missed
        mask = np.roll(gt_ids == s["id"], rng.integers(-3, 4), axis=int(rng.integers(0, 2)))
        c = s["category_id"]
        if rng.random() < 0.15:  # wrong category
            c = int(rng.choice(THINGS if c in THINGS else STUFF))
        ids[mask] = next_id
        category[next_id] = c
        next_id += 1
    for s in gt_segments:  # a prediction of the crowd's category over most of the crowd
        if s["iscrowd"] and rng.random() < 0.7:
            ids[(gt_ids == s["id"]) & (rng.random((h, w)) < 0.8)] = next_id
            category[next_id] = s["category_id"]
            next_id += 1
    for _ in range(rng.integers(1, 5)):  # extras anywhere
        y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
        ids[y : y + rng.integers(2, 10), x : x + rng.integers(2, 10)] = next_id
        category[next_id] = int(rng.choice(THINGS + STUFF))
        next_id += 1
    ids[gt_ids == 0] = np.where(rng.random() < 0.5, ids[gt_ids == 0], next_id)  # on VOID
    category[next_id] = int(rng.choice(STUFF))
    ids[rng.random((h, w)) < 0.02] = 0  # unpredicted pixels
    present = set(np.unique(ids).tolist()) - {0}
    segments = [
        {"id": i, "category_id": CONTIGUOUS[c], "isthing": c in THINGS}
        for i, c in category.items()
        if i in present
    ]
    return ids, segments


def _write_case(root, seed, n=8):
    rng = np.random.default_rng(seed)
    gt_dir, pred_dir = os.path.join(root, "gt"), os.path.join(root, "pred")
    os.makedirs(gt_dir)
    os.makedirs(pred_dir)
    gt_anns, pred_anns, predictions = [], [], []
    for image_id in range(n):
        h, w = int(rng.integers(30, 70)), int(rng.integers(30, 70))
        gt_ids, gt_segments = _ground_truth(rng, h, w)
        pred_ids, pred_segments = _prediction(rng, gt_ids, gt_segments)
        name = f"{image_id:04d}.png"
        Image.fromarray(panoptic_ids_to_rgb(gt_ids)).save(os.path.join(gt_dir, name))
        Image.fromarray(panoptic_ids_to_rgb(pred_ids)).save(os.path.join(pred_dir, name))
        gt_anns.append({"image_id": image_id, "file_name": name, "segments_info": gt_segments})
        dataset_segments = [
            {"id": s["id"], "category_id": (THINGS + STUFF)[s["category_id"]]}
            for s in pred_segments
        ]
        pred_anns.append(
            {"image_id": image_id, "file_name": name, "segments_info": dataset_segments}
        )
        predictions.append((image_id, name, pred_ids, pred_segments))
    for kind, anns in (("gt", gt_anns), ("pred", pred_anns)):
        with open(os.path.join(root, kind + ".json"), "w") as f:
            json.dump({"annotations": anns, "categories": CATEGORIES, "images": []}, f)
    return predictions


def _panopticapi(root):
    return panopticapi_pq(
        os.path.join(root, "gt.json"),
        os.path.join(root, "pred.json"),
        os.path.join(root, "gt"),
        os.path.join(root, "pred"),
    )


@pytest.fixture(params=[0, 1, 2])
def case(request, tmp_path):
    root = str(tmp_path / "case")
    predictions = _write_case(root, seed=request.param)
    name = f"test_panoptic_eval_{request.param}_{os.path.basename(tmp_path)}"
    MetadataCatalog.get(name).set(
        panoptic_json=os.path.join(root, "gt.json"),
        panoptic_root=os.path.join(root, "gt"),
        thing_dataset_id_to_contiguous_id={c: CONTIGUOUS[c] for c in THINGS},
        stuff_dataset_id_to_contiguous_id=CONTIGUOUS,
        evaluator_type="coco_panoptic_seg",
    )
    yield name, root, predictions
    MetadataCatalog.remove(name)


def _evaluate(evaluator, predictions):
    evaluator.reset()
    for image_id, file_name, ids, segments in predictions:
        inputs = [{"image_id": image_id, "file_name": "images/" + file_name[:-4] + ".jpg"}]
        evaluator.process(inputs, [{"panoptic_seg": (torch.from_numpy(ids), segments)}])
    return evaluator.evaluate()["panoptic_seg"]


def test_same_numbers_as_panopticapi_overall_and_per_category(case):
    name, root, predictions = case
    reference = _panopticapi(root)
    counts = reference["All"]["n"], reference["Things"]["n"], reference["Stuff"]["n"]
    assert counts[1] > 0 and counts[2] > 0
    res = _evaluate(PanopticEvaluator(name, num_workers=0), predictions)
    for short, group in (("", "All"), ("_th", "Things"), ("_st", "Stuff")):
        for k in ("PQ", "SQ", "RQ"):
            assert res[k + short] == pytest.approx(100 * reference[group][k.lower()], abs=1e-9)

    # Per category, from the pure functions on the same maps.
    gt = json.load(open(os.path.join(root, "gt.json")))
    category_ids = [c["id"] for c in CATEGORIES]
    stats = np.zeros((len(CATEGORIES), 4))
    for ann, (_, _, pred_ids, segments) in zip(gt["annotations"], predictions):
        gt_ids = rgb_to_panoptic_ids(read_label_map(os.path.join(root, "gt", ann["file_name"])))
        dataset_segments = [dict(s, category_id=category_ids[s["category_id"]]) for s in segments]
        stats += pq_image_stats(
            gt_ids, ann["segments_info"], pred_ids, dataset_segments, category_ids
        )
    ours = pq_summary(stats, np.array([c["isthing"] == 1 for c in CATEGORIES]))
    assert [ours[g]["n"] for g in ("All", "Things", "Stuff")] == list(counts)
    for i, c in enumerate(category_ids):
        for k in ("pq", "sq", "rq"):
            expected = reference["per_class"][c][k]
            assert ours["per_class"][k.upper()][i] == pytest.approx(expected, abs=1e-9), (c, k)
    # The generated cases exercise every rule.
    assert stats[:, 1].sum() > 0 and stats[:, 2].sum() > 0  # FP and FN


def test_threads_give_the_same_numbers_and_end(case, tmp_path):
    name, root, predictions = case
    before = threading.active_count()
    inline = _evaluate(PanopticEvaluator(name, num_workers=0), predictions)
    threaded = _evaluate(PanopticEvaluator(name, num_workers=2), predictions)
    assert threaded == pytest.approx(inline, abs=1e-12)
    assert threading.active_count() == before  # the pool is shut down


def test_void_crowd_and_unmatched_rules_by_hand():
    """One 4 x 10 image, categories 1 (thing) and 2 (stuff).
    GT: A (cat 1) columns 0-3, crowd C (cat 1) columns 4-6, VOID columns 7-9.
    Pred: a (cat 1) columns 0-2 plus row 0 of columns 7-9: IoU 12 / (15 + 16 - 12 - 3) = 3/4.
    b (cat 1) on the crowd: not a false positive. v (cat 2) on VOID: not a false positive.
    d (cat 2) on column 3 of A: a false positive (and A is matched by a)."""
    gt = np.zeros((4, 10), np.int64)
    gt[:, 0:4], gt[:, 4:7] = 100, 200
    gt_segments = [
        {"id": 100, "category_id": 1, "iscrowd": 0, "area": 16},
        {"id": 200, "category_id": 1, "iscrowd": 1, "area": 12},
    ]
    pred = np.zeros((4, 10), np.int64)
    pred[:, 0:3], pred[0, 7:10], pred[:, 4:7], pred[1:, 7:10], pred[:, 3] = 1, 1, 2, 3, 4
    pred_segments = [
        {"id": 1, "category_id": 1},
        {"id": 2, "category_id": 1},
        {"id": 3, "category_id": 2},
        {"id": 4, "category_id": 2},
    ]
    stats = pq_image_stats(gt, gt_segments, pred, pred_segments, [1, 2])
    np.testing.assert_allclose(stats, [[1, 0, 0, 0.75], [0, 1, 0, 0]])


def test_errors_name_the_image_and_segment():
    gt = np.ones((2, 2), np.int64)
    gt_segments = [{"id": 1, "category_id": 1, "iscrowd": 0, "area": 4}]
    pred = np.full((2, 2), 7)
    with pytest.raises(ValueError, match=r"img\.png: predicted segment ids \[7\] are not in"):
        pq_image_stats(gt, gt_segments, pred, [], [1], "img.png")
    with pytest.raises(ValueError, match=r"img\.png: segments_info lists segment ids \[9\]"):
        listed = [{"id": 7, "category_id": 1}, {"id": 9, "category_id": 1}]
        pq_image_stats(gt, gt_segments, pred, listed, [1], "img.png")
    with pytest.raises(ValueError, match="segment 7 has category 5"):
        pq_image_stats(gt, gt_segments, pred, [{"id": 7, "category_id": 5}], [1], "img.png")


def test_report_and_predictions_on_request(case, tmp_path):
    name, root, predictions = case
    out = tmp_path / "out"
    evaluator = PanopticEvaluator(name, output_dir=str(out), write_predictions=True)
    res = _evaluate(evaluator, predictions)
    metrics = json.loads((out / "metrics.json").read_text())["panoptic_seg"]
    assert metrics["summary"]["PQ"] == pytest.approx(res["PQ"])
    reference = _panopticapi(root)
    for c in CATEGORIES:
        row = metrics["per_class"][c["name"]]
        if row["TP"] + row["FP"] + row["FN"] == 0:
            assert row["PQ"] is None  # did not occur: no number, not 0
        else:
            assert row["PQ"] == pytest.approx(100 * reference["per_class"][c["id"]]["pq"])
    assert "| cat3 |" in (out / "panoptic_seg_per_class.md").read_text()
    assert (out / "panoptic_seg_per_class_PQ.png").exists()
    written = json.loads((out / "panoptic_seg_predictions.json").read_text())
    assert len(written["annotations"]) == len(predictions)
    image_id, file_name, ids, _ = predictions[0]
    png = read_label_map(str(out / "panoptic_seg_predictions" / file_name))
    np.testing.assert_array_equal(rgb_to_panoptic_ids(png), ids)
    without = tmp_path / "plain"
    _evaluate(PanopticEvaluator(name, output_dir=str(without)), predictions)
    assert not (without / "panoptic_seg_predictions.json").exists()
    assert not (without / "panoptic_seg_predictions").exists()


def _loader_inputs(root, predictions, listed_order):
    """Inputs as the test loader gives them: each with its ground truth in compact form, coded
    from the segments in `listed_order(segments_info)` (the evaluator must not depend on it)."""
    gt = {a["file_name"]: a for a in json.load(open(os.path.join(root, "gt.json")))["annotations"]}
    inputs = []
    for image_id, file_name, _, _ in predictions:
        listed = [s["id"] for s in listed_order(gt[file_name]["segments_info"])]
        ids = read_panoptic_ids(os.path.join(root, "gt", file_name))
        inputs.append({"image_id": image_id, "pan_seg_gt": compact_ids(ids, listed)})
    return inputs


@pytest.mark.parametrize("listed_order", [list, lambda s: s[::-1], lambda s: []])
def test_ground_truth_from_the_loader_gives_the_same_numbers(case, monkeypatch, listed_order):
    name, root, predictions = case
    from_files = _evaluate(PanopticEvaluator(name, num_workers=0), predictions)
    inputs = _loader_inputs(root, predictions, listed_order)

    def no_file(file_name):
        raise AssertionError(f"read {file_name} although the input has its ground truth")

    monkeypatch.setattr(panoptic, "read_panoptic_ids", no_file)
    for workers in (0, 2):
        evaluator = PanopticEvaluator(name, num_workers=workers)
        evaluator.reset()
        for input, (_, _, ids, segments) in zip(inputs, predictions):
            evaluator.process([input], [{"panoptic_seg": (torch.from_numpy(ids), segments)}])
        assert evaluator.evaluate()["panoptic_seg"] == from_files  # the same floats


def test_large_prediction_ids_give_the_same_stats(case):
    """A model's ids 1, 2, ... are their own codes; 24-bit ids go through the table: the same
    counts either way."""
    _, root, predictions = case
    gt = json.load(open(os.path.join(root, "gt.json")))["annotations"]
    category_ids = [c["id"] for c in CATEGORIES]
    rng = np.random.default_rng(7)
    for ann, (_, file_name, pred_ids, segments) in zip(gt, predictions):
        gt_ids = read_panoptic_ids(os.path.join(root, "gt", file_name))
        segments = [dict(s, category_id=category_ids[s["category_id"]]) for s in segments]
        small = pq_image_stats(gt_ids, ann["segments_info"], pred_ids, segments, category_ids)
        new_ids = rng.choice((1 << 24) - 256, len(segments), replace=False) + 256
        large_id = {0: 0, **dict(zip([s["id"] for s in segments], new_ids.tolist()))}
        relabelled = np.vectorize(large_id.get)(pred_ids)
        renamed = [dict(s, id=int(large_id[s["id"]])) for s in segments]
        large = pq_image_stats(gt_ids, ann["segments_info"], relabelled, renamed, category_ids)
        np.testing.assert_array_equal(large, small)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
def test_code_histogram_counts_each_pair(dtype):
    """OpenCV's count (uint8 codes) and bincount (wider codes) against a plain count."""
    rng = np.random.default_rng(8)
    a = rng.integers(0, 5, (30, 41)).astype(dtype)
    b = rng.integers(0, 7, (30, 41)).astype(dtype)
    expected = np.zeros((6, 9), np.int64)
    np.add.at(expected, (a.ravel(), b.ravel()), 1)
    counts = panoptic._code_histogram(a, 6, b, 9)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, expected)
    # Non-contiguous maps (a view) count the same.
    np.testing.assert_array_equal(
        panoptic._code_histogram(a[:, ::2], 6, b[:, ::2], 9),
        panoptic._code_histogram(np.ascontiguousarray(a[:, ::2]), 6, b[:, ::2].copy(), 9),
    )


def test_ground_truth_of_another_size_is_refused():
    gt = compact_ids(np.ones((2, 3), np.int64), [1])
    segments = [{"id": 1, "category_id": 1, "iscrowd": 0, "area": 6}]
    with pytest.raises(ValueError, match=r"img\.png: ground truth is \(2, 3\) but the predic"):
        pq_compact_stats(gt, segments, np.ones((3, 2), np.int32), segments, [1], "img.png")
    with pytest.raises(ValueError, match=r"img\.png \(prediction\): segment ids must be in"):
        pq_compact_stats(gt, segments, np.full((2, 3), -2), segments, [1], "img.png")
