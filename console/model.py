"""The domain (DESIGN.md, "The domain"): what every part of keyshift passes around.

These are plain validated records; they hold no secret values. A credential carries a
*fingerprint* (HMAC of its value under the installation key), never the value.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Environment(StrEnum):
    dev = "dev"
    staging = "staging"
    prod = "prod"


class Sensitivity(StrEnum):
    high = "high"
    medium = "medium"
    low = "low"


class CredentialKind(StrEnum):
    vault_kv = "kv"  # a KV v2 secret in Vault / OpenBao
    vault_kv1 = "kv-v1"  # a KV v1 secret: no versions, no metadata, not rotated by keyshift
    vault_approle = "approle-secret-id"
    vault_token = "vault-token"
    vault_lease = "vault-lease"  # what a secrets engine issued with a lifetime
    aws_secret = "secretsmanager"  # an AWS Secrets Manager secret
    aws_parameter = "ssm-parameter"  # an SSM Parameter Store SecureString
    aws_iam_key = "iam-key"  # an IAM user's access key
    keyring = "keyring"  # an OS keyring entry
    api_key = "api-key"  # a provider API key declared in the inventory
    bot_token = "bot-token"
    code_host_token = "code-host-token"
    payment_key = "payment-key"
    webhook = "webhook"


class CredentialStatus(StrEnum):
    active = "active"
    inactive = "inactive"  # e.g. an IAM key set Inactive
    stale = "stale"  # its source failed to sync; what we knew is kept
    gone = "gone"  # no longer in its source (row kept: history matters)


class RunStatus(StrEnum):
    """A rotation run's status: the one vocabulary the engine, store, CLI and TUI share."""

    running = "running"  # steps in progress (or interrupted: resume or roll back)
    awaiting_revoke = "awaiting-revoke"  # promoted; the old value stays valid until revoke
    completed = "completed"  # the old value is revoked and retired
    rolled_back = "rolled-back"  # failed before promote; only the old value is valid
    rollback_failed = "rollback-failed"  # failed, and undoing it failed too: resumable
    abandoned = "abandoned"  # a person gave up on it (audited); it no longer holds its claim


# A run in one of these holds its claim: no other run may start on the same thing.
ACTIVE_RUN_STATUSES = (
    RunStatus.running.value,
    RunStatus.awaiting_revoke.value,
    RunStatus.rollback_failed.value,
)
TERMINAL_RUN_STATUSES = (
    RunStatus.completed.value,
    RunStatus.rolled_back.value,
    RunStatus.abandoned.value,
)


class StepStatus(StrEnum):
    started = "started"
    done = "done"
    failed = "failed"


class FindingStatus(StrEnum):
    open = "open"
    accepted = "accepted"
    resolved = "resolved"


class Severity(StrEnum):
    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"
    info = "info"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=True)


def credential_id(source: str, kind: str, native_id: str) -> str:
    """The stable id ``<source>:<kind>:<native id>`` (DESIGN.md)."""
    return f"{source}:{kind}:{native_id}"


class Credential(_Record):
    id: str
    source: str
    kind: str
    native_id: str
    name: str
    location: str = ""  # where it lives: a path, an ARN, a file
    owner: str | None = None
    environment: str | None = None
    scope: str | None = None  # what it grants, in words or a policy summary
    sensitivity: str | None = None
    created_at: datetime | None = None
    rotated_at: datetime | None = None
    expires_at: datetime | None = None
    ttl_seconds: int | None = None
    last_used_at: datetime | None = None
    last_used_evidence: str | None = None  # e.g. "aws:GetAccessKeyLastUsed", "vault:audit"
    rotator: str | None = None
    max_age_days: int | None = None
    fingerprint: str | None = None  # HMAC-SHA256 under the installation key, hex
    version: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    status: str = CredentialStatus.active.value
    agents: list[str] = Field(default_factory=list)  # derived from grants; filled by the store
    finding: str | None = None  # its most severe open finding's severity; filled by the store
    # the evidence that covers its whole life and shows no use (last use ``never``), named as
    # last_used_evidence is; computed by the store at read time from the evidence's coverage
    no_use_evidence: str | None = None
    # store bookkeeping
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    gone_at: datetime | None = None
    stale_since: datetime | None = None
    stale_error: str | None = None


class Grant(_Record):
    agent: str
    credential_id: str
    capabilities: list[str] = Field(default_factory=list)
    chain: list[str] = Field(default_factory=list)  # agent -> identity -> policy -> rule
    used: bool = False


class UsageEvent(_Record):
    credential_id: str
    at: datetime
    identity: str | None = None
    remote: str | None = None
    operation: str | None = None
    evidence: str  # "vault:audit", "aws:last-used", "declared"


class ReadPosition(_Record):
    """How far a collector has read an append-only evidence log (a Vault file audit device).
    ``inode`` and ``head`` (a hash of the first line) tell the same file from a rotated or
    replaced one; ``offset`` is the end of the last complete line read."""

    log: str
    inode: int
    offset: int
    head: str
    malformed: int = 0  # lines skipped as unparseable, over the log's life as keyshift saw it
    # the time of the first line keyshift has read without a gap since: use evidence covers
    # everything after it (None: not known)
    covers_since: datetime | None = None


class ItemError(_Record):
    """A part of a source that failed while the rest succeeded (a denied path, a throttled call)."""

    where: str
    message: str


class Finding(_Record):
    id: str
    rule: str
    credential_id: str | None = None
    agent: str | None = None
    severity: str
    title: str
    detail: str = ""
    status: str = FindingStatus.open.value
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    accepted_until: datetime | None = None
    accepted_reason: str | None = None


class AuditEntry(_Record):
    seq: int
    at: datetime
    actor: str
    action: str
    target: str = ""
    detail: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    hash: str
    key_id: str | None = None  # the audit key an entry is keyed with; None: unkeyed (older)
