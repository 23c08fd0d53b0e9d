"""Exact resume: a run killed with SIGKILL mid-epoch and restarted with ``resume=true`` ends where an uninterrupted
run of the same command ends (weights, validation and test metrics), in deterministic CPU mode."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings as warnings_module
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from robustnoise.data.resumable import ResumableDataLoader
from robustnoise.methods.configs import method_from_yaml
from robustnoise.train import run as train
from robustnoise.training.exact_resume import ExactResume
from robustnoise.utils.checkpoints import TEMP_MARK, AtomicCheckpointIO, OnExceptionCheckpoint
from robustnoise.utils.errors import CheckpointError, ConfigError
from robustnoise.utils.resolvers import comparable_overrides, find_resumable_run
from robustnoise.utils.resume import resumable_checkpoint
from tests.test_hardening import FAST, expect_one_line_error, fast_for

ROOT = Path(__file__).resolve().parents[1]
BATCHES = 5  # training batches per epoch
EPOCHS = 3


def command(method: str, log_dir: Path, *extra: str, pause: float | None = None, epochs: int = EPOCHS) -> list[str]:
    launcher = [str(ROOT / "run.py")] if pause is None else [str(ROOT / "tests" / "run_paused.py"), str(pause)]
    return [
        sys.executable,
        *launcher,
        f"method={method}",
        f"paths.log_dir={log_dir}",
        f"trainer.max_epochs={epochs}",
        f"trainer.limit_train_batches={BATCHES}",
        "trainer.limit_val_batches=2",
        "trainer.deterministic=true",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "callbacks.progress_bar=null",
        "callbacks.last_checkpoint.every_n_train_steps=2",
        "logger=csv",
        "data.batch_size=32",
        "eval=noise",
        "eval.max_images=64",
        "eval.severities=[3]",
        "eval.corruptions=[gaussian_noise]",
        *extra,
    ]


def env() -> dict[str, str]:
    e = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    e.pop("HYDRA_FULL_ERROR", None)
    return e


def run_dirs(log_dir: Path, method: str) -> list[Path]:
    return sorted(p for p in (log_dir / "train" / method).glob("*/") if p.is_dir())


def checkpoint_position(path: Path) -> tuple[int, int] | None:
    """(epoch, batches done in it) of a checkpoint; None if it is not (completely) written yet."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    progress = ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"]
    return int(ckpt["epoch"]), int(progress)


def val_accuracies(run_dir: Path) -> dict[int, str]:
    """Validation accuracy per epoch, over the metrics files of every part of the run (earlier parts first)."""
    parts = sorted((run_dir / "csv").glob("metrics-*.csv")) + [run_dir / "csv" / "metrics.csv"]
    accuracies = {}
    for part in parts:
        with open(part) as f:
            accuracies.update({int(r["epoch"]): r["val/acc"] for r in csv.DictReader(f) if r.get("val/acc")})
    return accuracies


def kill_mid_epoch(cmd: list[str], log_dir: Path, method: str) -> Path:
    """Start ``cmd``, wait for a mid-epoch ``last.ckpt`` of the second epoch, SIGKILL the process and its children
    (DDP ranks), as a scheduler ends a job."""
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            dirs = run_dirs(log_dir, method)
            position = checkpoint_position(dirs[0] / "checkpoints" / "last.ckpt") if dirs else None
            if position is not None and position[0] == 1 and 0 < position[1] < BATCHES:  # inside epoch 1
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                assert proc.returncode == -signal.SIGKILL
                return dirs[0]
            time.sleep(0.05)
        pytest.fail(f"no mid-epoch checkpoint before the run ended: {proc.stderr.read()[-2000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def kill_and_resume(tmp_path: Path, method: str, *extra: str, epochs: int = EPOCHS) -> tuple[Path, Path]:
    """An uninterrupted run, and the same command killed mid-epoch and resumed with ``resume=true``: their run
    directories (each run made exactly one), after checking that the resumed run ends with the reference weights."""
    reference_logs, logs = tmp_path / "reference", tmp_path / "logs"
    done = subprocess.run(
        command(method, reference_logs, *extra, epochs=epochs), cwd=ROOT, env=env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (reference,) = run_dirs(reference_logs, method)  # one run, one directory (also under DDP)

    killed = kill_mid_epoch(command(method, logs, *extra, pause=0.4, epochs=epochs), logs, method)
    interrupted_at = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert not (killed / "robustness.json").exists()

    resumed = subprocess.run(
        command(method, logs, *extra, "resume=true", epochs=epochs), cwd=ROOT, env=env(), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert run_dirs(logs, method) == [killed]  # the same run directory, no new one
    logs_text = resumed.stderr + "".join(p.read_text() for p in killed.glob("*.log"))
    assert f"resuming from {killed / 'checkpoints' / 'last.ckpt'}" in logs_text

    final = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    expected = torch.load(reference / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == expected["global_step"] > interrupted_at  # ANT: restart steps count too
    assert final["epoch"] == epochs - 1
    assert final["state_dict"].keys() == expected["state_dict"].keys()
    for key, value in expected["state_dict"].items():
        assert torch.equal(final["state_dict"][key], value), key
    return killed, reference


ANT_EXTRA = ("method.restart_steps=3", "method.restart_every=0.5")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gnt", "ant1x1"])
def test_killed_mid_epoch_then_resumed_equals_uninterrupted(tmp_path, method):
    killed, reference = kill_and_resume(tmp_path, method, *(ANT_EXTRA if method.startswith("ant") else ()))
    assert val_accuracies(killed) == val_accuracies(reference) and len(val_accuracies(reference)) == EPOCHS
    result = json.loads((killed / "robustness.json").read_text())
    assert result["sets"] == json.loads((reference / "robustness.json").read_text())["sets"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gnt", "ant1x1"])
def test_ddp_killed_mid_epoch_then_resumed_equals_uninterrupted(tmp_path, method):
    """2 CPU processes (gloo): every rank restores its own RNG stream and data shard position."""
    ddp = ("trainer=ddp_cpu", "trainer.devices=2", "eval=none")
    killed, _ = kill_and_resume(tmp_path, method, *ddp, *(ANT_EXTRA if method.startswith("ant") else ()), epochs=2)
    ckpt = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    per_rank = ckpt["rng_state"]["torch_per_rank"]
    assert len(per_rank) == 2 and not torch.equal(per_rank[0], per_rank[1])
    assert all(s.storage_offset() == 0 and s.untyped_storage().nbytes() == s.numel() for s in per_rank)  # owned


def fake_checkpoint(path: Path, readable: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if readable:
        torch.save({"state_dict": {}}, path)
    else:
        path.write_bytes(b"")  # what a kill in the middle of a non-atomic write leaves
    return path


def test_resume_finds_the_newest_run_of_the_same_command(tmp_path, caplog):
    def make_run(name: str, overrides: list[str], checkpoint: bool = True) -> Path:
        run = tmp_path / name
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        if checkpoint:
            fake_checkpoint(run / "checkpoints" / "last.ckpt")
        return run

    old = make_run("a", ["method=gnt", "method.sigma=0.3"])
    newer = make_run("b", ["method.sigma=0.3", "method=gnt", "resume=true"])  # a resumed run: same command
    make_run("c", ["method=gnt", "method.sigma=0.5"])  # another command
    make_run("d", ["method=gnt", "method.sigma=0.3"], checkpoint=False)  # killed before its first checkpoint
    os.utime(old / "checkpoints" / "last.ckpt", (1, 1))
    assert comparable_overrides(["ckpt_path=last", "+resume=true", "a=1"]) == ["a=1"]
    wanted = ["method=gnt", "method.sigma=0.3", "resume=true"]
    assert find_resumable_run(tmp_path, wanted) == newer
    assert find_resumable_run(tmp_path, ["method=gnt", "ckpt_path=last"]) is None

    # the newest run's last.ckpt is unreadable: its epoch checkpoint still makes it the run to continue ...
    fake_checkpoint(newer / "checkpoints" / "last.ckpt", readable=False)
    fake_checkpoint(newer / "checkpoints" / "epoch_000.ckpt")
    assert find_resumable_run(tmp_path, wanted) == newer
    assert resumable_checkpoint(newer)[0] == newer / "checkpoints" / "epoch_000.ckpt"
    # ... and with no readable checkpoint at all, the older run of the same command is
    fake_checkpoint(newer / "checkpoints" / "epoch_000.ckpt", readable=False)
    with caplog.at_level(logging.WARNING, logger="robustnoise"):
        assert find_resumable_run(tmp_path, wanted) == old
    (line,) = [r.getMessage() for r in caplog.records]
    assert re.fullmatch(
        rf"resume: cannot read checkpoint {re.escape(str(newer))}/checkpoints/last\.ckpt: .*; "
        rf"cannot read checkpoint .*epoch_000\.ckpt: .*; trying an older run",
        line,
    ), line


def test_unreadable_last_checkpoint_falls_back_to_the_epoch_checkpoint(make_cfg, tmp_path, caplog):
    quick = [*FAST, "method=gnt", "eval=none"]
    first = make_cfg(*quick)
    train(first)
    last, epoch = tmp_path / "checkpoints" / "last.ckpt", tmp_path / "checkpoints" / "epoch_000.ckpt"
    assert epoch.is_file()
    last.write_bytes(last.read_bytes()[:1000])  # a torn write

    resumed = make_cfg(*quick, "resume=true", "trainer.max_epochs=2")
    with caplog.at_level(logging.WARNING, logger="robustnoise"):
        train(resumed)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "resume" in r.getMessage()]
    assert len(warnings) == 1 and re.fullmatch(
        rf"resume: cannot read checkpoint {re.escape(str(last))}: .*; continuing from {re.escape(str(epoch))}",
        warnings[0],
    ), warnings
    ckpt = torch.load(last, weights_only=True)  # rewritten by the resumed run, which continued after epoch 0
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 2 * 3


def test_a_run_directory_with_checkpoints_is_continued_only_when_asked(make_cfg, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    quick = [*FAST, "method=gnt", "eval=none"]
    with warnings_module.catch_warnings(record=True) as caught:
        warnings_module.simplefilter("always")
        train(make_cfg(*quick))
    # Lightning no longer turns fit(ckpt_path=None) into "last" (it did with its OnExceptionCheckpoint callback)
    assert not [w for w in caught if "ckpt_path" in str(w.message)], [str(w.message) for w in caught]
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()

    expect_one_line_error(
        make_cfg(*quick),
        capsys,
        rf"the run directory {re.escape(str(tmp_path))} already holds checkpoints \(.*\.ckpt\); add resume=true",
    )
    assert last.read_bytes() == before  # nothing overwritten

    # resume=true in a run directory of another method, and with no readable checkpoint: one line each
    ant = make_cfg(*FAST, "method=ant1x1", "eval=none", "resume=true")
    expect_one_line_error(ant, capsys, r"last\.ckpt was written by method=gnt, the config asks for method=ant1x1")
    for ckpt in (tmp_path / "checkpoints").glob("*.ckpt"):
        ckpt.write_bytes(b"not a checkpoint")
    expect_one_line_error(make_cfg(*quick, "resume=true"), capsys, r"resume: no checkpoint in .* can be read")


def test_resume_with_another_number_of_classes_is_one_line(make_cfg, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    path = tmp_path / "input" / "gnt.ckpt"
    path.parent.mkdir()
    method = method_from_yaml("gnt", {"num_classes": 7, "in_chans": 1, "image_size": 28, "mean": [0.0], "std": [1.0]})
    torch.save({"state_dict": method.state_dict(), "hyper_parameters": dict(method.hparams)}, path)
    cfg = make_cfg(*FAST, "method=gnt", f"ckpt_path={path}")
    pattern = r"gnt\.ckpt does not fit the configured model: trained for 7 classes, the data has 10"
    expect_one_line_error(cfg, capsys, pattern)


def test_rng_states_are_owned_and_checked_before_they_are_applied():
    method = method_from_yaml("gnt", {"num_classes": 10, "in_chans": 1, "image_size": 28, "mean": [0.0], "std": [1.0]})
    wanted = torch.Generator().manual_seed(5).get_state()
    other = torch.Generator().manual_seed(6).get_state()
    # what torch.load gives for rank 1's state saved as a view of the all-gathered tensor: a storage offset, which
    # torch.set_rng_state does not handle (a segfault in torch 2.14)
    view = torch.stack([other, wanted]).unbind(0)[1]
    assert view.storage_offset() > 0
    resume, trainer = ExactResume(), SimpleNamespace(global_rank=0)
    resume.on_load_checkpoint(trainer, method, {"rng_state": {"torch_per_rank": [view]}})
    resume.on_train_batch_start(trainer, method, None, 0)  # applied right before the first batch after a resume
    assert torch.equal(torch.get_rng_state(), wanted)

    for bad in (wanted.float(), wanted[:100], "state"):
        with pytest.raises(CheckpointError, match=r"rank 0's CPU RNG state is not a valid RNG state \(.*, expected"):
            resume.on_load_checkpoint(trainer, method, {"rng_state": {"torch_per_rank": [bad]}})


def test_on_exception_checkpoint_only_with_training_progress(tmp_path):
    saved: list[str] = []
    trainer = SimpleNamespace(global_step=0, save_checkpoint=saved.append)
    callback = OnExceptionCheckpoint(tmp_path)
    callback.on_exception(trainer, None, KeyboardInterrupt())  # nothing trained yet
    trainer.global_step = 3
    callback.on_exception(trainer, None, ConfigError("bad batch size"))  # the user's input, not training, failed
    assert saved == []
    callback.on_exception(trainer, None, KeyboardInterrupt())
    assert saved == [str(tmp_path / "on_exception.ckpt")]


class RunsCode:
    """A pickle that creates a directory when it is unpickled (as a malicious file would run any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


PICKLE_PATHS = {  # every command-line option that loads a weight file -> the overrides that load `path`
    "ckpt_path (train)": lambda path: ["method=gnt", f"ckpt_path={path}"],
    "ckpt_path (eval)": lambda path: ["task=eval", f"ckpt_path={path}"],
    "model.weights": lambda path: [f"model.weights={path}"],
    "EDSR weights": lambda path: ["method=ada", f"method.corruption_net.weights={path}"],
    "AdaIN weights": lambda path: ["task=stylize", f"stylize.encoder={path}", f"stylize.decoder={path}"],
}


@pytest.mark.parametrize("option", list(PICKLE_PATHS))
def test_weight_files_that_run_code_are_refused(make_cfg, tmp_path, capsys, monkeypatch, option):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    marker, path = tmp_path / "code-ran", tmp_path / "evil.pt"
    torch.save({"state_dict": RunsCode(marker)}, path)
    args = PICKLE_PATHS[option](path)
    line = expect_one_line_error(make_cfg(*fast_for(args), *args), capsys, rf"{re.escape(str(path))}")
    assert "Weights only load failed" in line and not marker.exists()
    torch.load(path, weights_only=False)  # the file is live: a plain unpickler runs its code
    assert marker.is_dir()


@pytest.fixture
def shm_and_disk(tmp_path, monkeypatch):
    """(a log directory on /dev/shm, a $TMPDIR on disk): two filesystems, as on clusters with shared log storage."""
    if not Path("/dev/shm").is_dir() or os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temporary directory")
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read $TMPDIR
    logs = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="robustnoise-test-"))
    yield logs, tmpdir
    shutil.rmtree(logs, ignore_errors=True)


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("write interrupted")


def test_checkpoint_writes_are_atomic_next_to_the_target(shm_and_disk):
    logs, tmpdir = shm_and_disk
    io, target = AtomicCheckpointIO(), logs / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": torch.tensor(1)}, target)
    stale = target.with_name(f".last.ckpt{TEMP_MARK}12345-dead")  # left by a write that was killed
    stale.write_bytes(b"partial")
    with pytest.raises(RuntimeError, match="write interrupted"):  # a write that fails half-way ...
        io.save_checkpoint({"step": torch.zeros(10_000), "bad": Unpicklable()}, target)
    assert torch.load(target, weights_only=True)["step"] == 1  # ... leaves the previous file complete
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]  # stale and failed temp files gone
    io.save_checkpoint({"step": torch.tensor(2)}, target)
    assert torch.load(target, weights_only=True)["step"] == 2
    assert list(tmpdir.iterdir()) == []  # nothing staged in $TMPDIR


@pytest.mark.slow
def test_killed_during_a_checkpoint_write_on_another_filesystem_resumes(shm_and_disk):
    """SIGKILL while last.ckpt is being rewritten (logs on /dev/shm, $TMPDIR on disk): the previous last.ckpt is
    intact, resume=true continues from it, and the killed write leaves no file behind once the run goes on."""
    logs, tmpdir = shm_and_disk
    run_env = {**env(), "TMPDIR": str(tmpdir), "RN_TEST_SLOW_SAVE": "3"}
    cmd = command("gnt", logs, "eval=none", pause=0.0, epochs=1)
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline, temp = time.monotonic() + 240, []
        while time.monotonic() < deadline and proc.poll() is None and not temp:
            dirs = run_dirs(logs, "gnt")
            ckpts = dirs[0] / "checkpoints" if dirs else logs
            if (ckpts / "last.ckpt").is_file():  # a second write of last.ckpt is under way
                temp = [p for p in ckpts.glob(f".last.ckpt{TEMP_MARK}*") if p.stat().st_size > 0]
            time.sleep(0.05)
        assert temp, f"no checkpoint write seen: {proc.stderr.read()[-2000:] if proc.poll() is not None else ''}"
        before = checkpoint_position(ckpts / "last.ckpt")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert list(tmpdir.iterdir()) == []  # nothing was staged in $TMPDIR
    assert before is not None and checkpoint_position(ckpts / "last.ckpt") == before  # the previous one, complete

    resume_env = {k: v for k, v in run_env.items() if k != "RN_TEST_SLOW_SAVE"}
    cmd = command("gnt", logs, "eval=none", "resume=true", epochs=1)
    resumed = subprocess.run(cmd, cwd=ROOT, env=resume_env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert checkpoint_position(ckpts / "last.ckpt") == (0, BATCHES)
    assert not list(ckpts.glob(f"*{TEMP_MARK}*")) and list(tmpdir.iterdir()) == []


def test_loader_skips_consumed_batches_only_in_the_interrupted_epoch():
    data = torch.utils.data.TensorDataset(torch.arange(20))

    def batches(loader, epoch: int) -> list[list[int]]:
        loader.sampler.set_epoch(epoch)
        return [b[0].tolist() for b in loader]

    loader = ResumableDataLoader(data, batch_size=3, seed=7)
    full = batches(loader, 2)
    assert sorted(sum(full, [])) == list(range(20)) and full != batches(loader, 3)  # a new order per epoch
    it = iter(loader)
    loader.sampler.set_epoch(2)
    next(it), next(it)
    state = loader.state_dict()
    assert state == {"epoch": 2, "batches": 2}

    fresh = ResumableDataLoader(data, batch_size=3, seed=7)
    fresh.load_state_dict(state)
    assert batches(fresh, 2) == full[2:]  # the rest of the interrupted epoch
    assert fresh.state_dict() == {"epoch": 2, "batches": len(full)}
    assert batches(fresh, 3) == batches(ResumableDataLoader(data, batch_size=3, seed=7), 3)

    at_epoch_end = ResumableDataLoader(data, batch_size=3, seed=7)
    at_epoch_end.load_state_dict({"epoch": 2, "batches": len(full)})
    assert batches(at_epoch_end, 3) == batches(loader, 3)  # Lightning moves on to the next epoch: nothing skipped


@pytest.mark.slow
def test_resumed_run_continues_the_same_wandb_run(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    wandb_env = {k: v for k, v in env().items() if not k.startswith("WANDB")}
    wandb_env.update({"HOME": str(home), "NETRC": str(home / "none"), "WANDB_SILENT": "true"})
    logs = tmp_path / "logs"
    cmd = [
        sys.executable,
        str(ROOT / "run.py"),
        f"paths.log_dir={logs}",
        "logger=wandb",
        "logger.wandb.project=test",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        "callbacks.progress_bar=null",
        "eval=none",
    ]
    for extra in ([], ["resume=true"]):
        result = subprocess.run(
            cmd + extra, cwd=ROOT, env=wandb_env, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = run_dirs(logs, "vanilla")
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and len({p.name.rsplit("-", 1)[1] for p in offline}) == 1  # one W&B run, two parts
