"""Batched evaluation gives the metrics of one image at a time: batches hold images of one
size (padding would change a smaller image's output)."""

import os

import pytest
import torch
from detectron2.modeling import build_model

import train_net
from maskformer import get_maskformer_cfg
from maskformer.data import build_test_loader
from maskformer.data.test_loader import SameSizeBatches
from tests.common import CONFIG_DIR, randomize_
from tests.engine.test_train_net import QUICKSTART, TINY


def _item(h, w, i):
    return {"image": torch.zeros(3, h, w), "i": i}


def test_batches_hold_one_size_and_every_image_once():
    sizes = [(4, 6), (4, 8), (4, 6), (4, 6), (4, 8), (5, 5), (4, 6)]
    stream = [[_item(h, w, i)] for i, (h, w) in enumerate(sizes)]
    batches = list(SameSizeBatches(stream, 2))
    got = [[(tuple(x["image"].shape[1:]), x["i"]) for x in b] for b in batches]
    assert got == [
        [((4, 6), 0), ((4, 6), 2)],
        [((4, 8), 1), ((4, 8), 4)],
        [((4, 6), 3), ((4, 6), 6)],
        [((5, 5), 5)],
    ]
    with pytest.raises(ValueError, match="TEST.IMS_PER_BATCH"):
        SameSizeBatches(stream, 0)


def _cfg(*extra):
    return get_maskformer_cfg(os.path.join(CONFIG_DIR, QUICKSTART), [*TINY, *extra])


def test_the_quickstart_loader_batches_only_images_of_one_size():
    cfg = _cfg("TEST.IMS_PER_BATCH", "3")
    batches = list(build_test_loader(cfg, "quickstart_sem_seg_val"))
    assert all(len({tuple(x["image"].shape) for x in b}) == 1 for b in batches)
    assert max(len(b) for b in batches) > 1  # there is batching to test
    names = sorted(x["file_name"] for b in batches for x in b)
    single = sorted(x["file_name"] for b in build_test_loader(_cfg(), "quickstart_sem_seg_val")
                    for x in b)  # fmt: skip
    assert names == single


def test_a_same_size_batch_gives_each_image_its_own_output():
    cfg = _cfg()
    model = randomize_(build_model(cfg).eval(), seed=2)
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 64, 80, generator=g) * 255 for _ in range(3)]
    inputs = [{"image": x, "height": 64, "width": 80} for x in images]
    with torch.no_grad():
        batched = model(inputs)
        for one, out in zip(inputs, batched):
            alone = model([one])[0]["sem_seg"]
            # Float rounding only: a batch may take another convolution kernel path.
            torch.testing.assert_close(out["sem_seg"], alone, rtol=1e-5, atol=1e-5)
            assert torch.equal(out["sem_seg"].argmax(0), alone.argmax(0))


@pytest.mark.slow
def test_eval_only_metrics_do_not_depend_on_the_batch_size(tmp_path):
    cfg = _cfg()
    torch.manual_seed(0)
    weights = tmp_path / "model.pth"
    torch.save({"model": randomize_(build_model(cfg), seed=3).state_dict()}, weights)
    results = {}
    for batch in (1, 3):
        argv = ["--config-file", os.path.join(CONFIG_DIR, QUICKSTART), "--eval-only", *TINY]
        argv += ["MODEL.WEIGHTS", str(weights), "TEST.IMS_PER_BATCH", str(batch)]
        argv += ["OUTPUT_DIR", str(tmp_path / f"bs{batch}")]
        args = train_net.default_argument_parser().parse_args(argv)
        results[batch] = train_net.main(args)["sem_seg"]
    assert 0 < results[1]["mIoU"] < 100  # the random weights do not predict one class only
    assert results[3] == pytest.approx(results[1], abs=1e-9)
