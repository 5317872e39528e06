"""A rotation run's records: results, the retry policy, the run being driven, and small
helpers the engine's parts share."""


from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from console.errors import (
    RotationError,
)
from console.model import Credential, RunStatus
from console.rotation.context import RunContext
from console.rotation.plan import RotationPlan
from console.rotation.specs import Spec, TargetSpec
from rotators.base import (
    CredentialInfo,
    Handle,
    Value,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)
T = TypeVar("T")

RUNNING = RunStatus.running.value
AWAITING_REVOKE = RunStatus.awaiting_revoke.value
COMPLETED = RunStatus.completed.value
ROLLED_BACK = RunStatus.rolled_back.value
ROLLBACK_FAILED = RunStatus.rollback_failed.value
ABANDONED = RunStatus.abandoned.value
MAX_GRACE = timedelta(days=365)

# (step, status, message); status: started, done, failed, retrying, scheduled, waiting
Progress = Callable[[str, str, str], None]


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded, jittered exponential backoff for retryable step errors."""

    attempts: int = 6
    base_seconds: float = 0.5
    cap_seconds: float = 8.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1)))


@dataclass
class RunResult:
    run_id: str
    credential_id: str
    rotator: str
    status: str
    version: str | None = None
    previous_version: str | None = None
    revoke_after: datetime | None = None
    error: str | None = None
    waiting: str | None = None  # what the run waits for (a person, the grace period)

    @property
    def ok(self) -> bool:
        """The new value is promoted, and nothing failed since."""
        return self.status in (AWAITING_REVOKE, COMPLETED) and not self.error

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["revoke_after"] = self.revoke_after.isoformat() if self.revoke_after else None
        return data


class RotationFailed(RotationError):
    """A run did not promote; ``result`` says whether it was rolled back."""

    def __init__(self, message: str, *, hint: str | None, result: RunResult) -> None:
        super().__init__(message, hint=hint)
        self.result = result


class StepFailed(Exception):
    def __init__(self, step: str, message: str, *, waiting: bool = False) -> None:
        super().__init__(message)
        self.step = step
        self.message = message
        self.waiting = waiting


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def credential_info(cred: Credential) -> CredentialInfo:
    """What a plug-in sees: identity and metadata (a source's custom metadata lands in tags)."""
    metadata: dict[str, Any] = dict(cred.tags)
    for key in ("owner", "environment", "scope", "sensitivity", "rotator", "location"):
        value = getattr(cred, key)
        if value is not None and key not in metadata:
            metadata[key] = value
    return CredentialInfo(
        id=cred.id,
        source=cred.source,
        kind=cred.kind,
        native_id=cred.native_id,
        name=cred.name,
        location=cred.location,
        version=cred.version,
        environment=cred.environment,
        metadata=metadata,
    )


@dataclass
class Planned:
    plan: RotationPlan
    issuer: Any = None
    targets: list[Any] = field(default_factory=list)
    old_values: dict[int, Value | None] = field(default_factory=dict)
    old_handle: Handle = field(default_factory=dict)


@dataclass
class Run:
    """One run being driven: what every step needs, rebuilt from the journal on resume."""

    run_id: str
    cred: Credential
    info: CredentialInfo
    spec: Spec
    issuer: Any
    targets: list[Any]
    ctx: RunContext
    actor: str
    grace: timedelta
    progress: Progress | None
    old_handle: Handle = field(default_factory=dict)
    old_fps: dict[int, dict[str, str]] = field(default_factory=dict)
    old_values: dict[int, Value | None] = field(default_factory=dict)
    new_handle: Handle | None = None
    new_fps: dict[str, str] = field(default_factory=dict)
    new_value: Value | None = None
    delivered: dict[int, Handle] = field(default_factory=dict)
    # the last step's "done", journaled with the next step's "started" (or the next status
    # change) in one transaction: half the commits, and a crash in between only re-runs an
    # idempotent step
    pending: tuple[int, str, dict, int] | None = None

    def emit(self, step: str, status: str, message: str = "") -> None:
        if self.progress:
            try:
                self.progress(step, status, self.ctx.scope.redact(message))
            except Exception as exc:
                # a watcher that went away (the TUI quit) must not stop a run half-way
                log.warning("rotation progress callback failed: %s", type(exc).__name__)
                self.progress = None





def done(steps: dict[str, dict], name: str) -> bool:
    row = steps.get(name)
    return bool(row) and row["status"] == "done"


def stage_step(stage: str) -> str:
    """The journal name of a revoke stage: "revoke", or "revoke:<stage>" for issuers with
    several (IAM: revoke:deactivate, revoke:delete)."""
    return "revoke" if stage == "revoke" else f"revoke:{stage}"


def in_phase1(step: str) -> bool:
    return step.split(":")[0] in ("identify", "issue", "deliver", "verify", "promote")


def fingerprints_of(run: Run, value: Value | None) -> dict[str, str]:
    return {part: run.ctx.fingerprint(v) for part, v in (value or {}).items()}


def parts_for(value: Value, target: Any) -> Value:
    return {p: v for p, v in value.items() if p in target.fields} or value


def value_fingerprint(run: Run, target: Any) -> str | None:
    """The fingerprint sync will compute for the target's credential row after rotation:
    of the whole value when the target holds one part, else None (sync refreshes it)."""
    parts = [p for p in run.new_fps if p in target.fields]
    if len(parts) == 1 and len(run.targets) >= 1 and target.name in ("env-file", "keyring",
                                                                        "ssm"):
        return run.new_fps[parts[0]]
    if target.name == "secretsmanager" and getattr(target, "whole", False) and len(parts) == 1:
        return run.new_fps[parts[0]]
    return None


def previous_version_of(run: Run) -> str | None:
    for handle in run.delivered.values():
        if handle.get("previous_version") is not None:
            return str(handle["previous_version"])
    return None


def audit_detail(detail: dict) -> dict:
    """What of a step's journal detail goes into its audit entry: handles and fingerprints
    (references), flattened one level so the entry reads well."""
    return {k: v for k, v in detail.items() if k in ("handle", "fingerprints", "old", "says",
                                                     "still_valid", "old_fingerprints")}


def where_of(t: TargetSpec) -> str:
    spec = t.spec
    if t.type == "vault-kv":
        return f"{spec['source']} {spec['path']}"
    if t.type == "secretsmanager":
        return f"{spec['source']} secret {spec['secret']}"
    if t.type == "ssm":
        return f"{spec['source']} parameter {spec['parameter']}"
    if t.type == "env-file":
        return f"{spec['path']} ({', '.join(t.fields.values())})"
    return ", ".join(t.fields.values()) or str(spec.get("ref", ""))

