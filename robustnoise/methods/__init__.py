"""Training methods, one LightningModule per file holding its algorithm (the plumbing: robustnoise.training)."""
