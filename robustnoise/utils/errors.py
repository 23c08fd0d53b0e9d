"""User-facing errors: printed as one line by ``run.py`` (no traceback unless ``HYDRA_FULL_ERROR=1``)."""


class RobustnoiseError(Exception):
    """A problem with the user's input (config, data on disk, checkpoint) that has a one-line explanation."""

    def __init__(self, message: str = "") -> None:
        # Raised in a DataLoader worker, torch rebuilds the error in the main process from "Caught ... in DataLoader
        # worker process N.\nOriginal Traceback ...\n<module>.<Class>: <message>": keep the one line.
        if message.startswith("Caught ") and "\nOriginal Traceback" in message:
            message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
        super().__init__(message)


class DatasetNotFoundError(RobustnoiseError):
    """A dataset folder or file is missing or has the wrong layout."""


class UnreadableImageError(DatasetNotFoundError):
    """An image file of a dataset folder cannot be decoded (empty, truncated, not an image)."""


class CheckpointError(RobustnoiseError):
    """A checkpoint cannot be loaded into the requested model."""


class ConfigError(RobustnoiseError, ValueError):
    """A configuration value outside its valid range (sigma < 0, eps <= 0, severity outside 1..5, ...)."""


class NonFiniteLossError(RobustnoiseError):
    """Training produced a NaN or infinite loss; the run stops before the step reaches the weights."""


def is_number(value: object) -> bool:
    """A real number given as a number: not a bool, not a string such as ``'12'`` (config validation)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
