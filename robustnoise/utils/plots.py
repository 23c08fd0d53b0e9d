"""Figures saved in the run directory and logged to image-capable loggers (W&B)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def log_image_file(module: Any, key: str, path: Path) -> None:
    """Send a saved figure to every logger that takes images."""
    for logger in module.loggers:
        if hasattr(logger, "log_image"):
            logger.log_image(key=key, images=[str(path)], step=module.global_step)


def save_noise_figures(
    module: Any, name: str, clean: Tensor, noisy: Tensor, raw_noise: Tensor | None = None
) -> dict[str, Path]:
    """Grid of noise (mid-grey = 0) over noisy images, and per-channel histograms of the noise values (Fig. 3A).

    ``raw_noise`` (the generator's projected noise before clipping to [0, 1]) is what the histogram shows when given:
    the distribution the generator learned, not the clipping's spike at 0.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid, save_image

    out = Path(module.trainer.default_root_dir) / "noise"
    out.mkdir(parents=True, exist_ok=True)
    noise = (noisy - clean).float().cpu()
    shown = (noise / (2 * noise.abs().amax().clamp_min(1e-8)) + 0.5).clamp(0, 1)
    grid = make_grid(torch.cat([shown, noisy.float().cpu()]), nrow=len(clean), padding=1, pad_value=1.0)
    grid_path = out / f"{name}_samples.png"
    save_image(grid, grid_path)

    fig, ax = plt.subplots(figsize=(5, 3.2))
    colours = ["tab:red", "tab:green", "tab:blue"] if noise.shape[1] == 3 else ["black"] * noise.shape[1]
    for c in range(noise.shape[1]):
        ax.hist(
            noise[:, c].flatten().numpy(),
            bins=101,
            histtype="step",
            color=colours[c],
            density=True,
            label=f"channel {c}",
        )
    ax.set_xlabel("noise value per pixel" + (" (after clipping)" if raw_noise is None else " (before clipping)"))
    ax.set_ylabel("density")
    ax.set_title(name.replace("_", " "))
    ax.legend(fontsize=7)
    fig.tight_layout()
    hist_path = out / f"{name}_histogram.png"
    fig.savefig(hist_path, dpi=100)
    plt.close(fig)
    for key, path in (("noise/samples", grid_path), ("noise/histogram", hist_path)):
        log_image_file(module, key, path)
    return {"samples": grid_path, "histogram": hist_path}
