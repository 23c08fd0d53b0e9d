"""Run a few training steps under 2-process CPU DDP (gloo) and save every rank's state (used by test_ddp.py).

``python tests/ddp_worker.py METHOD STRATEGY OUT_DIR``; Lightning's launcher re-runs this script for rank 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import robustnoise.training.ddp  # noqa: E402,F401  (registers ddp_per_network)
from robustnoise.data import DigitsDataModule  # noqa: E402
from robustnoise.methods.configs import method_from_yaml  # noqa: E402
from robustnoise.training.exact_resume import ExactResume  # noqa: E402

DATA = {"num_classes": 10, "in_chans": 1, "image_size": 28, "mean": [0.0], "std": [1.0]}
COMMON = {"scheduler": {"name": "none"}, "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9}}


def build(method: str) -> pl.LightningModule:
    if method == "vanilla":
        return method_from_yaml("vanilla", DATA, **COMMON)
    if method == "gnt":
        return method_from_yaml("gnt", DATA, sigma=0.5, **COMMON)
    if method == "ada":
        tiny = {"variant": "custom", "scale": 2, "n_resblocks": 2, "n_feats": 8}
        return method_from_yaml("ada", DATA, corruption_net=tiny, steps=2, p_clean=0.0, **COMMON)
    return method_from_yaml(
        "ant1x1", DATA, epsilon=5.0, restart_steps=2, restart_every=2, restart_unit="step", **COMMON
    )


def main() -> None:
    method_name, strategy, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    pl.seed_everything(3)
    method = build(method_name)
    captured: dict[str, torch.Tensor] = {}
    original = method.classifier_step

    def spy(x, y, *args):
        if "batch" not in captured:
            captured["batch"] = x.detach().clone()
            captured["rng_probe"] = torch.randn(8)  # what the next noise draw on this rank starts from
        return original(x, y, *args)

    method.classifier_step = spy
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=strategy,
        max_epochs=1,
        limit_train_batches=4,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(out),
        callbacks=[ExactResume()],  # each rank its own noise stream
    )
    trainer.fit(method, datamodule=DigitsDataModule(batch_size=32))
    state = {
        "rank": trainer.global_rank,
        "classifier": method.classifier.state_dict(),
        "generator": method.generator.state_dict() if hasattr(method, "generator") else {},
        "pool": list(getattr(method, "pool", [])),
        "corruption_net": method.corruption_net.state_dict() if hasattr(method, "corruption_net") else {},
        "first_batch": captured["batch"],
        "rng_probe": captured["rng_probe"],
        "global_step": trainer.global_step,
    }
    torch.save(state, out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main()
