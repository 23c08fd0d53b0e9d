"""Training plumbing shared by the methods: exact resume, the per-network DDP strategy, the non-finite-loss guard,
corrupted validation."""

import robustnoise.training.ddp  # noqa: F401  (registers the ddp_per_network strategies)
