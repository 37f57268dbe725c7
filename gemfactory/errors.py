"""User-facing errors.

Every error a user can cause (bad recipe, missing file, unmappable ECG, unknown component) is a
``GemError``: the CLI prints its message as one line and exits non-zero without a traceback.
Anything else escaping the CLI is a bug and keeps its traceback.
"""


class GemError(Exception):
    """A problem with user input; the message says what, where and what was expected."""


class ConfigError(GemError):
    pass


class UnknownComponent(GemError, KeyError):
    def __str__(self):  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DuplicateComponent(GemError, ValueError):
    pass


class PluginError(GemError):
    pass


class ECGError(GemError):
    pass


class DataError(GemError):
    pass


class CheckpointError(GemError):
    pass
