"""Exceptions whose message is meant for the user: the CLI prints them without a traceback."""


class FashionCnnError(Exception):
    """Base class: the message names the thing that is wrong and how to fix it."""


class DataError(FashionCnnError):
    """The Fashion-MNIST files are missing, corrupt or not what they claim to be."""


class ConfigError(FashionCnnError):
    """A recipe, config file or flag has an invalid value."""


class RunError(FashionCnnError):
    """A run folder is missing, incomplete, or belongs to a different config."""


class OutputError(FashionCnnError):
    """A folder to write into (`--out`, `--show-input`, ...) cannot be created there."""


class DamagedFileError(FashionCnnError):
    """A file this program wrote (a run's config.json, state.json, ...) cannot be read back:
    it was edited or damaged."""
