import math

import pytest
import torch

from maskformer.modeling.postprocessing import (
    instance_inference,
    panoptic_inference,
    semantic_inference,
)

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


def test_panoptic_query_winning_pixels_without_its_own_mask_leaves_them_void():
    # Query 1's mask is below 0.5 everywhere (its own area is 0), yet it wins column 1 because
    # query 0 is even less sure there: the official rule skips it, so column 1 is void.
    masks = torch.full((2, 2, 2), -BIG)
    masks[0, :, 0] = BIG
    masks[1, :, 1] = -1.0
    cls = torch.stack([_query(0), _query(1)])
    seg, info = panoptic_inference(cls, masks, [0, 1], 0.8, 0.8)
    assert seg.tolist() == [[1, 0], [1, 0]]
    assert info == [{"id": 1, "isthing": True, "category_id": 0}]


def test_panoptic_overlap_ratio_equal_to_the_threshold_is_kept():
    # Query 1 (lower score) keeps 3 of its 4 pixels: ratio 0.75, kept at 0.75, dropped at 0.76.
    masks = torch.full((2, 1, 5), -BIG)
    masks[0, 0, 0:2] = BIG
    masks[1, 0, 1:5] = BIG
    cls = torch.stack([_query(0), _query(1, score=5.0)])
    seg, info = panoptic_inference(cls, masks, [0, 1], 0.5, overlap_threshold=0.75)
    assert seg.tolist() == [[1, 1, 2, 2, 2]] and len(info) == 2
    seg, info = panoptic_inference(cls, masks, [0, 1], 0.5, overlap_threshold=0.76)
    assert seg.tolist() == [[1, 1, 0, 0, 0]] and len(info) == 1


def _logits(*probs):
    """Class logits whose softmax is `probs` (the last entry is "no object")."""
    return torch.tensor(probs).log()


def _instance_case():
    # K = 3 (0, 1 things, 2 stuff), Q = 3, masks 2 x 4.
    mask_cls = torch.stack(
        [
            _logits(0.6, 0.2, 0.1, 0.1),
            _logits(0.1, 0.7, 0.1, 0.1),
            _logits(0.05, 0.05, 0.8, 0.1),
        ]
    )
    masks = torch.full((3, 2, 4), -BIG)
    masks[0, :, 0:2] = BIG  # 4 pixels at probability ~1
    masks[1, :, 2] = math.log(3.0)  # 2 pixels at probability 0.75
    masks[2, :, 3] = BIG
    return mask_cls, masks


def test_instance_top_k_over_query_class_pairs_with_scores_and_boxes():
    mask_cls, masks = _instance_case()
    out = instance_inference(mask_cls, masks, max_detections=3, candidate_classes=[0, 1])
    # Top 3 pairs by class probability: (q1, c1) 0.7, (q0, c0) 0.6, (q0, c1) 0.2; query 0 gives
    # two detections. Score = class probability x mean mask probability inside the mask.
    assert out.image_size == (2, 4)
    assert out.pred_classes.tolist() == [0, 1, 1]
    assert out.scores.tolist() == pytest.approx([0.6, 0.7 * 0.75, 0.2], rel=1e-5)
    expected_masks = [masks[0] > 0, masks[1] > 0, masks[0] > 0]
    assert all(torch.equal(m, e) for m, e in zip(out.pred_masks, expected_masks))
    assert out.pred_masks.dtype == torch.bool
    # XYXY, exclusive right/bottom: columns 0-1 of both rows; column 2 of both rows.
    assert out.pred_boxes.tensor.tolist() == [[0, 0, 2, 2], [2, 0, 3, 2], [0, 0, 2, 2]]


def test_instance_score_threshold_and_all_classes():
    mask_cls, masks = _instance_case()
    out = instance_inference(
        mask_cls, masks, max_detections=3, candidate_classes=[0, 1], score_threshold=0.3
    )
    assert out.pred_classes.tolist() == [0, 1]
    # Without a thing list every class competes: the stuff query's 0.8 comes first.
    out = instance_inference(mask_cls, masks, max_detections=1)
    assert out.pred_classes.tolist() == [2] and out.scores.tolist() == pytest.approx([0.8])
    assert out.pred_boxes.tensor.tolist() == [[3, 0, 4, 2]]


def test_instance_k_larger_than_pairs_and_empty_masks():
    mask_cls, masks = _instance_case()
    masks[1] = -BIG  # query 1 now has an empty mask: its detections score 0 and are dropped
    out = instance_inference(mask_cls, masks, max_detections=100, candidate_classes=[0, 1])
    # 6 pairs minus query 1's two, highest score first.
    assert out.scores.tolist() == pytest.approx([0.6, 0.2, 0.05, 0.05], rel=1e-5)
    assert out.pred_classes.tolist()[:2] == [0, 1] and sorted(out.pred_classes[2:]) == [0, 1]
    none = instance_inference(mask_cls, masks, max_detections=10, candidate_classes=[])
    assert len(none) == 0 and none.pred_masks.shape == (0, 2, 4)
    assert none.pred_boxes.tensor.shape == (0, 4)
