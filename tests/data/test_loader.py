"""Resumable training data: sampler streams, sharding, grouping, seeded augmentation."""

import itertools

import numpy as np
from torch.utils.data import DataLoader

from maskformer.data.build import ResumableBatchSampler, SeededMapDataset


def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_resume_skips_exactly_the_consumed_batches():
    full = _take(ResumableBatchSampler(10, 3, seed=7), 12)
    resumed = ResumableBatchSampler(10, 3, seed=7)
    resumed.start_batch = 5
    assert _take(resumed, 7) == full[5:]


def test_stream_is_seeded_and_covers_each_epoch():
    a = _take(ResumableBatchSampler(10, 5, seed=1), 4)
    assert a == _take(ResumableBatchSampler(10, 5, seed=1), 4)
    assert a != _take(ResumableBatchSampler(10, 5, seed=2), 4)
    epoch = [i for batch in a[:2] for i, _ in batch]
    assert sorted(epoch) == list(range(10))
    # Every sample in the stream has its own augmentation seed.
    seeds = [s for batch in a for _, s in batch]
    assert len(set(seeds)) == len(seeds)


def test_ranks_get_disjoint_chunks_of_one_stream():
    single = [x for b in _take(ResumableBatchSampler(12, 2, seed=3), 6) for x in b]
    ranks = [_take(ResumableBatchSampler(12, 2, seed=3, rank=r, world_size=3), 2) for r in range(3)]
    # Global batch k of 6 = rank 0's, rank 1's, rank 2's k-th batch.
    interleaved = [x for k in range(2) for r in range(3) for x in ranks[r][k]]
    assert interleaved == single


def test_aspect_grouping_batches_same_orientation():
    portrait = [i % 3 == 0 for i in range(30)]
    for batch in _take(ResumableBatchSampler(30, 4, seed=0, portrait=portrait), 10):
        assert len({portrait[i] for i, _ in batch}) == 1


def test_augmentation_is_seeded_per_sample_and_independent_of_workers():
    def noisy(d):  # a "mapper" drawing from the global generators, like augmentations do
        return d["id"], float(np.random.rand())

    dicts = [{"id": i} for i in range(6)]

    def run(workers, start=0):
        sampler = ResumableBatchSampler(6, 2, seed=5)
        sampler.start_batch = start
        loader = DataLoader(
            SeededMapDataset(dicts, noisy),
            batch_sampler=sampler,
            num_workers=workers,
            collate_fn=lambda b: b,
        )
        return list(itertools.islice(loader, 5 - start))

    plain = run(0)
    assert run(2) == plain
    assert run(0, start=2) == plain[2:]
    state = np.random.get_state()[1].copy()
    run(0)
    assert (np.random.get_state()[1] == state).all()  # the caller's generator is untouched
