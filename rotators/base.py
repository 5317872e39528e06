"""The rotator protocol (DESIGN.md, "Rotators").

plan → create → verify → promote → (grace) → revoke; rollback discards a pending that failed
verify. Every step is idempotent: the engine may call a step again after a crash, so a step
must notice it already happened (e.g. a KV version already written by this run) and succeed.

Nothing here holds a secret value beyond the call that needs it: ``Pending`` and the step
results carry versions and ids, never values, because the engine journals them in the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

STEPS = ("create", "verify", "promote", "revoke")


class RotatorError(Exception):
    """A step failed. ``retryable`` says whether running it again may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class VerifyFailed(RotatorError):
    """The new credential does not work; the engine rolls back."""


@dataclass(frozen=True)
class CredentialInfo:
    """What a rotator sees of a credential: identity and metadata, never its value."""

    id: str
    source: str
    kind: str
    native_id: str
    name: str
    location: str = ""
    version: str | None = None
    environment: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    rotator: str
    summary: str
    steps: list[str]
    zero_downtime: bool
    manual: bool = False
    needs: list[str] = field(default_factory=list)  # permissions / things that must exist
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Pending:
    """The new credential, by reference (e.g. a KV version), as the journal records it."""

    version: str
    previous_version: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GeneratorRule:
    length: int = 40
    alphabet: str = "alnum"
    prefix: str = ""


class RotatorContext(Protocol):
    """What the engine provides a rotator: clients for sources, and secret-value helpers.

    Implemented in console/ (the engine); rotators only depend on this protocol.
    """

    def vault_client(self, source: str) -> Any: ...

    def aws_client(self, source: str, service: str, region: str | None = None) -> Any: ...

    def generate(self, rule: GeneratorRule) -> str: ...

    def fingerprint(self, value: str) -> str: ...

    def now(self) -> datetime: ...


@runtime_checkable
class Rotator(Protocol):
    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]  # credential kinds it can rotate
    manual: ClassVar[bool]

    def plan(self, cred: CredentialInfo) -> Plan: ...

    def create(self, cred: CredentialInfo, run_id: str) -> Pending:
        """Make the new credential. ``run_id`` lets a re-run after a crash find what this run
        already created (e.g. tagged on the new version) instead of creating a second one."""
        ...

    def verify(self, cred: CredentialInfo, pending: Pending) -> None: ...

    def promote(self, cred: CredentialInfo, pending: Pending) -> None: ...

    def revoke(self, cred: CredentialInfo, previous_version: str) -> None: ...

    def rollback(self, cred: CredentialInfo, pending: Pending) -> None:
        """Discard ``pending`` so only the old credential is valid (and current) again.

        When create itself failed part-way the engine has no journaled pending: it passes
        ``Pending(version="", detail={"run_id": run_id})`` and the rotator discards whatever
        that run left behind, or does nothing if it left nothing."""
        ...


RotatorFactory = Callable[[RotatorContext], Rotator]
