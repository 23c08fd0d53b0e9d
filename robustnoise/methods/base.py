"""The small base every method shares: the classifier, one manual classifier step, validation, test, optimisers.

Every method uses manual optimisation (one code path for the plain noise methods and the min-max loops). A subclass
either overrides :meth:`perturb_batch` (GNT, Speckle: what the classifier trains on) or ``training_step`` (ANT, AdA).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from robustnoise.models import create_model
from robustnoise.utils.checkpoints import last_checkpoint
from robustnoise.utils.errors import CheckpointError, ConfigError, NonFiniteLossError, is_number
from robustnoise.utils.seeding import derive_seed, run_seed


class RobustClassifierModule(pl.LightningModule):
    """A classifier trained with manual optimisation; hyper-parameters are plain values (``weights_only`` safe).

    No argument has a default: the method's YAML (``conf/method``) is their single source; outside ``run.py`` build
    a method with ``robustnoise.methods.configs.method_from_yaml``.

    Args:
        model: model config (``name``, ``weights``, optional ``mean``/``std`` overriding the dataset's).
        data: dataset facts (``num_classes``, ``in_chans``, ``image_size``, ``mean``, ``std``).
        optimizer: ``name`` (sgd | adam | adamw), ``lr`` and that optimiser's arguments.
        scheduler: ``name`` (none | multistep | cosine), ``milestones`` or ``milestones_frac``, ``gamma``,
            ``warmup_epochs``; stepped once per epoch.
        p_clean: fraction of every training batch left clean (the first ``round(B * p_clean)`` images).
        clip_grad_norm: clip the classifier's gradient norm (Trainer-level clipping is unavailable in manual mode).
        name, ddp_strategy: bookkeeping from the method config.
    """

    def __init__(
        self,
        *,
        model: dict[str, Any],
        data: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        p_clean: float,
        clip_grad_norm: float | None,
        name: str,
        ddp_strategy: str,
    ) -> None:
        super().__init__()
        if not (is_number(p_clean) and 0.0 <= p_clean <= 1.0):
            raise ConfigError(f"p_clean must be a number in [0, 1], got {p_clean!r}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.classifier = create_model(
            model["name"],
            num_classes=data["num_classes"],
            in_chans=data["in_chans"],
            mean=model.get("mean") or data["mean"],
            std=model.get("std") or data["std"],
            weights=model.get("weights"),
            image_size=data["image_size"],
        )
        self.val_acc = MulticlassAccuracy(num_classes=data["num_classes"], average="micro")
        self.test_suite: Any = None  # set by the evaluation code (robustnoise.eval.suite) before trainer.test
        self._grid_saved = False
        self._ddp_wrappers: dict[str, nn.Module] = {}
        self._rng_restored = False
        self._pending_rng: dict[str, Any] | None = None

    # ----------------------------------------------------------------------------------------------- training
    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(x)

    def ddp_networks(self) -> dict[str, nn.Module]:
        """The networks that train with their own optimiser (each gets its own DDP under ``ddp_per_network``)."""
        return {"classifier": self.classifier}

    def attach_ddp_wrappers(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        self._ddp_wrappers = {name: wrap(net) for name, net in self.ddp_networks().items()}

    def detach_ddp_wrappers(self) -> None:
        self._ddp_wrappers = {}

    def trainable(self, name: str) -> nn.Module:
        """The network to call in a step that updates it: its DDP wrapper under ``ddp_per_network``, else itself."""
        return self._ddp_wrappers.get(name) or getattr(self, name)

    def num_clean(self, batch_size: int) -> int:
        """Images ``[0, num_clean)`` of a batch stay clean, the rest are perturbed (positional, as the reference)."""
        return int(round(batch_size * self.hparams.p_clean))

    def perturb_batch(self, x: Tensor, y: Tensor) -> Tensor:
        """What the classifier trains on; the vanilla method trains on the clean batch."""
        return x

    def classifier_step(
        self, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None
    ) -> Tensor:
        """One optimiser step of the classifier on ``(x, y)`` (train mode); returns the detached loss.

        ``loss_fn(logits, y)`` replaces the cross-entropy (AugMix's JSD loss sees all views in one forward).
        """
        opt = self.optimizers()
        opt = opt[0] if isinstance(opt, list) else opt
        self.classifier.train()
        logits = self.trainable("classifier")(x)
        loss = (loss_fn or F.cross_entropy)(logits, y)
        self.check_finite_loss(loss)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.hparams.clip_grad_norm:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.clip_grad_norm, gradient_clip_algorithm="norm")
        opt.step()
        return loss.detach()

    def check_finite_loss(self, loss: Tensor) -> None:
        """Stop before a non-finite loss reaches the weights; every rank stops together (one flag all-reduced)."""
        bad = (~torch.isfinite(loss.detach())).any().float()
        if self._trainer is None:
            return
        if self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce(bad, reduce_op="sum")
        if float(bad) > 0:
            raise NonFiniteLossError(
                f"non-finite training loss ({float(loss.detach().float().sum())}) at step {self.global_step} "
                f"(epoch {self.current_epoch}); last good checkpoint: {last_checkpoint(self.trainer) or 'none written'}"
            )

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch[0], batch[1]
        x_train = self.perturb_batch(x, y)
        self.save_batch_grid(x_train)
        loss = self.classifier_step(x_train, y)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(y))
        return loss

    def on_train_epoch_end(self) -> None:
        for scheduler in self._schedulers():
            scheduler.step()

    def _schedulers(self) -> list[Any]:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return []
        return schedulers if isinstance(schedulers, list) else [schedulers]

    def save_batch_grid(self, images: Tensor, parts: Sequence[tuple[str, int]] | None = None) -> None:
        """Save (and log) one figure of what the classifier trains on, once per run, from rank zero: a labelled row
        per ``(label, count)`` consecutive part of the batch, up to 8 images each (default: the clean part and the
        perturbed rest)."""
        if self._grid_saved or not self.trainer.is_global_zero:
            return
        self._grid_saved = True
        from robustnoise.report.plots import image_rows, log_image_file, save_figure

        if parts is None:  # vanilla's p_clean is 1: all clean (an empty part draws no row)
            k = self.num_clean(len(images))
            parts = [("clean", k), ("perturbed", len(images) - k)]
        rows, start = [], 0
        for label, count in parts:
            rows.append((f"{label}\n({count})", images[start : start + min(count, 8)]))
            start += count
        title = f"{type(self).__name__}: a training batch as the classifier sees it"
        path = save_figure(image_rows(rows, title, columns=8), Path(self.trainer.default_root_dir) / "train_batch.png")
        log_image_file(self, "images/train_batch", path)

    # ------------------------------------------------------------------------------------- validation / test
    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        x, y = batch[0], batch[1]
        logits = self.classifier(x)
        self.val_acc.update(logits, y)
        self.log("val/loss", F.cross_entropy(logits, y), on_epoch=True, sync_dist=True, batch_size=len(y))

    def on_validation_epoch_end(self) -> None:
        # percent, as test/acc and test_c/* (compute() gathers every rank's counts)
        self.log("val/acc", 100.0 * self.val_acc.compute(), prog_bar=True)
        self.val_acc.reset()

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.test_suite is None:
            raise RuntimeError("attach an evaluation suite (eval.suite.CorruptionSuite) before trainer.test")
        x, y, index = batch
        self.test_suite.evaluate_batch(self.classifier, x, y, index, loader=dataloader_idx)

    def on_test_epoch_start(self) -> None:
        self.test_suite.reset(self.device)

    def on_test_epoch_end(self) -> None:
        self.test_suite.gather()
        self.log_dict(self.test_suite.metrics(), rank_zero_only=True)

    # ------------------------------------------------------------------------------------------ optimisers
    def build_optimizer(self, params: Any, cfg: dict[str, Any]) -> torch.optim.Optimizer:
        """An optimiser from plain config values (no partials or objects in the hyper-parameters)."""
        kwargs = {k: v for k, v in cfg.items() if k != "name"}
        name = cfg["name"].lower()
        if name == "sgd":
            return torch.optim.SGD(params, **kwargs)
        if name == "adam":
            return torch.optim.Adam(params, **kwargs)
        if name == "adamw":
            return torch.optim.AdamW(params, **kwargs)
        raise ValueError(f"unknown optimizer {cfg['name']!r}: use sgd, adam or adamw")

    def build_scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
        """An epoch-wise schedule: multistep (the papers' single decay by 10) or cosine with linear warm-up."""
        cfg = self.hparams.scheduler
        name = cfg["name"]
        if name == "none":
            return None
        max_epochs = max(int(self.trainer.max_epochs or 1), 1) if self._trainer is not None else 1
        warmup = int(cfg["warmup_epochs"] or 0)
        if name == "multistep":
            milestones = cfg["milestones"]
            if milestones is None:
                milestones = [max(1, round(f * max_epochs)) for f in cfg["milestones_frac"] or []]
            gamma = cfg["gamma"]

            def factor(epoch: int) -> float:
                warm = (epoch + 1) / warmup if epoch < warmup else 1.0
                return warm * gamma ** sum(epoch >= m for m in milestones)

        elif name == "cosine":

            def factor(epoch: int) -> float:
                if epoch < warmup:
                    return (epoch + 1) / warmup
                progress = (epoch - warmup) / max(1, max_epochs - warmup)
                return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

        else:
            raise ValueError(f"unknown scheduler {name!r}: use none, multistep or cosine")
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def configure_optimizers(self) -> Any:
        optimizer = self.build_optimizer(self.classifier.parameters(), self.hparams.optimizer)
        scheduler = self.build_scheduler(optimizer)
        return optimizer if scheduler is None else ([optimizer], [scheduler])

    # -------------------------------------------------------------------------------------- checkpointing
    def on_train_start(self) -> None:
        # After seed_everything every rank holds the same RNG; noise must differ between ranks (each rank is a
        # different part of the global batch). Resumed runs restore each rank's own stream instead.
        if self.trainer.world_size > 1 and not self._rng_restored:
            torch.manual_seed(derive_seed(run_seed(), "rank_noise", self.global_rank))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # The RNG restored from a checkpoint is re-applied right before the first step after the resume: the sanity
        # check and the loaders Lightning sets up in between must not shift the noise streams.
        if self._pending_rng is not None:
            self._set_rng(self._pending_rng)
            self._pending_rng = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning stores no RNG states; noise after a resume must continue each rank's stream (CPU and this rank's
        # GPU: every process seeds every visible device, so only its own device's state belongs to a rank).
        checkpoint["rng_state"] = {"torch_per_rank": self._per_rank(torch.get_rng_state())}
        if self.device.type == "cuda":
            checkpoint["rng_state"]["cuda_per_rank"] = self._per_rank(torch.cuda.get_rng_state(self.device))

    def _per_rank(self, state: Tensor) -> list[Tensor]:
        """Every rank's copy of a uint8 state tensor (all-gathered under DDP), each an owned contiguous CPU tensor.

        Views of the gathered tensor would be saved as one shared storage and load with a storage offset, which
        ``torch.set_rng_state`` does not handle (it crashes the process in torch 2.14)."""
        if self.trainer.world_size > 1:
            return [s.clone() for s in self.all_gather(state.to(self.device)).cpu().unbind(0)]
        return [state.cpu().clone()]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("rng_state") or {}
        states = rng.get("torch_per_rank") or []
        cuda = rng.get("cuda_per_rank") or []
        rank = self.global_rank if self._trainer is not None else 0
        if rank < len(states):
            own_cuda = cuda[rank] if rank < len(cuda) and self.device.type == "cuda" else None
            self._pending_rng = {
                "torch": rng_state_tensor(states[rank], torch.get_rng_state(), f"rank {rank}'s CPU RNG state"),
                "cuda": None
                if own_cuda is None
                else rng_state_tensor(own_cuda, torch.cuda.get_rng_state(self.device), f"rank {rank}'s CUDA RNG state"),
            }
            self._set_rng(self._pending_rng)
            self._rng_restored = True

    def _set_rng(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        if state.get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], self.device)


def rng_state_tensor(state: object, like: Tensor, what: str) -> Tensor:
    """An RNG state read from a checkpoint, checked against the live state ``like`` (dtype, shape) and returned as an
    owned contiguous CPU copy; :class:`CheckpointError` (one line) instead of a crash in ``set_rng_state``."""
    if not isinstance(state, Tensor) or state.dtype != like.dtype or state.shape != like.shape:
        found = f"{state.dtype} {tuple(state.shape)}" if isinstance(state, Tensor) else type(state).__name__
        raise CheckpointError(
            f"the checkpoint's {what} is not a valid RNG state ({found}, expected {like.dtype} {tuple(like.shape)})"
        )
    return state.detach().cpu().clone(memory_format=torch.contiguous_format)
