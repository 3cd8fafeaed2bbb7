"""The evaluators of `cityscapes_fine_panoptic_val` on a miniature made by cityscapesscripts'
converters: PQ equal to panopticapi's `pq_compute` on imperfect predictions, mask AP by
Detectron2's CityscapesInstanceEvaluator (100 for the ground truth, hand-computed values for
shifted or missing objects), and mIoU equal to the Cityscapes script's IoU."""

import contextlib
import io
import json
import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Instances
from PIL import Image

from maskformer.data.datasets import register_all
from maskformer.evaluation import EvaluationOptions, PanopticEvaluator, build_evaluator
from maskformer.evaluation.cityscapes import CityscapesInstanceEvaluator
from tests.fixtures import miniatures as mini
from tools.benchmarks.reference_pq import panopticapi_pq

pytest.importorskip("cityscapesscripts")
from cityscapesscripts.helpers.labels import id2label, labels  # noqa: E402

DEFAULT_ROOT = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
VAL = "cityscapes_fine_panoptic_val"
THINGS = [label for label in labels if label.hasInstances and not label.ignoreInEval]
STUFF = [label for label in labels if not label.hasInstances and not label.ignoreInEval]


def _register(root):
    register_all(root)
    yield root
    register_all(DEFAULT_ROOT)


@pytest.fixture
def hand_root(tmp_path):
    """The two hand-made streets of each split."""
    mini.write_cityscapes_annotated(str(tmp_path), mini.CITYSCAPES_SCENES)
    yield from _register(str(tmp_path))


@pytest.fixture
def random_root(tmp_path):
    """Six random streets in val."""
    rng = np.random.default_rng(0)
    stems = [f"lindau_{i:06d}_000019" for i in range(6)]
    scenes = {"val": {s: mini.random_cityscapes_scene(rng) for s in stems}}
    mini.write_cityscapes_annotated(str(tmp_path), scenes)
    yield from _register(str(tmp_path))


def _evaluated_segments(instance_ids):
    """[(segment id, label)] of the classes Cityscapes evaluates, in the zip's instance-id map."""
    out = []
    for i in np.unique(instance_ids).tolist():
        label = id2label[i // 1000 if i >= 1000 else i]
        if not label.ignoreInEval:
            out.append((i, label))
    return out


def _shifted(mask, dy, dx):
    """`mask` moved by (dy, dx) pixels; what leaves the image is lost."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def _perturbed_panoptic(rng, instance_ids):
    """A panoptic prediction made from the ground truth: segments shifted by up to 3 pixels,
    some dropped, some of another class (a thing for a thing, stuff for stuff), groups predicted
    as one segment of their class, extra segments anywhere, void covered or not, some pixels left
    unpredicted.

    Returns (H, W) ids 1..S and segments in both forms: the model's (contiguous "category_id",
    "isthing") and panopticapi's (dataset "category_id")."""
    h, w = instance_ids.shape
    ids = np.zeros((h, w), np.int64)
    label_of = {}
    for i, label in _evaluated_segments(instance_ids):
        if rng.random() < 0.1:
            continue  # missed
        if rng.random() < 0.15:
            label = THINGS[rng.integers(len(THINGS))] if label.hasInstances else STUFF[0]
        new = len(label_of) + 1
        ids[_shifted(instance_ids == i, *rng.integers(-3, 4, size=2))] = new
        label_of[new] = label
    for _ in range(int(rng.integers(1, 4))):  # extras
        y, x = int(rng.integers(0, h - 6)), int(rng.integers(0, w - 6))
        new = len(label_of) + 1
        ids[y : y + int(rng.integers(3, 12)), x : x + int(rng.integers(3, 20))] = new
        label_of[new] = (THINGS + STUFF)[rng.integers(len(THINGS) + len(STUFF))]
    void = np.isin(instance_ids, [label.id for label in labels if label.ignoreInEval])
    if rng.random() < 0.5:
        new = len(label_of) + 1
        ids[void] = new
        label_of[new] = STUFF[rng.integers(len(STUFF))]
    ids[rng.random((h, w)) < 0.02] = 0
    present = set(np.unique(ids).tolist()) - {0}
    model = [
        {"id": i, "category_id": label.trainId, "isthing": label.hasInstances}
        for i, label in label_of.items()
        if i in present
    ]
    dataset = [{"id": i, "category_id": label.id} for i, label in label_of.items() if i in present]
    return ids, model, dataset


def _panopticapi(meta, pred_json, pred_dir):
    return panopticapi_pq(meta.panoptic_json, pred_json, meta.panoptic_root, pred_dir)


def test_pq_equals_panopticapi_overall_and_per_class(random_root, tmp_path):
    from panopticapi.utils import id2rgb

    meta = MetadataCatalog.get(VAL)
    dicts = DatasetCatalog.get(VAL)
    rng = np.random.default_rng(1)
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    evaluator = build_evaluator(
        VAL, str(tmp_path / "report"), EvaluationOptions(semantic=False, panoptic=True)
    )
    assert isinstance(evaluator, PanopticEvaluator)
    evaluator.reset()
    annotations = []
    for d in dicts:
        ids, model, dataset = _perturbed_panoptic(
            rng, mini.read_cityscapes_instance_ids(random_root, "val", d["image_id"])
        )
        evaluator.process([d], [{"panoptic_seg": (torch.from_numpy(ids), model)}])
        name = d["image_id"] + ".png"
        Image.fromarray(id2rgb(ids)).save(pred_dir / name)
        annotations.append({"image_id": d["image_id"], "file_name": name, "segments_info": dataset})
    res = evaluator.evaluate()["panoptic_seg"]
    pred_json = tmp_path / "pred.json"
    pred_json.write_text(json.dumps({"annotations": annotations}))
    reference = _panopticapi(meta, str(pred_json), str(pred_dir))

    assert reference["Things"]["n"] > 0 and reference["Stuff"]["n"] > 0
    for short, group in (("", "All"), ("_th", "Things"), ("_st", "Stuff")):
        for k in ("PQ", "SQ", "RQ"):
            assert res[k + short] == pytest.approx(100 * reference[group][k.lower()], abs=1e-9)
    assert 0 < res["PQ"] < 100
    # Per class, in the evaluator's report; the predictions exercised FP and FN.
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())["panoptic_seg"]
    categories = json.load(open(meta.panoptic_json))["categories"]
    assert len(categories) == 19
    for c in categories:
        row = report["per_class"][c["name"]]
        if row["TP"] + row["FP"] + row["FN"]:
            assert row["PQ"] == pytest.approx(100 * reference["per_class"][c["id"]]["pq"])
    assert sum(r["FP"] for r in report["per_class"].values()) > 0
    assert sum(r["FN"] for r in report["per_class"].values()) > 0


def _instances(masks, train_ids):
    """Instance output: (N, H, W) masks of classes `train_ids` (contiguous), all of score 1."""
    inst = Instances(mini.CITYSCAPES_SIZE)
    inst.pred_masks = torch.from_numpy(np.stack(masks).astype(bool))
    inst.pred_classes = torch.tensor(train_ids, dtype=torch.int64)
    inst.scores = torch.ones(len(masks))
    return inst


def _instance_ap(root, predict):
    """Detectron2's CityscapesInstanceEvaluator (through `build_evaluator`) on `predict(label,
    mask) -> [masks]` applied to each ground-truth object (label id * 1000 + k)."""
    evaluator = build_evaluator(VAL, None, EvaluationOptions(semantic=False, instance=True))
    assert isinstance(evaluator, CityscapesInstanceEvaluator)
    evaluator.reset()
    for d in DatasetCatalog.get(VAL):
        instance_ids = mini.read_cityscapes_instance_ids(root, "val", d["image_id"])
        masks, classes = [], []
        for i, label in _evaluated_segments(instance_ids):
            if label.hasInstances:
                for mask in predict(label, instance_ids == i, crowd=i < 1000):
                    masks.append(mask)
                    classes.append(label.trainId)
        evaluator.process([d], [{"instances": _instances(masks, classes)}])
    with contextlib.redirect_stdout(io.StringIO()):  # the script's table
        return evaluator.evaluate()["segm"]


def test_instance_ap_of_the_ground_truth_is_100(hand_root, tmp_path_factory, monkeypatch):
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(cwd)
    # A prediction over the car group is no false positive.
    res = _instance_ap(hand_root, lambda label, mask, crowd: [mask])
    assert res == {"AP": pytest.approx(100.0), "AP50": pytest.approx(100.0)}
    assert os.listdir(cwd) == []  # the script's matches.json is not left behind


def test_instance_ap_of_shifted_and_missing_objects(hand_root):
    """Two classes have objects in val: person and car (AP is their mean)."""

    def iou(a, b):
        return (a & b).sum() / (a | b).sum()

    def shift_cars(label, mask, crowd):
        if label.name != "car" or crowd:
            return [mask]
        # The smallest shift to the left with IoU < 0.75: it falls in (0.70, 0.75), so the car
        # is found at overlaps 0.50 ... 0.70 (5 of the 10) only.
        k = next(k for k in range(1, 20) if iou(mask, _shifted(mask, 0, -k)) < 0.75)
        assert iou(mask, _shifted(mask, 0, -k)) > 0.70
        return [_shifted(mask, 0, -k)]

    res = _instance_ap(hand_root, shift_cars)
    assert res == {"AP": pytest.approx((100 + 50) / 2), "AP50": pytest.approx(100.0)}
    without_people = _instance_ap(
        hand_root, lambda label, mask, crowd: [] if label.name == "person" else [mask]
    )
    assert without_people == {"AP": pytest.approx(50.0), "AP50": pytest.approx(50.0)}


def test_miou_equals_the_cityscapes_scripts_iou(hand_root):
    """Our mIoU on the train-id maps and the Cityscapes script's IoU on the label-id maps, for a
    prediction whose classes all occur in the ground truth (else the script counts a predicted
    class absent from the ground truth as IoU 0, and we leave it out, as Detectron2 does)."""
    ours = build_evaluator(VAL, None, EvaluationOptions(semantic=True))
    script = build_evaluator("cityscapes_fine_sem_seg_val")
    for evaluator in (ours, script):
        evaluator.reset()
    rng = np.random.default_rng(0)
    for d in DatasetCatalog.get(VAL):
        gt = np.array(Image.open(d["sem_seg_file_name"])).astype(np.int64)
        classes = np.unique(gt[gt != 255])
        pred = np.where(gt == 255, classes[0], gt)
        pred = np.roll(pred, 2, axis=1)
        pred[rng.random(gt.shape) < 0.1] = classes[rng.integers(len(classes))]
        scores = torch.nn.functional.one_hot(torch.from_numpy(pred), 19).permute(2, 0, 1).float()
        for evaluator in (ours, script):
            evaluator.process([d], [{"sem_seg": scores}])
    with contextlib.redirect_stdout(io.StringIO()):
        miou, iou = ours.evaluate()["sem_seg"]["mIoU"], script.evaluate()["sem_seg"]["IoU"]
    assert 50 < miou < 100
    assert miou == pytest.approx(iou, abs=1e-9)
