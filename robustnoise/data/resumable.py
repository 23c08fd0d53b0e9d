"""Training loaders that resume mid-epoch exactly: the order depends only on (seed, epoch, rank), the position is in
Lightning's checkpoint. Not torchdata's ``StatefulDataLoader``: its state has no epoch, so a run resumed from an
epoch-end checkpoint (Lightning stops at ``len(loader)``, before ``StopIteration``) skips batches of the next epoch."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from robustnoise.utils.errors import ConfigError
from robustnoise.utils.seeding import derive_seed


class ResumableSampler(DistributedSampler):
    """A ``DistributedSampler`` (kept by Lightning under DDP) skipping ``skip`` indices in epoch ``skip_epoch``."""

    skip: int = 0
    skip_epoch: int | None = None

    def __iter__(self) -> Iterator[int]:
        skip = self.skip if self.skip_epoch == self.epoch else 0  # an epoch-end checkpoint skips nothing
        self.skip, self.skip_epoch = 0, None
        return itertools.islice(super().__iter__(), skip, None)


class ResumableDataLoader(DataLoader):
    """Shuffled, batch-counting loader over a :class:`ResumableSampler`; its worker seeds spare the global RNG."""

    sampler: ResumableSampler

    def __init__(
        self, dataset: Dataset, batch_size: int, seed: int, num_replicas: int = 1, rank: int = 0, **kwargs: Any
    ) -> None:
        sampler = ResumableSampler(dataset, num_replicas=num_replicas, rank=rank, seed=seed)
        super().__init__(dataset, batch_size, sampler=sampler, generator=torch.Generator(), **kwargs)
        self.batches = 0  # batches of the current epoch handed out so far (including skipped ones)

    def __iter__(self) -> Iterator[Any]:
        # a generator: runs at the first next(), after Lightning has called sampler.set_epoch for this epoch
        sampler = self.sampler
        self.batches = sampler.skip // self.batch_size if sampler.skip_epoch == sampler.epoch else 0
        self.generator.manual_seed(derive_seed(sampler.seed, "loader_workers", sampler.epoch, sampler.rank))
        for batch in super().__iter__():
            self.batches += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.sampler.epoch), "batches": self.batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.skip = int(state["batches"]) * int(self.batch_size)
        self.sampler.skip_epoch = int(state["epoch"])


class ShuffledPasses:
    """Endless passes (shuffled by ``seed_of_pass(p)``) over this rank's share of ``dataset``, for ANT's restarts."""

    def __init__(
        self, dataset: Dataset, batch_size: int, seed_of_pass: Callable[[int], int], num_replicas: int = 1,
        rank: int = 0, num_workers: int = 0,
    ) -> None:  # fmt: skip
        self.per_pass = len(dataset) // (batch_size * num_replicas)
        if self.per_pass == 0:
            raise ConfigError(f"the training set is smaller than one batch ({batch_size} x {num_replicas} ranks)")
        self.dataset, self.batch_size, self.seed_of_pass = dataset, batch_size, seed_of_pass
        self.num_replicas, self.rank, self.workers = num_replicas, rank, num_workers
        self.batches, self._iter = 0, None

    @classmethod
    def of_training_set(cls, trainer: Any, seed_of_pass: Callable[[int], int]) -> ShuffledPasses:
        """Over the training set of ``trainer``'s DataModule, with its batch size and workers, this rank's share."""
        dm = trainer.datamodule
        if getattr(dm, "train_set", None) is None:
            raise ConfigError("ANT restarts need a DataModule with a train_set (robustnoise.data)")
        return cls(dm.train_set, dm.batch_size, seed_of_pass, trainer.world_size, trainer.global_rank, dm.num_workers)

    def __iter__(self) -> ShuffledPasses:
        return self

    def __next__(self) -> Any:
        if self._iter is None:
            self._iter = self._passes(*divmod(self.batches, self.per_pass))
        batch = next(self._iter)
        self.batches += 1
        return batch

    def _passes(self, pass_index: int, offset: int) -> Iterator[Any]:
        for p in itertools.count(pass_index):
            gen = torch.Generator().manual_seed(self.seed_of_pass(p))
            order = torch.randperm(len(self.dataset), generator=gen)[self.rank :: self.num_replicas]
            order = order[offset * self.batch_size : self.per_pass * self.batch_size].tolist()
            yield from DataLoader(self.dataset, self.batch_size, sampler=order, num_workers=self.workers, generator=gen)
            offset = 0

    def state_dict(self) -> dict[str, int]:
        return {"batches": self.batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batches, self._iter = int(state["batches"]), None
