"""Adversarial Noise Training, ANT 1x1 / 3x3 and ANT+SIN (Rusak et al. 2020, §3.2; appendix A, B, K).

A noise generator (``robustnoise.noise.NoiseGenerator``, image-independent) plays against the classifier. Every
iteration, on the classifier's clean mini-batch:

(a) one generator step maximising the cross-entropy of the classifier (eval mode, parameters frozen) on images
    perturbed by the generator's noise, projected per image onto the clipped l2 sphere of radius ``epsilon``
    (clipping-aware rescaling, Rauber & Bethge 2020);
(b) the mixed batch: ``p_clean`` clean images, ``p_current`` perturbed by the current generator, ``p_replay`` by
    ``replay_per_step`` snapshots drawn at random from the replay pool, each with its own epsilon (experience replay;
    before an older snapshot exists the current generator perturbs the whole non-clean part);
(c) one classifier step on the mixed batch (train mode).

**Restarts.** At regular intervals a freshly initialised generator is trained for ``restart_steps`` steps
(Adam ``restart_lr``) against the frozen classifier on batches of a separate shuffled pass over the training set;
it replaces the current generator, which then continues with a fresh Adam (``noise_lr``).

Paper vs reference code (bethgelab/game-of-noise), each a config option:

- restart interval: once per epoch (reference, the default: ``restart_every: 1.0``, ``restart_unit: epoch``); the
  paper's every 0.33 epochs (``restart_every: 0.33``); any number of iterations (``restart_unit: step``);
- replay snapshots: the freshly restarted generator at every restart (reference HEAD, default) and/or the jointly
  trained generator every ``snapshot_every`` iterations (the first released training code);
- ANT+SIN batch: the paper's 25 % clean / 30 % stylized / 45 % noise (``stylized_split: paper``) or the reference's
  standard ANT batch whose last clean rows are replaced by stylized images (``stylized_split: reference``);
- adaptive epsilon that keeps about ``target_error`` of the noisy images misclassified (authors' suggestion; off).
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils.data import DataLoader

from robustnoise.methods.base import RobustClassifierModule
from robustnoise.methods.gnt import noise_levels
from robustnoise.noise import NoiseGenerator, clipping_aware_scale, project_to_sphere
from robustnoise.noise.calibration import epsilon_for_sigma
from robustnoise.utils.errors import ConfigError, is_number
from robustnoise.utils.progress import progress
from robustnoise.utils.seeding import derive_seed, run_seed

log = logging.getLogger(__name__)


class AdversarialNoiseTraining(RobustClassifierModule):
    """ANT: classifier and noise generator trained jointly with replay and restarts (manual optimisation).

    Every argument is required: ``conf/method/ant1x1.yaml`` holds the defaults (``robustnoise.methods.configs``).

    Args:
        epsilon: l2 norm of every noise sample after clipping to [0, 1] (135 for 1x1, 70 for 3x3 on 224 px ImageNet,
            10 on MNIST), or ``auto``: ``epsilon_scale`` times the clipped l2 size of Gaussian noise of std
            ``epsilon_sigma`` on the training images (``robustnoise.noise.calibration``; 0.5 reproduces 135 and 10).
        kernel, depth, width, init_std: the generator (App. A; depth 1..5 = App. K's NG1..NG5).
        noise_lr: Adam learning rate of the generator during joint training.
        restart_lr, restart_steps: the restart's fresh generator (Adam 5e-4, 1001 steps in the reference).
        restart_every, restart_unit: restart interval in epochs (fractions allowed) or in iterations.
        restart_at_start: train a first generator against the initial classifier before any classifier step.
        p_current, p_replay: fractions of the batch perturbed by the current generator and by replayed snapshots
            (``p_clean`` comes from the base class; the three sum to 1 without stylized images).
        replay_per_step: snapshots drawn (without replacement) per iteration.
        replay: False is the paper's "w/o EP" ablation: the current generator perturbs the whole noisy part.
        snapshot_at_restart, snapshot_every: when snapshots enter the pool.
        pool_size: keep at most this many snapshots (oldest dropped first); None keeps all (reference).
        adaptive_epsilon: ``{enabled, target_error, rate}``: multiply epsilon by (1 +- rate) per iteration to keep
            ``target_error`` of the current generator's images misclassified.
        p_stylized, stylized_split: ANT+SIN (batches from a stylized DataModule); 0 disables.
    """

    def __init__(
        self,
        *,
        epsilon: float | str,
        epsilon_sigma: float,
        epsilon_scale: float,
        kernel: int,
        depth: int,
        width: int,
        init_std: float | None,
        noise_lr: float,
        restart_lr: float,
        restart_steps: int,
        restart_every: float,
        restart_unit: str,
        restart_at_start: bool,
        p_current: float,
        p_replay: float,
        replay_per_step: int,
        replay: bool,
        snapshot_at_restart: bool,
        snapshot_every: int | None,
        pool_size: int | None,
        adaptive_epsilon: dict[str, Any],
        p_stylized: float,
        stylized_split: str,
        **kwargs: Any,
    ) -> None:
        missing = {"enabled", "target_error", "rate"} - set(adaptive_epsilon)
        if missing:
            raise ConfigError(f"method.adaptive_epsilon: missing key(s) {sorted(missing)}")
        if epsilon != "auto" and not (is_number(epsilon) and 0 < epsilon < math.inf):
            raise ConfigError(f"epsilon must be > 0 and finite, or 'auto', got {epsilon!r}")
        if not is_number(epsilon_sigma):
            raise ConfigError(f"epsilon_sigma must be a number, got {epsilon_sigma!r}")
        noise_levels(epsilon_sigma, "epsilon_sigma")
        if restart_unit not in ("epoch", "step"):
            raise ConfigError(f"restart_unit must be 'epoch' or 'step', got {restart_unit!r}")
        if restart_every <= 0 or restart_steps < 0:
            raise ConfigError("restart_every must be > 0 and restart_steps >= 0")
        if stylized_split not in ("paper", "reference"):
            raise ConfigError(f"stylized_split must be 'paper' or 'reference', got {stylized_split!r}")
        if min(p_current, p_replay, p_stylized) < 0 or p_current + p_replay <= 0:
            raise ConfigError("p_current and p_replay must be >= 0 with a positive sum; p_stylized >= 0")
        super().__init__(**kwargs)
        self.generator = self._new_generator_seeded(0)
        self.register_buffer("epsilon", torch.tensor(float("nan") if epsilon == "auto" else float(epsilon)))
        self.register_buffer("iteration", torch.tensor(0, dtype=torch.long))  # classifier steps so far
        self.register_buffer("restarts", torch.tensor(0, dtype=torch.long))
        self.register_buffer("last_restart", torch.tensor(-1, dtype=torch.long))  # iteration of the last restart
        self.register_buffer("restart_batches", torch.tensor(0, dtype=torch.long))  # batches the restarts consumed
        self.pool: list[dict[str, Any]] = []  # snapshots: {"params": {name: tensor}, "epsilon": float, "restart": int}
        self._restart_iter: Any = None

    # ------------------------------------------------------------------------------------------- generators
    def _new_generator(self) -> NoiseGenerator:
        hp = self.hparams
        channels = hp.data["in_chans"]  # noise lives in the image's pixel space
        return NoiseGenerator(channels=channels, kernel=hp.kernel, depth=hp.depth, width=hp.width, init_std=hp.init_std)

    def _reinitialise_generator(self) -> None:
        """Fresh weights, identical on every rank (seeded by the run's seed and the restart count), same module."""
        fresh = self._new_generator_seeded(int(self.restarts))
        with torch.no_grad():
            for target, source in zip(self.generator.parameters(), fresh.parameters()):
                target.copy_(source)

    def _new_generator_seeded(self, restart: int) -> NoiseGenerator:
        state = torch.get_rng_state()
        torch.manual_seed(derive_seed(run_seed(), "ant_generator", restart))
        try:
            return self._new_generator()
        finally:
            torch.set_rng_state(state)

    def ddp_networks(self) -> dict[str, nn.Module]:
        return {"classifier": self.classifier, "generator": self.generator}

    def noise_sample(
        self,
        x: Tensor,
        params: dict[str, Tensor] | None = None,
        eps: Tensor | float | None = None,
        for_update: bool = False,
    ) -> Tensor:
        """Images perturbed by the generator (or a snapshot's ``params``) with clipped l2 norm ``eps`` each.

        ``for_update`` routes through the generator's DDP wrapper (only the generator step backpropagates).
        """
        eps = self.epsilon if eps is None else eps
        if params is not None:
            delta = functional_call(self.generator, params, (x,))
        elif for_update:
            delta = self.trainable("generator")(x)
        else:
            delta = self.generator(x)
        return project_to_sphere(x, delta, eps)

    def setup(self, stage: str) -> None:
        if stage == "fit" and torch.isnan(self.epsilon):  # a restored checkpoint overwrites this afterwards
            dataset = getattr(self.trainer.datamodule, "train_set", None) if self._trainer is not None else None
            if dataset is None:
                raise ConfigError("epsilon=auto needs a DataModule with a train_set; set method.epsilon to a number")
            eps = epsilon_for_sigma(dataset, self.hparams.epsilon_sigma, self.hparams.epsilon_scale)
            self.epsilon.fill_(eps)
            log.info(
                "epsilon=auto: %.3f (clipped l2 of sigma=%.2f Gaussian noise x %.3f)",
                eps,
                self.hparams.epsilon_sigma,
                self.hparams.epsilon_scale,
            )

    # --------------------------------------------------------------------------------------------- optimisers
    def configure_optimizers(self) -> Any:
        classifier_opt = self.build_optimizer(self.classifier.parameters(), self.hparams.optimizer)
        generator_opt = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.noise_lr)
        scheduler = self.build_scheduler(classifier_opt)
        return [classifier_opt, generator_opt], ([scheduler] if scheduler is not None else [])

    def _reset_generator_optimizer(self, lr: float) -> None:
        """A fresh Adam: empty moments and the given learning rate (same optimiser object, so checkpoints keep it)."""
        opt = self.optimizers()[1].optimizer
        opt.state.clear()
        for group in opt.param_groups:
            group["lr"] = lr

    # ----------------------------------------------------------------------------------------- the three steps
    def generator_step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(a) One Adam step of the generator maximising CE of the frozen classifier; returns (CE, accuracy)."""
        opt = self.optimizers()[1]
        was_training = self.classifier.training
        self.classifier.eval()
        self.classifier.requires_grad_(False)  # no weight gradients for the classifier: half the backward cost
        try:
            logits = self.classifier(self.noise_sample(x, for_update=True))
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            self.manual_backward(-loss)
            opt.step()
        finally:
            self.classifier.requires_grad_(True)
            self.classifier.train(was_training)
        accuracy = (logits.detach().argmax(dim=1) == y).float().mean()
        return loss.detach(), accuracy

    def batch_counts(self, batch_size: int, replay_active: bool, n_stylized: int = 0) -> dict[str, Any]:
        """How many images of a batch are clean, stylized, current-generator noise and noise of each snapshot."""
        hp = self.hparams
        n_replay_total = round(batch_size * hp.p_replay) if replay_active else 0
        if n_stylized and hp.stylized_split == "paper":
            n_clean = round(batch_size * hp.p_clean)
            noisy = batch_size - n_clean - n_stylized
            n_replay_total = round(noisy * hp.p_replay / (hp.p_current + hp.p_replay)) if replay_active else 0
            n_current = noisy - n_replay_total
        else:  # no stylized images, or the reference: stylized images replace the last clean rows
            n_clean = round(batch_size * hp.p_clean)
            n_current = batch_size - n_clean - n_replay_total
            n_clean -= n_stylized
            if n_clean < 0:
                raise ConfigError(f"{n_stylized} stylized images do not fit in the clean part of a {batch_size} batch")
        k = min(hp.replay_per_step, len(self.pool)) if n_replay_total else 0
        slices = [n_replay_total // k + (1 if i < n_replay_total % k else 0) for i in range(k)] if k else []
        if n_replay_total and not k:
            n_current += n_replay_total
        return {"clean": n_clean, "stylized": n_stylized, "current": n_current, "replay": slices}

    def replay_active(self) -> bool:
        """Replay starts once the pool holds a snapshot other than the current generator's own restart state."""
        if not self.hparams.replay or not self.pool:
            return False
        return any(s["restart"] != int(self.restarts) or s["kind"] != "restart" for s in self.pool)

    @torch.no_grad()
    def mixed_batch(self, x: Tensor, y: Tensor, stylized: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """(b) [clean | stylized | current-generator noise | snapshot 1 noise | snapshot 2 noise]."""
        n_sty = 0 if stylized is None else len(stylized[0])
        counts = self.batch_counts(len(x), self.replay_active(), n_sty)
        parts, labels = [x[: counts["clean"]]], [y[: counts["clean"]]]
        if stylized is not None:
            parts.append(stylized[0])
            labels.append(stylized[1])
        start = len(x) - counts["current"] - sum(counts["replay"])
        noisy_x, noisy_y = x[start:], y[start:]
        parts.append(self.noise_sample(noisy_x[: counts["current"]]))
        offset = counts["current"]
        picks = torch.randperm(len(self.pool))[: len(counts["replay"])].tolist()
        for pick, n in zip(picks, counts["replay"]):
            snapshot = self.pool[pick]
            if next(iter(snapshot["params"].values())).device != x.device:  # once, after loading a checkpoint
                snapshot["params"] = {k: v.to(x.device) for k, v in snapshot["params"].items()}
            parts.append(self.noise_sample(noisy_x[offset : offset + n], snapshot["params"], snapshot["epsilon"]))
            offset += n
        labels.append(noisy_y)
        return torch.cat(parts), torch.cat(labels)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        (x, y), stylized = self._split_batch(batch)
        if self._restart_due():
            self.restart()
        noise_loss, noise_acc = self.generator_step(x, y)  # (a)
        x_mix, y_mix = self.mixed_batch(x, y, stylized)  # (b)
        if not self._grid_saved:
            self.save_batch_grid(x_mix, self._batch_parts(len(x), stylized))
        loss = self.classifier_step(x_mix, y_mix)  # (c)
        self.iteration += 1
        self._after_iteration(noise_acc)
        batch_size = len(y_mix)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch_size)
        self.log("train/loss_noise", noise_loss, on_step=True, on_epoch=True, batch_size=batch_size)
        self.log("train/acc_current_noise", 100.0 * noise_acc, prog_bar=True, on_epoch=True, batch_size=batch_size)
        self.log("train/epsilon", self.epsilon, on_step=True, on_epoch=False)
        self.log("train/pool_size", float(len(self.pool)), on_step=True, on_epoch=False)
        return loss

    def _split_batch(self, batch: Any) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor] | None]:
        if isinstance(batch, dict):  # a StylizedDataModule: {"clean": (x, y), "stylized": (x, y)}
            clean = batch["clean"]
            stylized = batch.get("stylized") if self.hparams.p_stylized > 0 else None
            if stylized is not None:
                n_sty = round(len(clean[0]) * self.hparams.p_stylized)
                stylized = (stylized[0][:n_sty], stylized[1][:n_sty])
            return (clean[0], clean[1]), stylized
        if self.hparams.p_stylized > 0:
            raise ConfigError("ANT+SIN needs stylized batches: use data=stylized (a StylizedDataModule)")
        return (batch[0], batch[1]), None

    def _after_iteration(self, noise_acc: Tensor) -> None:
        hp = self.hparams
        every = hp.snapshot_every
        if every and int(self.iteration) % int(every) == 0:
            self._snapshot("interval")
        adaptive = hp.adaptive_epsilon
        if adaptive["enabled"]:
            error = 1.0 - self.trainer.strategy.reduce(noise_acc.detach(), reduce_op="mean")
            direction = 1.0 if float(error) < float(adaptive["target_error"]) else -1.0
            self.epsilon.mul_(1.0 + direction * float(adaptive["rate"]))

    def _batch_parts(self, batch_size: int, stylized: Any) -> list[tuple[str, int]]:
        """The labelled parts of :meth:`mixed_batch`'s output, for the training-batch figure."""
        counts = self.batch_counts(batch_size, self.replay_active(), 0 if stylized is None else len(stylized[0]))
        return [("clean", counts["clean"]), ("stylized", counts["stylized"]), ("generator", counts["current"]),
                ("replay", sum(counts["replay"]))]  # fmt: skip

    # ---------------------------------------------------------------------------------------------- restarts
    def restart_interval(self) -> int:
        """Iterations between restarts."""
        hp = self.hparams
        if hp.restart_unit == "step":
            return max(1, int(hp.restart_every))
        per_epoch = self.trainer.num_training_batches
        per_epoch = per_epoch if math.isfinite(per_epoch) else 1000
        return max(1, round(hp.restart_every * per_epoch))

    def on_train_start(self) -> None:
        super().on_train_start()
        per_epoch, epochs = self.trainer.num_training_batches, self.trainer.max_epochs
        if self.trainer.is_global_zero and math.isfinite(per_epoch) and epochs and epochs > 0:
            message = restart_schedule_warning(
                self.restart_interval(), int(per_epoch), epochs, bool(self.hparams.model.get("weights"))
            )
            if message:
                log.warning("%s", message)

    def _restart_due(self) -> bool:
        it, last = int(self.iteration), int(self.last_restart)
        if last < 0:
            return bool(self.hparams.restart_at_start) or it >= self.restart_interval()
        return it - last >= self.restart_interval()

    def restart(self) -> None:
        """Train a fresh generator against the frozen classifier; it replaces the current one (fresh Adam after)."""
        hp = self.hparams
        self.restarts += 1
        self.last_restart.fill_(int(self.iteration))
        self._reinitialise_generator()
        self._reset_generator_optimizer(hp.restart_lr)
        losses, accs, x = [], [], None
        for _ in progress(range(hp.restart_steps), f"ANT restart {int(self.restarts)}: generator steps"):
            x, y = self._restart_batch()
            loss, acc = self.generator_step(x, y)
            losses.append(loss)
            accs.append(acc)
        self._reset_generator_optimizer(hp.noise_lr)
        if hp.snapshot_at_restart:
            self._snapshot("restart")
        self.log("restart/count", self.restarts.float(), on_step=True, on_epoch=False)
        if x is None:
            return
        final_loss, final_acc = torch.stack(losses[-10:]).mean(), torch.stack(accs[-10:]).mean()
        self.log("restart/loss_noise", final_loss, on_step=True, on_epoch=False)
        self.log("restart/acc_noise", 100.0 * final_acc, on_step=True, on_epoch=False)
        if self.trainer.is_global_zero:
            log.info(
                "restart %d: %d generator steps, accuracy under its noise %.1f %%",
                int(self.restarts),
                hp.restart_steps,
                100.0 * float(final_acc),
            )
            self.visualise_generator(f"restart_{int(self.restarts):03d}", x[:16])

    def _restart_batch(self) -> tuple[Tensor, Tensor]:
        """Batches of a separate shuffled pass over the (clean) training set, as the reference's retrain loader.

        The order is a function of (seed, pass) and the position is counted in ``restart_batches``, so a resumed run
        draws exactly the batches an uninterrupted one would.
        """
        while True:
            if self._restart_iter is None:
                self._restart_iter = iter(self._restart_loader())
            try:
                batch = next(self._restart_iter)
            except StopIteration:
                self._restart_iter = None
                continue
            self.restart_batches += 1
            return batch[0].to(self.device), batch[1].to(self.device)

    def _restart_loader(self) -> DataLoader:
        datamodule = self.trainer.datamodule
        dataset = getattr(datamodule, "train_set", None)
        if dataset is None:
            raise ConfigError("ANT restarts need a DataModule with a train_set (robustnoise.data)")
        batch_size = datamodule.batch_size
        world, rank = self.trainer.world_size, self.global_rank
        per_pass = len(dataset) // (batch_size * world)
        if per_pass == 0:
            raise ConfigError(f"the training set is smaller than one restart batch ({batch_size} x {world} ranks)")
        done = int(self.restart_batches)
        pass_index, offset = divmod(done, per_pass)
        gen = torch.Generator().manual_seed(derive_seed(run_seed(), "ant_restart_order", pass_index))
        order = torch.randperm(len(dataset), generator=gen)[rank::world][: per_pass * batch_size]
        # its own generator: creating this loader must not consume the global RNG (exact resume)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=order[offset * batch_size :].tolist(),
            num_workers=datamodule.num_workers,
            generator=gen,
        )

    def _snapshot(self, kind: str) -> None:
        # kept on the training device: the replay step reads two snapshots every iteration
        params = {k: v.detach().clone() for k, v in self.generator.named_parameters()}
        self.pool.append(
            {"params": params, "epsilon": float(self.epsilon), "restart": int(self.restarts), "kind": kind}
        )
        if self.hparams.pool_size is not None and len(self.pool) > self.hparams.pool_size:
            self.pool.pop(0)

    @torch.no_grad()
    def visualise_generator(self, name: str, x: Tensor) -> None:
        """Save and log a grid of noise and noisy images and the histogram of per-pixel noise values (Fig. 3A).

        ``x`` are images the restart already trained on: drawing new ones here would advance the restart data stream
        on rank zero only.
        """
        from robustnoise.report.plots import save_noise_figures

        delta = self.generator(x)
        raw = clipping_aware_scale(x, delta, self.epsilon) * delta
        older = [s for s in self.pool if s["restart"] != int(self.restarts)]
        replay = None
        if older:  # the newest earlier generator, on its own latent draw (the global RNG stays where it was)
            gen = torch.Generator(device=x.device).manual_seed(0)
            params = {k: v.to(x.device) for k, v in older[-1]["params"].items()}
            delta = functional_call(self.generator, params, (x,), {"generator": gen})
            scaled = clipping_aware_scale(x, delta, older[-1]["epsilon"]) * delta
            replay = (f"replay\n(restart {older[-1]['restart']})", (x + scaled).clamp(0, 1))
        noisy = (x + raw).clamp(0, 1)
        save_noise_figures(self, name, x, noisy, raw_noise=raw, epsilon=float(self.epsilon), replay=replay)

    # --------------------------------------------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["replay_pool"] = self.pool

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.pool = list(checkpoint.get("replay_pool", []))


MIN_TRAINED_RESTARTS = 2
"""Restarts a run needs against a classifier that has learnt something: after its first epoch when it starts from
scratch (the restart at the start then trains against random weights), any restart when it starts from weights (as
the papers, which fine-tune)."""


def restart_schedule_warning(interval: int, per_epoch: int, max_epochs: int, pretrained: bool) -> str | None:
    """A one-line warning when ``max_epochs`` leaves fewer than :data:`MIN_TRAINED_RESTARTS` such restarts, with the
    numbers and what to change; None when the schedule is fine. Restarts happen every ``interval`` iterations."""
    total = max_epochs * per_epoch
    first = 0 if pretrained else per_epoch  # iterations before a restart counts

    def trained(iterations: int) -> int:
        return sum(1 for it in range(interval, iterations, interval) if it >= first)

    count = trained(total)
    if count >= MIN_TRAINED_RESTARTS:
        return None
    every = interval / per_epoch
    needed = next(e for e in itertools.count(max_epochs) if trained(e * per_epoch) >= MIN_TRAINED_RESTARTS)
    return (
        f"ANT: trainer.max_epochs={max_epochs} with a restart every {every:g} epochs ({interval} iterations) gives "
        f"{count} generator restart(s) against a classifier that has trained {'at all' if pretrained else 'an epoch'}"
        f"; the recipe needs >= {MIN_TRAINED_RESTARTS} (otherwise the replayed generators were trained against an "
        f"untrained classifier and ANT can end below vanilla): use trainer.max_epochs>={needed} or a smaller "
        f"method.restart_every"
    )
