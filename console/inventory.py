"""The inventory file's schema: what sample_inventory.yaml may say, as pydantic models.

Loading (YAML with positions, error messages with file:line:col) lives in console/config.py;
this module only says what is valid. Every model forbids unknown keys.

Secrets never appear here: fields that need one take a reference ``keyring:<service>/<name>``
(DESIGN.md invariant 3), checked by ``SecretRef``.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from console.model import Environment, Sensitivity

KEYRING_REF = re.compile(r"^keyring:(?P<service>[^/\s]+)/(?P<name>[^\s]+)$")
NAME = r"^[a-z0-9][a-z0-9._-]*$"


def _check_ref(value: str) -> str:
    if not KEYRING_REF.match(value):
        raise ValueError(
            "expected a reference of the form keyring:<service>/<name>, not a literal value"
        )
    return value


SecretRef = Annotated[str, AfterValidator(_check_ref)]
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
    kv_mounts: list[str] = Field(default_factory=lambda: ["secret"])
    approle_mount: str = "approle"
    # read each value (in memory only) to fingerprint it, which is how reuse is found
    fingerprint: bool = True
    # the server's file audit log, for usage evidence (the sandbox's is found by itself)
    audit_log: str | None = None

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
    endpoint_url: str | None = None
    services: list[Literal["secretsmanager", "ssm", "iam"]] = Field(
        default_factory=lambda: ["secretsmanager", "ssm", "iam"]
    )
    fingerprint: bool = True  # read Secrets Manager / SSM values (in memory) to fingerprint them


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


# --- declared credentials ---------------------------------------------------------------


class EnvFileTarget(_Model):
    type: Literal["env-file"]
    path: str  # relative to the inventory file
    var: str


class KeyringTarget(_Model):
    type: Literal["keyring"]
    ref: SecretRef


Delivery = Annotated[EnvFileTarget | KeyringTarget, Field(discriminator="type")]


class Generator(_Model):
    length: int = Field(default=40, ge=16, le=512)
    alphabet: Literal["alnum", "hex", "urlsafe", "printable"] = "alnum"
    prefix: str = ""


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
    rotator: str | None = None  # e.g. "manual"
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
    rotator: str | None = "vault-kv"
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


class SeedAwsParameter(_Model):
    name: str
    region: str = "us-east-1"
    owner: str | None = None
    environment: Environment
    same_value_as: str | None = None
    generator: Generator = Field(default_factory=Generator)


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


# --- the whole file ---------------------------------------------------------------------


class Inventory(_Model):
    version: Literal[1] = 1
    agents: list[Agent] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    policies: Policies = Field(default_factory=Policies)
    credentials: list[DeclaredCredential] = Field(default_factory=list)
    sandbox: SandboxSeed | None = None
