"""The notebook API (robustnoise.api): same numbers and files as the CLI's evaluation, methods built without run.py."""

from __future__ import annotations

import importlib.util
import json

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import open_dict

from robustnoise import Report, build_method, evaluate_robustness, load_data
from robustnoise.utils.errors import ConfigError


@pytest.fixture(scope="module")
def trained():
    """GNT built from Python (conf/method/gnt.yaml + overrides), trained for one epoch with a plain pl.Trainer."""
    pl.seed_everything(0, verbose=False)
    data = load_data("digits", batch_size=32)
    method = build_method("gnt", data=data, sigma=0.3, optimizer={"lr": 0.05})
    before = [p.detach().clone() for p in method.classifier.parameters()]
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", devices=1, num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(method, data)
    return method, data, before


def test_build_method_reads_the_yaml_and_trains(trained):
    method, _, before = trained
    assert method.levels == [0.3] and method.hparams.p_clean == 0.5  # the override + the YAML default
    assert method.global_step == 34  # ceil(1078 training digits / 32)
    assert any(not torch.equal(b, p) for b, p in zip(before, method.classifier.parameters()))


def test_same_accuracies_as_the_cli_evaluation(trained, make_cfg, tmp_path):
    """The API and task=train/eval's final step (evaluate_robustness, under trainer.test) agree exactly."""
    from robustnoise.eval.evaluate import evaluate_robustness as cli_evaluate
    from robustnoise.train import build_trainer

    method, data, _ = trained
    options = {"max_images": 64, "gaussian_sigmas": [0.5]}
    cfg = make_cfg("eval=mnist_c_generated", "eval.max_images=64", "eval.gaussian_sigmas=[0.5]")
    with open_dict(cfg):
        cfg.trainer.enable_progress_bar = False
        cfg.callbacks = None
    cli = cli_evaluate(cfg, build_trainer(cfg, with_callbacks=False), method, data)
    report = evaluate_robustness(method.classifier, data=data, corruptions="mnist-c", **options)
    assert report.sets == cli["sets"]
    assert report.to_dict()["gaussian_sigmas"] == cli["gaussian_sigmas"]
    assert report.metrics == cli["metrics"] and len(report.sets) == 16  # clean + the 15 MNIST-C
    assert 40 < report.sets["clean"]["top1"] < 100  # trained, not chance: the comparison means something
    assert report.sets["clean"]["n"] == 64


def test_any_module_table_and_files(tmp_path):
    """A plain nn.Module (no robustnoise wrapper) on generated corruptions given as a list; the files of the CLI."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10)).train()
    report = evaluate_robustness(
        model, data="digits", corruptions=["fog", "shot_noise"], severities=[1, 3], max_images=50
    )
    assert model.training  # the API puts the model back in the mode it had
    x, y = load_data("digits").test_set.tensors
    with torch.no_grad():
        clean = 100.0 * int((model(x[:50]).argmax(1) == y[:50]).sum()) / 50
    assert report.sets["clean"]["top1"] == pytest.approx(clean)
    assert set(report.sets) == {"clean", "fog/s1", "fog/s3", "shot_noise/s1", "shot_noise/s3"}
    table = report.table()
    assert "fog" in table and "shot_noise" in table and "fog" in report.summary()
    out = report.save(tmp_path / "run")
    saved = json.loads((out / "robustness.json").read_text())
    assert saved["sets"] == report.sets and saved["method"] == "model"
    assert {p.name for p in out.iterdir()} >= {"robustness.json", "robustness.csv", "robustness.md"}
    report.to_json(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == saved
    assert isinstance(report, Report)


def test_bad_arguments_are_one_line_errors():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    with pytest.raises(ConfigError, match="unknown corruption set"):
        evaluate_robustness(model, corruptions="imagenet-x")
    with pytest.raises(ConfigError, match="no released -C set"):
        evaluate_robustness(model, data=_Renamed(), released="/nowhere")


class _Renamed:
    name = "svhn"


def test_released_files_and_attacks_through_keywords(tmp_path):
    """``released=``: the data's released -C files (MNIST-C layout for the digits); ``attacks=``: eval.attacks."""
    from tests.test_evaluate_released import write_mnist_c

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    x, y = load_data("digits").test_set.tensors
    write_mnist_c(tmp_path / "mnist_c", x, y)
    attacks = {
        "enabled": True,
        "max_images": 8,
        "l2_ddn": None,
        "linf_pgd": {"epsilon": 0.0, "steps": 1, "stepsize": 0.01},
    }
    if importlib.util.find_spec("foolbox") is None:
        attacks = {"enabled": False}
    report = evaluate_robustness(model, data="digits", released=tmp_path / "mnist_c", attacks=attacks)
    sets = report.sets
    assert set(sets) == {"clean", "identity/s1", "stripe/s1"} and report.benchmark == "mnistc"
    assert abs(sets["identity/s1"]["top1"] - sets["clean"]["top1"]) < 0.5  # the clean split, through uint8 files
    if attacks["enabled"]:
        assert set(report.attacks) == {"linf_pgd"} and report.attacks["linf_pgd"]["n"] == 8
