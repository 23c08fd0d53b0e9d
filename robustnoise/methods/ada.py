"""AdversarialAugment, AdA (Calian et al. 2021, §2 and appendices A, G).

A frozen image-to-image corruption network ``c_phi`` (EDSR, ``robustnoise.models.edsr``) corrupts every training
image; AdA picks the perturbation ``beta`` of its weights that maximises the classifier's loss (eq. 2, 3):

    max_{beta in B} CE(f(c_{phi + beta}(x)), y),    B = {beta : ||beta_i|| <= nu * ||phi_i|| for every block i}

- blocks ``i``: the conv weights and the biases separately (the MeanShift layers are not perturbed);
- a random start in ``B``, then ``steps`` (10) iterated-FGSM steps ``beta += alpha * sign(grad)`` projected onto ``B``,
  ``alpha = step_fraction`` (1/4) x the median block radius (App. A);
- ``feasible_set: l2`` reads ``||.||`` as each block's l2 norm (the paper's notation, and the reading consistent with
  its SSIM of 0.99 at nu = 0.015); ``linf`` as a box per block (a uniform draw in it changes a conv by ~166 %);
- ``per_example``: one ``beta`` per image (eq. 3; ``vmap`` over ``functional_call``) or one per batch (cheaper);
- the SSIM guard (App. G): images below SSIM ``ssim_threshold`` (0.3) are pulled back along ``(1 - g) x + g x_hat`` to
  SSIM = t, g from a quadratic fit through 9 equally spaced g (the root in [0, 1] closest to 1; without one, our
  choice: the largest evaluated g whose SSIM reaches t). ``pytorch_msssim.ssim`` (Wang et al. 2004), RGB mean or luma.

The classifier runs in eval mode during the attack and only ``beta`` gets gradients, so plain DDP works. DeepAugment
before and AugMix (+ JSD) after the attack: ``robustnoise.methods.augmented``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim
from torch import Tensor
from torch.func import functional_call, vmap

from robustnoise.methods.augmented import AugmentedTraining
from robustnoise.methods.configs import check_ada
from robustnoise.models.edsr import build_corruption_network

Params = dict[str, Tensor]


def image_ssim(x: Tensor, y: Tensor, channels: str = "rgb") -> Tensor:
    """Per-image SSIM (N,) of images in [0, 1]: the channel mean (``rgb``) or SSIM of the luma (``luma``)."""
    if channels == "luma" and x.shape[1] == 3:
        weights = x.new_tensor((0.299, 0.587, 0.114)).view(1, 3, 1, 1)
        x, y = (x * weights).sum(1, keepdim=True), (y * weights).sum(1, keepdim=True)
    return ssim(x.float(), y.float(), data_range=1.0, size_average=False)


@torch.no_grad()
def ssim_guard(
    x: Tensor, x_hat: Tensor, threshold: float, num_gammas: int = 9, channels: str = "rgb"
) -> tuple[Tensor, Tensor]:
    """AdA App. G: images with SSIM(x, x_hat) < threshold blended back towards x (the others: gamma = 1); returns
    (images, gamma per image). The whole batch at every gamma: no data-dependent indexing, no host synchronisation."""
    gammas = [k / (num_gammas - 1) for k in range(num_gammas)]
    grid = torch.tensor(gammas, device=x.device, dtype=torch.float64)
    shifted = torch.stack([image_ssim(x, torch.lerp(x, x_hat, g), channels) for g in gammas])
    shifted = shifted.double() - threshold  # (G, N); the last row is SSIM(x, x_hat) - t
    vander = torch.stack([grid**2, grid, torch.ones_like(grid)], dim=1)  # (G, 3)
    a, b, c = torch.linalg.pinv(vander) @ shifted  # least-squares quadratic per image, each (N,)
    disc = b * b - 4 * a * c
    # the numerically stable roots q / a and c / q (a = 0: -c / b and an infinite one; nan or inf is never inside)
    q = -0.5 * (b + torch.where(b < 0, -1.0, 1.0) * disc.clamp_min(0).sqrt())
    roots = torch.stack([q / a, c / q])
    # Real roots inside [0, 1] (up to rounding, then clipped); the largest is the gamma closest to 1.
    inside = (disc >= 0) & (roots >= -1e-6) & (roots <= 1 + 1e-6)
    fitted = torch.where(inside, roots.clamp(0.0, 1.0), torch.full_like(roots, -1.0)).amax(0)
    # No root in [0, 1] (the fit underfits): the largest evaluated gamma whose SSIM still reaches the threshold.
    fallback = torch.where(shifted >= 0, grid.view(-1, 1).expand_as(shifted), torch.zeros_like(shifted)).amax(0)
    chosen = torch.where(fitted >= 0, fitted, fallback)
    gamma = torch.where(shifted[-1] < 0, chosen, torch.ones_like(chosen)).to(x.dtype)
    return torch.lerp(x, x_hat, gamma.view(-1, *([1] * (x.dim() - 1)))), gamma


class AdversarialAugment(AugmentedTraining):
    """AdA: adversarial perturbations of a frozen corruption network's weights (alone or with AugMix/DeepAugment);
    the arguments are the module docstring's (``conf/method/ada.yaml``); ``ssim_threshold: null`` disables the guard."""

    def __init__(
        self, *, corruption_net: dict[str, Any], nu: float, steps: int, step_fraction: float, feasible_set: str,
        per_example: bool, random_start: bool, ssim_threshold: float | None, ssim_gammas: int, ssim_channels: str,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        check_ada(locals())
        super().__init__(**kwargs)
        self.corruption_net = build_corruption_network(dict(corruption_net))
        blocks = self.corruption_net.perturbable_parameters().values()
        self.register_buffer("radii", torch.stack([nu * p.detach().norm() for p in blocks]), persistent=False)
        self.step_size = float(self.radii.quantile(0.5)) * step_fraction  # alpha: a quarter of the median radius

    def random_start(self, batch: int) -> Params:
        """Uniform draws inside the feasible set (zeros without ``random_start``)."""
        lead = (batch,) if self.hparams.per_example else ()
        beta = {}
        for (name, p), radius in zip(self.corruption_net.perturbable_parameters().items(), self.radii, strict=True):
            shape = (*lead, *p.shape)
            if not self.hparams.random_start:
                beta[name] = p.new_zeros(shape)
            elif self.hparams.feasible_set == "linf":
                beta[name] = (torch.rand(shape, device=p.device, dtype=p.dtype) * 2 - 1) * radius
            else:  # uniform in the l2 ball: Gaussian direction, radius r * U^(1/n)
                direction = torch.randn(shape, device=p.device, dtype=p.dtype)
                direction = direction / self._block_norm(direction).clamp_min(1e-12)
                u = torch.rand(lead, device=p.device, dtype=p.dtype).pow(1.0 / p.numel())
                beta[name] = direction * (radius * u).view(*lead, *([1] * p.dim()))
        return beta

    def _block_norm(self, b: Tensor) -> Tensor:
        """l2 norm of each block (per image under ``per_example``), shaped for broadcasting."""
        return torch.linalg.vector_norm(b, dim=tuple(range(self.hparams.per_example, b.dim())), keepdim=True)

    def project(self, beta: Params) -> Params:
        """Back into the feasible set: per-block norm clipping (l2) or elementwise clipping (linf)."""
        out = {}
        for (name, b), radius in zip(beta.items(), self.radii, strict=True):
            if self.hparams.feasible_set == "linf":
                out[name] = torch.maximum(torch.minimum(b, radius), -radius)
            else:
                out[name] = b * (radius / self._block_norm(b).clamp_min(1e-12)).clamp(max=1.0)
        return out

    def corrupt(self, x: Tensor, beta: Params) -> Tensor:
        """``c_{phi + beta}(x)`` in [0, 1]: one beta per image (vmap) or one for the batch."""
        phi = self.corruption_net.perturbable_parameters()
        net = self.corruption_net
        if not self.hparams.per_example:
            return functional_call(net, {k: phi[k] + b for k, b in beta.items()}, (x,))

        def single(b: Params, image: Tensor) -> Tensor:
            return functional_call(net, {k: phi[k] + v for k, v in b.items()}, (image.unsqueeze(0),)).squeeze(0)

        return vmap(single)(beta, x)

    def attack(self, x: Tensor, y: Tensor) -> tuple[Tensor, Params, Tensor]:
        """The inner maximisation: corrupted images, beta, and the mean loss at each of the K iterates before its step
        (the first at the random start); the loss after the last step is left to the classifier step."""
        was_training = self.classifier.training
        self.classifier.eval()
        beta = self.random_start(len(x))
        losses: list[Tensor] = []
        for _ in range(self.hparams.steps):
            beta = {k: v.requires_grad_(True) for k, v in beta.items()}
            loss = F.cross_entropy(self.classifier(self.corrupt(x, beta)), y, reduction="sum")
            grads = torch.autograd.grad(loss, list(beta.values()))
            losses.append(loss.detach() / len(x))
            with torch.no_grad():
                beta = self.project({k: v + self.step_size * g.sign() for (k, v), g in zip(beta.items(), grads)})
        with torch.no_grad():
            x_adv = self.corrupt(x, beta)
        self.classifier.train(was_training)
        return x_adv, beta, torch.stack(losses) if losses else x.new_zeros(0)  # no host sync per step

    def adversarial_stage(self, x: Tensor, y: Tensor) -> Tensor:
        hp, (x_adv, _, losses) = self.hparams, self.attack(x, y)
        x_adv = x_adv.to(x.dtype)  # the corruption network's output is bf16 under bf16-mixed autocast
        gamma = torch.ones(len(x), device=x.device)
        if hp.ssim_threshold is not None:
            x_adv, gamma = ssim_guard(x, x_adv, hp.ssim_threshold, hp.ssim_gammas, hp.ssim_channels)
        ssim_after = image_ssim(x, x_adv, hp.ssim_channels).mean()
        self.attack_stats = {"ada/ssim": ssim_after, "ada/guarded": (gamma < 1).float().mean()}
        if len(losses):
            self.attack_stats.update({"ada/loss_start": losses[0], "ada/loss_last_step": losses[-1]})
        return x_adv.detach()

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        self.attack_stats: dict[str, Tensor] = {}  # filled by adversarial_stage (skipped when p_clean = 1)
        loss = super().training_step(batch, batch_idx)
        if self.attack_stats:
            self.log_dict(self.attack_stats, on_step=True, on_epoch=False, batch_size=len(batch[1]))
        return loss
