"""Training plumbing shared by the methods (callbacks, resume, DDP strategy)."""
