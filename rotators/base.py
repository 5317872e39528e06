"""The rotator protocol: issuers and delivery targets, composed by the engine.

A credential's value has one **issuer**, who mints it and revokes it (Vault for an AppRole
secret-id or a token, IAM for an access key, keyshift itself for a ``generated`` value, a
person at a provider for an API key), and one or more **targets**, where consumers read it (a
Vault KV secret, a Secrets Manager secret, an SSM parameter, a keyring entry, an env file).
The engine (console/rotation) composes one issuer and its targets into journaled steps:

    issue      the issuer mints a new value               old and new both valid
    deliver    each target gets it (staged where it can)  consumers may read either
    verify     the issuer proves it; each target reads it back
    promote    each target makes it current               old still valid (grace)
    revoke     after the grace period the issuer revokes the old value (in stages: IAM
               deactivates, then deletes after a second grace)
    retire     each target drops the old value it kept (a KV version, ...)
    rollback   before promote only: the issuer discards the new value, targets restore the old

Every step may run again after a crash and must notice what it already did. A value is a
mapping part -> ``SecretValue`` (``{"value": ...}``, or ``{"access_key_id": ...,
"secret_access_key": ...}``); it lives in memory for one run and never in a journal: handles
(versions, accessors, key ids) are what steps return, and the engine journals those.

A third-party distribution adds an issuer or a target with an entry point in the group
``keyshift.rotators`` naming a class with ``role = "issuer"`` or ``role = "target"``. Classes
written against keyshift's first protocol (one ``Rotator`` doing create, verify, promote,
revoke, rollback) keep working: the engine runs them as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from rotators.values import SecretValue

Value = dict[str, SecretValue]  # part -> value
Handle = dict[str, Any]  # journaled: versions, accessors, key ids, never a value


class RotatorError(Exception):
    """A step failed. ``retryable``: running it again may succeed (429, 503, a sealed server,
    a network error); the engine backs off and retries before it gives up."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class VerifyFailed(RotatorError):
    """The new value does not work; the engine rolls back."""


class Refused(RotatorError):
    """This credential cannot be rotated this way (found while planning); nothing changed."""


class NeedsPerson(RotatorError):
    """The step needs a person (a provider key to mint or revoke) and none is at hand."""


@dataclass(frozen=True)
class CredentialInfo:
    """What a plug-in sees of a credential: identity and metadata, never its value."""

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
class PartPlan:
    """What one plug-in will do for one rotation, found without changing anything."""

    steps: list[str] = field(default_factory=list)  # "issue: ...", "deliver: ...", ...
    needs: list[str] = field(default_factory=list)  # permissions, things that must exist
    warnings: list[str] = field(default_factory=list)
    refused: str | None = None  # why it cannot work; the engine refuses the whole rotation
    downtime: str | None = None  # None: none; else what consumers would see


@dataclass(frozen=True)
class Issued:
    value: Value
    handle: Handle


class Interaction(Protocol):
    """A person at a terminal or in the TUI. Absent when keyshift runs unattended."""

    def show(self, text: str) -> None: ...

    def ask_secret(self, prompt: str) -> str | None:
        """A value typed or pasted without echo; None when the person cancels."""
        ...

    def confirm(self, prompt: str) -> bool: ...


HookVerdict = Literal["valid", "refused"]


class RunContext(Protocol):
    """What the engine gives plug-ins for one run (implemented in console/rotation)."""

    run_id: str
    interaction: Interaction | None

    def now(self) -> datetime: ...

    def vault_client(self, source: str) -> Any: ...

    def aws_client(self, source: str, service: str, region: str | None = None) -> Any: ...

    def aws_client_as(
        self, source: str, service: str, key_id: SecretValue, secret: SecretValue
    ) -> Any:
        """A client of the source's endpoint and region signed with the given key (to prove
        a new access key works, or that an old one is refused)."""
        ...

    def fingerprint(self, value: SecretValue | str) -> str: ...

    def keep(self, value: str) -> SecretValue:
        """Wrap a value this run handles and register it with the run, so the run's error
        texts and log lines are scrubbed of it until the run ends."""
        ...

    def checkpoint(self, point: str) -> None:
        """A named point inside a step (the crash tests stop the process here)."""
        ...

    def path(self, relative: str) -> Path:
        """An inventory-relative path (env files), resolved."""
        ...

    def provider(self, name: str) -> Mapping[str, Any]:
        """A provider's declaration: ``console_url`` and ``verify`` (a hook, or None)."""
        ...

    def check_hook(self, hook: Mapping[str, Any], value: SecretValue) -> HookVerdict:
        """Run a verify hook with ``value``: "valid" or "refused"; a RotatorError (retryable
        when it may pass later) for any other answer."""
        ...


@runtime_checkable
class Issuer(Protocol):
    role: ClassVar[str]  # "issuer"
    name: ClassVar[str]
    manual: ClassVar[bool]  # a person mints and revokes (provider keys)
    parts: tuple[str, ...]
    # parts that are not secret (an access key's id): named in messages, never redacted
    public_parts: ClassVar[tuple[str, ...]]

    def __init__(self, spec: Mapping[str, Any], ctx: RunContext) -> None: ...

    def plan(self, cred: CredentialInfo) -> PartPlan: ...

    def revoke_stages(self) -> tuple[str, ...]:
        """The stages of revoking the old value, each after its own grace period: ("revoke",),
        ("deactivate", "delete") for IAM keys, () when there is nothing to revoke."""
        ...

    def identify(self, cred: CredentialInfo, old: Value | None) -> Handle:
        """The old value's handle at the issuer (an accessor, a key id), from what consumers
        read now; journaled before issue so revoke finds it after a crash."""
        ...

    def issue(self, cred: CredentialInfo, old: Handle) -> Issued:
        """Mint a new value (like the old one, ``old`` being what ``identify`` returned). Tag
        it with ``ctx.run_id`` where the issuer allows, so a crash after minting leaves
        something ``discard`` can find."""
        ...

    def verify(self, cred: CredentialInfo, issued: Issued) -> None: ...

    def discard(self, cred: CredentialInfo, handle: Handle | None, old: Handle) -> None:
        """Roll back: make this run's new value(s) invalid. ``handle`` is None when issue
        was interrupted: discard whatever this run minted (by its run id, or what is not in
        ``old``, the handle ``identify`` returned)."""
        ...

    def revoke(self, cred: CredentialInfo, stage: str, old: Handle) -> None: ...

    def still_valid(self, cred: CredentialInfo, old_value: Value) -> bool | None:
        """After revoke: does the issuer still accept the old value? None: cannot tell."""
        ...


@runtime_checkable
class Target(Protocol):
    role: ClassVar[str]  # "target"
    name: ClassVar[str]
    stages: ClassVar[bool]  # consumers see a delivered value only once it is promoted

    def __init__(
        self, spec: Mapping[str, Any], fields: Mapping[str, str], ctx: RunContext
    ) -> None: ...

    def where(self) -> str: ...

    def plan(self, cred: CredentialInfo) -> PartPlan: ...

    def read(self) -> Value | None:
        """What consumers read here now, by part (None: nothing there yet)."""
        ...

    def deliver(self, value: Value) -> Handle: ...

    def read_delivered(self, handle: Handle) -> Value | None:
        """What this run delivered (staged or live), for verify to read it back."""
        ...

    def find_delivered(self, expected: Mapping[str, str]) -> tuple[Handle, Value] | None:
        """After a crash: the value this run delivered here, if it got here, recognised by
        its fingerprints (part -> fingerprint) or the run's own markers."""
        ...

    def read_previous(self, handle: Handle) -> Value | None:
        """The value consumers read before deliver, where the store keeps it (a KV version,
        AWSCURRENT before promote, an SSM version); None where it does not."""
        ...

    def promote(self, handle: Handle) -> None: ...

    def retire(self, handle: Handle) -> None: ...

    def rollback(self, handle: Handle | None, old: Value | None) -> None: ...


# --- keyshift's first protocol, still supported for third-party rotators -------------------

STEPS = ("create", "verify", "promote", "revoke")


@dataclass(frozen=True)
class Plan:
    rotator: str
    summary: str
    steps: list[str]
    zero_downtime: bool
    manual: bool = False
    needs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Pending:
    """The new credential, by reference (e.g. a version), as the journal records it."""

    version: str
    previous_version: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Rotator(Protocol):
    """A whole rotation in one class (create -> verify -> promote -> revoke; rollback)."""

    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]
    manual: ClassVar[bool]

    def plan(self, cred: CredentialInfo) -> Plan: ...

    def create(self, cred: CredentialInfo, run_id: str) -> Pending: ...

    def verify(self, cred: CredentialInfo, pending: Pending) -> None: ...

    def promote(self, cred: CredentialInfo, pending: Pending) -> None: ...

    def revoke(self, cred: CredentialInfo, previous_version: str) -> None: ...

    def rollback(self, cred: CredentialInfo, pending: Pending) -> None: ...


RotatorFactory = Callable[[Any], Any]
