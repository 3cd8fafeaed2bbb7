import math

import pytest
import torch

from maskformer.modeling.postprocessing import panoptic_inference, semantic_inference

BIG = 20.0  # a logit whose sigmoid is 1 to float precision


def test_semantic_inference_hand_built():
    # 2 queries, K = 2. Query 0: class 0 with prob p0; query 1: class 1 with prob p1.
    mask_cls = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    mask_pred = torch.tensor([[[BIG, -BIG], [0.0, -BIG]], [[-BIG, BIG], [0.0, BIG]]])
    out = semantic_inference(mask_cls, mask_pred)
    assert out.shape == (2, 2, 2)
    p = mask_cls.softmax(-1)
    s = 1 / (1 + math.exp(-BIG))
    # Pixel (0, 0): only query 0 is on.  Pixel (1, 0): both masks at sigmoid 0.5.
    assert out[0, 0, 0].item() == pytest.approx(float(p[0, 0] * s + p[1, 0] * (1 - s)), rel=1e-5)
    assert out[1, 0, 0].item() == pytest.approx(float(p[0, 1] * s + p[1, 1] * (1 - s)), rel=1e-5)
    assert out[0, 1, 0].item() == pytest.approx(0.5 * (p[0, 0] + p[1, 0]).item(), rel=1e-5)
    assert out.argmax(0).tolist() == [[0, 1], [0, 1]]
    # The "no object" column is dropped after the softmax, not before.
    assert out[:, 0, 0].sum().item() < 1.0


def _query(cls, num_classes=3, score=10.0):
    row = torch.full((num_classes + 1,), -score)
    row[cls] = score
    return row


def test_panoptic_merges_stuff_and_keeps_things_apart():
    # K = 3: class 0 and 1 are things, class 2 is stuff.
    h, w = 4, 6
    masks = torch.full((4, h, w), -BIG)
    masks[0, :, 0:2] = BIG  # thing 0
    masks[1, :, 2:3] = BIG  # thing 0 again: a second instance
    masks[2, :, 3:4] = BIG  # stuff 2
    masks[3, :, 4:6] = BIG  # stuff 2 again: merged with query 2
    cls = torch.stack([_query(0), _query(0), _query(2), _query(2)])
    seg, info = panoptic_inference(
        cls, masks, thing_ids=[0, 1], object_mask_threshold=0.8, overlap_threshold=0.8
    )
    assert seg.dtype == torch.int32
    assert [s["category_id"] for s in info] == [0, 0, 2]
    assert [s["isthing"] for s in info] == [True, True, False]
    assert seg[0].tolist() == [1, 1, 2, 3, 3, 3]
    assert set(seg.unique().tolist()) == {s["id"] for s in info}


def test_panoptic_filters_no_object_low_scores_overlap_and_leaves_void():
    h, w = 2, 4
    masks = torch.full((4, h, w), -BIG)
    masks[0, :, 0] = BIG  # "no object" query: dropped
    masks[1, :, 1] = BIG  # low score: dropped by the object threshold
    masks[2, :, 2:4] = BIG  # kept
    masks[3] = BIG - 1.0  # everywhere, but query 2 (higher score) wins columns 2-3:
    # visible on 4 of its 8 pixels < 0.8, so the overlap filter drops it.
    cls = torch.stack([_query(3), _query(1, score=0.1), _query(1), _query(0, score=5.0)])
    seg, info = panoptic_inference(
        cls, masks, [0, 1], object_mask_threshold=0.8, overlap_threshold=0.8
    )
    assert [s["category_id"] for s in info] == [1]
    assert seg.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1]]  # 0 = void
    # Without the overlap filter query 3 keeps its visible half.
    seg, info = panoptic_inference(cls, masks, [0, 1], 0.8, overlap_threshold=0.0)
    assert [s["category_id"] for s in info] == [1, 0]
    assert seg.tolist() == [[2, 2, 1, 1], [2, 2, 1, 1]]


def test_panoptic_with_nothing_kept_is_all_void():
    cls = torch.stack([_query(3), _query(3)])
    seg, info = panoptic_inference(cls, torch.randn(2, 3, 3), [0], 0.8, 0.8)
    assert info == [] and seg.abs().sum().item() == 0 and seg.shape == (3, 3)
