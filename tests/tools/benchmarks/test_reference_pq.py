"""panopticapi's pq_compute in the calling process (tools/benchmarks/reference_pq.py), checked
against hand-computed PQ."""

import json
import multiprocessing
import os

import numpy as np
import panopticapi.evaluation as pq_module
import pytest
from PIL import Image

from maskformer.data.io import panoptic_ids_to_rgb
from tools.benchmarks.reference_pq import panopticapi_pq


def _write_pq_case(root):
    """Two identical 4 x 10 images: GT cat (id 3) on columns 0-4, wall (id 20) on 5-9; the
    prediction has the cat on 0-3 (IoU 16/20) and the wall on 4-9 (IoU 20/24)."""
    categories = [
        {"id": 3, "name": "cat", "isthing": 1, "color": [200, 0, 0]},
        {"id": 20, "name": "wall", "isthing": 0, "color": [90, 90, 90]},
    ]
    gt = np.zeros((4, 10), np.int64)
    gt[:, :5], gt[:, 5:] = 1, 2
    pred = np.zeros((4, 10), np.int64)
    pred[:, :4], pred[:, 4:] = 7, 8
    for kind, ids, segs in (("gt", gt, [(1, 3), (2, 20)]), ("pred", pred, [(7, 3), (8, 20)])):
        os.makedirs(os.path.join(root, kind))
        anns = []
        for image_id in (1, 2):
            name = f"{image_id}.png"
            Image.fromarray(panoptic_ids_to_rgb(ids)).save(os.path.join(root, kind, name))
            # panopticapi takes ground-truth areas from the JSON, predicted ones from the PNG.
            info = [
                {"id": i, "category_id": c, "iscrowd": 0, "area": int((ids == i).sum())}
                for i, c in segs
            ]
            anns.append({"image_id": image_id, "file_name": name, "segments_info": info})
        with open(os.path.join(root, kind + ".json"), "w") as f:
            json.dump({"annotations": anns, "categories": categories, "images": []}, f)


def test_hand_computed_pq_without_a_process_pool(tmp_path, monkeypatch):
    _write_pq_case(str(tmp_path))

    def no_pool(*args, **kwargs):
        raise AssertionError("a process pool was started")

    monkeypatch.setattr(multiprocessing, "Pool", no_pool)
    original = pq_module.pq_compute_multi_core
    res = panopticapi_pq(
        str(tmp_path / "gt.json"), str(tmp_path / "pred.json"),
        str(tmp_path / "gt"), str(tmp_path / "pred"),
    )  # fmt: skip
    assert pq_module.pq_compute_multi_core is original  # restored
    assert res["Things"]["pq"] == pytest.approx(0.8)
    assert res["Stuff"]["pq"] == pytest.approx(20 / 24)
    assert res["All"]["pq"] == pytest.approx((0.8 + 20 / 24) / 2)
    assert res["All"]["rq"] == 1.0 and res["All"]["n"] == 2
    assert res["per_class"][3]["pq"] == pytest.approx(0.8)
