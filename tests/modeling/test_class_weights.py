"""MODEL.MASK_FORMER.CLASS_WEIGHTS: the same weights in the cross-entropy and the matching cost
(hand-computed values), refusals, and the median-frequency suggestion of check_dataset."""

import math

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from maskformer.modeling import HungarianMatcher, SetCriterion
from maskformer.modeling.class_weights import median_frequency_weights, read_class_weights
from tests.common import tiny_cfg


def _logits_of(probs):
    return torch.tensor(probs).log()


def test_matching_cost_scales_the_class_cost_per_target_class():
    matcher = HungarianMatcher(cost_class=1.0, cost_mask=0.0, cost_dice=0.0, class_weights=[2, 0.5])
    logits = torch.zeros(2, 3)  # p = 1/3 for every class
    target = {"labels": torch.tensor([0, 1]), "masks": torch.zeros(2, 4, 4)}
    cost = matcher.cost_matrix(logits, torch.zeros(2, 4, 4), target)
    expected = torch.tensor([[-2 / 3, -0.5 / 3], [-2 / 3, -0.5 / 3]])
    assert torch.allclose(cost, expected)


def test_class_weights_change_the_assignment_as_computed_by_hand():
    # p(query, class): q0 = (0.6, 0.3, 0.1 no-object), q1 = (0.5, 0.1, 0.4); targets of class
    # 0 and 1. Unweighted: q0->t1, q1->t0 costs -0.8 < -0.7. Weights (3, 1): q0->t0, q1->t1
    # costs -1.9 < -1.8.
    outputs = {
        "pred_logits": _logits_of([[[0.6, 0.3, 0.1], [0.5, 0.1, 0.4]]]),
        "pred_masks": torch.zeros(1, 2, 4, 4),
    }
    targets = [{"labels": torch.tensor([0, 1]), "masks": torch.zeros(2, 4, 4)}]
    plain = HungarianMatcher(cost_class=1.0, cost_mask=0.0, cost_dice=0.0)
    weighted = HungarianMatcher(
        cost_class=1.0, cost_mask=0.0, cost_dice=0.0, class_weights=[3.0, 1.0]
    )
    (q, t) = plain(outputs, targets)[0]
    assert dict(zip(q.tolist(), t.tolist())) == {0: 1, 1: 0}
    (q, t) = weighted(outputs, targets)[0]
    assert dict(zip(q.tolist(), t.tolist())) == {0: 0, 1: 1}


def test_cross_entropy_uses_the_class_weights_and_no_object_weight():
    matcher = HungarianMatcher()
    criterion = SetCriterion(2, matcher, no_object_weight=0.1, class_weights=[2.0, 0.5])
    assert criterion.empty_weight.tolist() == pytest.approx([2.0, 0.5, 0.1])
    logits = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    targets = [{"labels": torch.tensor([0])}]
    indices = [(torch.tensor([0]), torch.tensor([0]))]
    loss = criterion.loss_labels(logits, targets, indices)
    # query 0 is class 0 (weight 2), query 1 "no object" (weight 0.1); weighted mean.
    nll0 = -math.log(math.e / (math.e + 2))
    nll1 = math.log(3)
    assert loss.item() == pytest.approx((2 * nll0 + 0.1 * nll1) / 2.1, rel=1e-6)


def test_config_list_and_file_reach_matcher_and_criterion(tmp_path):
    path = tmp_path / "weights.txt"
    path.write_text("1 2\n3 4 0.5\n")
    for value in ([1, 2, 3, 4, 0.5], str(path)):
        model = build_model(tiny_cfg("MODEL.MASK_FORMER.CLASS_WEIGHTS", value))
        assert model.criterion.empty_weight.tolist() == pytest.approx([1, 2, 3, 4, 0.5, 0.1])
        assert model.criterion.matcher.class_weights.tolist() == pytest.approx([1, 2, 3, 4, 0.5])
    model = build_model(tiny_cfg())
    assert model.criterion.matcher.class_weights is None
    assert model.criterion.empty_weight.tolist() == pytest.approx([1] * 5 + [0.1])


def test_wrong_count_is_refused_naming_both_numbers(tmp_path):
    with pytest.raises(ValueError, match="has 3 weights but the model has 5 classes"):
        build_model(tiny_cfg("MODEL.MASK_FORMER.CLASS_WEIGHTS", [1, 2, 3]))
    path = tmp_path / "w.txt"
    path.write_text("1 2")
    with pytest.raises(ValueError, match=r"w.txt' has 2 weights but the model has 5 classes"):
        read_class_weights(str(path), 5)
    with pytest.raises(ValueError, match="finite and >= 0"):
        read_class_weights([1, -1], 2)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_class_weights(str(tmp_path / "nope.txt"), 2)
    assert read_class_weights(None, 3) is None and read_class_weights([], 3) is None


def test_loading_a_checkpoint_keeps_the_configured_weights():
    weighted = build_model(tiny_cfg("MODEL.MASK_FORMER.CLASS_WEIGHTS", [1, 2, 3, 4, 5]))
    plain = build_model(tiny_cfg())
    weighted.load_state_dict(plain.state_dict())
    assert weighted.criterion.empty_weight.tolist() == pytest.approx([1, 2, 3, 4, 5, 0.1])


def test_median_frequency_weights_by_hand():
    # f = 10/100, 30/100, 50/250 -> median 0.2 -> 2, 2/3, 1; a class in no image -> 0.
    w = median_frequency_weights(np.array([10, 30, 50, 0]), np.array([100, 100, 250, 0]))
    assert w.tolist() == pytest.approx([2.0, 2 / 3, 1.0, 0.0])
