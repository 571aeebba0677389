"""Data loaders for training and testing, built from the config and DatasetCatalog."""

import functools
import logging
import os
import pickle
import random
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from clap.data.catalog import DatasetCatalog
from clap.data.samplers import InferenceSampler, TrainingSampler
from clap.utils import comm
from clap.utils.env import derive_seed, seed_all_rng

__all__ = [
    "MapDataset",
    "build_test_loader",
    "build_train_loader",
    "drop_samples_with_empty_point_clouds",
    "get_dataset_dicts",
]

logger = logging.getLogger(__name__)

# Data sets whose size has been logged in this process (each is logged once, however often the
# model, the loaders and the evaluations ask for it).
_SIZE_LOGGED = set()


def get_dataset_dicts(names: Union[str, Sequence[str]], cfg=None) -> List[dict]:
    """The concatenated sample dicts of the named DatasetCatalog entries.

    With `cfg`, nuScenes names (`nuscenes_<version>_<split>`) are (re-)registered first from
    the root `DATASETS.ROOT` (`clap.data.datasets.nuscenes.register_from_config`), so that a
    name registered earlier in the process from another root or fraction is not read instead.

    Raises:
        KeyError: naming an unregistered data set. ValueError: naming an empty one.
    """
    if isinstance(names, str):
        names = [names]
    if cfg is not None and any(n.startswith("nuscenes_") for n in names):
        from clap.data.datasets.nuscenes import register_from_config

        register_from_config(cfg)
    dicts = []
    for name in names:
        dataset_dicts = DatasetCatalog.get(name)
        if len(dataset_dicts) == 0:
            raise ValueError(f"Data set '{name}' is empty")
        if name not in _SIZE_LOGGED:
            logger.info(f"Data set '{name}': {len(dataset_dicts)} samples")
            _SIZE_LOGGED.add(name)
        dicts.extend(dataset_dicts)
    return dicts


def drop_samples_with_empty_point_clouds(dataset_dicts: Sequence[dict]) -> List[dict]:
    """The sample dicts without those whose key-frame LiDAR file (`lidar_path`) is empty
    (0 bytes): training has no point to learn from there (no ray to render, no point in the
    ground-truth boxes). Each dropped sample is warned about with its file and sample token,
    and their number is logged. Dicts without `lidar_path` are kept.

    Raises:
        ValueError: when every sample is dropped.
    """
    kept = []
    for dataset_dict in dataset_dicts:
        path = dataset_dict.get("lidar_path")
        if path is not None and os.path.isfile(path) and os.path.getsize(path) == 0:
            logger.warning(
                f"Skipping sample {dataset_dict.get('sample_token')} in training: its key-frame "
                f"point cloud {path} is empty (0 bytes)"
            )
            continue
        kept.append(dataset_dict)
    dropped = len(dataset_dicts) - len(kept)
    if dropped:
        logger.warning(
            f"Skipped {dropped} of {len(dataset_dicts)} training samples whose key-frame point "
            "cloud is empty"
        )
    if not kept:
        raise ValueError("Every training sample has an empty key-frame point cloud")
    return kept


class _SerializedList:
    """A list of picklable objects stored as one numpy byte buffer.

    Data-loader workers read it without touching python reference counts of millions of small
    objects, so forked workers do not copy the parent's memory page by page. Each access
    unpickles a fresh copy, so mappers may modify what they get.
    """

    def __init__(self, items: Sequence):
        blobs = [pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL) for item in items]
        self._ends = np.cumsum([len(b) for b in blobs], dtype=np.int64)
        self._buffer = np.frombuffer(b"".join(blobs), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: int):
        begin = 0 if index == 0 else int(self._ends[index - 1])
        end = int(self._ends[index])
        return pickle.loads(self._buffer[begin:end].tobytes())


@contextmanager
def _rngs_seeded_with(seed: int):
    """Seed python, numpy and torch (CPU) RNGs inside the block; restore them afterwards."""
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed)
        torch.random.default_generator.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class MapDataset(Dataset):
    """Applies `mapper` to the sample dicts: item i is `mapper(copy of dicts[i])`.

    An item may also be requested as `(i, sample_seed)`: the mapper then runs with python,
    numpy and torch RNGs seeded by `sample_seed` (and the caller's RNG states are restored), so
    random augmentation of a sample depends only on that seed -- not on the worker, the rank or
    what ran before.
    """

    def __init__(self, dataset_dicts: Sequence[dict], mapper: Callable[[dict], dict]):
        self._dicts = _SerializedList(dataset_dicts)
        self._mapper = mapper

    def __len__(self) -> int:
        return len(self._dicts)

    def __getitem__(self, key: Union[int, Tuple[int, int]]):
        if isinstance(key, tuple):
            index, sample_seed = key
            with _rngs_seeded_with(sample_seed):
                return self._mapper(self._dicts[index])
        return self._mapper(self._dicts[key])


class _SeedPerSampleSampler(Sampler):
    """Turns a TrainingSampler's stream into (index, seed) keys for MapDataset; the seed of the
    sample at global position p is derived from (run seed, p)."""

    def __init__(self, sampler: TrainingSampler, seed: int):
        self._sampler = sampler
        self._seed = seed

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        for position, index in self._sampler.positions_and_indices():
            yield index, derive_seed(self._seed, position)


def _seed_worker(worker_id: int, seed: int, rank: int) -> None:
    seed_all_rng(derive_seed(seed, rank, worker_id))


def _resolve_mapper_and_collate(cfg, mapper, collate_fn, is_train: bool):
    if mapper is None:
        from clap.data.mapper import build_mapper

        mapper = build_mapper(cfg, is_train)
    if collate_fn is None:
        from clap.data.collate import collate_batch

        collate_fn = collate_batch
    return mapper, collate_fn


def _run_seed(cfg) -> int:
    return cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()


def build_train_loader(
    cfg,
    mapper: Optional[Callable[[dict], dict]] = None,
    dataset: Optional[Sequence[dict]] = None,
    collate_fn: Optional[Callable[[List[dict]], dict]] = None,
    start_iter: int = 0,
) -> DataLoader:
    """An endless loader of training batches for this rank.

    Args:
        cfg: uses DATASETS.TRAIN, SOLVER.IMS_PER_BATCH (global; each rank takes
            IMS_PER_BATCH / world size), DATALOADER.NUM_WORKERS / SHUFFLE / PIN_MEMORY, SEED.
        mapper: sample dict -> model inputs of one sample; default
            `clap.data.mapper.build_mapper(cfg, is_train=True)`.
        dataset: the sample dicts; default those of DATASETS.TRAIN from DatasetCatalog.
            Samples with an empty key-frame point cloud are left out (warned about, counted;
            `drop_samples_with_empty_point_clouds`).
        collate_fn: list of mapped samples -> batch; default `clap.data.collate.collate_batch`.
        start_iter: iterations already trained; the loader starts at global sample position
            start_iter x IMS_PER_BATCH, so a resumed run gets the batches an uninterrupted run
            would have got (same seed, same global batch size).

    Shuffling and augmentation randomness come from SEED (a negative SEED draws a seed shared
    by all ranks): the order from (seed, epoch), each sample's mapper RNGs from (seed, global
    position), each worker's RNGs from (seed, rank, worker id). Batches are therefore the same
    with any number of workers.
    """
    world_size = comm.get_world_size()
    global_batch = cfg.SOLVER.IMS_PER_BATCH
    if global_batch <= 0 or global_batch % world_size != 0:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH={global_batch} must be a positive multiple of the number of "
            f"processes ({world_size})"
        )
    if dataset is None:
        if len(cfg.DATASETS.TRAIN) == 0:
            raise ValueError("DATASETS.TRAIN is empty: name at least one registered data set")
        dataset = get_dataset_dicts(cfg.DATASETS.TRAIN, cfg)
    dataset = drop_samples_with_empty_point_clouds(dataset)
    mapper, collate_fn = _resolve_mapper_and_collate(cfg, mapper, collate_fn, is_train=True)
    seed = _run_seed(cfg)
    rank = comm.get_rank()
    sampler = TrainingSampler(
        len(dataset), shuffle=cfg.DATALOADER.SHUFFLE, seed=seed, start=start_iter * global_batch
    )
    return DataLoader(
        MapDataset(dataset, mapper),
        sampler=_SeedPerSampleSampler(sampler, seed),
        batch_size=global_batch // world_size,
        drop_last=True,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=collate_fn,
        worker_init_fn=functools.partial(_seed_worker, seed=seed, rank=rank),
        # A private generator: creating the iterator must not consume the global torch RNG,
        # whose state a resumed run restores from the checkpoint.
        generator=torch.Generator().manual_seed(derive_seed(seed, rank)),
        pin_memory=cfg.DATALOADER.PIN_MEMORY and torch.cuda.is_available(),
    )


def build_test_loader(
    cfg,
    dataset_name: Union[str, Sequence[str]],
    mapper: Optional[Callable[[dict], dict]] = None,
    collate_fn: Optional[Callable[[List[dict]], dict]] = None,
) -> DataLoader:
    """A finite loader over this rank's shard of a test set (every sample once over all ranks,
    in order), TEST.BATCH_SIZE samples per batch. Defaults as in `build_train_loader`, with
    `build_mapper(cfg, is_train=False)`."""
    dataset = get_dataset_dicts(dataset_name, cfg)
    mapper, collate_fn = _resolve_mapper_and_collate(cfg, mapper, collate_fn, is_train=False)
    seed = _run_seed(cfg)
    rank = comm.get_rank()
    return DataLoader(
        MapDataset(dataset, mapper),
        sampler=InferenceSampler(len(dataset)),
        batch_size=cfg.TEST.BATCH_SIZE,
        drop_last=False,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=collate_fn,
        worker_init_fn=functools.partial(_seed_worker, seed=seed, rank=rank),
        generator=torch.Generator().manual_seed(derive_seed(seed, rank)),
        pin_memory=cfg.DATALOADER.PIN_MEMORY and torch.cuda.is_available(),
    )
