"""One seed derivation (robustnoise.utils.seeding): purposes never share a stream; keys and ``seed=`` move every one."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys

import pytest
import torch

from robustnoise.data import DigitsDataModule
from robustnoise.methods.configs import method_from_yaml
from robustnoise.utils.seeding import PURPOSES, derive_seed
from tests.conftest import ROOT

KEYS = [(), (0,), (1,), (0, 0), (0, 1), (1, 0), (3, 7)]


def first_draws(seed: int) -> torch.Tensor:
    return torch.randint(2**62, (4,), generator=torch.Generator().manual_seed(seed))


def test_purposes_never_share_a_stream():
    for keys in KEYS:
        seeds = {p: derive_seed(1234, p, *keys) for p in PURPOSES}
        assert len(set(seeds.values())) == len(PURPOSES), keys
        for p, q in itertools.combinations(PURPOSES, 2):
            assert not torch.equal(first_draws(seeds[p]), first_draws(seeds[q])), (p, q, keys)


def test_keys_and_the_run_seed_change_every_stream():
    for purpose in PURPOSES:
        seeds = [derive_seed(1234, purpose, *keys) for keys in KEYS]
        assert len(set(seeds)) == len(KEYS), purpose  # (), (0,) and (0, 0) differ too; order matters
        for keys in KEYS:
            assert derive_seed(1234, purpose, *keys) != derive_seed(1235, purpose, *keys), (purpose, keys)
    for rank in range(4):  # bug fixed: DeepAugment's generator seed was the loader workers' seed at epoch 0
        assert derive_seed(1234, "deepaugment", rank) != derive_seed(1234, "loader_workers", 0, rank)
    # a key >= 2**32 is not the pair of its 32-bit words (SeedSequence alone would merge them)
    assert derive_seed(0, "rank_noise", 2**32 + 5) != derive_seed(0, "rank_noise", 5, 1)


def test_seeds_are_stable_across_processes_and_in_range():
    """Same seeds in processes with other string-hash salts (a purpose's digest, not Python's salted ``hash()``)."""
    here = [derive_seed(1234, p, 3) for p in PURPOSES]
    assert all(0 <= s < 2**63 for s in here)
    code = (
        "from robustnoise.utils.seeding import PURPOSES, derive_seed\n"
        "print([derive_seed(1234, p, 3) for p in PURPOSES])"
    )
    for salt in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": salt, "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == str(here)
    with pytest.raises(ValueError, match="unknown seed purpose"):
        derive_seed(0, "no_such_purpose")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed keys"):
        derive_seed(0, "rank_noise", -1)


def test_every_purpose_is_used_in_the_package_and_no_magic_seed_formula_remains():
    files = (ROOT / "robustnoise").rglob("*.py")
    source = "\n".join(p.read_text() for p in files if p.name != "seeding.py")
    used = set(re.findall(r'derive_seed\([^,]+, "(\w+)"', source))
    assert used == set(PURPOSES)
    assert not re.search(r"1_000_003|7_?919|104_729", source)


def test_ant_generators_depend_on_the_run_seed(monkeypatch):
    """Bug fixed: every ``seed=`` of a sweep started from identical generator weights (seeded by the restart count)."""
    info = DigitsDataModule().info()

    def generator_weights(seed: int) -> list[torch.Tensor]:
        monkeypatch.setenv("PL_GLOBAL_SEED", str(seed))
        method = method_from_yaml("ant1x1", info, epsilon=5.0)
        first = [p.detach().clone() for p in method.generator.parameters()]
        restarted = method._new_generator_seeded(1)  # the weights a first restart copies into the generator
        return first + [p.detach().clone() for p in restarted.parameters()]

    a, b, a_again = generator_weights(1), generator_weights(2), generator_weights(1)
    assert all(torch.equal(u, v) for u, v in zip(a, a_again))
    n = len(a) // 2
    assert not any(torch.equal(u, v) for u, v in zip(a[:n], a[n:]) if u.abs().sum() > 0)  # restarts differ
    assert not any(torch.equal(u, v) for u, v in zip(a, b) if u.abs().sum() > 0)  # seeds differ (biases start at 0)
