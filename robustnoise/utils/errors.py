"""User-facing errors: printed as one line by ``run.py`` (no traceback unless ``HYDRA_FULL_ERROR=1``)."""


class RobustnoiseError(Exception):
    """A problem with the user's input (config, data on disk, checkpoint) that has a one-line explanation."""


class DatasetNotFoundError(RobustnoiseError):
    """A dataset folder or file is missing or has the wrong layout."""


class CheckpointError(RobustnoiseError):
    """A checkpoint cannot be loaded into the requested model."""


class ConfigError(RobustnoiseError, ValueError):
    """A configuration value outside its valid range (sigma < 0, eps <= 0, severity outside 1..5, ...)."""


class NonFiniteLossError(RobustnoiseError):
    """Training produced a NaN or infinite loss; the run stops before the step reaches the weights."""
