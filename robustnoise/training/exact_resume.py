"""Exact resume: a run killed mid-epoch and resumed ends bit-identical to an uninterrupted one (``tests/test_resume``).

Lightning checkpoints weights, optimisers, loop counters and the loaders' positions, but no random state. Per DDP rank,
:class:`ExactResume` checkpoints the torch (and own CUDA device's) RNG state and the module's ``resume_streams()``
(``state_dict``/``load_state_dict`` objects: ANT's restart batches and replay pool, DeepAugment's generator), and on
resume applies them right before the first training batch (the sanity check and loader setup must not shift them).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor

from robustnoise.utils.errors import CheckpointError
from robustnoise.utils.seeding import derive_seed, run_seed


class ExactResume(Callback):
    """Per-rank random streams across a checkpoint (see the module docstring)."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1:  # each rank perturbs its own part of the batch (a resume replaces this stream)
            torch.manual_seed(derive_seed(run_seed(), "rank_noise", trainer.global_rank))

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        own = {"torch": torch.get_rng_state()}
        if pl_module.device.type == "cuda":  # every process seeds every visible device: only its own is this rank's
            own["cuda"] = torch.cuda.get_rng_state(pl_module.device)
        streams = getattr(pl_module, "resume_streams", dict)()
        own["streams"] = {name: stream.state_dict() for name, stream in streams.items()}
        ranks = [own]
        if trainer.world_size > 1:  # pickled through the collective: each state comes back as an owned tensor
            ranks = [None] * trainer.world_size
            torch.distributed.all_gather_object(ranks, own)
        checkpoint["rng_state"] = {f"{k}_per_rank": [r[k] for r in ranks] for k in ("torch", "cuda") if k in own}
        checkpoint["streams_per_rank"] = [r["streams"] for r in ranks]

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        rng, rank = checkpoint.get("rng_state") or {}, trainer.global_rank
        states, cuda = rng.get("torch_per_rank") or [], rng.get("cuda_per_rank") or []
        if rank >= len(states):
            return
        self._pending = {"torch": _rng_state(states[rank], torch.get_rng_state(), f"rank {rank}'s CPU RNG state")}
        if rank < len(cuda) and pl_module.device.type == "cuda":
            live = torch.cuda.get_rng_state(pl_module.device)
            self._pending["cuda"] = _rng_state(cuda[rank], live, f"rank {rank}'s CUDA RNG state")
        streams = checkpoint.get("streams_per_rank") or []
        self._pending["streams"] = streams[rank] if rank < len(streams) else {}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        torch.set_rng_state(pending["torch"])
        if "cuda" in pending:
            torch.cuda.set_rng_state(pending["cuda"], pl_module.device)
        streams = getattr(pl_module, "resume_streams", dict)()
        for name, state in pending["streams"].items():
            streams[name].load_state_dict(state)


def _rng_state(state: object, like: Tensor, what: str) -> Tensor:
    """A checkpoint's RNG state checked against the live state ``like`` (a one-line error instead of a crash in
    ``set_rng_state``), as an owned contiguous CPU copy (a view with a storage offset segfaults ``set_rng_state``)."""
    if not isinstance(state, Tensor) or state.dtype != like.dtype or state.shape != like.shape:
        found = f"{state.dtype} {tuple(state.shape)}" if isinstance(state, Tensor) else type(state).__name__
        raise CheckpointError(
            f"the checkpoint's {what} is not a valid RNG state ({found}, expected {like.dtype} {tuple(like.shape)})"
        )
    return state.detach().cpu().clone(memory_format=torch.contiguous_format)
