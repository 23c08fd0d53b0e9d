"""AdA (Calian et al. 2021): the feasible set, the inner maximisation, the SSIM guard, AugMix + JSD, each config."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

from robustnoise.augment.augmix import BatchAugMix, jsd_consistency
from robustnoise.data import DigitsDataModule
from robustnoise.methods.ada import AdversarialAugment, image_ssim, ssim_guard
from robustnoise.methods.augmented import AugmentedTraining
from robustnoise.methods.configs import method_from_yaml
from robustnoise.train import build_method, build_trainer, run
from robustnoise.training.exact_resume import ExactResume
from robustnoise.utils.errors import ConfigError
from robustnoise.utils.instantiate import instantiate

DATA = {"num_classes": 10, "in_chans": 1, "image_size": 28, "mean": [0.0], "std": [1.0]}
MODEL = {"name": "madry_cnn", "weights": None}
OPT = {"name": "sgd", "lr": 0.01, "momentum": 0.9}
TINY = {"variant": "custom", "scale": 2, "weights": None, "resize": "sr_then_down", "n_resblocks": 2, "n_feats": 8}


def make_ada(**kwargs) -> AdversarialAugment:
    kwargs.setdefault("corruption_net", TINY)
    kwargs.setdefault("p_clean", 0.0)
    return method_from_yaml("ada", DATA, MODEL, optimizer=OPT, scheduler={"name": "none"}, **kwargs)


def block_norms(beta: dict[str, torch.Tensor], per_example: bool) -> torch.Tensor:
    """(blocks, images) l2 norms, or (blocks,) for a shared beta."""
    if per_example:
        return torch.stack([b.flatten(1).norm(dim=1) for b in beta.values()])
    return torch.stack([b.norm() for b in beta.values()])


@pytest.fixture()
def batch(digits):
    images, labels = digits
    return images[:8], labels[:8]


def test_radii_are_relative_to_each_weight_and_bias_and_the_step_is_a_quarter_of_their_median():
    torch.manual_seed(0)
    method = make_ada(nu=0.015)
    blocks = method.corruption_net.perturbable_parameters()
    assert not any(name.endswith(("sub_mean.weight", "add_mean.bias")) for name in blocks)
    assert len(blocks) == 2 * sum(isinstance(m, torch.nn.Conv2d) for m in method.corruption_net.modules()) - 4
    expected = torch.stack([0.015 * p.norm() for p in blocks.values()])
    assert torch.allclose(method.radii, expected)
    assert method.step_size == pytest.approx(
        float(expected.sort().values[len(expected) // 2 - 1 : len(expected) // 2 + 1].mean())
        / 4  # even count: mean of the middle two
    )
    # the corruption network is frozen and outside the optimiser
    assert not any(p.requires_grad for p in method.corruption_net.parameters())


@pytest.mark.parametrize("feasible_set", ["l2", "linf"])
@pytest.mark.parametrize("per_example", [True, False])
def test_perturbations_never_leave_the_feasible_set(batch, feasible_set, per_example):
    torch.manual_seed(0)
    method = make_ada(feasible_set=feasible_set, per_example=per_example, steps=4)
    x, y = batch
    radii = method.radii.view(-1, *([1] if per_example else []))
    start = method.random_start(len(x))
    _, beta, _ = method.attack(x, y)
    for b in (start, beta):
        if feasible_set == "l2":
            assert (block_norms(b, per_example) <= radii * (1 + 1e-5)).all()
        else:
            for value, radius in zip(b.values(), method.radii, strict=True):
                assert value.abs().max() <= radius * (1 + 1e-6)
    # the random start lies strictly inside somewhere (not all on the boundary), sign steps end on it (l2)
    if feasible_set == "l2":
        assert torch.allclose(
            block_norms(beta, per_example), radii.expand_as(block_norms(beta, per_example)), rtol=1e-4
        )
    if per_example:
        first = next(iter(beta.values()))
        assert not torch.equal(first[0], first[1])  # every image has its own perturbation


def test_per_example_corruption_equals_one_network_call_per_image(batch):
    torch.manual_seed(0)
    method = make_ada(per_example=True)
    x, _ = batch
    beta = method.random_start(len(x))
    batched = method.corrupt(x[:3], {k: v[:3] for k, v in beta.items()})
    phi = method.corruption_net.perturbable_parameters()
    for i in range(3):
        params = {k: phi[k] + v[i] for k, v in beta.items()}
        single = torch.func.functional_call(method.corruption_net, params, (x[i : i + 1],))
        assert torch.allclose(batched[i : i + 1], single, atol=1e-5)
    assert not torch.allclose(batched, method.corruption_net(x[:3]), atol=1e-4)  # beta changed the output


def test_adversarial_loss_after_the_steps_is_at_least_the_loss_at_the_random_start(batch):
    torch.manual_seed(0)
    method = make_ada(nu=0.05, steps=10)
    x, y = batch
    classifier_before = copy.deepcopy(method.classifier.state_dict())
    x_adv, _, losses = method.attack(x, y)
    assert len(losses) == 10  # the random start and the iterates before steps 2..10
    method.classifier.eval()
    with torch.no_grad():
        final = F.cross_entropy(method.classifier(x_adv), y)
    method.classifier.train()
    assert final >= losses[0]  # after the 10 steps vs at the random start
    assert losses.max() > losses[0]  # the ascent moved the loss
    # the attack leaves the classifier alone: no weight change, no accumulated gradient, mode restored
    for name, value in method.classifier.state_dict().items():
        assert torch.equal(value, classifier_before[name]), name
    assert all(p.grad is None for p in method.classifier.parameters())
    assert method.classifier.training


def _rgb_digits(images: torch.Tensor) -> torch.Tensor:
    tint = torch.tensor([1.0, 0.6, 0.3]).view(1, 3, 1, 1)
    return (images.repeat(1, 3, 1, 1) * tint).clamp(0, 1)


@pytest.mark.parametrize("channels", ["rgb", "luma"])
def test_ssim_guard_pulls_images_below_the_threshold_back_to_it_and_leaves_the_others(digits, channels):
    torch.manual_seed(0)
    x = _rgb_digits(digits[0][:12])
    strength = torch.linspace(0.02, 0.9, len(x)).view(-1, 1, 1, 1)
    x_hat = (x + strength * torch.randn_like(x)).clamp(0, 1)
    before = image_ssim(x, x_hat, channels)
    low = before < 0.3
    assert low.any() and (~low).any()
    out, gamma = ssim_guard(x, x_hat, threshold=0.3, channels=channels)
    after = image_ssim(x, out, channels)
    assert torch.equal(out[~low], x_hat[~low]) and (gamma[~low] == 1).all()
    assert ((gamma[low] > 0) & (gamma[low] < 1)).all()
    assert torch.allclose(after[low], torch.full_like(after[low], 0.3), atol=0.03)  # quadratic-fit tolerance
    # the guarded image lies on the ray between x and x_hat
    g = gamma.view(-1, 1, 1, 1)
    assert torch.allclose(out, (1 - g) * x + g * x_hat, atol=1e-6)


def test_library_ssim_matches_wang_2004_settings_of_scikit_image(digits):
    torch.manual_seed(0)
    x = _rgb_digits(digits[0][:3]).double()
    y = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    ours = image_ssim(x, y)
    for i in range(3):
        ref = structural_similarity(
            x[i].numpy(), y[i].numpy(), channel_axis=0, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1.0,
        )  # fmt: skip
        assert ours[i].item() == pytest.approx(ref, abs=0.02)


def test_jsd_is_zero_for_identical_predictions_and_positive_otherwise():
    logits = torch.randn(5, 10)
    assert jsd_consistency(torch.cat([logits] * 3)).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.cat([logits, logits + torch.randn(5, 10), logits])
    assert jsd_consistency(other).item() > 1e-3


def test_pipeline_loss_is_cross_entropy_on_the_clean_view_plus_lambda_times_jsd():
    method = method_from_yaml("augmix", DATA, MODEL, augmix={"enabled": True, "jsd": True, "jsd_lambda": 12.0})
    logits, y = torch.randn(12, 10), torch.randint(10, (4,))
    expected = F.cross_entropy(logits[:4], y) + 12.0 * jsd_consistency(logits, 3)
    assert method.pipeline_loss(logits, y).item() == pytest.approx(expected.item())
    assert method.pipeline_loss(logits[:4], y).item() == pytest.approx(F.cross_entropy(logits[:4], y).item())


def test_augmix_changes_every_image_stays_in_range_and_follows_the_seed(digits):
    torch.manual_seed(0)
    x = _rgb_digits(digits[0][:6])
    out = BatchAugMix()(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert all(not torch.allclose(out[i], x[i], atol=1 / 255) for i in range(len(x)))
    torch.manual_seed(0)
    assert torch.equal(BatchAugMix()(x), out)  # seeded like the rest of training


@pytest.mark.parametrize(
    "bad",
    [{"feasible_set": "box"}, {"ssim_channels": "lab"}, {"nu": -1.0}, {"corruption_net": {**TINY, "resize": "keep"}}],
)
def test_bad_ada_options_are_config_errors(bad):
    with pytest.raises(ConfigError):
        make_ada(**bad)


def test_one_ada_step_trains_the_classifier_on_corrupted_images_and_logs_the_attack():
    torch.manual_seed(0)
    method = make_ada(steps=2)
    before = copy.deepcopy(method.classifier.state_dict())
    edsr_before = copy.deepcopy(method.corruption_net.state_dict())
    seen: dict[str, torch.Tensor] = {}
    stage, step = method.adversarial_stage, method.classifier_step

    def spy_stage(x, y):
        seen["clean"], seen["corrupted"] = x.clone(), stage(x, y)
        return seen["corrupted"]

    def spy_step(x, y, *args):
        seen["trained_on"] = x.clone()
        return step(x, y, *args)

    method.adversarial_stage, method.classifier_step = spy_stage, spy_step
    trainer = pl.Trainer(
        max_steps=1, limit_val_batches=0, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir="/tmp/robustnoise-test",
    )  # fmt: skip
    trainer.fit(method, datamodule=DigitsDataModule(batch_size=16))
    assert trainer.global_step == 1
    # the classifier stepped on AdA's output (p_clean = 0: the whole batch), which is not the clean batch
    assert torch.equal(seen["trained_on"], seen["corrupted"])
    assert not torch.allclose(seen["corrupted"], seen["clean"], atol=1e-3)
    assert any(not torch.equal(v, before[k]) for k, v in method.classifier.state_dict().items())
    assert all(torch.equal(v, edsr_before[k]) for k, v in method.corruption_net.state_dict().items())
    logged = trainer.callback_metrics
    assert {"ada/loss_start", "ada/loss_last_step", "ada/ssim", "ada/guarded", "train/loss"} <= set(logged)


METHODS = ["augmix", "deepaugment", "deepaugment_augmix", "ada", "ada_augmix", "ada_deepaugment_augmix"]


@pytest.mark.parametrize("method", METHODS)
def test_each_configuration_trains_one_fast_dev_run_step_on_digits(make_cfg, method):
    overrides = [f"method={method}", "trainer.fast_dev_run=1", "data.batch_size=8"]
    if method.startswith("ada"):
        overrides += ["corruption_net@method.corruption_net=edsr_tiny", "method.steps=2"]
    if "deepaugment" in method:
        overrides += ["corruption_net@method.deepaugment.corruption_net=edsr_tiny", "method.deepaugment.p_resample=1.0"]
    cfg = make_cfg(*overrides)
    datamodule = instantiate(cfg.data)
    method_module = build_method(cfg, datamodule)
    assert isinstance(method_module, AugmentedTraining)
    assert (method_module.augmix is not None) == ("augmix" in method)
    assert (method_module.deepaugment is not None) == ("deepaugment" in method)
    before = copy.deepcopy(method_module.classifier.state_dict())
    trainer = build_trainer(cfg)
    trainer.fit(method_module, datamodule=datamodule)
    assert trainer.global_step == 1
    changed = [k for k, v in method_module.classifier.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and np.isfinite(float(trainer.callback_metrics["train/loss"]))


def test_on_the_fly_deepaugment_generator_state_travels_with_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    deepaugment = {"enabled": True, "p": 0.5, "p_resample": 1.0, "corruption_net": TINY}
    method = method_from_yaml("deepaugment", DATA, MODEL, optimizer=OPT, deepaugment=deepaugment)
    trainer = pl.Trainer(
        max_steps=2, limit_val_batches=0, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
        callbacks=[ExactResume()],
    )  # fmt: skip
    trainer.fit(method, datamodule=DigitsDataModule(batch_size=8))
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    torch.manual_seed(1)  # a different random init: nothing below may come from the constructor
    restored = method_from_yaml("deepaugment", DATA, MODEL, optimizer=OPT, deepaugment=deepaugment)
    ckpt = torch.load(tmp_path / "a.ckpt", weights_only=True)
    state = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("deepaugment.distorted.")}
    restored.load_state_dict(state, strict=False)  # the clean EDSR; the distorted one must come from the draws
    resume, rank0 = ExactResume(), SimpleNamespace(global_rank=0)
    resume.on_load_checkpoint(rank0, restored, ckpt)
    resume.on_train_batch_start(rank0, restored, None, 0)  # where a resumed run applies it
    assert torch.equal(restored.deepaugment.generator.get_state(), method.deepaugment.generator.get_state())
    assert restored.deepaugment.sampled
    # the distorted network is rebuilt from this rank's own draws (the saved state dict holds rank zero's)
    for key, value in method.deepaugment.distorted.state_dict().items():
        assert torch.equal(restored.deepaugment.distorted.state_dict()[key], value), key
    # the next distortion drawn after the resume is the one the uninterrupted run draws
    assert restored.deepaugment.resample() == method.deepaugment.resample()


def test_l2_reading_keeps_images_close_and_the_box_reading_does_not(make_cfg, digits):
    """AdA §2: nu = 0.015 keeps semantics (mean SSIM 0.99). With a trained EDSR, random feasible perturbations under
    the per-block l2 reading stay near the identity, under the box reading they do not (why l2 is the default)."""
    edsr = run(make_cfg("task=pretrain_edsr", "pretrain_edsr.n_resblocks=2", "pretrain_edsr.n_feats=8",
                    "pretrain_edsr.steps=150", "pretrain_edsr.lr=1e-3", "pretrain_edsr.val_images=20",
                    "pretrain_edsr.progress=false", "pretrain_edsr.device=cpu"))["path"]  # fmt: skip
    x = digits[0][:64]
    mean_ssim = {}
    for feasible_set in ("l2", "linf"):
        torch.manual_seed(0)
        method = make_ada(corruption_net={**TINY, "weights": edsr}, nu=0.015, feasible_set=feasible_set)
        with torch.no_grad():
            assert image_ssim(x, method.corruption_net(x)).mean() > 0.99  # trained: about the identity at beta = 0
            mean_ssim[feasible_set] = float(image_ssim(x, method.corrupt(x, method.random_start(len(x)))).mean())
    assert mean_ssim["l2"] > 0.99
    assert mean_ssim["linf"] < mean_ssim["l2"] - 0.02
