"""gather_on_main: sums added and lists concatenated over processes, on the main one only."""

import numpy as np

from maskformer.evaluation import gather


def _two_processes(monkeypatch, rank, other):
    # all_gather of rank 0 and rank 1; `other` is the second process's state.
    monkeypatch.setattr(gather.comm, "synchronize", lambda: None)
    monkeypatch.setattr(gather.comm, "is_main_process", lambda: rank == 0)
    monkeypatch.setattr(gather.comm, "all_gather", lambda mine: [mine, other][:: 1 - 2 * rank])


def test_main_process_gets_the_sums_and_the_lists_in_rank_order(monkeypatch):
    other = ((np.array([[0, 1], [2, 0]]), 3), ["c"])
    _two_processes(monkeypatch, 0, other)
    (conf, count), items = gather.gather_on_main((np.array([[5, 0], [1, 4]]), 2), ["a", "b"])
    np.testing.assert_array_equal(conf, [[5, 1], [3, 4]])
    assert count == 5 and items == ["a", "b", "c"]


def test_other_processes_get_none(monkeypatch):
    _two_processes(monkeypatch, 1, ((np.zeros(2), 0), []))
    assert gather.gather_on_main((np.ones(2), 1), ["x"]) is None
