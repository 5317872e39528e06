"""Typed errors. The CLI turns each into one line and an exit code; the TUI into a notification.

Messages never carry a secret value: they name the thing (a path, a key id, a reference), not
what it holds.
"""

from __future__ import annotations


class KeyshiftError(Exception):
    """Base of every error keyshift reports to a person. ``exit_code`` is the CLI's contract."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


class ConfigError(KeyshiftError):
    """The inventory file is unreadable or invalid. ``location`` is ``file:line:col``."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.file = file
        self.line = line
        self.column = column
        self.field = field

    @property
    def location(self) -> str:
        parts = [self.file or "<inventory>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def one_line(self) -> str:
        text = f"{self.location}: "
        if self.field:
            text += f"{self.field}: "
        text += self.message
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class UsageError(KeyshiftError):
    """The command line asked for something impossible (bad filter, unknown id)."""

    exit_code = 2


class NotFoundError(KeyshiftError):
    exit_code = 3


class ReadOnlyError(KeyshiftError):
    """A mutating action was asked for in read-only mode."""

    exit_code = 4

    def __init__(self, action: str) -> None:
        super().__init__(
            f"refused: {action} changes state and keyshift is in read-only mode",
            hint="drop --read-only to allow it",
        )


class SecretError(KeyshiftError):
    """A keyring reference could not be resolved, or the keyring is unavailable."""

    exit_code = 5


class StoreError(KeyshiftError):
    exit_code = 6


class ReadCancelled(StoreError):
    """A read stopped because its answer was no longer wanted (Store.cancellable)."""


class AuditError(KeyshiftError):
    """The audit chain failed verification."""

    exit_code = 7


class SourceError(KeyshiftError):
    """A source (Vault, AWS, keyring, ...) could not be read: down, denied, throttled."""

    exit_code = 8


class SandboxError(KeyshiftError):
    exit_code = 9


class RotationError(KeyshiftError):
    exit_code = 10


class RotatedMeanwhile(RotationError):
    """Another run rotated the credential after this caller chose to rotate it (a playbook
    selected it, a person confirmed it): rotating again would rotate it twice."""

    def __init__(self, message: str, *, run_id: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.run_id = run_id


class Aborted(KeyshiftError):
    """The person declined a confirmation."""

    exit_code = 1
