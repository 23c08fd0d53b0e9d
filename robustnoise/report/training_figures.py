"""Training figures, drawn by a callback (methods import nothing from the report layer): ``train_batch.png`` once and
after each ANT restart ``noise/restart_<k>_{samples,histogram}.png`` (Rusak et al. 2020, Fig. 3A); rank zero draws
with its own seeded noise, never moving a training stream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch.func import functional_call

from robustnoise.noise import clipping_aware_scale
from robustnoise.report.plots import image_rows, log_image_file, noise_histogram, save_figure


class TrainingFigures(Callback):
    """Draw the training-batch figure once and ANT's noise figures after every restart."""

    batch_drawn = False

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int) -> None:
        sample, rows = getattr(pl_module, "restart_sample", None), getattr(pl_module, "train_rows", None)
        if sample is not None:
            pl_module.restart_sample = None
        if not trainer.is_global_zero:
            return
        if rows and not self.batch_drawn:
            self.batch_drawn = True
            title = f"{type(pl_module).__name__}: a training batch as the classifier sees it"
            figure = image_rows([(f"{label}\n({len(x)})", x[:8]) for label, x in rows], title, columns=8)
            path = save_figure(figure, Path(trainer.default_root_dir) / "train_batch.png")
            log_image_file(pl_module, "images/train_batch", path)
        if sample is not None:
            restart_figures(pl_module, sample["x"], sample["params"], sample["epsilon"])


@torch.no_grad()
def restart_figures(ant: Any, x: torch.Tensor, params: dict[str, torch.Tensor], epsilon: float) -> None:
    """Noise figures of ANT's latest generator on the restart batch ``x``, next to the newest earlier one."""

    def noise(params: dict[str, torch.Tensor], eps: float) -> torch.Tensor:
        gen = torch.Generator(device=x.device).manual_seed(0)
        delta = functional_call(ant.generator, {k: v.to(x.device) for k, v in params.items()}, (x,), {"generator": gen})
        return clipping_aware_scale(x, delta, eps) * delta

    raw, restart = noise(params, epsilon), ant.restarts
    noisy = (x + raw).clamp(0, 1)
    shown = (noisy - x) / (2 * (noisy - x).abs().amax().clamp_min(1e-8)) + 0.5  # mid-grey = 0
    rows = [("clean", x), ("noise\n(grey = 0)", shown), ("generator", noisy)]
    older = [s for s in ant.pool if s["restart"] != restart]
    if older:  # the newest earlier generator, replayed
        replay = (x + noise(older[-1]["params"], older[-1]["epsilon"])).clamp(0, 1)
        rows.append((f"replay\n(restart {older[-1]['restart']})", replay))
    name, out = f"restart_{restart:03d}", Path(ant.trainer.default_root_dir) / "noise"
    title = f"ANT restart {restart:03d}"
    figures = {  # the histogram shows the noise before clipping to [0, 1]: what the generator learned
        "samples": image_rows(rows, f"{title}: noise of the new generator, eps {epsilon:.3g}"),
        "histogram": noise_histogram(raw, epsilon, f"{title}: per-pixel noise"),
    }
    for kind, figure in figures.items():
        log_image_file(ant, f"noise/{kind}", save_figure(figure, out / f"{name}_{kind}.png"))
