"""Sweeps: one directory per multirun with one job directory per point and a summary at the end; local multirun with
DDP stops with one line; the SLURM launcher config (submitit) composes with tasks per node = devices."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from robustnoise.report.reporting import REPORT_JSON, Report, write_report
from robustnoise.report.sweep import plot_key, summarize_sweep, swept_keys
from robustnoise.utils.launch import processes_per_job, requeue_resume, resolve_device, trainer_plugins

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "trainer=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "eval=noise",
    "eval.max_images=48",
    "eval.corruptions=[gaussian_noise]",
    "eval.severities=[3]",
    "logger=none",
    "callbacks=none",
    "trainer.enable_progress_bar=false",
]


def run_cli(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_sigma_sweep_writes_one_job_dir_per_value_and_a_summary(tmp_path):
    proc = run_cli(["-m", "method=gnt", "method.sigma=0.1,0.3,0.5", *TINY], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweeps = list((tmp_path / "logs" / "train" / "multirun").iterdir())
    assert len(sweeps) == 1, sweeps  # every job resolved the same sweep directory
    sweep = sweeps[0]
    jobs = sorted(d for d in sweep.iterdir() if (d / REPORT_JSON).is_file())
    assert [d.name.split("_", 1)[0] for d in jobs] == ["0", "1", "2"]
    with open(sweep / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["method.sigma"]) for r in rows] == [0.1, 0.3, 0.5]
    assert all(0.0 <= float(r["clean_top1"]) <= 100.0 and 0.0 <= float(r["c_top1"]) <= 100.0 for r in rows)
    assert (sweep / "sweep.png").stat().st_size > 1000 and (sweep / "comparison.md").is_file()
    assert "sweep summary of 3 jobs" in proc.stdout and "method.sigma" in proc.stdout


@pytest.mark.slow
def test_submitit_jobs_in_other_processes_share_the_sweep_dir(tmp_path):
    """submitit (the SLURM launcher's engine; here its local executor) unpickles the sweep config in each job's own
    process: the jobs must still land in the one sweep directory, and the summary must follow."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher (extra: slurm)")
    launcher = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]
    proc = run_cli(["-m", *launcher, "method=gnt", "method.sigma=0.2,0.4", *TINY], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "logs" / "train" / "multirun").iterdir()
    assert len([d for d in sweep.iterdir() if (d / REPORT_JSON).is_file()]) == 2
    with open(sweep / "comparison.csv") as f:
        assert [float(r["method.sigma"]) for r in csv.DictReader(f)] == [0.2, 0.4]


def test_local_multirun_with_ddp_stops_with_one_line(tmp_path):
    proc = run_cli(["-m", "method=gnt", "method.sigma=0.1,0.5", "trainer=ddp_cpu", "logger=none"], tmp_path)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "hydra/launcher=slurm" in errors[0] and "without -m" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob(REPORT_JSON))


def test_processes_per_job():
    assert processes_per_job({"devices": 1, "num_nodes": 1}) == 1
    assert processes_per_job({"devices": 4, "num_nodes": 2}) == 8
    assert processes_per_job({"devices": [0, 1], "num_nodes": 1}) == 2
    assert processes_per_job({"devices": "0,1,2", "num_nodes": 1}) == 3
    assert processes_per_job({"devices": "auto", "accelerator": "cpu"}) == 1


def test_auto_device_is_cuda_only_when_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")  # a name is used as given


def test_swept_keys_are_read_from_the_overrides():
    overrides = [
        "method=gnt",
        "method.sigma=0.1,0.3,0.5",
        "eval.corruptions=[gaussian_noise,shot_noise]",  # a list value, not a sweep
        "seed=range(0,2)",
        "hydra.launcher.partition=a,b",
        "trainer.max_epochs=1",
    ]
    assert swept_keys(overrides) == ["method.sigma", "seed"]
    assert swept_keys(["method=ant1x1", "method.epsilon=5,10"]) == ["method.epsilon"]
    assert swept_keys(["method=gnt,speckle"]) == ["method"]


def _job(sweep: Path, num: int, method: dict, clean: float, noisy: float) -> Path:
    job = sweep / f"{num}_job"
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"method": method, "seed": 1}), job / ".hydra" / "config.yaml")
    accuracies = {
        "clean": {"top1": clean, "top5": 100.0, "n": 10},
        "gaussian_noise/s3": {"top1": noisy, "top5": 100.0, "n": 10},
    }
    meta = {"method": method["name"], "run_name": method["name"], "model": "madry_cnn", "data": "digits"}
    write_report(Report(sets=accuracies, benchmark="generated", **meta), job, plots=False)
    return job


def test_epsilon_sweep_summary_is_ordered_by_epsilon(tmp_path, capsys):
    sweep = tmp_path / "multirun"
    for num, (eps, clean, noisy) in enumerate([(20.0, 80.0, 60.0), (5.0, 90.0, 40.0), (10.0, 85.0, 50.0)]):
        _job(sweep, num, {"name": "ant1x1", "epsilon": eps}, clean, noisy)
    jobs = sorted(sweep.iterdir())
    assert plot_key(jobs, ["method.epsilon"]) == "method.epsilon"
    assert summarize_sweep(sweep, ["method.epsilon"]) == 0
    with open(sweep / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(float(r["method.epsilon"]), float(r["clean_top1"])) for r in rows] == [(5, 90), (10, 85), (20, 80)]
    assert (sweep / "sweep.png").is_file()
    assert "sweep summary of 3 jobs" in capsys.readouterr().out


def test_a_swept_group_is_shown_by_its_name(tmp_path):
    sweep = tmp_path / "multirun"
    _job(sweep, 0, {"name": "gnt", "sigma": 0.5}, 90.0, 60.0)
    _job(sweep, 1, {"name": "speckle", "c": [0.1]}, 91.0, 55.0)
    assert plot_key(sorted(sweep.iterdir()), ["method"]) == "method.name"


def launcher_config(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True)
    GlobalHydra.instance().clear()
    return cfg


def test_slurm_launcher_config_composes_with_tasks_per_node_equal_to_devices():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher (extra: slurm)")
    cfg = launcher_config(
        "trainer=ddp", "trainer.devices=8", "trainer.num_nodes=2", "method=ant3x3", "hydra.launcher.partition=gpu"
    )
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert (launcher["tasks_per_node"], launcher["gpus_per_node"], launcher["nodes"]) == (8, 8, 2)
    assert launcher["partition"] == "gpu" and launcher["name"] == "ant3x3"
    assert launcher["max_num_timeout"] > 0 and launcher["signal_delay_s"] > 0  # submitit requeues
    assert launcher["submitit_folder"] == f"{cfg.hydra.sweep.dir}/.submitit/%j"

    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    params = SlurmLauncher(**{k: v for k, v in launcher.items() if k != "_target_"}).params
    assert params["tasks_per_node"] == 8 and params["timeout_min"] == launcher["timeout_min"]


def test_the_sweep_dir_is_resolved_once_per_sweep():
    import pickle

    cfg = launcher_config("method=gnt")
    first = cfg.hydra.sweep.dir
    assert cfg.hydra.sweep.dir == first  # cached: a second resolution gives the same directory
    assert pickle.loads(pickle.dumps(cfg)).hydra.sweep.dir == first  # so do submitit's pickled copies on the nodes
    assert launcher_config("method=gnt").hydra.sweep.dir != first  # and the next sweep gets its own


def test_submitit_slurm_jobs_disable_lightnings_requeue_and_resume_from_last(monkeypatch, make_cfg):
    cfg = make_cfg("method=gnt")
    assert trainer_plugins() == []
    requeue_resume(cfg)
    assert cfg.ckpt_path is None  # not under submitit: nothing changes

    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    for key, value in {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SLURM_NODEID", "0")
    monkeypatch.setenv("SLURM_JOB_NAME", "gnt")
    (plugin,) = trainer_plugins()
    assert plugin.auto_requeue is False
    requeue_resume(cfg)
    assert cfg.ckpt_path == "last"

    from robustnoise.train import build_trainer

    trainer = build_trainer(cfg, with_callbacks=False)
    env = trainer._accelerator_connector.cluster_environment
    assert type(env).__name__ == "SLURMEnvironment" and env.auto_requeue is False
