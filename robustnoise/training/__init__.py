"""Training plumbing shared by the methods: exact resume, the per-network DDP strategy, corrupted validation, ANT's
restart schedule."""

import robustnoise.training.ddp  # noqa: F401  (registers the ddp_per_network strategies)
