"""l_inf PGD and l_2 DDN through foolbox (Rusak et al. 2020, App. F) on a digits classifier."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

pytest.importorskip("foolbox")

from robustnoise.data import DigitsDataModule  # noqa: E402
from robustnoise.eval.evaluate import robust_accuracy  # noqa: E402
from robustnoise.models import create_model  # noqa: E402
from robustnoise.utils.errors import RobustnoiseError  # noqa: E402


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    dm = DigitsDataModule(batch_size=64)
    dm.setup()
    model = create_model("madry_cnn", 10, in_chans=1, image_size=28)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(3):
        for x, y in dm.train_dataloader():
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    x, y = dm.test_set.tensors
    return model.eval(), DataLoader(TensorDataset(x[:64], y[:64]), batch_size=32)


def clean_accuracy(model, loader):
    with torch.no_grad():
        return 100.0 * float(torch.cat([(model(x).argmax(1) == y).float() for x, y in loader]).mean())


@pytest.mark.parametrize(
    ("attack", "weak", "strong"),
    [
        ("linf_pgd", {"epsilon": 0.0, "steps": 5, "stepsize": 0.01}, {"epsilon": 0.3, "steps": 20, "stepsize": 0.05}),
        ("l2_ddn", {"epsilon": 0.0, "steps": 5, "gamma": 0.05}, {"epsilon": 4.0, "steps": 30, "gamma": 0.05}),
    ],
)
def test_accuracy_drops_with_epsilon_and_equals_clean_at_zero(trained, attack, weak, strong):
    model, loader = trained
    clean = clean_accuracy(model, loader)
    assert clean > 70
    at_zero = robust_accuracy(model, loader, attack, weak)
    assert at_zero["accuracy"] == pytest.approx(clean) and at_zero["n"] == 64
    assert robust_accuracy(model, loader, attack, strong, max_images=40)["accuracy"] < clean - 30


def test_unknown_attack_is_a_clear_error(trained):
    model, loader = trained
    with pytest.raises(RobustnoiseError, match="unknown attack"):
        robust_accuracy(model, loader, "fgsm", {"epsilon": 0.1})


AUTOATTACK_FAST = {"norm": "Linf", "version": "custom", "parts": ["apgd-ce"], "n_iter": 10, "n_restarts": 1}


def test_autoattack_lowers_accuracy_and_never_raises_it(trained):
    """AutoAttack (Croce & Hein 2020; AdA's l_p evaluation) at a tiny budget: APGD-CE, 10 iterations, 24 images."""
    pytest.importorskip("pyautoattack", reason="autoattack needs the attacks extra (pyautoattack)")
    model, loader = trained
    x, y = loader.dataset[:24]
    with torch.no_grad():
        clean = 100.0 * int((model(x).argmax(1) == y).sum()) / 24
    small = robust_accuracy(model, loader, "autoattack", {**AUTOATTACK_FAST, "epsilon": 1 / 255}, max_images=24)
    large = robust_accuracy(model, loader, "autoattack", {**AUTOATTACK_FAST, "epsilon": 0.3}, max_images=24)
    assert small["n"] == large["n"] == 24 and small["epsilon"] == pytest.approx(1 / 255)
    assert large["accuracy"] <= small["accuracy"] <= clean
    assert clean > 70 and large["accuracy"] < clean - 30, (clean, small, large)


def test_autoattack_settings_are_checked(trained):
    pytest.importorskip("pyautoattack", reason="autoattack needs the attacks extra (pyautoattack)")
    model, loader = trained
    with pytest.raises(RobustnoiseError, match="norm"):
        robust_accuracy(model, loader, "autoattack", {"epsilon": 0.1, "norm": "Linfinity"})
    with pytest.raises(RobustnoiseError, match="parts"):
        robust_accuracy(model, loader, "autoattack", {"epsilon": 0.1, "version": "custom", "parts": ["pgd"]})
