"""The papers' central claims on the bundled digits, each with a margin that a broken algorithm does not reach.

Rusak et al. 2020: the ANT generator *ascends* the classifier's loss (§3.2): its noise hurts more than Gaussian noise
of the same clipped l2 size, both in a restart of training and in the evaluation's retrained generator (§4, Table 2);
eps* along adversarial noise is below eps* along Gaussian noise (§3.3, Table 2); GNT beats a vanilla model under
Gaussian noise at and above its training sigma (§3.1, Table 1). Small real classifiers (a two-conv CNN on 16 px digits)
are trained once per module with each method's own ``perturb_batch``; the mutations named in the docstrings (sign flip
of the generator loss, no training) make these tests fail.
"""

from __future__ import annotations

import copy

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from robustnoise.data import DigitsDataModule
from robustnoise.eval.suite import lower_median, minimal_perturbation
from robustnoise.methods.configs import method_from_yaml
from robustnoise.noise import project_to_sphere
from robustnoise.noise.adversarial import train_adversarial_generator
from robustnoise.noise.calibration import epsilon_for_sigma

SIZE = 16
SEEDS = (0, 1)
SIGMA = 0.5  # GNT's training sigma (the paper's) and the Gaussian size ANT's epsilon is calibrated to


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * (SIZE // 4) ** 2, 10),
    )


@pytest.fixture(scope="module")
def digits16() -> DigitsDataModule:
    dm = DigitsDataModule(image_size=SIZE, batch_size=64)
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def test_data(digits16) -> tuple[Tensor, Tensor]:
    x, y = zip(*(digits16.test_set[i] for i in range(len(digits16.test_set))))
    return torch.stack(x), torch.as_tensor(y)


@pytest.fixture(scope="module")
def epsilon(digits16) -> float:
    """ANT's epsilon rule: the clipped l2 size of sigma-0.5 Gaussian noise on the training images (App. B)."""
    return epsilon_for_sigma(digits16.train_set, SIGMA)


def train_classifier(name: str, dm: DigitsDataModule, seed: int, epochs: int = 6) -> nn.Module:
    """A small CNN trained on what method ``name``'s ``perturb_batch`` returns (Adam, batch 32)."""
    torch.manual_seed(seed)
    method = method_from_yaml(name, dm.info())
    method.classifier = small_cnn()
    opt = torch.optim.Adam(method.classifier.parameters(), lr=2e-3)
    loader = DataLoader(dm.train_set, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed))
    for _ in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(method.classifier(method.perturb_batch(x, y)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return method.classifier.eval()


@pytest.fixture(scope="module")
def models(digits16) -> dict[str, list[nn.Module]]:
    return {name: [train_classifier(name, digits16, seed) for seed in SEEDS] for name in ("vanilla", "gnt")}


@pytest.fixture(scope="module")
def adversarial(models, digits16, epsilon) -> nn.Module:
    """The evaluation's generator trained against the first vanilla model (100 steps at lr 1e-2 instead of 1001 at
    5e-4: a short run)."""
    loader = DataLoader(digits16.train_set, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    return train_adversarial_generator(models["vanilla"][0], loader, epsilon, steps=100, lr=1e-2)


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    return float((model(x).argmax(dim=1) == y).float().mean())


def gaussian_noise(x: Tensor, sigma: float, seed: int) -> Tensor:
    return (x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(0, 1)


def gaussian_on_sphere(x: Tensor, eps: float, seed: int = 0) -> Tensor:
    """Gaussian noise projected to clipped l2 norm ``eps`` per image, as ANT projects its generator's noise."""
    return project_to_sphere(x, torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)), eps)


def test_gnt_beats_vanilla_under_gaussian_noise_at_and_above_its_sigma(models, test_data):
    """Every GNT seed beats every vanilla seed at sigma 0.5 (its training sigma) and 0.75, and the means differ by
    more than 0.03 (measured: gaps 0.06 and 0.12, seed spreads <= 0.04). Fails when GNT's noise is removed."""
    x, y = test_data
    for sigma in (SIGMA, 1.5 * SIGMA):
        acc = {  # mean over three noise draws of the test set
            name: [sum(accuracy(m, gaussian_noise(x, sigma, s), y) for s in range(3)) / 3 for m in ms]
            for name, ms in models.items()
        }
        assert min(acc["gnt"]) > max(acc["vanilla"]), (sigma, acc)
        assert sum(acc["gnt"]) / len(SEEDS) > sum(acc["vanilla"]) / len(SEEDS) + 0.03, (sigma, acc)


def test_ant_restart_generator_ascends(models, digits16, test_data, epsilon, tmp_path):
    """A freshly restarted ANT generator (``restart_at_start``, one real training iteration) lowers the accuracy of a
    trained classifier 0.2 more than Gaussian noise of the same clipped l2 norm (measured: 0.43 vs 0.72). Fails with the
    generator loss's sign flipped (0.81) or without the restart's training (0.72: noise at init is about Gaussian)."""
    x, y = test_data
    method = method_from_yaml(
        "ant1x1",
        digits16.info(),
        epsilon=epsilon,
        restart_steps=100,
        restart_lr=1e-2,
        optimizer={"lr": 0.0},  # the classifier stays the trained one: the restart alone is under test
        scheduler={"name": "none"},
    )
    method.classifier = copy.deepcopy(models["vanilla"][0])
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(method, datamodule=digits16)
    assert int(method.restarts) == 1
    classifier = method.classifier.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        noise_acc = accuracy(classifier, method.noise_sample(x), y)
    gauss_acc = accuracy(classifier, gaussian_on_sphere(x, epsilon), y)
    assert noise_acc < gauss_acc - 0.2, (noise_acc, gauss_acc)


def test_adversarial_generator_beats_gaussian_noise(models, adversarial, test_data, epsilon):
    """``train_adversarial_generator`` (the evaluation's) lowers the accuracy 0.2 more than Gaussian noise of the same
    clipped l2 norm (measured: 0.43 vs 0.72). With its loss's sign flipped: 0.81, the test fails."""
    x, y = test_data
    model = models["vanilla"][0]
    torch.manual_seed(0)
    with torch.no_grad():
        adv_acc = accuracy(model, project_to_sphere(x, adversarial(x), epsilon), y)
    gauss_acc = accuracy(model, gaussian_on_sphere(x, epsilon), y)
    assert adv_acc < gauss_acc - 0.2, (adv_acc, gauss_acc)


def test_eps_star_along_adversarial_noise_is_below_gaussian(models, adversarial, test_data):
    """eps* (median minimal clipped l2 size that flips the decision) along the trained generator's noise is below 0.85
    of eps* along Gaussian directions (measured: 5.2 vs 7.0). Fails with the generator trained with a flipped sign (7.9)
    or with the search ignoring the direction (7.0 vs 6.8)."""
    x, y = test_data
    model = models["vanilla"][0]
    torch.manual_seed(0)
    with torch.no_grad():
        adv = lower_median(minimal_perturbation(model, x, y, adversarial(x))[0])
    gauss = lower_median(minimal_perturbation(model, x, y, torch.randn(x.shape))[0])
    assert adv < 0.85 * gauss, (adv, gauss)
