"""Throughput of the data pipeline (mapper + collate) through a torch DataLoader."""

import time
from typing import Callable, Dict, Sequence

from torch.utils.data import DataLoader, Dataset

from clap.data.collate import collate_batch

__all__ = ["MappedList", "benchmark_data_loading"]


class MappedList(Dataset):
    """A map-style data set: `mapper(dataset_dicts[index])`."""

    def __init__(self, dataset_dicts: Sequence[dict], mapper: Callable[[dict], dict]):
        self.dataset_dicts = list(dataset_dicts)
        self.mapper = mapper

    def __len__(self) -> int:
        return len(self.dataset_dicts)

    def __getitem__(self, index: int) -> dict:
        return self.mapper(self.dataset_dicts[index])


def benchmark_data_loading(
    dataset_dicts: Sequence[dict],
    mapper: Callable[[dict], dict],
    num_workers: int,
    num_samples: int,
    batch_size: int = 1,
    num_warmup_batches: int = 2,
) -> Dict[str, float]:
    """Samples per second of `mapper` + `collate_batch` through a DataLoader.

    The dicts are repeated to `num_samples + num_warmup_batches * batch_size` samples; the first
    `num_warmup_batches` batches (worker start-up) are not timed.

    Returns:
        `samples_per_second`, `seconds` (timed part), `num_samples` (timed samples),
        `num_workers`, `batch_size`.
    """
    if not dataset_dicts:
        raise ValueError("benchmark_data_loading needs at least one dataset dict")
    total = num_samples + num_warmup_batches * batch_size
    repeated = [dataset_dicts[i % len(dataset_dicts)] for i in range(total)]
    loader = DataLoader(
        MappedList(repeated, mapper),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_batch,
        persistent_workers=False,
    )
    batches = iter(loader)
    for _ in range(num_warmup_batches):
        next(batches)
    start = time.perf_counter()
    timed_samples = sum(batch["batch_size"] for batch in batches)
    seconds = time.perf_counter() - start
    return {
        "samples_per_second": timed_samples / seconds if seconds > 0 else float("nan"),
        "seconds": seconds,
        "num_samples": timed_samples,
        "num_workers": num_workers,
        "batch_size": batch_size,
    }
