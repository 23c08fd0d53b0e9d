"""GNT, ANT and AdA train one step under ``trainer.precision=bf16-mixed`` (Lightning runs bf16 autocast on CPU too):
the classifier sees bf16 activations, its fp32 weights move, the loss is finite."""

from __future__ import annotations

import copy

import pytest
import torch

from robustnoise.train import build_method, build_trainer
from robustnoise.utils.instantiate import instantiate

CASES = {
    "gnt": ["method=gnt"],
    "ant1x1": ["method=ant1x1", "method.restart_steps=2", "method.snapshot_every=1"],
    # an SSIM threshold near 1 sends every attacked image through the guard's interpolation (bf16 meets fp32 there)
    "ada": [
        "method=ada",
        "corruption_net@method.corruption_net=edsr_tiny",
        "method.steps=2",
        "method.ssim_threshold=0.999",
    ],
}


@pytest.mark.parametrize("method", list(CASES))
def test_one_bf16_mixed_step_on_the_digits(make_cfg, method):
    cfg = make_cfg(*CASES[method], "trainer.precision=bf16-mixed", "trainer.fast_dev_run=1", "data.batch_size=16")
    datamodule = instantiate(cfg.data)
    module = build_method(cfg, datamodule)
    before = copy.deepcopy(module.classifier.state_dict())
    dtypes: list[torch.dtype] = []
    module.classifier.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    trainer = build_trainer(cfg)
    trainer.fit(module, datamodule=datamodule)
    assert dtypes and set(dtypes) == {torch.bfloat16}  # fast_dev_run: one training batch
    assert all(p.dtype == torch.float32 for p in module.classifier.parameters())
    changed = [k for k, v in module.classifier.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and torch.isfinite(torch.as_tensor(float(trainer.callback_metrics["train/loss"])))
