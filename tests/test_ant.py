"""ANT (Rusak et al. 2020, §3.2): the generator step, the mixed batch, replay, restarts, ANT+SIN and exact resume."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from torch.func import functional_call

import robustnoise.methods.ant as ant_module
from robustnoise.data import DigitsDataModule
from robustnoise.data.stylized import StylizedDataModule
from robustnoise.methods.ant import AdversarialNoiseTraining
from robustnoise.methods.configs import method_from_yaml
from robustnoise.noise import NoiseGenerator, l2_norm, project_to_sphere
from robustnoise.noise.adversarial import generator_step
from robustnoise.report.training_figures import TrainingFigures
from robustnoise.training.exact_resume import ExactResume
from robustnoise.training.restarts import ReplayPool
from robustnoise.utils.errors import ConfigError

DATA = {"num_classes": 10, "in_chans": 1, "image_size": 28, "mean": [0.0], "std": [1.0]}
MODEL = {"name": "madry_cnn", "weights": None}


def make_ant(**kwargs) -> AdversarialNoiseTraining:
    defaults = dict(epsilon=6.0, restart_steps=3, restart_every=4, restart_unit="step", init_std=0.01)
    defaults.update(kwargs)
    return method_from_yaml(
        "ant1x1",
        DATA,
        MODEL,
        optimizer={"name": "sgd", "lr": 0.01, "momentum": 0.9},
        scheduler={"name": "none"},
        **defaults,
    )


def trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    options = dict(
        callbacks=[ExactResume(), TrainingFigures()],
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=str(tmp_path),
    )
    options.update(kwargs)
    return pl.Trainer(**options)


def attach(method: AdversarialNoiseTraining, tmp_path: Path, batches: int = 1) -> pl.Trainer:
    """Run ``batches`` real iterations so that optimisers, trainer and datamodule are attached."""
    t = trainer(tmp_path, limit_train_batches=batches)
    t.fit(method, datamodule=DigitsDataModule(batch_size=70))
    return t


def test_generator_step_moves_only_the_generator(tmp_path):
    torch.manual_seed(0)
    method = make_ant(restart_steps=0)
    attach(method, tmp_path)
    x, y = DigitsDataModule(batch_size=70).train_dataloader().__iter__().__next__()
    clf_before = copy.deepcopy(method.classifier.state_dict())
    gen_before = copy.deepcopy(method.generator.state_dict())
    method.classifier.train()
    method.classifier.zero_grad(set_to_none=True)
    loss, acc = method.generator_step(x, y)
    for name, value in method.classifier.state_dict().items():
        assert torch.equal(value, clf_before[name]), name  # weights and BN statistics untouched (eval mode)
    assert all(p.grad is None for p in method.classifier.parameters())  # no classifier weight gradients at all
    assert method.classifier.training  # train/eval mode restored
    moved = [not torch.equal(v, gen_before[k]) for k, v in method.generator.state_dict().items()]
    assert all(moved)
    assert loss > 0 and 0 <= acc <= 1


def test_batch_counts_follow_the_paper_and_the_reference():
    method = make_ant()
    method.pool[:] = [{"params": {}, "epsilon": 1.0, "restart": 0, "kind": "restart"}] * 3
    assert method.batch_counts(70, replay_active=True) == {"clean": 35, "stylized": 0, "current": 21, "replay": [7, 7]}
    assert method.batch_counts(70, replay_active=False)["current"] == 35  # before replay: 50 % current
    method.hparams.p_clean, method.hparams.p_stylized = 0.25, 0.3
    paper = method.batch_counts(70, True, n_stylized=21)  # 25 % clean / 30 % stylized / 45 % noise
    assert paper["clean"] == 18 and paper["stylized"] == 21 and paper["current"] + sum(paper["replay"]) == 31
    method.hparams.p_clean, method.hparams.stylized_split = 0.5, "reference"
    ref = method.batch_counts(70, True, n_stylized=15)  # stylized images replace the last 15 clean rows
    assert ref == {"clean": 20, "stylized": 15, "current": 21, "replay": [7, 7]}


def test_mixed_batch_has_clean_rows_and_noise_of_each_snapshots_epsilon(tmp_path, monkeypatch):
    torch.manual_seed(0)
    method = make_ant(epsilon=5.0, restart_steps=0)
    attach(method, tmp_path)
    method.pool[:] = [
        {
            "params": {k: v.clone() for k, v in method.generator.named_parameters()},
            "epsilon": 2.0,
            "restart": 0,
            "kind": "interval",
        },
        {
            "params": {k: v.clone() for k, v in method.generator.named_parameters()},
            "epsilon": 3.0,
            "restart": 0,
            "kind": "interval",
        },
    ]
    method.pool[1]["params"] = {k: v.detach() for k, v in method._new_generator_seeded(9).named_parameters()}
    seen: list[dict] = []  # the weights each replay row was drawn with: each snapshot's own
    monkeypatch.setattr(ant_module, "functional_call", lambda m, p, a: seen.append(p) or functional_call(m, p, a))
    x = torch.rand(70, 1, 28, 28) * 0.5 + 0.25
    y = torch.arange(70) % 10
    x_mix, y_mix = method.mixed_batch(x, y)
    assert sorted(map(id, seen)) == sorted(id(s["params"]) for s in method.pool)
    assert torch.equal(y_mix, y) and torch.equal(x_mix[:35], x[:35])
    norms = l2_norm(x_mix - x)
    assert torch.allclose(norms[35:56], torch.full((21,), 5.0), rtol=1e-4)  # 30 %: the current generator
    replay = sorted(norms[56:].tolist())  # 2 x 10 %: the two snapshots, each with its own epsilon
    assert replay[:7] == pytest.approx([2.0] * 7, rel=1e-4) and replay[7:] == pytest.approx([3.0] * 7, rel=1e-4)


def test_restarts_replace_the_generator_and_the_replay_pool_grows(tmp_path, monkeypatch):
    torch.manual_seed(0)
    method = make_ant(restart_every=2, restart_steps=3)
    starts, train_generator = [], ant_module.train_generator

    def spy(classifier, generator, opt, *args, **kwargs):  # the state each restart starts its training from
        params = {n: p.detach().clone() for n, p in method.generator.named_parameters()}
        starts.append((params, len(opt.state), opt.param_groups[0]["lr"]))
        return train_generator(classifier, generator, opt, *args, **kwargs)

    monkeypatch.setattr(ant_module, "train_generator", spy)
    attach(method, tmp_path, batches=6)
    for k, (params, n_state, lr) in enumerate(starts, 1):  # fresh seeded weights, fresh Adam at restart_lr
        fresh = dict(method._new_generator_seeded(k).named_parameters())
        assert all(torch.equal(params[n], fresh[n]) for n in fresh)
        assert n_state == 0 and lr == pytest.approx(method.hparams.restart_lr)
    assert len(starts) == 3
    assert int(method.restarts) == 3 and len(method.pool) == 3  # restarts before iterations 0, 2 and 4
    assert method.restart_data.batches == 3 * 3  # restart steps only: the figures reuse a restart batch
    assert [s["restart"] for s in method.pool] == [1, 2, 3]
    opt = method.optimizers()[1].optimizer
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)  # fresh Adam at noise_lr after the restart
    first, last = method.pool[0]["params"], method.pool[-1]["params"]
    assert any(not torch.equal(first[k], last[k]) for k in first)
    assert method.replay_active()
    for k in (1, 2, 3):  # every restart leaves noise samples and the per-pixel noise histogram (Fig. 3A)
        assert (tmp_path / "noise" / f"restart_{k:03d}_samples.png").stat().st_size > 500
        assert (tmp_path / "noise" / f"restart_{k:03d}_histogram.png").stat().st_size > 5000
    # each restart starts from fresh weights: the same seeded initialisation, then trained against the classifier
    fresh = method._new_generator_seeded(3)
    assert all(not torch.equal(p, q) for p, q in zip(fresh.parameters(), method.generator.parameters()))


def test_no_replay_ablation_uses_only_the_current_generator(tmp_path):
    method = make_ant(replay=False, restart_every=1)
    attach(method, tmp_path, batches=3)
    assert len(method.pool) == 3 and not method.replay_active()
    method.mixed_batch(torch.rand(70, 1, 28, 28), torch.arange(70) % 10)
    assert [kind for kind, _ in method.train_rows] == ["clean", "generator"]  # no replayed noise in the batch
    assert len(method.train_rows[1][1]) == 35  # 50 % current generator


def test_replay_pool_keeps_the_newest_pool_size_snapshots():
    pool, generator = ReplayPool(2), torch.nn.Linear(2, 2)
    for restart in (1, 2, 3):
        pool.add(generator, 1.0, restart, "restart")
    assert [s["restart"] for s in pool] == [2, 3]


def test_generator_step_runs_the_classifier_frozen_in_eval_mode_and_ascends_its_loss():
    torch.manual_seed(0)
    classifier = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.Dropout(0.5), torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 10),
    ).train()  # fmt: skip
    modes: list[bool] = []
    classifier[1].register_forward_pre_hook(lambda m, a: modes.append(m.training))
    before = copy.deepcopy(classifier.state_dict())
    generator = NoiseGenerator(channels=1)
    x, y = torch.rand(32, 1, 8, 8), torch.arange(32) % 10

    def ce() -> float:  # the classifier's loss under the generator's noise from a fixed latent z
        with torch.no_grad():
            noise = generator(x, generator=torch.Generator().manual_seed(1))
            return F.cross_entropy(classifier.eval()(project_to_sphere(x, noise, 2.0)), y).item()

    start = ce()
    classifier.train()
    opt = torch.optim.SGD(generator.parameters(), lr=0.05)
    for _ in range(5):
        generator_step(classifier, lambda v: generator(v, generator=torch.Generator().manual_seed(1)), opt, x, y, 2.0)
    assert modes and not any(modes)  # BatchNorm ran in eval mode: running statistics are not updated
    assert classifier.training  # the caller's mode restored
    assert all(torch.equal(v, before[k]) for k, v in classifier.state_dict().items())
    assert all(p.grad is None for p in classifier.parameters())
    assert ce() > start  # the step ascends the classifier's cross-entropy


@pytest.mark.parametrize(("target", "factor"), [(0.3, 0.9), (0.99, 1.1)])
def test_adaptive_epsilon_moves_towards_the_target_error(tmp_path, target, factor):
    # an untrained classifier misclassifies ~90 %: above a 30 % target epsilon shrinks, below 99 % it grows
    adaptive = {"enabled": True, "target_error": target, "rate": 0.1}
    method = make_ant(epsilon=0.5, restart_steps=0, adaptive_epsilon=adaptive)
    attach(method, tmp_path, batches=3)
    assert float(method.epsilon) == pytest.approx(0.5 * factor**3, rel=1e-5)


def test_invalid_epsilon_is_a_config_error():
    with pytest.raises(ConfigError, match="epsilon"):
        make_ant(epsilon=0.0)


def test_auto_epsilon_matches_gaussian_noise(tmp_path):
    method = make_ant(epsilon="auto", restart_steps=0)
    attach(method, tmp_path)
    assert 9.0 < float(method.epsilon) < 10.5  # digits: sigma 0.5 clipped Gaussian noise, like MNIST's 10


def _write_stylized_digits(root: Path) -> None:
    images, labels = DigitsDataModule().setup() or (None, None)
    dm = DigitsDataModule()
    dm.setup()
    x, y = dm.train_set.tensors
    for i in range(40):
        folder = root / "train" / str(int(y[i]))
        folder.mkdir(parents=True, exist_ok=True)
        inverted = ((1 - x[i, 0]) * 255).round().byte().numpy()  # a "style": inverted contrast
        Image.fromarray(inverted, mode="L").save(folder / f"{i}.png")
    for c in range(10):
        (root / "train" / str(c)).mkdir(parents=True, exist_ok=True)
        if not any((root / "train" / str(c)).iterdir()):
            Image.fromarray((255 - (x[0, 0] * 255).byte()).numpy(), mode="L").save(root / "train" / str(c) / "x.png")


def test_ant_sin_puts_stylized_images_in_the_batch(tmp_path):
    _write_stylized_digits(tmp_path / "sin")
    dm = StylizedDataModule(DigitsDataModule(batch_size=40), str(tmp_path / "sin"), stylized_batch_size=12)
    torch.manual_seed(0)
    method = make_ant(p_clean=0.25, p_stylized=0.3, restart_steps=2)
    seen = {}
    original = method.classifier_step

    def spy(x, y):
        seen["x"], seen["y"] = x.clone(), y.clone()
        return original(x, y)

    method.classifier_step = spy
    t = trainer(tmp_path, limit_train_batches=1)
    t.fit(method, datamodule=dm)
    x_mix = seen["x"]
    stylized = x_mix[10:22]  # 25 % of 40 clean, then 30 % = 12 stylized images
    assert len(x_mix) == 40
    assert (stylized.flatten(1).mean(dim=1) > 0.5).all()  # inverted digits: mostly white
    assert (x_mix[:10].flatten(1).mean(dim=1) < 0.5).all()  # clean digits: mostly black


def test_ant_sin_without_stylized_data_is_a_clear_error(tmp_path):
    method = make_ant(p_stylized=0.3)
    with pytest.raises(ConfigError, match="stylized"):
        attach(method, tmp_path)


def test_resume_continues_as_if_never_stopped(tmp_path):
    """Train 2 epochs straight, or 1 epoch, checkpoint, reload into a new module, 1 more: identical state."""

    def fit(method, epochs, ckpt=None, root=tmp_path):
        t = trainer(root, max_epochs=epochs, limit_train_batches=5, enable_checkpointing=True)
        pl.seed_everything(7)
        t.fit(method, datamodule=DigitsDataModule(batch_size=64), ckpt_path=ckpt)
        return t

    pl.seed_everything(7)
    straight = make_ant(restart_every=3, restart_steps=2)
    fit(straight, 2, root=tmp_path / "a")

    pl.seed_everything(7)
    first = make_ant(restart_every=3, restart_steps=2)
    t = fit(first, 1, root=tmp_path / "b")
    ckpt = tmp_path / "b" / "half.ckpt"
    t.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=True)["streams_per_rank"][0]["replay_pool"]
    assert saved and type(saved) is list  # the pool is in the checkpoint, weights_only-safe
    resumed = make_ant(restart_every=3, restart_steps=2)
    fit(resumed, 2, ckpt=str(ckpt), root=tmp_path / "b")

    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert len(straight.pool) == len(resumed.pool) == 4
    for s, r in zip(straight.pool, resumed.pool):
        assert s["epsilon"] == r["epsilon"] and all(torch.equal(s["params"][k], r["params"][k]) for k in s["params"])
