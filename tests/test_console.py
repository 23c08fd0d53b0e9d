"""A quiet console (no Lightning warnings the user cannot act on, the config tree, one closing line) and W&B run
names / groups that say what ran."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import wandb
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from robustnoise.train import QUIET_WARNINGS, build_trainer
from robustnoise.utils.resolvers import run_label

ROOT = Path(__file__).resolve().parents[1]
SHORT = [
    "experiment=digits_demo",
    "trainer.limit_train_batches=2",
    "eval.max_images=32",
    "eval.adversarial_noise.enabled=false",
    "eval.eps_star.enabled=false",
    "eval.gaussian_sigmas=[]",
    "eval.during_training.max_images=32",
    "trainer.enable_progress_bar=false",
    "callbacks.progress_bar=null",
]


WARNINGS = (  # Lightning's messages (PL 2.6) that train.run silences; in this test's runs without the filters: 1, 4
    "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and treespec.is_leaf()`",
    "Found 2 module(s) in eval mode at the start of training. This may lead to unexpected behavior during training.",
    "The 'train_dataloader' does not have many workers which may be a bottleneck. Consider increasing the value",
    "Checkpoint directory /r/checkpoints exists and is not empty.",
    "Experiment logs directory /r/csv/ exists and is not empty. Previous log files in this directory will be deleted",
    "Using ModelCheckpoint with manual optimization and every_n_train_steps, the checkpoint is saved after the step",
)
SILENCED = ("LeafSpec", "in eval mode at the start", "does not have many workers", "exists and is not empty",
            "manual optimization and every_n_train_steps")  # fmt: skip


def test_every_silenced_message_matches_one_filter():
    for message in WARNINGS:  # as warnings.filterwarnings matches: re.match, case-insensitive
        assert sum(bool(re.match(p, message, re.I)) for p in QUIET_WARNINGS) == 1, message


def _train(run_dir: Path, *args: str) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *SHORT, *args, f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, result.stderr


@pytest.mark.slow
def test_training_console_is_quiet_shows_the_config_and_ends_with_the_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    first = _train(run_dir, "trainer.max_epochs=1")
    resumed = _train(run_dir, "trainer.max_epochs=2", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}")
    for stdout, stderr in (first, resumed):
        for message in SILENCED:
            assert message not in stdout + stderr
        assert "├── method" in stdout and "name: vanilla" in stdout  # the composed config tree
        assert "├── make_c" not in stdout  # another task's options are left out
        assert stdout.rstrip().splitlines()[-1] == f"run directory: {run_dir}  report: {run_dir / 'robustness.md'}"
    assert "Restored all states from the checkpoint" in "".join(resumed)  # the resume (and its warnings) happened


def test_run_labels_say_method_noise_level_and_seed():
    assert run_label("gnt", {"sigma": 0.5}, 1) == "gnt_s0.5_seed1"
    assert run_label("ant1x1", {"epsilon": 10.0}, 2) == "ant1x1_eps10_seed2"
    assert run_label("ant1x1", {"epsilon": "auto"}, 2) == "ant1x1_seed2"  # calibrated later: not in the name
    assert run_label("gnt_mult", {"sigma": [0.08, 0.12]}, 3) == "gnt_mult_seed3"


def test_offline_wandb_run_is_named_and_grouped_by_experiment(make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        hydra_cfg = compose("train", overrides=["experiment=digits_gnt", "seed=1"], return_hydra_config=True)
    HydraConfig.instance().set_config(hydra_cfg)  # as in a run.py job: the experiment choice is known
    try:
        cfg = make_cfg("experiment=digits_gnt", "seed=1", "logger=wandb", "method.sigma=0.3")
        trainer = build_trainer(cfg, with_callbacks=False)
        experiment = trainer.loggers[0].experiment
        assert (experiment.name, experiment.group) == ("gnt_s0.3_seed1", "digits_gnt")
        assert experiment.offline
    finally:
        wandb.finish()
        HydraConfig.instance().cfg = None
        GlobalHydra.instance().clear()


def test_sweep_figures_and_table_go_to_a_wandb_run_in_the_jobs_group(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from robustnoise.report.sweep import log_sweep_to_wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    Figure().savefig(tmp_path / "sweep.png")
    (tmp_path / "comparison.csv").write_text("run,method.sigma,clean\na,0.1,97.0\nb,0.5,95.5\n")
    run = log_sweep_to_wandb(tmp_path, {"project": "test", "group": "digits_gnt"})
    assert (run.group, run.job_type, run.name) == ("digits_gnt", "sweep", f"sweep_{tmp_path.name}")
    media = next((tmp_path / "wandb").glob("offline-run-*")) / "files" / "media"
    assert [p.name.split("_")[0] for p in (media / "images" / "sweep").glob("*.png")] == ["sweep"]
    (table,) = (media / "table" / "sweep").glob("table_*.table.json")
    assert json.loads(table.read_text())["data"] == [["a", "0.1", "97.0"], ["b", "0.5", "95.5"]]
