"""The base every method shares (classifier, one manual classifier step, validation, test, optimisers) and vanilla
training. Manual optimisation throughout: one code path for the noise methods and the min-max loops; a subclass
overrides :meth:`perturb_batch` (GNT, Speckle) or ``training_step`` (ANT, AdA)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import lr_scheduler
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics.classification import MulticlassAccuracy

from robustnoise.models import create_model
from robustnoise.utils.errors import ConfigError, NonFiniteLossError, is_number
from robustnoise.utils.resume import checkpoint_files

OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}


class RobustClassifierModule(pl.LightningModule):
    """A classifier trained with manual optimisation; plain-value hyper-parameters with no defaults (conf/method)."""

    def __init__(
        self, *, model: dict[str, Any], data: dict[str, Any], optimizer: dict[str, Any], scheduler: dict[str, Any],
        p_clean: float, clip_grad_norm: float | None, name: str, ddp_strategy: str,
    ) -> None:  # fmt: skip
        super().__init__()
        if not (is_number(p_clean) and 0.0 <= p_clean <= 1.0):
            raise ConfigError(f"p_clean must be a number in [0, 1], got {p_clean!r}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.classifier = create_model(
            model["name"], num_classes=data["num_classes"], in_chans=data["in_chans"], weights=model.get("weights"),
            mean=model.get("mean") or data["mean"], std=model.get("std") or data["std"], image_size=data["image_size"],
        )  # fmt: skip
        self.val_acc = MulticlassAccuracy(num_classes=data["num_classes"], average="micro")
        self.test_suite: Any = None  # set by the evaluation code (robustnoise.eval.suite) before trainer.test
        self.ddp_wrappers: dict[str, nn.Module] = {}  # set by the ddp_per_network strategy (robustnoise.training.ddp)
        self.train_rows: list[tuple[str, Tensor]] = []  # what the classifier trained on last, as labelled rows

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(x)

    def ddp_networks(self) -> dict[str, nn.Module]:
        """The networks that train with their own optimiser (each gets its own DDP under ``ddp_per_network``)."""
        return {"classifier": self.classifier}

    def trainable(self, name: str) -> nn.Module:
        """The network to call in a step that updates it: its DDP wrapper under ``ddp_per_network``, else itself."""
        return self.ddp_wrappers.get(name) or getattr(self, name)

    def num_clean(self, batch_size: int) -> int:
        """Images ``[0, num_clean)`` of a batch stay clean, the rest are perturbed (positional, as the reference)."""
        return int(round(batch_size * self.hparams.p_clean))

    def perturb_batch(self, x: Tensor, y: Tensor) -> Tensor:
        """What the classifier trains on; the vanilla method trains on the clean batch."""
        return x

    def classifier_step(
        self, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None
    ) -> Tensor:
        """One optimiser step of the classifier on ``(x, y)``; ``loss_fn`` replaces the cross-entropy (AugMix's JSD)."""
        opt = self.optimizers()
        opt = opt[0] if isinstance(opt, list) else opt
        self.classifier.train()
        logits = self.trainable("classifier")(x)
        loss = (loss_fn or F.cross_entropy)(logits, y)
        self.check_finite(loss)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.hparams.clip_grad_norm:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.clip_grad_norm, gradient_clip_algorithm="norm")
        opt.step()
        return loss.detach()

    def check_finite(self, loss: Tensor) -> None:
        """:class:`NonFiniteLossError` before a nan or inf loss on any rank reaches the weights (a flag all-reduced)."""
        bad = (~torch.isfinite(loss.detach())).any().float()
        if self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce(bad, reduce_op="sum")
        if float(bad) > 0:
            last = [*checkpoint_files(self.trainer.default_root_dir), "none written"][0]  # the one resume=true takes
            raise NonFiniteLossError(
                f"non-finite training loss ({float(loss.detach().float().sum())}) at step {self.global_step} "
                f"(epoch {self.current_epoch}); last good checkpoint: {last}"
            )

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch[0], batch[1]
        x_train = self.perturb_batch(x, y)
        k = self.num_clean(len(x))  # vanilla's p_clean is 1: all clean (an empty part draws no row)
        self.train_rows = [("clean", x_train[:k]), ("perturbed", x_train[k:])]
        loss = self.classifier_step(x_train, y)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(y))
        return loss

    def on_train_epoch_end(self) -> None:
        for config in self.trainer.lr_scheduler_configs:  # manual optimisation: Lightning does not step them
            config.scheduler.step()

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
        x, y, index = batch
        self.test_suite.evaluate_batch(self.classifier, x, y, index, loader=dataloader_idx)

    def on_test_epoch_start(self) -> None:
        self.test_suite.reset(self.device)

    def on_test_epoch_end(self) -> None:
        self.test_suite.gather()
        self.log_dict(self.test_suite.metrics(), rank_zero_only=True)

    def build_scheduler(self, optimizer: torch.optim.Optimizer) -> LRScheduler | None:
        """An epoch-wise schedule: multistep (the papers' single decay by 10) or cosine, after ``warmup_epochs`` of
        linear warm-up (epoch ``e < w`` at ``(e + 1) / w`` of the learning rate)."""
        cfg = self.hparams.scheduler
        if (name := cfg["name"]) == "none":
            return None
        max_epochs = max(int(self.trainer.max_epochs or 1), 1) if self._trainer is not None else 1
        warmup = int(cfg["warmup_epochs"] or 0)
        if name == "multistep":
            milestones = cfg["milestones"] or [max(1, round(f * max_epochs)) for f in cfg["milestones_frac"] or []]
            if any(m < warmup for m in milestones):
                raise ConfigError(f"scheduler milestones {list(milestones)} fall inside the {warmup} warm-up epochs")
            main: LRScheduler = lr_scheduler.MultiStepLR(optimizer, [m - warmup for m in milestones], cfg["gamma"])
        elif name == "cosine":
            main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, max_epochs - warmup))
        else:
            raise ValueError(f"unknown scheduler {name!r}: use none, multistep or cosine")
        if not warmup:
            return main
        warm = lr_scheduler.LinearLR(optimizer, start_factor=1 / warmup, total_iters=warmup - 1)
        return lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[warmup])

    def configure_optimizers(self) -> Any:
        """The classifier's optimiser from plain config values (no partials or objects in the hyper-parameters)."""
        if (name := OPTIMIZERS.get((cfg := self.hparams.optimizer)["name"].lower())) is None:
            raise ValueError(f"unknown optimizer {cfg['name']!r}: use sgd, adam or adamw")
        optimizer = getattr(torch.optim, name)(
            self.classifier.parameters(), **{k: v for k, v in cfg.items() if k != "name"}
        )
        scheduler = self.build_scheduler(optimizer)
        return [optimizer], [scheduler] if scheduler is not None else []


class VanillaTraining(RobustClassifierModule):
    """Standard cross-entropy training on the clean batch (the baseline row of every table)."""
