"""``task=pretrain_edsr``: train an EDSR as the super-resolution network it is, for use as a corruption network.

HR training images (grayscale replicated to RGB, as the official files) are bicubic-downsampled by ``scale``, EDSR maps
them back, and the L1 loss is minimised with Adam (lr 1e-4, betas (0.9, 0.999), eps 1e-8: Lim et al. 2017 §4.2).
Writes ``edsr.pt`` (the official layout) and ``pretrain_edsr.json`` (validation PSNR of EDSR and of bicubic).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset
from torchmetrics.functional.image import peak_signal_noise_ratio
from tqdm.auto import tqdm

from robustnoise.models.edsr import EDSR, build_edsr
from robustnoise.utils.errors import ConfigError
from robustnoise.utils.launch import resolve_device


@dataclass
class PretrainEDSROptions:
    """The options of ``task=pretrain_edsr`` (``conf/pretrain_edsr.yaml``; a Hydra structured config: typed, closed)."""

    out_dir: str
    variant: str = "custom"
    scale: int = 2
    n_resblocks: int | None = 4
    n_feats: int | None = 32
    res_scale: float | None = None
    init: str | None = None
    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-4
    patch_size: int | None = None
    val_images: int | None = None
    eval_batch_size: int = 64
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.scale not in (2, 3, 4) or self.steps < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ConfigError("pretrain_edsr needs scale 2, 3 or 4, steps >= 1, batch_size >= 1 and lr > 0")


def downsample(hr: Tensor, scale: int) -> Tensor:
    """The low-resolution input: antialiased bicubic downsampling by ``scale``, clamped to [0, 1]."""
    size = (hr.shape[-2] // scale, hr.shape[-1] // scale)
    return F.interpolate(hr, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0.0, 1.0)


def _rgb_hr(batch: Any, scale: int, patch: int | None = None, generator: torch.Generator | None = None) -> Tensor:
    """The HR images of a batch as 3 channels, cropped to a multiple of the scale (or a random ``patch``)."""
    x = batch[0].expand(-1, 3, -1, -1)
    h, w = x.shape[-2:]
    ph, pw = (min(patch, h), min(patch, w)) if patch else (h, w)
    ph, pw = ph - ph % scale, pw - pw % scale
    if ph < scale or pw < scale:
        raise ConfigError(f"pretrain_edsr: images of {h}x{w} px are too small for scale {scale}")
    top, left = (int(torch.randint(n + 1, (1,), generator=generator)) for n in (h - ph, w - pw)) if patch else (0, 0)
    return x[..., top : top + ph, left : left + pw]


@torch.no_grad()
def evaluate_sr(model: EDSR, dataset: Dataset, scale: int, batch_size: int, device: torch.device) -> dict[str, float]:
    """Mean validation PSNR of EDSR and of bicubic upsampling (dB; capped at 120: identical images give inf)."""
    model.eval()
    totals, n = {"psnr": 0.0, "psnr_bicubic": 0.0}, 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        hr = _rgb_hr(batch, scale).to(device)
        lr = downsample(hr, scale)
        bicubic = F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0.0, 1.0)
        for key, x in (("psnr", model(lr).clamp(0.0, 1.0)), ("psnr_bicubic", bicubic)):
            psnr = peak_signal_noise_ratio(x, hr, data_range=1.0, reduction="none", dim=(1, 2, 3))
            totals[key] += float(psnr.clamp_max(120.0).sum())
        n += hr.shape[0]
    model.train()
    return {k: v / max(n, 1) for k, v in totals.items()}


def pretrain_edsr(opt: PretrainEDSROptions, datamodule: Any) -> dict[str, Any]:
    """Train an EDSR on the datamodule's training split (``run.py`` gives the checked options); returns the metrics."""
    # the sizes of the small default net apply to variant=custom only
    sizes = {"n_resblocks": opt.n_resblocks, "n_feats": opt.n_feats} if opt.variant == "custom" else {}
    net_cfg = {"variant": opt.variant, "scale": opt.scale, "res_scale": opt.res_scale, "weights": opt.init, **sizes}
    device = resolve_device(opt.device)
    out_dir = Path(opt.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    model = build_edsr(net_cfg, node="pretrain_edsr").to(device).train()
    datamodule.setup("fit")
    generator = torch.Generator().manual_seed(opt.seed)
    train_set, val_set = datamodule.train_set, datamodule.val_set
    loader = DataLoader(
        train_set, opt.batch_size, shuffle=True, drop_last=len(train_set) >= opt.batch_size,
        num_workers=getattr(datamodule, "num_workers", 0), generator=generator,
    )  # fmt: skip
    if opt.val_images is not None and opt.val_images < len(val_set):
        val_set = Subset(val_set, range(opt.val_images))
    before = evaluate_sr(model, val_set, opt.scale, opt.eval_batch_size, device)

    optimizer = torch.optim.Adam(model.parameters(), lr=opt.lr, betas=(0.9, 0.999), eps=1e-8)  # mean shifts: no grad
    losses: list[float] = []
    batches = (batch for _ in itertools.count() for batch in loader)
    for step in (bar := tqdm(range(opt.steps), desc="pretrain_edsr", disable=not opt.progress, leave=False)):
        hr = _rgb_hr(next(batches), opt.scale, opt.patch_size, generator).to(device, non_blocking=True)
        loss = F.l1_loss(model(downsample(hr, opt.scale)), hr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            raise ConfigError(f"pretrain_edsr: the L1 loss became {losses[-1]} at step {step}; lower pretrain_edsr.lr")
        if step % 50 == 0:
            bar.set_postfix(l1=f"{losses[-1]:.4f}")
    after = evaluate_sr(model, val_set, opt.scale, opt.eval_batch_size, device)

    path = out_dir / "edsr.pt"
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    window = max(1, min(10, opt.steps // 5))
    l1_first, l1_last = sum(losses[:window]) / window, sum(losses[-window:]) / window
    result = {"path": str(path), "tag": model.tag, "steps": opt.steps, "l1_first": l1_first, "l1_last": l1_last}
    result |= {"psnr_before": before["psnr"], "psnr": after["psnr"], "psnr_bicubic": after["psnr_bicubic"]}
    (out_dir / "pretrain_edsr.json").write_text(json.dumps(result, indent=2))
    print(
        f"EDSR {model.tag}: validation PSNR {after['psnr']:.2f} dB (before training {before['psnr']:.2f} dB, "
        f"bicubic {after['psnr_bicubic']:.2f} dB); L1 {l1_first:.4f} -> {l1_last:.4f}; weights: {path}"
    )
    return result
