import torch

from maskformer.modeling.matcher import HungarianMatcher


def _random_batch(b=3, q=6, k=4, h=8, w=10, seed=0, num_targets=(2, 3, 1)):
    g = torch.Generator().manual_seed(seed)
    outputs = {
        "pred_logits": torch.randn(b, q, k + 1, generator=g),
        "pred_masks": torch.randn(b, q, h, w, generator=g),
    }
    targets = [
        {
            "labels": torch.randint(0, k, (t,), generator=g),
            "masks": torch.rand(t, 4 * h, 4 * w, generator=g) > 0.5,
        }
        for t in num_targets
    ]
    return outputs, targets


def test_batched_equals_per_image():
    matcher = HungarianMatcher(1, 20, 1)
    outputs, targets = _random_batch()
    batched = matcher(outputs, targets)
    for b, target in enumerate(targets):
        single = matcher({k: v[b : b + 1] for k, v in outputs.items()}, [target])[0]
        assert torch.equal(batched[b][0], single[0]) and torch.equal(batched[b][1], single[1])
    for (i, j), t in zip(batched, targets):
        assert len(i) == len(j) == len(t["labels"])
        assert len(set(i.tolist())) == len(i)


def test_perfect_prediction_is_matched_to_itself():
    h, w, k = 8, 8, 4
    gt = torch.zeros(3, 4 * h, 4 * w, dtype=torch.bool)
    gt[0, :16], gt[1, 16:, :16], gt[2, 16:, 16:] = True, True, True
    labels = torch.tensor([2, 0, 3])
    perm = torch.tensor([4, 1, 3])  # query that predicts target t
    logits = torch.full((1, 5, k + 1), -10.0)
    logits[0, :, k] = 10.0  # unmatched queries say "no object"
    masks = torch.full((1, 5, h, w), -10.0)
    small = gt[:, ::4, ::4]
    for t, q in enumerate(perm):
        logits[0, q, k] = -10.0
        logits[0, q, labels[t]] = 10.0
        masks[0, q][small[t]] = 10.0
    ((i, j),) = HungarianMatcher(1, 20, 1)(
        {"pred_logits": logits, "pred_masks": masks}, [{"labels": labels, "masks": gt}]
    )
    assert dict(zip(j.tolist(), i.tolist())) == {0: 4, 1: 1, 2: 3}


def test_empty_targets_give_empty_matches():
    outputs, targets = _random_batch(num_targets=(0, 2, 0))
    indices = HungarianMatcher(1, 20, 1)(outputs, targets)
    assert [len(i) for i, _ in indices] == [0, 2, 0]
    assert indices[0][0].dtype == torch.int64


def test_more_targets_than_queries():
    outputs, targets = _random_batch(b=1, q=3, num_targets=(5,))
    ((i, j),) = HungarianMatcher(1, 20, 1)(outputs, targets)
    assert len(i) == len(j) == 3
    assert len(set(j.tolist())) == 3 and max(j.tolist()) < 5


def test_nonfinite_costs_do_not_crash_and_are_counted():
    outputs, targets = _random_batch(b=1, num_targets=(3,))
    outputs["pred_masks"][0, 0] = float("nan")
    outputs["pred_logits"][0, 1, 0] = float("inf")
    matcher = HungarianMatcher(1, 20, 1)
    ((i, j),) = matcher(outputs, targets)
    assert len(i) == 3
    assert matcher.num_nonfinite_costs > 0
    # The broken queries are only used if nothing else is available: 6 queries, 3 targets.
    assert 0 not in i.tolist()


def test_runs_in_fp32_under_autocast():
    outputs, targets = _random_batch()
    expected = HungarianMatcher(1, 20, 1)(outputs, targets)
    half = {k: v.bfloat16() for k, v in outputs.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cost = HungarianMatcher(1, 20, 1).cost_matrix(
            half["pred_logits"][0], half["pred_masks"][0], targets[0]
        )
        got = HungarianMatcher(1, 20, 1)(half, targets)
    assert cost.dtype == torch.float32
    assert all(len(a[0]) == len(b[0]) for a, b in zip(got, expected))
