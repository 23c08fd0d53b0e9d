"""End to end on the bundled digits: train + evaluate, eval from checkpoints, resume, CLI errors, W&B offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torchvision

from robustnoise.train import run

ROOT = Path(__file__).resolve().parents[1]
QUICK = [
    "eval=noise",  # the four noises (the digits' default evaluation is MNIST-C's)
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=4",
    "eval.max_images=96",
    "callbacks.progress_bar=null",
    "trainer.enable_progress_bar=false",
]


def report(cfg) -> dict:
    return json.loads((Path(cfg.paths.output_dir) / "robustness.json").read_text())


@pytest.mark.parametrize("method", ["vanilla", "gnt", "gnt_mult", "speckle"])
def test_fast_dev_run_per_method_writes_a_report(make_cfg, method):
    cfg = make_cfg(f"method={method}", "debug=fdr", "callbacks=none", "eval=noise")
    run(cfg)
    result = report(cfg)
    assert result["method"] == method
    assert set(result["per_corruption"]) == {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"}
    assert all(0.0 <= v["top1"] <= 100.0 for v in result["sets"].values())
    assert len(result["sets"]) == 1 + 4 * 5


def test_train_then_eval_from_the_checkpoint_gives_the_same_table(make_cfg, tmp_path):
    cfg = make_cfg("method=gnt", *QUICK, "logger=csv")
    run(cfg)
    trained = report(cfg)
    out = Path(cfg.paths.output_dir)
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "train_batch.png").is_file()
    metrics = (out / "csv" / "metrics.csv").read_text()
    assert "train/loss_epoch" in metrics and "val/acc" in metrics and "test_c/gaussian_noise/s3/acc" in metrics
    # our checkpoints hold only plain hyper-parameters: they load with torch's default weights_only=True
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["sigma"] == 0.5 and len(ckpt["rng_state"]["torch_per_rank"]) == 1

    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    from tests.conftest import compose_config

    eval_cfg = compose_config(
        [
            "task=eval",
            f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}",
            "eval=noise",
            "eval.max_images=96",
            "model=resnet18",
        ],
        eval_dir,
    )  # the architecture is read from our checkpoint
    run(eval_cfg)
    evaluated = json.loads((eval_dir / "robustness.json").read_text())
    assert evaluated["model"] == "resnet18"  # the config's name is reported, the weights are the checkpoint's
    assert evaluated["sets"] == trained["sets"]


def test_same_seed_same_numbers(make_cfg, tmp_path):
    from tests.conftest import compose_config

    results = []
    for name in ("a", "b"):
        cfg = compose_config(["method=gnt_mult", *QUICK], tmp_path / name)
        run(cfg)
        results.append(report(cfg)["sets"])
    assert results[0] == results[1]


def test_resume_from_last_checkpoint(make_cfg):
    cfg = make_cfg("method=speckle", *QUICK, "trainer.max_epochs=1")
    run(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    first_epoch = torch.load(last, weights_only=True)
    assert first_epoch["epoch"] == 0
    cfg.trainer.max_epochs = 2
    cfg.ckpt_path = str(last)
    run(cfg)
    resumed = torch.load(last, weights_only=True)
    assert resumed["epoch"] == 1 and resumed["global_step"] == 8  # 4 batches per epoch, one optimizer step each


def test_eval_of_a_game_of_noise_release_file(make_cfg, tmp_path):
    # The released ResNet-50 files hold {"model_state_dict": <torchvision keys>, ...}; resnet18 stands in here.
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    path = tmp_path / "ANT_Model.pth"
    torch.save({"model_state_dict": net.state_dict(), "epoch": 80}, path)
    cfg = make_cfg(
        "task=eval",
        f"ckpt_path={path}",
        "model=resnet18",
        "eval=noise",
        "eval.max_images=32",
        "eval.corruptions=[gaussian_noise]",
        "eval.severities=[5]",
    )
    run(cfg)
    result = report(cfg)
    assert result["sets"]["clean"]["n"] == 32 and result["sets"]["gaussian_noise/s5"]["n"] == 32


def _cli(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=300,
    )


def test_cli_missing_dataset_is_one_clear_line(tmp_path):
    result = _cli("data=cifar10", f"data.root={tmp_path / 'missing'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "cifar10 not found at" in errors[0] and "cifar-10-batches-py" in errors[0]
    assert not (tmp_path / "run" / "checkpoints").exists()  # found before training: no checkpoint of an untrained model


def test_cli_unknown_option_names_the_choices(tmp_path):
    result = _cli("method=nope", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "method/nope" in result.stderr and "gnt_mult" in result.stderr  # Hydra lists the available options


def test_cli_negative_sigma_is_one_clear_line(tmp_path):
    result = _cli("method=gnt", "method.sigma=-0.5", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: sigma must be >= 0" in result.stderr


def _no_network_namespace() -> str | None:
    """Why ``unshare -n`` cannot run here, or None."""
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    return f"unshare -n is not permitted: {probe.stderr.strip()}" if probe.returncode else None


@pytest.mark.slow
@pytest.mark.parametrize("case", ["no account", "API key without network"])
def test_wandb_logs_offline_without_an_account_or_network(tmp_path, case):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB")}
    env.update({"HOME": str(home), "NETRC": str(home / "none"), "WANDB_SILENT": "true"})
    prefix: list[str] = []
    if case == "API key without network":  # a compute node without internet: the key must not make W&B go online
        if reason := _no_network_namespace():
            pytest.skip(reason)
        env["WANDB_API_KEY"] = "0123456789abcdef0123456789abcdef01234567"  # fake, never sent anywhere
        prefix = ["unshare", "-n"]
    run_dir = tmp_path / "run"
    start = time.monotonic()
    result = subprocess.run(
        [
            *prefix,
            sys.executable,
            str(ROOT / "run.py"),
            "logger=wandb",
            "logger.wandb.project=test",
            "callbacks=none",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "eval=noise",
            "eval.max_images=32",
            "eval.corruptions=[gaussian_noise]",
            f"hydra.run.dir={run_dir}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr[-2000:]
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert offline_runs, "no offline W&B run directory was written"
    assert list(offline_runs[0].glob("*.wandb"))  # the run's data, ready for `wandb sync`
    expected = "no W&B credentials found" if case == "no account" else "W&B server api.wandb.ai:443 not reachable"
    fallback = [line for line in (result.stdout + result.stderr).splitlines() if "logging W&B offline" in line]
    assert len(fallback) == 1 and expected in fallback[0]
    # before the probe: ~110 s of W&B retries, then a crash (exit 1) before training; a loaded 2-core machine needs
    # up to ~80 s for this run, so only a wait of that order on top is caught here
    assert elapsed < 150


def test_eval_reports_adversarial_noise_and_eps_star(make_cfg):
    cfg = make_cfg(
        "method=gnt",
        *QUICK,
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=17",
        "method.optimizer.lr=0.05",
        "eval=none",
        "eval.adversarial_noise.enabled=true",
        "eval.adversarial_noise.steps=20",
        "eval.adversarial_noise.seeds=2",
        "eval.eps_star.enabled=true",
    )
    run(cfg)
    result = report(cfg)
    noise = result["adversarial_noise"]
    assert len(noise["per_seed"]) == 2 and 9.0 < noise["epsilon"] < 10.5  # sigma-0.5 rule on the digits
    eps = result["eps_star"]
    assert set(eps) == {"gaussian", "uniform", "adversarial_0", "adversarial_1", "adversarial"}
    for name in ("gaussian", "uniform"):
        assert eps[name]["n"] == 96 and eps[name]["passes_per_image"] < 35
        assert eps[name]["already_wrong"] < 48 < eps[name]["n"] and eps[name]["median"] > 0  # a trained classifier
    assert eps["adversarial"]["mean"] == pytest.approx(sum(eps["adversarial"]["per_seed"]) / 2)


def _run_dir_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_cli_run_dir_under_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    line = _run_dir_error(_cli(f"hydra.run.dir={tmp_path / 'file' / 'run'}"))
    assert (
        line == f"error: hydra.run.dir={tmp_path / 'file' / 'run'} cannot be a directory: {tmp_path / 'file'} is a file"
    )
    assert _run_dir_error(_cli(f"hydra.run.dir={tmp_path / 'file'}")).endswith("file is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_cli_run_dir_on_a_read_only_filesystem_is_one_line(tmp_path):
    """As root, permissions do not stop writes: a read-only bind mount (private mount namespace) does."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"]).returncode:
        pytest.skip("unshare -m (a private mount namespace) is not permitted here")
    ro = tmp_path / "ro"
    ro.mkdir()
    script = f'mount --bind -o ro "{ro}" "{ro}" && exec "$@"'
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", sys.executable, str(ROOT / "run.py"), f"hydra.run.dir={ro}/a/run"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    line = _run_dir_error(result)
    assert line == f"error: hydra.run.dir={ro}/a/run is not writable: {ro} refuses new entries (Read-only file system)"
    assert list(ro.iterdir()) == []
