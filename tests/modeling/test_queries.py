"""Any number of queries (200, 300), instance top-k beyond 100, and 100-query weights loaded
into a 200-query model (the query embeddings listed as not loaded: they keep their fresh init)."""

import pytest
import torch
from detectron2.modeling import build_model

from maskformer.checkpoint import MaskFormerCheckpointer
from tests.common import randomize_, sample, tiny_cfg


@pytest.mark.parametrize("num_queries", [200, 300])
def test_training_and_inference_with_many_queries(num_queries):
    torch.manual_seed(0)
    model = build_model(tiny_cfg("MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", num_queries))
    assert model.sem_seg_head.predictor.query_embed.weight.shape == (num_queries, 32)
    model.train()
    losses = model([sample(64, 64, [0, 1, 2, 3, 4], seed=1)])
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 64, 80) * 255}])[0]
    assert out["sem_seg"].shape == (5, 64, 80) and torch.isfinite(out["sem_seg"]).all()


def test_instance_top_k_beyond_100():
    torch.manual_seed(0)
    cfg = tiny_cfg(
        "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES",
        300,
        "MODEL.MASK_FORMER.TEST.INSTANCE_ON",
        True,
        "MODEL.MASK_FORMER.TEST.INSTANCE_SCORE_THRESHOLD",
        -1.0,  # keep every top-k pair, whatever its score
        "TEST.DETECTIONS_PER_IMAGE",
        250,
    )
    model = randomize_(build_model(cfg)).eval()
    with torch.no_grad():
        instances = model([{"image": torch.rand(3, 64, 64) * 255}])[0]["instances"]
    assert len(instances) == 250
    assert (instances.scores[:-1] >= instances.scores[1:]).all()


def test_100_query_weights_into_a_200_query_model_list_the_query_embeddings(tmp_path):
    torch.manual_seed(0)
    small = build_model(tiny_cfg("MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 100))
    path = tmp_path / "q100.pth"
    torch.save({"model": small.state_dict()}, path)
    big = build_model(tiny_cfg("MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 200))
    fresh = big.sem_seg_head.predictor.query_embed.weight.detach().clone()
    checkpointer = MaskFormerCheckpointer(big)
    checkpointer.load(str(path))
    report = checkpointer.last_report
    key = "sem_seg_head.predictor.query_embed.weight"
    assert report.shape_mismatches == [(key, (100, 32), (200, 32))]
    assert key in report.summary()
    # The queries keep their initialisation; everything else comes from the file.
    assert torch.equal(big.sem_seg_head.predictor.query_embed.weight, fresh)
    for k, v in small.state_dict().items():
        if k != key:
            assert torch.equal(big.state_dict()[k], v), k
