"""InstanceEvaluator: faster-coco-eval's AP equals pycocotools' (to 1e-6) on generated
predictions with misses, wrong classes and false positives."""

import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.structures import Boxes, Instances

from maskformer.evaluation import instance
from maskformer.evaluation.instance import InstanceEvaluator

pytest.importorskip("faster_coco_eval")

H, W = 40, 50


def _rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode()
    return rle


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    images, annotations, outputs = [], [], []
    for image_id in range(1, 7):
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "height": H, "width": W})
        masks, classes = [], []
        for _ in range(rng.integers(2, 6)):
            m = np.zeros((H, W), bool)
            y, x = rng.integers(0, H - 10), rng.integers(0, W - 10)
            m[y : y + rng.integers(3, 12), x : x + rng.integers(3, 12)] = True
            c = int(rng.integers(1, 4))
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": c,
                "segmentation": _rle(m), "area": int(m.sum()),
                "bbox": mask_util.toBbox(_rle(m)).tolist(), "iscrowd": 0,
            })  # fmt: skip
            if rng.random() < 0.85:  # else missed
                masks.append(np.roll(m, int(rng.integers(-2, 3)), axis=1))
                classes.append(c - 1 if rng.random() < 0.8 else int(rng.integers(0, 3)))
        m = np.zeros((H, W), bool)
        m[:5, :5] = True  # a false positive
        masks.append(m)
        classes.append(0)
        inst = Instances((H, W))
        inst.pred_masks = torch.from_numpy(np.stack(masks))
        ys, xs = [np.any(inst.pred_masks.numpy(), axis=a) for a in (2, 1)]
        boxes = [[x.argmax(), y.argmax(), W - x[::-1].argmax(), H - y[::-1].argmax()]
                 for x, y in zip(xs, ys)]  # fmt: skip
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.scores = torch.from_numpy(rng.random(len(masks))).float()
        inst.pred_classes = torch.tensor(classes)
        outputs.append(({"image_id": image_id, "file_name": f"{image_id}.jpg"}, inst))
    categories = [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]
    path = tmp_path / "instances.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    name = "test_instance_eval_" + os.path.basename(tmp_path)
    register_coco_instances(name, {}, str(path), str(tmp_path))
    DatasetCatalog.get(name)  # loading sets the metadata's contiguous id map
    yield name, outputs
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _evaluate(name, outputs):
    evaluator = InstanceEvaluator(name, tasks=("bbox", "segm"), distributed=False)
    evaluator.reset()
    for input, inst in outputs:
        evaluator.process([input], [{"instances": inst}])
    return evaluator.evaluate()


def test_faster_coco_eval_gives_the_same_ap_as_pycocotools(dataset, monkeypatch):
    import faster_coco_eval

    name, outputs = dataset
    used = []

    class Recording(faster_coco_eval.COCOeval_faster):
        def evaluate(self):
            used.append(self.params.iouType)
            return super().evaluate()

    monkeypatch.setattr(faster_coco_eval, "COCOeval_faster", Recording)
    fast = _evaluate(name, outputs)
    assert sorted(used) == ["bbox", "segm"]  # faster-coco-eval computed both
    monkeypatch.setattr(instance, "faster_coco_eval_available", lambda: False)
    reference = _evaluate(name, outputs)
    for task in ("bbox", "segm"):
        assert 0 < reference[task]["AP"] < 100
        assert fast[task].keys() == reference[task].keys()
        for k, v in reference[task].items():
            assert fast[task][k] == pytest.approx(v, abs=1e-6, nan_ok=True), (task, k)
