"""Every seed derived from the run's seed comes from :func:`derive_seed`: one independent stream per purpose and keys.
``SeedSequence`` mixes the seed with the purpose's BLAKE2 digest (stable across processes, unlike ``hash``) and the
keys as two 32-bit words each (else ``(2**32 + 5,)`` and ``(5, 1)`` would collide)."""

from __future__ import annotations

import hashlib
import os
from typing import Literal, get_args

from numpy.random import SeedSequence

Purpose = Literal[
    "rank_noise",  # each DDP rank's global torch RNG (noise of GNT, Speckle, ANT's mixed batch): key rank
    "ant_generator",  # ANT's freshly initialised generator: key restart count
    "ant_restart_order",  # order of ANT's restart batches: key pass over the training set
    "deepaugment",  # on-the-fly DeepAugment's weight distortions: key rank
    "loader_workers",  # a training loader's worker seeds: keys epoch, rank
    "stylized_order",  # the stylized loader's shuffling (its own order next to the clean loader's)
    "adain_styles",  # AdaIN's style picks: keys rank, training step
]
PURPOSES: tuple[str, ...] = get_args(Purpose)


def derive_seed(base_seed: int, purpose: Purpose, *keys: int) -> int:
    """A 63-bit seed for ``purpose`` and non-negative integer ``keys``, derived from the run's ``base_seed``."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown seed purpose {purpose!r}; add it to robustnoise.utils.seeding.Purpose")
    tag = int.from_bytes(hashlib.blake2b(purpose.encode("utf-8"), digest_size=8).digest(), "little")
    values = [tag, *(int(k) for k in keys)]
    if not all(0 <= v < 2**64 for v in values):
        raise ValueError(f"seed keys must lie in [0, 2**64), got {keys}")
    words = [w for v in values for w in (v & 0xFFFFFFFF, v >> 32)]
    return int(SeedSequence(int(base_seed), spawn_key=words).generate_state(1, "uint64")[0]) >> 1


def run_seed() -> int:
    """The run's seed (``seed=``, set by ``seed_everything`` as ``PL_GLOBAL_SEED``); 0 outside a seeded run."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))
