"""2-process CPU DDP (gloo): every rank ends with the same networks (and replay pool), while noise differs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("ddp_worker.py")


def run_ddp(method: str, strategy: str, out: Path) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(WORKER), method, strategy, str(out)], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
@pytest.mark.parametrize(("method", "strategy"), [("gnt", "ddp"), ("ant", "ddp_per_network"), ("ada", "ddp")])
def test_ranks_hold_identical_networks_but_draw_different_noise(tmp_path, method, strategy):
    rank0, rank1 = run_ddp(method, strategy, tmp_path)
    assert_same_state(rank0["classifier"], rank1["classifier"])
    assert not torch.equal(rank0["first_batch"], rank1["first_batch"])  # each rank trains on its own shard
    assert not torch.equal(rank0["rng_probe"], rank1["rng_probe"])  # and draws its own noise
    if method == "ada":  # the frozen EDSR is identical on both ranks
        assert_same_state(rank0["corruption_net"], rank1["corruption_net"])
    if method == "ant":
        assert_same_state(rank0["generator"], rank1["generator"])
        assert len(rank0["pool"]) == len(rank1["pool"]) == 2  # restarts before iterations 0 and 2
        for s0, s1 in zip(rank0["pool"], rank1["pool"]):
            assert s0["epsilon"] == s1["epsilon"]
            assert_same_state(s0["params"], s1["params"])
        # the generator moved away from its restart state during joint training, identically on both ranks
        assert any(not torch.equal(rank0["generator"][k], rank0["pool"][-1]["params"][k]) for k in rank0["generator"])
