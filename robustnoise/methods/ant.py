"""Adversarial Noise Training, ANT 1x1 / 3x3 and ANT+SIN (Rusak et al. 2020, §3.2; appendix A, B, K).

An image-independent noise generator (``robustnoise.noise``) plays against the classifier. Every iteration:

(a) one generator step maximising the cross-entropy of the frozen classifier (eval mode) on images perturbed by the
    generator's noise, projected per image onto the clipped l2 sphere of radius ``epsilon`` (Rauber & Bethge 2020);
(b) the mixed batch: ``p_clean`` clean images, ``p_current`` perturbed by the current generator, ``p_replay`` by
    ``replay_per_step`` snapshots drawn from the replay pool, each with its own epsilon (experience replay; before an
    older snapshot exists the current generator perturbs the whole non-clean part);
(c) one classifier step on the mixed batch (train mode).

Every ``restart_every`` epochs (or steps) a fresh generator replaces the current one (:meth:`restart`). Paper vs
reference code (bethgelab/game-of-noise) differences are options of ``conf/method/ant1x1.yaml``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from robustnoise.data.resumable import ShuffledPasses
from robustnoise.methods.base import RobustClassifierModule
from robustnoise.methods.configs import check_ant
from robustnoise.noise import NoiseGenerator, project_to_sphere
from robustnoise.noise.adversarial import generator_step, reset_optimizer, train_generator
from robustnoise.noise.calibration import auto_epsilon
from robustnoise.training.restarts import ReplayPool, restart_interval
from robustnoise.utils.errors import ConfigError
from robustnoise.utils.seeding import derive_seed, run_seed

log = logging.getLogger(__name__)


class AdversarialNoiseTraining(RobustClassifierModule):
    """ANT: classifier and noise generator trained jointly with replay and restarts. ``epsilon``: the clipped l2 norm
    of every noise sample, or ``auto`` (``epsilon_scale`` x that of Gaussian noise of std ``epsilon_sigma``)."""

    def __init__(
        self, *, epsilon: float | str, epsilon_sigma: float, epsilon_scale: float, kernel: int, depth: int, width: int,
        init_std: float | None, noise_lr: float, restart_lr: float, restart_steps: int, restart_every: float,
        restart_unit: str, restart_at_start: bool, p_current: float, p_replay: float, replay_per_step: int,
        replay: bool, snapshot_at_restart: bool, snapshot_every: int | None, pool_size: int | None,
        adaptive_epsilon: dict[str, Any], p_stylized: float, stylized_split: str, **kwargs: Any,
    ) -> None:  # fmt: skip
        check_ant(locals())
        super().__init__(**kwargs)
        self.generator = self._new_generator_seeded(0)
        self.register_buffer("epsilon", torch.tensor(float("nan") if epsilon == "auto" else float(epsilon)))
        # classifier steps so far, restarts so far, the iteration of the last restart (-1: none yet): host ints, no sync
        self.iteration, self.restarts, self.last_restart = 0, 0, -1
        self.pool = ReplayPool(pool_size)
        self.restart_data: ShuffledPasses | None = None
        self.restart_sample: dict[str, Any] | None = None  # the last restart's images and generator, for the figures

    def _new_generator_seeded(self, restart: int) -> NoiseGenerator:
        """Fresh weights, identical on every rank: seeded by the run's seed and the restart count."""
        hp = self.hparams
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(run_seed(), "ant_generator", restart))
            return NoiseGenerator(hp.data["in_chans"], hp.kernel, hp.depth, hp.width, hp.init_std)

    def ddp_networks(self) -> dict[str, nn.Module]:
        return {"classifier": self.classifier, "generator": self.generator}

    def noise_sample(self, x: Tensor, params: dict[str, Tensor] | None = None, eps: Any = None) -> Tensor:
        """Images perturbed by the generator (or a snapshot's ``params``) with clipped l2 norm ``eps`` each."""
        delta = self.generator(x) if params is None else functional_call(self.generator, params, (x,))
        return project_to_sphere(x, delta, self.epsilon if eps is None else eps)

    def setup(self, stage: str) -> None:
        if stage == "fit" and torch.isnan(self.epsilon):  # a restored checkpoint overwrites this afterwards
            self.epsilon.fill_(auto_epsilon(self._trainer, self.hparams.epsilon_sigma, self.hparams.epsilon_scale))

    def configure_optimizers(self) -> Any:
        optimizers, schedulers = super().configure_optimizers()
        return [*optimizers, torch.optim.Adam(self.generator.parameters(), lr=self.hparams.noise_lr)], schedulers

    def generator_step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(a) One Adam step of the generator maximising CE of the frozen classifier; returns (CE, accuracy)."""
        net, opt = self.trainable("generator"), self.optimizers()[1]
        return generator_step(self.classifier, net, opt, x, y, self.epsilon, self.manual_backward)

    def batch_counts(self, batch_size: int, replay_active: bool, n_stylized: int = 0) -> dict[str, Any]:
        """How many images of a batch are clean, stylized, current-generator noise and noise of each snapshot."""
        hp = self.hparams
        n_clean = round(batch_size * hp.p_clean)
        n_replay = round(batch_size * hp.p_replay) if replay_active else 0
        if n_stylized and hp.stylized_split == "paper":  # 25 % clean / 30 % stylized / 45 % noise
            noisy = batch_size - n_clean - n_stylized
            n_replay = round(noisy * hp.p_replay / (hp.p_current + hp.p_replay)) if replay_active else 0
            n_current = noisy - n_replay
        else:  # no stylized images, or the reference: stylized images replace the last clean rows
            n_current = batch_size - n_clean - n_replay
            n_clean -= n_stylized
            if n_clean < 0:
                raise ConfigError(f"{n_stylized} stylized images do not fit in the clean part of a {batch_size} batch")
        k = min(hp.replay_per_step, len(self.pool)) if n_replay else 0  # replay_per_step >= 1 (check_ant)
        slices = [n_replay // k + int(i < n_replay % k) for i in range(k)]
        return {"clean": n_clean, "stylized": n_stylized, "current": n_current, "replay": slices}

    def replay_active(self) -> bool:
        """Replay starts once the pool holds a snapshot other than the current generator's own restart state."""
        return self.hparams.replay and any(s["restart"] != self.restarts or s["kind"] != "restart" for s in self.pool)

    @torch.no_grad()
    def mixed_batch(self, x: Tensor, y: Tensor, stylized: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """(b) [clean | stylized | current-generator noise | snapshot 1 noise | snapshot 2 noise]."""
        counts = self.batch_counts(len(x), self.replay_active(), 0 if stylized is None else len(stylized[0]))
        rows, labels = [("clean", x[: counts["clean"]])], [y[: counts["clean"]]]
        if stylized is not None:
            rows.append(("stylized", stylized[0]))
            labels.append(stylized[1])
        start = len(x) - counts["current"] - sum(counts["replay"])
        current, *replayed = x[start:].split([counts["current"], *counts["replay"]])
        rows.append(("generator", self.noise_sample(current)))
        for snapshot, part in zip(self.pool.draw(len(replayed), x.device), replayed):
            rows.append(("replay", self.noise_sample(part, snapshot["params"], snapshot["epsilon"])))
        self.train_rows = rows
        return torch.cat([images for _, images in rows]), torch.cat([*labels, y[start:]])

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        (x, y), stylized = self._split_batch(batch)
        hp = self.hparams
        last = self.last_restart
        if (last < 0 and hp.restart_at_start) or self.iteration - max(last, 0) >= self.interval:
            self.restart()
        noise_loss, noise_acc = self.generator_step(x, y)  # (a)
        x_mix, y_mix = self.mixed_batch(x, y, stylized)  # (b)
        loss = self.classifier_step(x_mix, y_mix)  # (c)
        self.iteration += 1
        if hp.snapshot_every and self.iteration % int(hp.snapshot_every) == 0:
            self.pool.add(self.generator, float(self.epsilon), self.restarts, "interval")
        if (adaptive := hp.adaptive_epsilon)["enabled"]:  # about target_error of the noisy images misclassified
            error = 1.0 - float(self.trainer.strategy.reduce(noise_acc.detach(), reduce_op="mean"))
            self.epsilon.mul_(1.0 + (1.0 if error < float(adaptive["target_error"]) else -1.0) * adaptive["rate"])
        shown = {"train/loss": loss, "train/acc_current_noise": 100.0 * noise_acc}
        self.log_dict(shown, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(y_mix))
        self.log("train/loss_noise", noise_loss, on_step=True, on_epoch=True, batch_size=len(y_mix))
        self.log_dict({"train/epsilon": self.epsilon, "train/pool_size": float(len(self.pool))}, on_step=True)
        return loss

    def _split_batch(self, batch: Any) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor] | None]:
        """The clean batch, and the first ``p_stylized`` of a StylizedDataModule's ``{"clean", "stylized"}`` batch."""
        p = self.hparams.p_stylized
        if not isinstance(batch, dict) and p > 0:
            raise ConfigError("ANT+SIN needs stylized batches: use data=stylized (a StylizedDataModule)")
        clean, stylized = (batch["clean"], batch.get("stylized")) if isinstance(batch, dict) else (batch, None)
        n = round(len(clean[0]) * p)
        return (clean[0], clean[1]), (stylized[0][:n], stylized[1][:n]) if stylized is not None and p > 0 else None

    def on_train_start(self) -> None:
        hp = self.hparams
        self.interval = restart_interval(self.trainer, hp.restart_every, hp.restart_unit, bool(hp.model.get("weights")))

    def restart(self) -> None:
        """A fresh generator trains ``restart_steps`` Adam steps (``restart_lr``) against the frozen classifier on a
        separate shuffled pass over the training set, then replaces the current one (fresh Adam at ``noise_lr``)."""
        hp, opt = self.hparams, self.optimizers()[1]
        self.restarts += 1
        self.last_restart = self.iteration
        # fresh weights copied into the same module: its DDP wrapper and optimiser keep pointing at it
        self.generator.load_state_dict(self._new_generator_seeded(self.restarts).state_dict())
        reset_optimizer(opt.optimizer, hp.restart_lr)
        batches = ((x.to(self.device), y.to(self.device)) for x, y, *_ in self.resume_streams()["ant_restart"])
        name = f"ANT restart {self.restarts}"
        losses, accs, x = train_generator(
            self.classifier, self.trainable("generator"), opt, batches, self.epsilon, hp.restart_steps,
            f"{name}: generator steps", self.manual_backward,
        )  # fmt: skip
        reset_optimizer(opt.optimizer, hp.noise_lr)
        if hp.snapshot_at_restart:
            self.pool.add(self.generator, float(self.epsilon), self.restarts, "restart")
        self.log("restart/count", float(self.restarts), on_step=True, on_epoch=False)
        if x is not None:  # restart_steps > 0
            final_loss, final_acc = torch.stack(losses[-10:]).mean(), torch.stack(accs[-10:]).mean()
            self.log_dict({"restart/loss_noise": final_loss, "restart/acc_noise": 100.0 * final_acc}, on_step=True)
            if self.trainer.is_global_zero:
                log.info("%s: %d generator steps, accuracy under its noise %.1f %%", name, len(losses), 100 * final_acc)
            params = {k: v.detach().clone() for k, v in self.generator.named_parameters()}
            self.restart_sample = {"x": x[:16], "params": params, "epsilon": float(self.epsilon)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ant_counters"] = [self.iteration, self.restarts, self.last_restart]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.iteration, self.restarts, self.last_restart = checkpoint["ant_counters"]

    def resume_streams(self) -> dict[str, Any]:
        """The replay pool and the restart batches (the reference's retrain loader: a separate shuffled pass)."""
        if self.restart_data is None:
            seeds = lambda p: derive_seed(run_seed(), "ant_restart_order", p)  # noqa: E731  (one order per pass)
            self.restart_data = ShuffledPasses.of_training_set(self.trainer, seeds)
        return {"ant_restart": self.restart_data, "replay_pool": self.pool}
