"""Bad input gives one ``error: ...`` line and exit code 2 through run.py's error path (in process: the same
``run.execute`` the CLI calls, minus three seconds of imports per case).

Covered elsewhere through the real CLI: a missing dataset folder
(test_train.py::test_cli_missing_dataset_is_one_clear_line) and sigma < 0
(test_train.py::test_cli_negative_sigma_is_one_clear_line). The -C readers' own layout checks are unit tested in
test_released_c.py; here they are reached through the command line, before any training.
"""

from __future__ import annotations

import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import run
from robustnoise.models import create_model

N = 4  # images per severity in the fake CIFAR-10-C files

FAST = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "eval.max_images=32",
    "callbacks.progress_bar=null",
    "trainer.enable_progress_bar=false",
]


def fast_for(args: list[str]) -> list[str]:
    """``FAST`` without the groups that the task of ``args`` has no config for (conf/<task>.yaml)."""
    task = next((a.split("=", 1)[1] for a in args if a.startswith("task=")), "train")
    groups = {"train": ("trainer.", "callbacks.", "eval."), "eval": ("trainer.", "eval.")}.get(task, ())
    return [o for o in FAST if o.startswith(groups)]


def cifar_c(root: Path, images: np.ndarray | None = None, labels: np.ndarray | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.save(root / "fog.npy", rng.integers(0, 256, (5 * N, 32, 32, 3), dtype=np.uint8) if images is None else images)
    np.save(root / "labels.npy", np.tile(np.arange(N), 5).astype(np.uint8) if labels is None else labels)
    return root


def cifar10c_eval(root: Path) -> list[str]:
    """CIFAR-10-C files at ``root`` evaluated with CIFAR-10 as the clean data (not read: the -C check comes first)."""
    return ["data=cifar10", f"data.root={root.parent / 'cifar10'}", "eval=cifar10c", f"eval.released.root={root}"]


def wrong_layout(root: Path) -> list[str]:
    return cifar10c_eval(cifar_c(root, images=np.zeros((5 * N, 3, 32, 32), dtype=np.uint8)))


def truncated(root: Path) -> list[str]:
    cifar_c(root)
    data = (root / "fog.npy").read_bytes()
    (root / "fog.npy").write_bytes(data[: len(data) // 2])
    return cifar10c_eval(root)


def count_mismatch(root: Path) -> list[str]:
    return cifar10c_eval(cifar_c(root, labels=np.zeros(5 * N - 5, dtype=np.uint8)))


def digits_model_file(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "digits.pth"
    torch.save(create_model("madry_cnn", 10, in_chans=1, image_size=28).state_dict(), path)
    return path


C_MISMATCH = (
    r"the released cifar10c set does not match the clean data the model is built for: it belongs to cifar10, "
    r"not data=digits; 3 channels, the clean data 1; 32 px images, the clean data 28 px"
)
SIGMA_RANGE = r"sigma must be >= 0 and <= 2, got .* \(images are in \[0, 1\]"


def other_architecture_resume(root: Path) -> list[str]:
    root.mkdir()
    path = root / "resnet.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model": {"name": "resnet18"}, "name": "gnt"}}, path)
    return ["method=gnt", f"ckpt_path={path}"]


def other_architecture_eval(root: Path) -> list[str]:
    root.mkdir()
    path = root / "madry.pth"
    torch.save(create_model("madry_cnn", 10, in_chans=1, image_size=28).state_dict(), path)
    return ["task=eval", "model=resnet18", f"ckpt_path={path}"]


CASES = {
    "wrong -C layout": (wrong_layout, r"fog\.npy.*\(20, 3, 32, 32\)"),
    "truncated .npy": (truncated, r"fog\.npy.*truncated"),
    "image and label counts differ": (count_mismatch, r"labels\.npy.*15 labels.*20 images"),
    "eps <= 0": (lambda root: ["method=ant1x1", "method.epsilon=0"], r"epsilon must be > 0"),
    "eps < 0": (lambda root: ["method=ant3x3", "method.epsilon=-3"], r"epsilon must be > 0"),
    "eps inf": (lambda root: ["method=ant1x1", "method.epsilon=inf"], r"epsilon must be > 0 and finite.*got inf"),
    "eps nan": (lambda root: ["method=ant1x1", "method.epsilon=nan"], r"epsilon must be > 0 and finite.*got nan"),
    "eps as a string": (lambda root: ["method=ant1x1", "method.epsilon='12'"], r"epsilon must be .*got '12'"),
    "sigma as a string": (
        lambda root: ["method=gnt", "method.sigma='12'"],
        r"sigma must be a number or a non-empty list of numbers, got '12'$",
    ),
    "sigma abc": (lambda root: ["method=gnt", "method.sigma=abc"], r"list of numbers, got 'abc'$"),
    "sigma list with a string": (lambda root: ["method=gnt", "method.sigma=[0.1,'0.2']"], r"got \[0\.1, '0\.2'\]$"),
    "sigma bool": (lambda root: ["method=gnt", "method.sigma=true"], r"list of numbers, got True$"),
    "empty sigma list": (lambda root: ["method=gnt", "method.sigma=[]"], r"list of numbers, got \[\]$"),
    "sigma 1e9": (lambda root: ["method=gnt", "method.sigma=1e9"], SIGMA_RANGE),
    "sigma inf": (lambda root: ["method=gnt", "method.sigma=inf"], SIGMA_RANGE),
    "sigma nan": (lambda root: ["method=gnt", "method.sigma=nan"], SIGMA_RANGE),
    "speckle c nan": (lambda root: ["method=speckle", "method.c=[0.1,nan]"], r"speckle c must be >= 0 and <= 2"),
    "p_clean as a string": (
        lambda root: ["method=gnt", "method.p_clean='0.5'"],
        r"p_clean must be a number in \[0, 1\], got '0\.5'$",
    ),
    "AdA nu nan": (
        lambda root: ["method=ada", "method.nu=nan"],
        r"step_fraction must be finite numbers >= 0, got nan,",
    ),
    "batch size 0": (lambda root: ["data.batch_size=0"], r"data\.batch_size must be an integer >= 1, got 0$"),
    "batch size -1": (lambda root: ["data.batch_size=-1"], r"data\.batch_size must be an integer >= 1, got -1$"),
    "eval batch size 0": (lambda root: ["data.eval_batch_size=0"], r"data\.eval_batch_size must be an integer >= 1"),
    "max_epochs 0": (lambda root: ["trainer.max_epochs=0"], r"trainer\.max_epochs=0 trains nothing; .*task=eval"),
    "empty severities": (lambda root: ["eval.severities=[]"], r"eval\.severities is empty: the corruptions \["),
    "empty released corruptions": (
        lambda root: [*cifar10c_eval(cifar_c(root)), "eval.released.corruptions=[]"],
        r"eval\.released\.corruptions is empty: no released set would be evaluated",
    ),
    "CIFAR-10-C with the digits": (lambda root: ["eval=cifar10c", f"eval.released.root={cifar_c(root)}"], C_MISMATCH),
    "task=eval of a digits model on CIFAR-10-C": (
        lambda root: ["task=eval", f"model.weights={digits_model_file(root)}", "eval=cifar10c"],
        C_MISMATCH,
    ),
    "severity 6": (lambda root: ["eval.severities=[1,6]"], r"severity must be an integer in 1\.\.5, got 6"),
    "severity 0": (lambda root: ["eval.severities=[0]"], r"severity must be an integer in 1\.\.5, got 0"),
    "unknown corruption": (
        lambda root: ["eval=noise", "eval.corruptions=[gaussian_noise,gausian_noise]"],
        r"'gausian_noise'",
    ),
    "resume from another architecture": (other_architecture_resume, r"holds a resnet18, the config asks for madry_cnn"),
    "eval of another architecture": (other_architecture_eval, r"madry\.pth.*missing keys"),
}


def expect_one_line_error(cfg, capsys, pattern: str) -> str:
    with pytest.raises(SystemExit) as info:
        run.execute(cfg)
    assert info.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert re.search(pattern, errors[0]), errors[0]
    return errors[0]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2_before_training(make_cfg, tmp_path, capsys, monkeypatch, case):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    overrides, pattern = CASES[case]
    args = overrides(tmp_path / "input")
    cfg = make_cfg(*fast_for(args), *args)
    expect_one_line_error(cfg, capsys, pattern)
    assert not (tmp_path / "checkpoints").exists()  # stopped before training, not after it


def test_nan_loss_stops_names_the_step_and_keeps_the_last_good_checkpoint(make_cfg, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    cfg = make_cfg(
        "method=gnt",
        *FAST,
        "trainer.limit_train_batches=10",
        "method.optimizer.lr=1e30",
        "callbacks.last_checkpoint.every_n_train_steps=1",
    )
    line = expect_one_line_error(cfg, capsys, r"non-finite training loss \((nan|inf)\) at step \d+ \(epoch 0\)")
    step = int(re.search(r"at step (\d+)", line).group(1))
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert line.endswith(f"last good checkpoint: {last}")
    assert not (tmp_path / "checkpoints" / "on_exception.ckpt").exists()  # no checkpoint of the diverged state
    kept = torch.load(last, weights_only=True)
    assert kept["global_step"] == step  # written after the last finite step, before the failing one
    assert not (tmp_path / "robustness.json").exists()


def test_audit_verdict_counts_what_was_checked():
    summarize = runpy.run_path(str(Path(__file__).parents[1] / "tools" / "audit.py"))["summarize"]

    skipped = {"name": "torch", "skip_reason": "Dependency not found on PyPI and could not be audited: torch (2.14.1)"}
    assert summarize({"dependencies": [skipped]}) == (
        1,
        [f"not audited: 0 of 1 packages could be checked: {skipped['skip_reason']}"],
    )
    assert summarize({"dependencies": []}) == (1, ["not audited: 0 of 0 packages could be checked"])
    pip = {"name": "pip", "version": "23.2.1", "vulns": [{"id": "CVE-2025-8869", "fix_versions": ["25.3"]}]}
    clean = {"name": "numpy", "version": "2.3.0", "vulns": []}
    assert summarize({"dependencies": [pip, clean, skipped]}) == (
        1,
        [
            "pip 23.2.1: CVE-2025-8869 (fixed in: 25.3)",
            "audited 2 of 3 packages: 1 known vulnerabilities in 1 packages",
            "not audited (1): torch",
        ],
    )
    assert summarize({"dependencies": [clean, skipped]}) == (
        0,
        ["audited 1 of 2 packages: no known vulnerabilities", "not audited (1): torch"],
    )


def test_audit_without_network_says_not_audited():
    from tests.test_train import _no_network_namespace

    if reason := _no_network_namespace():
        pytest.skip(reason)
    result = subprocess.run(
        ["unshare", "-n", sys.executable, "tools/audit.py", "--timeout", "5"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=300,
    )
    assert result.returncode != 0
    assert result.stdout.startswith("not audited: "), result.stdout + result.stderr
    assert "no known vulnerabilities" not in result.stdout and "Traceback" not in result.stdout


def fake_imagenet(root: Path, bad_split: str, bad_bytes: bytes) -> Path:
    """Two wnids x 4 images per split, plus one unreadable ``bad.JPEG`` in ``bad_split``."""
    from PIL import Image

    for split in ("train", "val"):
        for k, wnid in enumerate(("n01", "n02")):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (40, 36), (60 * i, 200 * k, 90)).save(folder / f"{i}.JPEG")
    bad = root / bad_split / "n02" / "bad.JPEG"
    bad.write_bytes(bad_bytes)
    return bad


IMAGENET_FAST = [
    "data=imagenet",
    "data.image_size=32",
    "data.resize=36",
    "data.batch_size=4",
    "data.eval_batch_size=4",
    "eval.corruptions=[gaussian_noise]",
    "eval.severities=[1]",
]


@pytest.mark.parametrize(
    ("split", "content", "workers"),
    [("train", b"", 0), ("val", b"not a JPEG at all", 2), ("train", b"\xff\xd8\xff\xe0 truncated", 2)],
)
def test_unreadable_image_is_one_line_naming_the_file(make_cfg, tmp_path, capsys, monkeypatch, split, content, workers):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    bad = fake_imagenet(tmp_path / "imagenet", split, content)
    cfg = make_cfg(*FAST, *IMAGENET_FAST, f"data.root={tmp_path / 'imagenet'}", f"data.num_workers={workers}")
    line = expect_one_line_error(cfg, capsys, rf"^error: cannot read image {re.escape(str(bad))} \(")
    assert line.endswith("or set data.skip_unreadable=true to skip such files with a warning")


def test_skip_unreadable_warns_and_trains(make_cfg, tmp_path, caplog):
    bad = fake_imagenet(tmp_path / "imagenet", "train", b"")
    (tmp_path / "imagenet" / "val" / "n01" / "empty.JPEG").write_bytes(b"")
    cfg = make_cfg(
        *FAST,
        *IMAGENET_FAST,
        f"data.root={tmp_path / 'imagenet'}",
        "data.num_workers=0",
        "data.skip_unreadable=true",
        "trainer.limit_train_batches=null",
    )
    run.execute(cfg)
    result = json.loads((tmp_path / "robustness.json").read_text())
    assert result["sets"]["clean"]["n"] == 9  # the folder's length: the empty file's place is taken by a readable one
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped: cannot read image")]
    assert any(str(bad) in m for m in skipped) and any("empty.JPEG" in m for m in skipped)


def test_empty_corruption_list_says_clean_only(make_cfg, caplog):
    from robustnoise.data import DigitsDataModule
    from robustnoise.eval.evaluate import check_eval_config

    check_eval_config(make_cfg("eval.corruptions=[]"), DigitsDataModule())
    assert "eval.corruptions is empty and no released -C set is configured: only clean accuracy is evaluated" in [
        r.getMessage() for r in caplog.records if r.levelname == "WARNING"
    ]


def test_wandb_probe_endpoint_and_reachability(monkeypatch):
    import socket

    from robustnoise.utils.wandb_mode import reachable as _reachable
    from robustnoise.utils.wandb_mode import wandb_endpoint as _wandb_endpoint

    for key in ("WANDB_BASE_URL", "https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(key, raising=False)
    assert _wandb_endpoint() == ("api.wandb.ai", 443)
    monkeypatch.setenv("WANDB_BASE_URL", "http://wandb.local:8080")
    assert _wandb_endpoint() == ("wandb.local", 8080)
    monkeypatch.setenv("http_proxy", "proxy.example:3128")
    assert _wandb_endpoint() == ("proxy.example", 3128)  # the first hop of a proxied connection
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert _reachable("127.0.0.1", port)
    assert not _reachable("127.0.0.1", port)  # closed again: refused at once


@pytest.fixture(scope="module")
def bad_sigma_cli(tmp_path_factory):
    """One real CLI run stopped by bad input (sigma outside [0, 2]) with the run's log file on (Hydra's logging)."""
    from tests.test_train import _cli

    tmp = tmp_path_factory.mktemp("bad_sigma")
    return _cli("method=gnt", "method.sigma=7", f"hydra.run.dir={tmp / 'run'}", f"paths.log_dir={tmp}"), tmp


def test_cli_error_is_printed_once(bad_sigma_cli):
    result, _ = bad_sigma_cli
    assert result.returncode == 2 and "Traceback" not in result.stderr
    both = result.stdout + result.stderr
    assert both.count("sigma must be >= 0 and <= 2, got 7") == 1, both  # not also echoed by the console log handler
    assert [line for line in result.stderr.splitlines() if "sigma must be" in line][0].startswith("error: ")


def test_cli_bad_input_leaves_no_run_directory(bad_sigma_cli):
    _, tmp = bad_sigma_cli
    assert not (tmp / "run").exists()  # it would hold only run.log and .hydra/


def test_failed_run_keeps_a_directory_holding_anything_else(tmp_path):
    from omegaconf import OmegaConf

    for extra in ("checkpoints/last.ckpt", "robustness.json", ".hydra/sub/x.yaml"):
        out = tmp_path / extra.replace("/", "_")
        (out / ".hydra").mkdir(parents=True)
        (out / "run.log").write_text("x")
        (out / extra).parent.mkdir(parents=True, exist_ok=True)
        (out / extra).write_text("x")
        run.remove_empty_run_dir(OmegaConf.create({"paths": {"output_dir": str(out)}}))
        assert (out / extra).exists() and (out / "run.log").exists(), extra
    empty = tmp_path / "empty"
    (empty / ".hydra").mkdir(parents=True)
    (empty / ".hydra" / "config.yaml").write_text("x")
    (empty / "run.log").write_text("x")
    run.remove_empty_run_dir(OmegaConf.create({"paths": {"output_dir": str(empty)}}))
    assert not empty.exists()


def test_help_lists_public_groups_and_points_to_the_readme():
    from tests.test_train import _cli

    result = _cli("--help")
    assert result.returncode == 0, result.stderr
    assert "README.md" in result.stdout and "install=bash" in result.stdout
    experiments = re.search(r"^  experiment: (.*)$", result.stdout, re.M).group(1).split(", ")
    assert "digits_demo" in experiments and "rusak2020_imagenet_ant1x1" in experiments
    assert not [e for e in experiments if e.startswith("_")], experiments
    groups = re.findall(r"^  (\w+): ", result.stdout, re.M)
    assert "method" in groups and not {"debug_inner", "recipe", "hydra"} & set(groups), groups
