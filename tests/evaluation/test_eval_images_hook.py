"""The TensorBoard event file of a training run holds image | prediction | ground truth
overlays from every evaluation."""

import glob
import io
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

from maskformer.data.io import read_image
from maskformer.engine.hooks import _segment_classes
from maskformer.evaluation.reports import overlay_panels
from tests.engine.test_train_net import _trainer


def test_overlay_panels_by_hand():
    image = np.full((2, 2, 3), 100, np.uint8)
    pred = np.array([[0, 1], [255, -1]])
    gt = np.array([[1, 1], [0, 255]])
    colors = [[0, 0, 0], [200, 0, 100]]
    panels = overlay_panels(image, pred, gt, colors, alpha=0.5)
    assert panels.shape == (2, 6, 3)
    np.testing.assert_array_equal(panels[:, :2], image)
    np.testing.assert_array_equal(panels[0, 2], [50, 50, 50])  # class 0 over grey
    np.testing.assert_array_equal(panels[0, 3], [150, 50, 100])  # class 1
    np.testing.assert_array_equal(panels[1, 2], [100, 100, 100])  # ignore label: not drawn
    np.testing.assert_array_equal(panels[1, 3], [100, 100, 100])
    np.testing.assert_array_equal(panels[0, 4], [150, 50, 100])


def test_segment_classes_by_hand():
    # A COCO-style RGB-coded id (far beyond the segment count), an unlabeled 0, and a segment
    # id with no entry in the list.
    big = 255 * 256 * 256 + 3
    ids = np.array([[0, big], [7, big]])
    segments = [{"id": big, "category_id": 12}, {"id": 5, "category_id": 2}]
    np.testing.assert_array_equal(_segment_classes(ids, segments), [[-1, 12], [-1, 12]])
    ids = np.array([[1, 2], [2, 0]])
    segments = [{"id": 1, "category_id": 0}, {"id": 2, "category_id": 4}]
    np.testing.assert_array_equal(_segment_classes(ids, segments), [[0, 4], [4, -1]])


@pytest.mark.slow
def test_each_evaluation_writes_overlays_to_tensorboard(tmp_path):
    extra = ["SOLVER.MAX_ITER", "4", "TEST.EVAL_PERIOD", "2", "TEST.EVAL_TENSORBOARD_IMAGES", "2"]
    trainer, _ = _trainer(tmp_path, *extra)
    trainer.train()
    (events,) = glob.glob(str(tmp_path / "events.out.tfevents*"))
    acc = EventAccumulator(events, size_guidance={IMAGES: 0})
    acc.Reload()
    tags = acc.Tags()[IMAGES]
    records = DatasetCatalog.get(trainer.cfg.DATASETS.TEST[0])[:2]
    files = {os.path.splitext(os.path.basename(r["file_name"]))[0]: r["file_name"] for r in records}
    assert len(tags) == 2 and all("(image | prediction | ground truth)" in t for t in tags)
    for tag in tags:
        images = acc.Images(tag)
        # The evaluation at iteration 2 (step 1) and the final one, after the 4 steps.
        assert [i.step for i in images] == [1, 4]
        panels = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)))
        image = read_image(files[tag.split("/")[1].split(" ")[0]], "RGB")
        assert panels.shape == (image.shape[0], 3 * image.shape[1], 3)
        np.testing.assert_array_equal(panels[:, : image.shape[1]], image)
        assert not np.array_equal(panels[:, image.shape[1] : 2 * image.shape[1]], image)
