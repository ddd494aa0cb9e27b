"""Error classes shared by the library, the worker, the API and the CLI.

Every error carries a stable machine-readable ``code`` (UPPER_SNAKE) and a human message.
The API maps them to HTTP statuses with ``http_status``; the CLI to exit codes.
"""

from __future__ import annotations


class SerError(Exception):
    """Base class: a failure with a stable code and a one-line message."""

    code = "SER_ERROR"
    http_status = 500

    def __init__(self, code: str | None = None, message: str = "") -> None:
        if code:
            self.code = code
        self.message = message or self.code
        super().__init__(self.message)

    def __reduce__(self):
        # Keep code and message when an error crosses a process boundary (joblib, pickle).
        return (self.__class__, (self.code, self.message))

    def to_dict(self) -> dict[str, str]:
        """The JSON error shape used everywhere: {"CODE", "MESSAGE"}."""
        return {"CODE": self.code, "MESSAGE": self.message}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class AudioError(SerError):
    """A recording that cannot be decoded or analysed."""

    code = "AUDIO_ERROR"
    http_status = 415


class DatasetError(SerError):
    """A dataset directory that cannot be used for training or evaluation."""

    code = "DATASET_ERROR"
    http_status = 400


class NoModelError(SerError):
    """No trained model is available."""

    code = "NO_MODEL"
    http_status = 409


class ModelIntegrityError(SerError):
    """A model artifact whose signature does not verify; it is never unpickled."""

    code = "MODEL_SIGNATURE_INVALID"
    http_status = 500


class PathError(SerError):
    """A path that escapes the configured data root or does not exist there."""

    code = "INVALID_PATH"
    http_status = 400


class SettingError(SerError):
    """A ``SER_*`` setting whose value does not fit (names the variable and what it expects)."""

    code = "INVALID_SETTING"
    http_status = 500
