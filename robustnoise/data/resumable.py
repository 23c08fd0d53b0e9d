"""A training DataLoader that resumes mid-epoch exactly: the order depends only on (seed, epoch, rank) and the loader's
position within the epoch is part of Lightning's checkpoint (``state_dict`` / ``load_state_dict``).

Lightning 2.x saves the ``state_dict()`` of every training loader that has one and hands it back before the first
batch after a restart. On a mid-epoch resume this loader skips the batches the interrupted run already trained on;
a plain shuffled ``DataLoader`` would start a new, different permutation instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from robustnoise.utils.errors import ConfigError
from robustnoise.utils.seeding import derive_seed


class ResumableSampler(DistributedSampler):
    """This rank's share of a permutation seeded by ``seed + epoch`` (torch's ``DistributedSampler``, so Lightning keeps
    it under DDP), minus the first ``skip`` indices of the epoch ``skip_epoch`` (set when a checkpoint is restored)."""

    def __init__(
        self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.skip = 0
        self.skip_epoch: int | None = None

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip = self.skip if self.skip_epoch == self.epoch else 0  # an epoch-end checkpoint skips nothing
        self.skip, self.skip_epoch = 0, None
        return iter(indices[skip:])


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ResumableSampler` that counts the batches it has handed out this epoch.

    Worker seeds come from the loader's own generator, reseeded per epoch (with non-persistent workers), so creating an
    iterator never draws from the global torch RNG (whose state the checkpoint restores for the noise streams).
    """

    sampler: ResumableSampler

    def __init__(self, dataset: Dataset, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("generator", torch.Generator())
        super().__init__(dataset, *args, **kwargs)
        if not isinstance(self.sampler, ResumableSampler) or self.batch_size is None:
            raise TypeError("ResumableDataLoader needs sampler=ResumableSampler(...) and a batch_size")
        self.batches = 0  # batches of the current epoch handed out so far (including skipped ones)

    def __iter__(self) -> Iterator[Any]:
        return self._iterate()

    def _iterate(self) -> Iterator[Any]:
        # a generator: runs at the first next(), after Lightning has called sampler.set_epoch for this epoch
        sampler = self.sampler
        resumed = sampler.skip_epoch == sampler.epoch
        self.batches = sampler.skip // self.batch_size if resumed else 0
        self.generator.manual_seed(derive_seed(sampler.seed, "loader_workers", sampler.epoch, sampler.rank))
        for batch in super().__iter__():
            self.batches += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.sampler.epoch), "batches": int(self.batches)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.skip = int(state["batches"]) * int(self.batch_size)
        self.sampler.skip_epoch = int(state["epoch"])


def resumable_loader(
    dataset: Dataset, batch_size: int, seed: int, num_replicas: int = 1, rank: int = 0, **kwargs: Any
) -> ResumableDataLoader:
    """A shuffled training loader that resumes exactly (``kwargs``: num_workers, pin_memory, ...)."""
    sampler = ResumableSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
    return ResumableDataLoader(dataset, batch_size=batch_size, sampler=sampler, **kwargs)


class ShuffledPasses:
    """Endless batches of shuffled passes over ``dataset`` (this rank's share of each; the order of pass ``p`` is a
    ``seed_of_pass(p)``) whose state is the number of batches drawn: a resumed run draws exactly the
    batches an uninterrupted one would (ANT's restart batches, ``robustnoise.training.exact_resume``). Its loaders
    have their own generator: creating one never draws from the global RNG."""

    def __init__(
        self, dataset: Dataset, batch_size: int, seed_of_pass: Callable[[int], int], num_replicas: int = 1,
        rank: int = 0, num_workers: int = 0,
    ) -> None:  # fmt: skip
        self.per_pass = len(dataset) // (batch_size * num_replicas)
        if self.per_pass == 0:
            raise ConfigError(f"the training set is smaller than one batch ({batch_size} x {num_replicas} ranks)")
        self.dataset, self.batch_size, self.seed_of_pass = dataset, batch_size, seed_of_pass
        self.num_replicas, self.rank, self.num_workers = num_replicas, rank, num_workers
        self.batches, self._iter = 0, None

    @classmethod
    def of_training_set(cls, trainer: Any, seed_of_pass: Callable[[int], int]) -> ShuffledPasses:
        """Over the training set of ``trainer``'s DataModule, with its batch size and workers, this rank's share."""
        datamodule = trainer.datamodule
        if getattr(datamodule, "train_set", None) is None:
            raise ConfigError("ANT restarts need a DataModule with a train_set (robustnoise.data)")
        return cls(
            datamodule.train_set, datamodule.batch_size, seed_of_pass, trainer.world_size, trainer.global_rank,
            datamodule.num_workers,
        )  # fmt: skip

    def __iter__(self) -> ShuffledPasses:
        return self

    def __next__(self) -> Any:
        if self._iter is None:
            pass_index, offset = divmod(self.batches, self.per_pass)
            gen = torch.Generator().manual_seed(self.seed_of_pass(pass_index))
            order = torch.randperm(len(self.dataset), generator=gen)[self.rank :: self.num_replicas]
            order = order[offset * self.batch_size : self.per_pass * self.batch_size].tolist()
            workers = self.num_workers
            loader = DataLoader(self.dataset, self.batch_size, sampler=order, num_workers=workers, generator=gen)
            self._iter = iter(loader)
        batch = next(self._iter, None)
        if batch is None:  # the pass is over
            self._iter = None
            return next(self)
        self.batches += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"batches": self.batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batches, self._iter = int(state["batches"]), None
