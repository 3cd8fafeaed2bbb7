"""Training data loading that can resume exactly where it stopped.

Detectron2's TrainingSampler restarts its random stream on resume and its workers keep their own
random states, so a resumed run sees other images, in another order, with other augmentations.
Here the sampler is a pure function of (seed, position in the stream): it produces batches of
`(dataset index, sample seed)` tokens, the augmentation of a sample is seeded by its token, and a
resumed run skips the batches already consumed. The result does not depend on the number of
workers either.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.data import DatasetMapper, build_detection_test_loader, get_detection_dataset_dicts
from detectron2.data.build import trivial_batch_collator
from detectron2.utils import comm
from torch.utils.data import DataLoader, Dataset, Sampler

from .dataset_mapper import (
    DETRPanopticDatasetMapper,
    InferenceDatasetMapper,
    MaskFormerPanopticDatasetMapper,
    MaskFormerSemanticDatasetMapper,
)
from .io import is_multichannel_format
from .panoptic_ids import compact_ids, read_panoptic_ids
from .test_loader import SameSizeBatches

__all__ = [
    "MAPPERS",
    "ResumableBatchSampler",
    "SeededMapDataset",
    "WithPanopticGroundTruth",
    "build_test_loader",
    "build_train_loader",
    "build_train_mapper",
]

logger = logging.getLogger(__name__)

# INPUT.DATASET_MAPPER_NAME -> mapper class (built as cls(cfg, is_train=True)).
MAPPERS: Dict[str, Callable] = {
    "mask_former_semantic": MaskFormerSemanticDatasetMapper,
    "mask_former_panoptic": MaskFormerPanopticDatasetMapper,
    "detr_panoptic": DETRPanopticDatasetMapper,
}


def build_train_mapper(cfg) -> Callable[[Dict], Dict]:
    name = cfg.INPUT.DATASET_MAPPER_NAME
    if name not in MAPPERS:
        raise KeyError(f"INPUT.DATASET_MAPPER_NAME is '{name}'; valid names are {sorted(MAPPERS)}")
    return MAPPERS[name](cfg, True)


def sample_seed(seed: int, position: int) -> int:
    """The augmentation seed of the sample at `position` in the training stream."""
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0])


class ResumableBatchSampler(Sampler):
    """Infinite batches of `(index, sample_seed)` for one process, resumable by batch count.

    The global stream is seeded random permutations of the dataset (or 0, 1, 2, ... without
    shuffling), cut into global batches as docs/distributed.md states; with `portrait` (one
    orientation per dataset dict) a global batch takes the first samples of one orientation that
    fill it, as Detectron2's grouping does within one process.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool = True,
        portrait: Optional[Sequence[bool]] = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        if size <= 0:
            raise ValueError("ResumableBatchSampler: the training dataset is empty")
        self.size = size
        self.batch_size = batch_size
        self.seed = int(seed)
        self.shuffle = shuffle
        self.portrait = None if portrait is None else list(portrait)
        self.rank = rank
        self.world_size = world_size
        self.start_batch = 0  # batches already consumed (set on resume)

    def _global_stream(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed)
        while True:
            if self.shuffle:
                yield from torch.randperm(self.size, generator=g).tolist()
            else:
                yield from range(self.size)

    def _global_batches(self) -> Iterator[List[Tuple[int, int]]]:
        """(position, index) of the samples of each global batch, of all ranks."""
        size = self.batch_size * self.world_size
        stream = enumerate(self._global_stream())
        if self.portrait is None:
            while True:
                yield list(itertools.islice(stream, size))
        # Grouped over the global stream, not per rank: per-rank grouping would make the
        # samples of a step depend on how the stream is split between the ranks.
        buckets: Dict[bool, List[Tuple[int, int]]] = {True: [], False: []}
        for position, index in stream:
            bucket = buckets[self.portrait[index]]
            bucket.append((position, index))
            if len(bucket) == size:
                yield bucket[:]
                bucket.clear()

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        first = self.rank * self.batch_size
        # Skipping is cheap: indices only, no data is loaded.
        for batch in itertools.islice(self._global_batches(), self.start_batch, None):
            mine = batch[first : first + self.batch_size]
            yield [(index, sample_seed(self.seed, position)) for position, index in mine]

    # Checkpointable: the stream seed must survive a resume when cfg.SEED is random.
    def state_dict(self) -> Dict[str, int]:
        return {"seed": self.seed}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        self.seed = int(state["seed"])


@contextlib.contextmanager
def _seeded_rngs(seed: int):
    """Seed numpy, random and torch (augmentations use them), restoring their state after."""
    states = np.random.get_state(), random.getstate(), torch.get_rng_state()
    np.random.seed(seed % 2**32)
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        np.random.set_state(states[0])
        random.setstate(states[1])
        torch.set_rng_state(states[2])


class SeededMapDataset(Dataset):
    """`dataset[(index, seed)]` = `mapper(dicts[index])` with the random generators seeded."""

    def __init__(self, dicts: List[Dict], mapper: Callable[[Dict], Dict]):
        self.dicts = dicts
        self.mapper = mapper

    def __len__(self) -> int:
        return len(self.dicts)

    def __getitem__(self, token: Tuple[int, int]) -> Dict:
        index, seed = token
        with _seeded_rngs(seed):
            return self.mapper(self.dicts[index])


def build_test_mapper(cfg) -> Callable[[Dict], Dict]:
    """Detectron2's test mapper; for a multi-channel INPUT.FORMAT `InferenceDatasetMapper`,
    which reads such images (Detectron2's mapper reads with PIL)."""
    if is_multichannel_format(cfg.INPUT.FORMAT):
        return InferenceDatasetMapper(cfg)
    return DatasetMapper(cfg, False)


class WithPanopticGroundTruth:
    """A test mapper whose outputs also hold "pan_seg_gt": the dict's "pan_seg_file_name" (if
    any) as `CompactIds`, decoded in the loader's workers instead of the evaluation loop."""

    def __init__(self, mapper: Callable[[Dict], Dict]):
        self.mapper = mapper

    def __call__(self, dataset_dict: Dict) -> Dict:
        result = self.mapper(dataset_dict)
        file_name = dataset_dict.get("pan_seg_file_name")
        if file_name is not None:
            listed = [s["id"] for s in dataset_dict.get("segments_info", ())]
            result["pan_seg_gt"] = compact_ids(read_panoptic_ids(file_name), listed, file_name)
        return result


def build_test_loader(cfg, dataset_name: str) -> Iterable[List[Dict]]:
    """Detectron2's test loader with `build_test_mapper`, in `SameSizeBatches` of up to
    TEST.IMS_PER_BATCH; with panoptic output, `WithPanopticGroundTruth`."""
    mapper = build_test_mapper(cfg)
    if cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON:
        mapper = WithPanopticGroundTruth(mapper)
    loader = build_detection_test_loader(cfg, dataset_name, mapper=mapper)
    batch_size = cfg.TEST.IMS_PER_BATCH
    return loader if batch_size == 1 else SameSizeBatches(loader, batch_size)


def build_train_loader(cfg, mapper: Callable[[Dict], Dict], *, seed: int) -> DataLoader:
    """A resumable training loader over `cfg.DATASETS.TRAIN`.

    Its `batch_sampler` is a `ResumableBatchSampler`: set its `start_batch` to resume.
    """
    dicts = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    )
    world_size = comm.get_world_size()
    total = cfg.SOLVER.IMS_PER_BATCH
    if total % world_size:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH ({total}) must be divisible by the number of processes "
            f"({world_size})"
        )
    portrait = None
    if cfg.DATALOADER.ASPECT_RATIO_GROUPING and all("height" in d and "width" in d for d in dicts):
        portrait = [d["height"] > d["width"] for d in dicts]
    sampler = ResumableBatchSampler(
        len(dicts),
        total // world_size,
        seed=seed,
        portrait=portrait,
        rank=comm.get_rank(),
        world_size=world_size,
    )
    return DataLoader(
        SeededMapDataset(dicts, mapper),
        batch_sampler=sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=trivial_batch_collator,
    )
