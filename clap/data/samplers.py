"""Index samplers for training (infinite, shuffled, resumable) and inference (finite)."""

from typing import Iterator, Optional, Tuple

import torch
from torch.utils.data.sampler import Sampler

from clap.utils import comm
from clap.utils.env import derive_seed

__all__ = ["InferenceSampler", "TrainingSampler"]


class TrainingSampler(Sampler):
    """An endless stream of data-set indices, split across ranks, that can start mid-stream.

    The global stream is the concatenation of epochs; epoch e is a permutation of
    range(size) seeded by (seed, e) (or range(size) itself without shuffling). Rank r of W
    takes global positions start + r, start + r + W, start + r + 2W, ... So a run restarted at
    `start = iterations done x global batch size` sees exactly the samples an uninterrupted run
    would have seen next, whatever the number of ranks and data workers.
    """

    def __init__(
        self,
        size: int,
        shuffle: bool = True,
        seed: Optional[int] = None,
        start: int = 0,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ):
        """
        Args:
            size: number of samples in the data set (> 0).
            shuffle: permute every epoch; otherwise every epoch is 0, 1, ..., size - 1.
            seed: shuffling seed, the same on every rank; None draws one shared by all ranks.
            start: global position of the first sample (samples already consumed by all ranks).
            rank, world_size: this process's shard; default from torch.distributed.
        """
        if size <= 0:
            raise ValueError(f"TrainingSampler needs a non-empty data set, got size {size}")
        self._size = int(size)
        self._shuffle = shuffle
        self._seed = int(comm.shared_random_seed() if seed is None else seed)
        self._start = int(start)
        self._rank = comm.get_rank() if rank is None else int(rank)
        self._world_size = comm.get_world_size() if world_size is None else int(world_size)

    @property
    def seed(self) -> int:
        return self._seed

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The (size,) int64 order of the data set in `epoch`."""
        if not self._shuffle:
            return torch.arange(self._size)
        generator = torch.Generator()
        generator.manual_seed(derive_seed(self._seed, epoch))
        return torch.randperm(self._size, generator=generator)

    def positions_and_indices(self) -> Iterator[Tuple[int, int]]:
        """Endless (global position, data-set index) pairs of this rank's shard."""
        position = self._start + self._rank
        epoch, order = -1, None
        while True:
            if position // self._size != epoch:
                epoch = position // self._size
                order = self.epoch_order(epoch).tolist()
            yield position, order[position % self._size]
            position += self._world_size

    def __iter__(self) -> Iterator[int]:
        for _, index in self.positions_and_indices():
            yield index


class InferenceSampler(Sampler):
    """Every index of range(size) exactly once over all ranks, in order, in contiguous shards
    whose sizes differ by at most one (rank 0 holds the first shard)."""

    def __init__(self, size: int, rank: Optional[int] = None, world_size: Optional[int] = None):
        self._size = int(size)
        rank = comm.get_rank() if rank is None else int(rank)
        world_size = comm.get_world_size() if world_size is None else int(world_size)
        per_rank, remainder = divmod(self._size, world_size)
        begin = rank * per_rank + min(rank, remainder)
        end = begin + per_rank + (1 if rank < remainder else 0)
        self._indices = range(begin, end)

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices)

    def __len__(self) -> int:
        return len(self._indices)
