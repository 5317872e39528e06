"""The inventory file's schema: what sample_inventory.yaml may say, as pydantic models.

Loading (YAML with positions, error messages with file:line:col) lives in console/config.py;
this module only says what is valid. Every model forbids unknown keys.

Secrets never appear here: fields that need one take a reference (DESIGN.md invariant 3),
checked by ``SecretRef``: ``keyring:<service>/<name>`` (the OS keyring), ``env:<NAME>`` (an
environment variable), ``file:<path>`` (an absolute or ``~`` path to a 0600 file) or
``credential:<NAME>`` (a systemd credential). ``console/secret_refs.py`` resolves them.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from console.model import Environment, Sensitivity
from rotators.values import MIN_GENERATED_BITS, entropy_bits, min_length

KEYRING_REF = re.compile(r"^keyring:(?P<service>[^/\s]+)/(?P<name>[^\s]+)$")
# Every kind of reference to one of keyshift's own secrets. A file path is absolute or starts
# with ~ (a relative one would depend on the directory keyshift happens to run in); a systemd
# credential's name is a file name in $CREDENTIALS_DIRECTORY, so it has no slash.
SECRET_REF = re.compile(
    r"^(?:keyring:(?P<service>[^/\s]+)/(?P<name>[^\s]+)"
    r"|env:(?P<env>[A-Za-z_][A-Za-z0-9_]*)"
    r"|file:(?P<file>(?:/|~)[^\x00\n\r]*)"
    r"|credential:(?P<credential>(?!\.\.?$)[A-Za-z0-9_.@:-]+))$"
)
REF_FORMS = (
    "keyring:<service>/<name>, env:<NAME>, file:<absolute path> (mode 0600) "
    "or credential:<NAME> (systemd)"
)
NAME = r"^[a-z0-9][a-z0-9._-]*$"


def _check_ref(value: str) -> str:
    if not SECRET_REF.match(value):
        raise ValueError(f"expected a reference ({REF_FORMS}), not a literal value")
    return value


def _check_keyring_ref(value: str) -> str:
    if not KEYRING_REF.match(value):
        raise ValueError("expected a keyring entry, keyring:<service>/<name>")
    return value


SecretRef = Annotated[str, AfterValidator(_check_ref)]
# an agent's keyring entry that a rotation writes to: only the keyring can be written
KeyringRef = Annotated[str, AfterValidator(_check_keyring_ref)]
Name = Annotated[str, Field(pattern=NAME, min_length=1, max_length=64)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


# --- agents -----------------------------------------------------------------------------


class VaultIdentity(_Model):
    type: Literal["vault-approle", "vault-token-role", "vault-entity"]
    source: str  # a vault source name
    role: str  # AppRole role / token role / entity name
    policies: list[str] = Field(default_factory=list)  # seeded into the sandbox; found by sync


class AwsIdentity(_Model):
    type: Literal["aws-iam-user", "aws-iam-role"]
    source: str  # an aws source name
    name: str  # IAM user or role name


class KeyringIdentity(_Model):
    type: Literal["keyring"]
    source: str  # a keyring source name
    service: str


class WorkspaceIdentity(_Model):
    type: Literal["workspace"]
    path: str  # relative to the inventory file
    env_files: list[str] = Field(default_factory=list)


Identity = Annotated[
    VaultIdentity | AwsIdentity | KeyringIdentity | WorkspaceIdentity,
    Field(discriminator="type"),
]


class Agent(_Model):
    name: Name
    owner: str | None = None
    environment: Environment
    description: str = ""
    identities: list[Identity] = Field(default_factory=list)


# --- sources ----------------------------------------------------------------------------


class VaultSource(_Model):
    name: Name
    type: Literal["vault", "openbao"]
    environment: Environment | None = None
    # ``sandbox: true`` takes address and token from the running keyshift sandbox.
    sandbox: bool = False
    address: str | None = None
    token: SecretRef | None = None
    approle: dict[str, SecretRef] | None = None  # {role_id: ref, secret_id: ref}
    namespace: str | None = None
    # allow a plain-http address to another host (the token crosses the network in clear)
    insecure: bool = False
    # the KV mounts to list; absent: every KV mount the token can see
    kv_mounts: list[str] | None = None
    approle_mount: str = "approle"
    # list tokens (by accessor) and AppRole secret-ids too; never their values
    auth: bool = True
    # list leases that secrets engines issued (not token leases: those are the tokens)
    leases: bool = True
    # read each value (in memory only) to fingerprint it, which is how reuse is found
    fingerprint: bool = True
    # the server's file audit log, for usage evidence (the sandbox's is found by itself)
    audit_log: str | None = None
    # a custom-metadata key whose value declares what a secret holds (console/rotation/specs)
    issuer_tag: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]+$")

    @model_validator(mode="after")
    def _address_or_sandbox(self) -> VaultSource:
        if not self.sandbox and not self.address:
            raise ValueError("give an address, or sandbox: true to use the local sandbox")
        return self


class AwsSource(_Model):
    name: Name
    type: Literal["aws"]
    environment: Environment | None = None
    sandbox: bool = False
    account_id: str | None = None
    regions: list[str] = Field(default_factory=lambda: ["us-east-1"])
    profile: str | None = None  # the provider's standard chain when absent
    # an IAM role to read the account as (another account's, say): assumed with the
    # profile's (or the chain's) credentials, and assumed again before they expire
    role_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/\S+$")
    external_id: str | None = None
    endpoint_url: str | None = None
    # a fixed access key by reference (a server with no profile: env:, file:, credential:)
    access_key_id: SecretRef | None = None
    secret_access_key: SecretRef | None = None
    services: list[Literal["secretsmanager", "ssm", "iam"]] = Field(
        default_factory=lambda: ["secretsmanager", "ssm", "iam"]
    )
    fingerprint: bool = True  # read Secrets Manager / SSM values (in memory) to fingerprint them
    # a tag whose value declares what a secret or parameter holds (console/rotation/specs)
    issuer_tag: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:/=+@-]+$")
    # CloudTrail LookupEvents as use evidence. Off unless asked: an account or endpoint that
    # refuses it (moto has no LookupEvents) would turn every sync of the source partial
    cloudtrail: bool = False
    # how far back the first read goes; LookupEvents keeps 90 days
    cloudtrail_days: int = Field(default=7, ge=1, le=90)
    # CloudTrail's own endpoint, when endpoint_url (which would apply to it too) must not
    cloudtrail_endpoint_url: str | None = None

    @model_validator(mode="after")
    def _one_way_to_sign_in(self) -> AwsSource:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("give both access_key_id and secret_access_key, or neither")
        if self.access_key_id is not None and (self.profile or self.sandbox):
            raise ValueError("give a profile, sandbox: true or an access key, not two of them")
        return self


class KeyringSource(_Model):
    name: Name
    type: Literal["keyring"]
    environment: Environment | None = None


class DeclaredSource(_Model):
    name: Name
    type: Literal["declared"]


Source = Annotated[
    VaultSource | AwsSource | KeyringSource | DeclaredSource, Field(discriminator="type")
]


# --- policies ---------------------------------------------------------------------------


class AgePolicy(_Model):
    max_age_days: int = Field(gt=0)
    max_ttl_days: int | None = Field(default=None, gt=0)
    stale_after_days: int = Field(default=90, gt=0)


class Policies(_Model):
    by_sensitivity: dict[Sensitivity, AgePolicy] = Field(default_factory=dict)
    default_owner: str | None = None
    owners_by_environment: dict[Environment, str] = Field(default_factory=dict)
    grace_period_hours: float = Field(default=24, ge=0)


# --- rotation: who issues a value, where consumers read it -------------------------------
# A rotation is declared as one issuer (who mints and revokes the value) and the targets it is
# delivered to. What a store's secret holds is never guessed: undeclared means a person
# rotates it by hand (the manual checklist), never a random value in its place.

PART = r"^[a-z][a-z0-9_]*$"
Part = Annotated[str, Field(pattern=PART, min_length=1, max_length=40)]


class Generator(_Model):
    """How keyshift mints a value itself. At least 128 bits of entropy, wherever declared."""

    length: int = Field(default=40, ge=1, le=512)
    alphabet: Literal["alnum", "hex", "urlsafe", "printable"] = "alnum"
    prefix: str = Field(default="", max_length=32)

    @model_validator(mode="after")
    def _enough_entropy(self) -> Generator:
        bits = entropy_bits(self.length, self.alphabet)
        if bits < MIN_GENERATED_BITS:
            raise ValueError(
                f"{self.length} {self.alphabet} characters give {bits:.0f} bits of entropy; "
                f"a generated value needs at least {MIN_GENERATED_BITS} (length >= "
                f"{min_length(self.alphabet)} for {self.alphabet})"
            )
        return self


class VerifyHook(_Model):
    """An HTTP request that tells whether a value works: the value goes in one header only."""

    method: Literal["GET", "POST", "HEAD"] = "GET"
    url: str = Field(pattern=r"^https?://[^\s{}]+$")
    header: str = Field(default="Authorization", pattern=r"^[A-Za-z0-9-]+$")
    format: str = "Bearer {value}"
    valid: list[int] = Field(default_factory=lambda: [200], min_length=1)
    refused: list[int] = Field(default_factory=lambda: [401, 403], min_length=1)
    # a JSON body field that must be true for the value to count as valid (Slack's "ok")
    json_ok: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]+$")
    timeout_seconds: float = Field(default=10, gt=0, le=120)

    @model_validator(mode="after")
    def _value_once(self) -> VerifyHook:
        if self.format.count("{value}") != 1 or self.format.replace("{value}", "").count("{"):
            raise ValueError("format must contain {value} exactly once and no other {field}")
        if set(self.valid) & set(self.refused):
            raise ValueError("a status cannot mean both valid and refused")
        return self


class Provider(_Model):
    """A provider whose keys a person mints and revokes (OpenAI, Stripe, GitHub, ...)."""

    name: Name
    console_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    verify: VerifyHook | None = None
    # the hook goes to the sandbox's loopback stand-in of this provider, not the real one
    sandbox: bool = False


class GeneratedIssuer(_Model):
    type: Literal["generated"]
    generator: Generator = Field(default_factory=Generator)
    parts: list[Part] = Field(default_factory=lambda: ["value"], min_length=1)
    verify: VerifyHook | None = None


class ProviderIssuer(_Model):
    type: Literal["provider"]
    provider: Name
    parts: list[Part] = Field(default_factory=lambda: ["value"], min_length=1)


class VaultAppRoleIssuer(_Model):
    type: Literal["vault-approle"]
    source: str
    role: str = Field(min_length=1)
    mount: str | None = None  # default: the source's approle_mount


class VaultTokenIssuer(_Model):
    type: Literal["vault-token"]
    source: str
    role: str | None = None  # a token role to create it under; default: the old token's role
    ttl: str | None = Field(default=None, pattern=r"^[0-9]+[smhd]?$")  # default: the old's


class AwsIamIssuer(_Model):
    type: Literal["aws-iam"]
    source: str
    user: str = Field(min_length=1)


Issuer = Annotated[
    GeneratedIssuer | ProviderIssuer | VaultAppRoleIssuer | VaultTokenIssuer | AwsIamIssuer,
    Field(discriminator="type"),
]
ISSUER_PARTS = {
    "vault-approle": ("secret_id",),
    "vault-token": ("token",),
    "aws-iam": ("access_key_id", "secret_access_key"),
}


def issuer_parts(issuer: Issuer) -> tuple[str, ...]:
    fixed = ISSUER_PARTS.get(issuer.type)
    return fixed if fixed is not None else tuple(issuer.parts)  # type: ignore[union-attr]


class KvTarget(_Model):
    type: Literal["vault-kv"]
    source: str
    path: str = Field(pattern=r"^[^/\s]+/\S+$")  # <mount>/<path>
    key: str | None = None  # the KV key a one-part value goes to (default "value")
    keys: dict[Part, str] | None = None  # part -> KV key, for several parts


class SecretsManagerTarget(_Model):
    type: Literal["secretsmanager"]
    source: str
    secret: str = Field(min_length=1)  # name or ARN
    region: str | None = None
    json_key: str | None = None  # the secret is a JSON object; a one-part value goes here
    json_keys: dict[Part, str] | None = None  # part -> JSON key, for several parts


class SsmTarget(_Model):
    type: Literal["ssm"]
    source: str
    parameter: str = Field(min_length=1)
    region: str | None = None
    label: str = Field(default="keyshift-current", pattern=r"^[A-Za-z0-9_.-]+$")


class EnvFileTarget(_Model):
    type: Literal["env-file"]
    path: str  # relative to the inventory file
    var: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    vars: dict[Part, Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> EnvFileTarget:
        if (self.var is None) == (self.vars is None):
            raise ValueError("give var (one variable) or vars (part -> variable), not both")
        return self


class KeyringTarget(_Model):
    type: Literal["keyring"]
    ref: KeyringRef | None = None
    refs: dict[Part, KeyringRef] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> KeyringTarget:
        if (self.ref is None) == (self.refs is None):
            raise ValueError("give ref (one entry) or refs (part -> entry), not both")
        return self


Delivery = Annotated[EnvFileTarget | KeyringTarget, Field(discriminator="type")]
Target = Annotated[
    KvTarget | SecretsManagerTarget | SsmTarget | EnvFileTarget | KeyringTarget,
    Field(discriminator="type"),
]


def target_fields(target: Target, parts: tuple[str, ...]) -> dict[str, str]:
    """part -> the field it is written to at ``target`` (a KV key, JSON key, env var, ref).
    A one-part value may name its field with the singular form, or take the default."""
    if isinstance(target, KvTarget):
        many, one, default = target.keys, target.key, "value"
    elif isinstance(target, SecretsManagerTarget):
        many, one, default = target.json_keys, target.json_key, ""  # "": the whole string
    elif isinstance(target, SsmTarget):
        many, one, default = None, None, ""
    elif isinstance(target, EnvFileTarget):
        many, one, default = target.vars, target.var, None
    else:
        many, one, default = target.refs, target.ref, None
    if many is not None:
        return dict(many)
    if len(parts) == 1:
        field = one if one is not None else default
        return {parts[0]: field} if field is not None else {}
    return {}


class Rotation(_Model):
    name: Name
    issuer: Issuer
    targets: list[Target] = Field(min_length=1)
    agents: list[str] = Field(default_factory=list)  # who reads it (for the inventory)
    owner: str | None = None
    environment: Environment | None = None
    sensitivity: Sensitivity = Sensitivity.medium
    scope: str = ""
    grace_period_hours: float | None = Field(default=None, ge=0, le=8760)


# --- declared credentials ---------------------------------------------------------------


class DeclaredCredential(_Model):
    name: Name
    source: str  # a declared source name
    kind: Literal["api-key", "bot-token", "code-host-token", "payment-key", "webhook", "other"]
    provider: str  # openai, anthropic, stripe, github, slack, ...
    owner: str | None = None
    environment: Environment
    scope: str = ""
    sensitivity: Sensitivity = Sensitivity.medium
    created: date | None = None
    rotated: date | None = None
    expires: date | None = None  # absent = never expires (a finding)
    last_used: date | None = None
    agents: list[str] = Field(default_factory=list)
    delivered_to: list[Delivery] = Field(default_factory=list)
    rotator: str | None = None  # a third-party rotator's name; default: the provider checklist
    tags: dict[str, str] = Field(default_factory=dict)


# --- sandbox seed -----------------------------------------------------------------------
# What `keyshift sandbox seed` plants so the demo and the tests have something real to find.
# Values are generated at seed time (never written in this file); ``same_value_as`` makes two
# entries share one generated value, to demonstrate reuse detection.


class SeedVaultSecret(_Model):
    path: str  # under the kv mount, e.g. agents/support/openai
    mount: str = "secret"
    owner: str | None = None
    environment: Environment
    scope: str = ""
    sensitivity: Sensitivity = Sensitivity.medium
    rotator: str | None = None  # a third-party rotator's name, written as custom metadata
    # what the secret holds, written under the source's issuer_tag (console/rotation/specs):
    # "generated", "provider:openai", "password=provider:orders-db;username=static", ...
    issuer: str | None = None
    generator: Generator = Field(default_factory=Generator)
    same_value_as: str | None = None  # another seed's key: "vault:<mount>/<path>" etc.
    age_days: int = Field(default=0, ge=0)  # recorded as custom metadata "created" back-dated
    keys: list[str] = Field(default_factory=lambda: ["value"])
    # False: never read by the seeded agents, so the secret shows up as an unused grant
    seed_reads: bool = True


class SeedVaultPolicy(_Model):
    name: Name
    rules: list[dict[str, list[str]]]  # [{"<path glob>": [capabilities]}, ...]


class SeedAwsSecret(_Model):
    name: str
    region: str = "us-east-1"
    owner: str | None = None
    environment: Environment
    scope: str = ""
    sensitivity: Sensitivity = Sensitivity.medium
    same_value_as: str | None = None
    generator: Generator = Field(default_factory=Generator)
    tags: dict[str, str] = Field(default_factory=dict)  # Secrets Manager tags
    issuer: str | None = None  # written as the source's issuer_tag


class SeedAwsParameter(_Model):
    name: str
    region: str = "us-east-1"
    owner: str | None = None
    environment: Environment
    same_value_as: str | None = None
    generator: Generator = Field(default_factory=Generator)
    issuer: str | None = None  # written as the source's issuer_tag


class SeedIamUser(_Model):
    name: str
    keys: int = Field(default=1, ge=0, le=2)
    owner: str | None = None
    environment: Environment
    policy_arns: list[str] = Field(default_factory=list)
    inline_policy: dict | None = None


class SeedKeyringEntry(_Model):
    service: str
    name: str
    owner: str | None = None
    environment: Environment
    same_value_as: str | None = None
    generator: Generator = Field(default_factory=Generator)


class SeedLeak(_Model):
    """A secret left in plain text in an agent's workspace, so the demo's scan finds one: the
    value of a declared credential where it was never delivered (``value_of``), or a made-up
    secret of a well-known shape (``shape``). ``text`` is the line written, ``{value}`` in it."""

    path: str  # a file, relative to the inventory file
    value_of: str | None = Field(default=None, pattern=r"^declared:[A-Za-z0-9_.-]+$")
    shape: Literal["github-token", "aws-access-key"] | None = None
    text: str = Field(default="{value}", pattern=r"\{value\}")

    @model_validator(mode="after")
    def _one_value(self) -> SeedLeak:
        if (self.value_of is None) == (self.shape is None):
            raise ValueError("give exactly one of value_of (declared:<name>) or shape")
        return self


class SandboxSeed(_Model):
    vault_source: str | None = None
    aws_source: str | None = None
    vault_secrets: list[SeedVaultSecret] = Field(default_factory=list)
    vault_policies: list[SeedVaultPolicy] = Field(default_factory=list)
    aws_secrets: list[SeedAwsSecret] = Field(default_factory=list)
    aws_parameters: list[SeedAwsParameter] = Field(default_factory=list)
    iam_users: list[SeedIamUser] = Field(default_factory=list)
    keyring_entries: list[SeedKeyringEntry] = Field(default_factory=list)
    # declared credentials whose delivery targets get a generated value at seed time
    declared_values: dict[str, str | None] = Field(
        default_factory=dict,
        description="declared credential name -> name of another whose value it shares, or null",
    )
    leaks: list[SeedLeak] = Field(default_factory=list)


# --- unattended: the schedule and where alerts go ---------------------------------------

_DURATION = re.compile(r"^(?P<n>\d+)\s*(?P<unit>s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# the words an ops person writes for a cadence; a month and a quarter are fixed lengths here,
# so "monthly" is every 30 days, not the same day each month
_CADENCES = {
    "hourly": 3600,
    "daily": 86400,
    "weekly": 7 * 86400,
    "monthly": 30 * 86400,
    "quarterly": 91 * 86400,
}


def _parse_duration(value: object) -> object:
    if isinstance(value, timedelta) or not isinstance(value, str):
        return value
    text = value.strip().lower()
    if text in _CADENCES:
        return timedelta(seconds=_CADENCES[text])
    match = _DURATION.match(text)
    if not match:
        raise ValueError(
            "expected a duration like 90s, 15m, 6h, 7d or 2w, or hourly, daily, weekly, "
            "monthly (30d), quarterly (91d)"
        )
    return timedelta(seconds=int(match["n"]) * _UNIT_SECONDS[match["unit"]])


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration), AfterValidator(_positive)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = r"^([01]\d|2[0-3]):[0-5]\d$"


class MaintenanceWindow(_Model):
    """When rotations may run. An end before the start crosses midnight (22:00-04:00)."""

    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)
    start: str = Field(pattern=_CLOCK)
    end: str = Field(pattern=_CLOCK)
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _known_zone(self) -> MaintenanceWindow:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {self.timezone!r} (try UTC or Europe/Berlin)"
            ) from None
        if self.start == self.end:
            raise ValueError("start and end are equal: the window would be empty")
        return self


def _default_cadence() -> dict[Sensitivity, timedelta]:
    return {
        Sensitivity.high: timedelta(days=7),
        Sensitivity.medium: timedelta(days=30),
        Sensitivity.low: timedelta(days=91),
    }


class DrillJob(_Model):
    """A drill the schedule runs --auto (console/drills) against the sandbox."""

    every: Duration = timedelta(days=91)
    scenario: str = Field(min_length=1, max_length=64)


class Schedule(_Model):
    """What `keyshift schedule run` does, and how often."""

    sync_every: Duration = timedelta(hours=1)
    # how often the due-rotation playbook runs over each sensitivity's credentials
    rotate_due: dict[Sensitivity, Duration] = Field(default_factory=_default_cadence)
    # credentials with no sensitivity set that are due anyway (their own max_age_days, an
    # expiry): looked at as often as high ones, since nothing says they matter less
    rotate_due_unclassified: Duration = timedelta(days=7)
    # a credential whose expiry is nearer than this is warned about (and is due)
    expiry_warning: Duration = timedelta(days=14)
    expiry_check_every: Duration = timedelta(days=1)
    finish_due_every: Duration = timedelta(minutes=15)
    audit_verify_every: Duration = timedelta(days=1)
    findings_refresh_every: Duration = timedelta(days=1)
    # this many failed rotations of one credential in a row is a failure loop (alerted;
    # the schedule stops retrying it until a person looks)
    failure_loop: int = Field(default=3, ge=1, le=100)
    concurrency: int = Field(default=4, ge=1, le=64)
    # rotations and revokes only inside these windows (none: any time); syncs, checks and
    # alerts run any time
    maintenance_windows: list[MaintenanceWindow] = Field(default_factory=list)
    # off unless set: a scheduled drill alerts on a failed check or a lower score
    drill: DrillJob | None = None

    @field_validator("rotate_due", mode="after")
    @classmethod
    def _every_sensitivity(cls, value: dict[Sensitivity, timedelta]) -> dict:
        # naming one sensitivity changes that one; the others keep their defaults
        return {**_default_cadence(), **value}


AlertEvent = Literal[
    "rotation-failed",
    "failure-loop",
    "overdue",
    "expiring",
    "audit-broken",
    "high-finding",
    "audit-anchor",
    "drill-failed",
    "drill-regression",
]
ALERT_EVENTS: tuple[str, ...] = get_args(AlertEvent)


class WebhookAlert(_Model):
    # a reference, never the URL itself: a webhook URL (Slack's, for one) carries its own
    # token (DESIGN.md invariant 3); resolved at each send, never logged or stored
    url: SecretRef
    # sent as "Authorization: Bearer <token>" when set
    token: SecretRef | None = None
    timeout_seconds: float = Field(default=5, gt=0, le=60)


class Alerts(_Model):
    webhook: WebhookAlert | None = None
    # argv of a command run per alert, with the alert's JSON on its stdin (no shell)
    command: list[str] | None = Field(default=None, min_length=1)
    events: list[AlertEvent] = Field(default_factory=lambda: list(ALERT_EVENTS))
    retries: int = Field(default=10, ge=0, le=20)


# --- the whole file ---------------------------------------------------------------------


class Inventory(_Model):
    version: Literal[1] = 1
    agents: list[Agent] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    policies: Policies = Field(default_factory=Policies)
    providers: list[Provider] = Field(default_factory=list)
    credentials: list[DeclaredCredential] = Field(default_factory=list)
    rotations: list[Rotation] = Field(default_factory=list)
    sandbox: SandboxSeed | None = None
    schedule: Schedule = Field(default_factory=Schedule)
    alerts: Alerts = Field(default_factory=Alerts)
