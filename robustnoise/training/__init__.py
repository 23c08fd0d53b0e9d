"""Training plumbing: exact resume, per-network DDP, corrupted validation, ANT's restarts and replay pool."""

import robustnoise.training.ddp  # noqa: F401  (registers the ddp_per_network strategies)
