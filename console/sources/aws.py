"""AWS: Secrets Manager secrets, SSM parameters and IAM users' access keys, per account.

Regions are read side by side (secrets and parameters), IAM once per account (it is global);
a region that refuses keyshift is one ItemError naming it and the rest is kept. Values
(secrets, parameters) are read only to fingerprint them and never kept: secrets 20 a request
(BatchGetSecretValue), each alone only where the batch call is refused. IAM access keys have no
readable secret half after creation, so they carry no fingerprint; the key id is not secret and
is the native id. Last use: GetAccessKeyLastUsed for keys, ListSecrets' LastAccessedDate for
secrets (a date: evidence ``aws:secretsmanager:last-accessed (day)``); with ``cloudtrail: true``,
CloudTrail's read events too (aws_trail.py: who read what, when); no evidence is unknown.

Grants, decided by aws_policy.py: an agent's ``aws-iam-user`` identity holds that user's access
keys; an ``aws-iam-user`` or ``aws-iam-role`` identity may act on the secrets / parameters its
policies allow (its own and its groups', its permission boundary, Deny, NotAction /
NotResource; a Condition makes the grant conditional), joined with each secret's resource
policy (read only when an agent's reach on this source needs it); and through each role its
user or role may assume (one step; the chain shows it). A secret under a customer-managed KMS
key makes its value actions conditional: the key policy is not read.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import botocore.config
import botocore.exceptions

from console.errors import KeyshiftError, SourceError
from console.fingerprint import fingerprint as fingerprint_of
from console.inventory import AwsIdentity
from console.model import (
    Credential,
    CredentialStatus,
    Grant,
    ItemError,
    ReadPosition,
    UsageEvent,
    credential_id,
)
from console.sources import aws_trail
from console.sources.aws_policy import (
    CONDITIONAL,
    Decision,
    PolicyDocumentError,
    Statement,
    UserPolicies,
    parse_policy_document,
)
from console.sources.base import CollectResult, Progress
from console.vocabulary import NO_USE_RECORDED

if TYPE_CHECKING:
    from console.config import LoadedInventory
    from console.connections import AwsConnection
    from console.inventory import AwsSource as AwsSourceConfig

_POOL_SIZE = 8
# botocore's "standard" retry mode backs off on throttling and transient errors
_BOTO_CONFIG = botocore.config.Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=5,
    read_timeout=20,
)
# the whole source is unusable: wrong or expired keys
_AUTH_CODES = {
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidAccessKeyId",
    "AuthFailure",
    "IncompleteSignature",
    "MissingAuthenticationToken",
}
_TAG_FIELDS = {"owner", "environment", "scope", "sensitivity", "rotator", "created"}
_SECRET_ACTIONS = [
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecret",
    "secretsmanager:RotateSecret",
    "secretsmanager:DeleteSecret",
]
_PARAMETER_ACTIONS = [
    "ssm:GetParameter",
    "ssm:GetParameters",
    "ssm:GetParametersByPath",
    "ssm:PutParameter",
    "ssm:DeleteParameter",
]


class _DropDebugBodies(logging.Filter):
    """botocore logs request parameters and response bodies at DEBUG, values included, before
    keyshift has seen (and could redact) them; such records are dropped at their source."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


def _guard_botocore_logs() -> None:
    for name in ("botocore.parsers", "botocore.endpoint", "botocore.auth"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropDebugBodies) for f in logger.filters):
            logger.addFilter(_DropDebugBodies())


_guard_botocore_logs()


def _utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _tags(items: Iterable[dict[str, Any]] | None) -> dict[str, str]:
    return {str(t.get("Key")): str(t.get("Value", "")) for t in items or [] if t.get("Key")}


def _code(exc: botocore.exceptions.ClientError) -> str:
    code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
    if code.isdigit():  # some endpoints (moto among them) answer a bare HTTP status
        return {"403": "AccessDenied", "429": "Throttling"}.get(code, f"HTTP {code}")
    return code


# ---------------------------------------------------------------------------------------
# the collector


class AwsSource:
    type = "aws"

    def __init__(self, cfg: AwsSourceConfig, loaded: LoadedInventory) -> None:
        self.name = cfg.name
        self._cfg = cfg
        self._loaded = loaded
        self._conn: AwsConnection | None = None
        self._account: str = cfg.account_id or ""
        self._endpoint = ""
        self._own_key = ""  # the access key keyshift collects with
        self._own_arn = ""  # and who it is (an assumed role's session has no fixed key)
        # where CloudTrail was read up to, by region (sync fills it from the store)
        self.start_positions: dict[str, ReadPosition] = {}
        self._want_policies = False  # read secrets' resource policies (collect decides)

    # -- plumbing --------------------------------------------------------------------------

    def _client(self, service: str, region: str | None = None) -> Any:
        assert self._conn is not None
        return self._conn.client(service, region, config=_BOTO_CONFIG)

    def _source_error(self, exc: Exception) -> SourceError:
        where = self._endpoint or "AWS"
        unreachable = (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectTimeoutError,
        )
        if isinstance(exc, unreachable):
            return SourceError(
                f"{self.name}: cannot reach {where} (connection refused)",
                hint="is the endpoint up? `keyshift sandbox up` starts the sandbox one",
            )
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return SourceError(
                f"{self.name}: no AWS credentials found",
                hint="set profile: in the source, or configure the standard AWS credential chain",
            )
        if isinstance(exc, botocore.exceptions.ClientError):
            return SourceError(
                f"{self.name}: {where} refused keyshift's credentials ({_code(exc)})",
                hint="the access key is wrong, inactive or expired",
            )
        return SourceError(
            f"{self.name}: AWS request failed ({type(exc).__name__})",
            hint="check the endpoint, region and network",
        )

    def _call(
        self,
        fn: Callable[..., Any],
        where: str,
        result: CollectResult,
        **kwargs: Any,
    ) -> Any:
        """One API call: whole-source failures raise, per-item failures become ItemErrors."""
        try:
            return fn(**kwargs)
        except botocore.exceptions.ClientError as exc:
            code = _code(exc)
            if code in _AUTH_CODES:
                raise self._source_error(exc) from None
            result.errors.append(ItemError(where=where, message=f"{code}"))
            return None
        except (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.NoCredentialsError,
        ) as exc:
            raise self._source_error(exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            result.errors.append(ItemError(where=where, message=type(exc).__name__))
            return None

    def _paginate(
        self, client: Any, op: str, key: str, where: str, result: CollectResult, **kwargs: Any
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []

        def run() -> None:
            for page in client.get_paginator(op).paginate(**kwargs):
                items.extend(page.get(key) or [])

        before = len(result.errors)
        self._call(run, where, result)
        if len(result.errors) > before:
            result.complete = False
        return items

    def _connect(self) -> None:
        from console.connections import aws_connection

        try:
            self._conn = aws_connection(self._cfg)
        except SourceError:
            raise
        except KeyshiftError as exc:
            raise SourceError(f"{self.name}: {exc.message}", hint=exc.hint) from None
        self._endpoint = self._conn.endpoint_url or "AWS"
        probe = CollectResult()
        ident = self._call(self._client("sts").get_caller_identity, "sts", probe)
        if ident is None:
            # GetCallerIdentity needs no permission: a refusal here means bad credentials
            raise SourceError(
                f"{self.name}: {self._endpoint} refused keyshift's credentials "
                f"({probe.errors[0].message if probe.errors else 'unknown'})",
                hint="the access key is wrong, inactive or expired",
            )
        self._account = self._account or str(ident.get("Account") or "")
        self._own_arn = str(ident.get("Arn") or "")
        creds = self._conn.session.get_credentials()
        self._own_key = creds.access_key if creds else ""

    # -- collect ---------------------------------------------------------------------------

    def collect(self, progress: Progress | None = None) -> CollectResult:
        self._connect()
        assert self._conn is not None
        result = CollectResult()
        services = set(self._cfg.services)
        regions = list(dict.fromkeys(self._cfg.regions or [self._conn.region]))
        # a secret's resource policy only matters to an agent's reach on this source
        self._want_policies = "iam" in services and bool(self._agent_principals())
        progress = _serialised(progress)
        trail_events = [
            *(aws_trail.SECRET_EVENTS if "secretsmanager" in services else ()),
            *(aws_trail.PARAMETER_EVENTS if "ssm" in services else ()),
        ] if self._cfg.cloudtrail else []
        trail_jobs: list[Future[aws_trail.RegionRead]] = []
        # regions (and IAM, which is global: once per account) run side by side; each job
        # keeps its own result so a failed region is reported as one and the rest is kept
        with (
            ThreadPoolExecutor(_POOL_SIZE) as pool,
            ThreadPoolExecutor(
                len(regions) * (2 if trail_events else 1) + 1, thread_name_prefix="aws-region"
            ) as jobs,
        ):
            if trail_events:
                # the trail's reads need nothing the listing finds: they run beside it
                now = datetime.now(UTC)
                trail_jobs = [
                    jobs.submit(self._trail, region, trail_events, now) for region in regions
                ]
            region_jobs = [
                (region, jobs.submit(self._region, region, i, pool, progress))
                for i, region in enumerate(regions)
            ]
            iam_job = (
                jobs.submit(self._iam, regions[0], pool, progress) if "iam" in services else None
            )
            failures: list[SourceError] = []
            secrets: list[_Secret] = []
            parameter_arns: list[tuple[str, str]] = []
            for region, job in region_jobs:
                try:
                    part, region_secrets, region_parameters = job.result()
                except SourceError as exc:
                    failures.append(exc)
                    result.errors.append(ItemError(where=f"region {region}", message=exc.message))
                    continue
                _merge(result, part)
                secrets += region_secrets
                parameter_arns += region_parameters
            found = _Iam()
            if iam_job is not None:
                try:
                    part, found = iam_job.result()
                    _merge(result, part)
                except SourceError as exc:
                    failures.append(exc)
                    result.errors.append(ItemError(where="iam", message=exc.message))
            if len(failures) == len(region_jobs) + (iam_job is not None):
                raise failures[0]  # nothing could be read: the source as a whole failed
            self._grants(found, secrets, parameter_arns, result)
        if result.errors:
            result.complete = False
        if trail_jobs:
            # after the completeness check: a trail not read leaves the listing whole (rows
            # may still be marked gone), while its ItemError still makes the sync partial
            applied = aws_trail.apply(
                [job.result() for job in trail_jobs],
                result.credentials,
                result.grants,
                self._agent_principals(),
                {self._own_key, self._own_arn} - {""},
                self.start_positions,
            )
            result.usage += applied.usage
            result.errors += applied.errors
            result.positions += applied.positions
        return result

    def _trail(self, region: str, names: list[str], now: datetime) -> aws_trail.RegionRead:
        """One region's CloudTrail read events since its position (at most the window)."""
        start = aws_trail.start_of(region, self.start_positions, now, self._cfg.cloudtrail_days)
        conn = self._conn
        assert conn is not None
        if self._cfg.cloudtrail_endpoint_url:
            # the source's endpoint_url is given to every client explicitly, which beats
            # botocore's own per-service setting (AWS_ENDPOINT_URL_CLOUDTRAIL): CloudTrail's
            # own endpoint has to be said on the source
            conn = dataclasses.replace(conn, endpoint_url=self._cfg.cloudtrail_endpoint_url)
        try:
            client = conn.client("cloudtrail", region, config=_BOTO_CONFIG)
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            return aws_trail.RegionRead(region, error=type(exc).__name__)
        return aws_trail.read_region(client, region, names, start, now)

    def _region(
        self, region: str, index: int, pool: ThreadPoolExecutor, progress: Progress | None
    ) -> tuple[CollectResult, list[_Secret], list[tuple[str, str]]]:
        """One region's Secrets Manager secrets and SSM parameters. Raises SourceError when the
        region refuses keyshift as a whole (an opt-in region not enabled answers so)."""
        part = CollectResult()
        services = set(self._cfg.services)
        secrets: list[_Secret] = []
        parameter_arns: list[tuple[str, str]] = []
        try:
            if "secretsmanager" in services:
                for secret in self._secrets(region, pool, part, progress):
                    part.credentials.append(secret.cred)
                    secrets.append(secret)
            if "ssm" in services:
                prefix = "" if index == 0 else f"{region}:"
                for cred, arn in self._parameters(region, prefix, pool, part, progress):
                    part.credentials.append(cred)
                    parameter_arns.append((arn, cred.id))
        except botocore.exceptions.BotoCoreError as exc:
            # a client botocore cannot build for this region (a malformed region name)
            raise SourceError(f"{self.name}: region {region}: {type(exc).__name__}") from None
        return part, secrets, parameter_arns

    def _fields_from_tags(self, tags: dict[str, str]) -> dict[str, Any]:
        sensitivity = tags.get("sensitivity") or None
        policy = (
            self._loaded.inventory.policies.by_sensitivity.get(sensitivity)  # type: ignore[call-overload]
            if sensitivity
            else None
        )
        env = tags.get("environment") or (
            str(self._cfg.environment) if self._cfg.environment else None
        )
        return {
            "owner": tags.get("owner") or None,
            "environment": env,
            "scope": tags.get("scope") or None,
            "sensitivity": sensitivity,
            "rotator": tags.get("rotator") or None,
            "max_age_days": policy.max_age_days if policy else None,
            "tags": {k: v for k, v in tags.items() if k not in _TAG_FIELDS},
        }

    # -- Secrets Manager ------------------------------------------------------------------

    def _secrets(
        self,
        region: str,
        pool: ThreadPoolExecutor,
        result: CollectResult,
        progress: Progress | None,
    ) -> list[_Secret]:
        client = self._client("secretsmanager", region)
        # ListSecrets already carries dates, tags, rotation, LastAccessedDate and KmsKeyId: no
        # DescribeSecret per secret
        listed = self._paginate(
            client, "list_secrets", "SecretList", f"secretsmanager {region}", result
        )
        values = self._secret_values(client, listed, pool, result)
        policies: dict[str, list[Statement] | None] = {}
        if self._want_policies:
            # no listing says which secrets have a resource policy: one call per secret, on
            # the pool, and only when an agent's reach on this source depends on it
            for arn, policy in pool.map(
                lambda item: (item["ARN"], self._resource_policy(client, item, result)), listed
            ):
                policies[arn] = policy
        out = []
        for item in listed:
            got = values.pop(item["ARN"], None)
            cred, usage = self._secret_credential(item, region, got)
            if usage:
                result.usage.append(usage)
            out.append(
                _Secret(
                    cred=cred,
                    policy=policies.get(item["ARN"], []),
                    kms_key=_customer_key(item.get("KmsKeyId")),
                )
            )
            if progress:
                progress(cred.name)
        return out

    def _secret_values(
        self,
        client: Any,
        listed: list[dict[str, Any]],
        pool: ThreadPoolExecutor,
        result: CollectResult,
    ) -> dict[str, dict[str, Any]]:
        """ARN -> GetSecretValue's answer, for fingerprints. BatchGetSecretValue reads 20 a
        request; where it is refused as a whole (an older policy that allows GetSecretValue
        only), each secret is read alone. A secret the batch could not read is an ItemError, as
        its own GetSecretValue would be."""
        if not self._cfg.fingerprint:
            return {}
        wanted = [item for item in listed if not item.get("DeletedDate")]
        names = {item["ARN"]: item.get("Name") or item["ARN"] for item in wanted}
        out: dict[str, dict[str, Any]] = {}
        batches = [wanted[i : i + _BATCH] for i in range(0, len(wanted), _BATCH)]

        def batch(items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
            """The batch's values, or None when the batch call itself was refused."""
            probe = CollectResult()
            got = self._call(
                client.batch_get_secret_value,
                "secretsmanager batch",
                probe,
                SecretIdList=[item["ARN"] for item in items],
            )
            if got is None:
                return None
            for err in got.get("Errors") or []:
                sid = str(err.get("SecretId") or "")
                result.errors.append(
                    ItemError(
                        where=f"secretsmanager {names.get(sid, sid)}",
                        message=str(err.get("ErrorCode") or "error"),
                    )
                )
            return list(got.get("SecretValues") or [])

        def alone(item: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
            got = self._call(
                client.get_secret_value,
                f"secretsmanager {names[item['ARN']]}",
                result,
                SecretId=item["ARN"],
            )
            return item["ARN"], got

        refused: list[dict[str, Any]] = []
        for items, values in zip(batches, pool.map(batch, batches), strict=True):
            if values is None:
                refused += items
                continue
            for value in values:
                out[str(value.get("ARN"))] = value
        for arn, got in pool.map(alone, refused):
            if got is not None:
                out[arn] = got
        return out

    def _resource_policy(
        self, client: Any, item: dict[str, Any], result: CollectResult
    ) -> list[Statement] | None:
        """The secret's resource policy ([] when it has none); None when keyshift could not
        read it, so what it grants or denies is unknown."""
        name = item.get("Name") or item["ARN"]
        before = len(result.errors)
        got = self._call(
            client.get_resource_policy, f"secretsmanager {name} policy", result,
            SecretId=item["ARN"],
        )
        if got is None:
            if len(result.errors) > before:
                err = result.errors[before]
                result.errors[before] = ItemError(
                    where=err.where,
                    message=f"{err.message}; what its resource policy grants or denies is unknown",
                )
            return None
        text = got.get("ResourcePolicy")
        if not text:
            return []
        try:
            return parse_policy_document(f"secret {name}", text)
        except PolicyDocumentError as exc:
            result.errors.append(
                ItemError(
                    where=f"secretsmanager {name} policy",
                    message=f"{exc}; what it grants or denies is unknown",
                )
            )
            return None

    def _secret_credential(
        self, item: dict[str, Any], region: str, got: dict[str, Any] | None
    ) -> tuple[Credential, UsageEvent | None]:
        """One ListSecrets entry (and, when read, its value to fingerprint) as a credential,
        with the usage event its LastAccessedDate is evidence of. The value is dropped here."""
        tags = _tags(item.get("Tags"))
        fields = self._fields_from_tags(tags)
        fingerprint = None
        version_created = None
        if got:
            value = got.get("SecretString")
            if value is None and got.get("SecretBinary") is not None:
                value = bytes(got["SecretBinary"])
            if value is not None:
                fingerprint = fingerprint_of(value)
            version_created = _utc(got.get("CreatedDate"))
            got.clear()  # drop the value now, not when the pool's results are collected
        current = next(
            (
                v
                for v, stages in (item.get("SecretVersionsToStages") or {}).items()
                if "AWSCURRENT" in stages
            ),
            None,
        )
        rules = item.get("RotationRules") or {}
        extra = {"region": region}
        if item.get("RotationEnabled"):
            extra["rotation"] = f"every {rules.get('AutomaticallyAfterDays', '?')} days"
        if item.get("NextRotationDate"):
            extra["next_rotation"] = _utc(item["NextRotationDate"]).isoformat()  # type: ignore[union-attr]
        kms_key = _customer_key(item.get("KmsKeyId"))
        if kms_key:
            extra["kms_key"] = kms_key
        deleted = item.get("DeletedDate")
        if deleted:
            extra["deleted"] = "scheduled"
        # AWS keeps the date only (truncated to midnight) and omits it when the secret was
        # never read; keyshift still says "unknown" then, as the omission is not evidence that
        # covers the secret's whole life (and moto never sets it)
        last_accessed = _utc(item.get("LastAccessedDate"))
        if last_accessed:
            last_accessed = last_accessed.replace(hour=0, minute=0, second=0, microsecond=0)
            extra["last_accessed"] = f"{last_accessed.date().isoformat()} (day)"
        created = _utc(tags.get("created")) or _utc(item.get("CreatedDate"))
        rotated = (
            version_created
            or _utc(item.get("LastRotatedDate"))
            or _utc(item.get("LastChangedDate"))
            or created
        )
        cred = Credential(
            id=credential_id(self.name, "secretsmanager", item["ARN"]),
            source=self.name,
            kind="secretsmanager",
            native_id=item["ARN"],
            name=item.get("Name") or item["ARN"],
            location=item["ARN"],
            created_at=created,
            rotated_at=rotated,
            last_used_at=last_accessed,
            last_used_evidence=SM_LAST_ACCESSED if last_accessed else None,
            fingerprint=fingerprint,
            version=current,
            status=CredentialStatus.inactive if deleted else CredentialStatus.active,
            **{**fields, "tags": {**fields["tags"], **extra}},
        )
        usage = None
        if last_accessed:
            usage = UsageEvent(
                credential_id=cred.id,
                at=last_accessed,
                operation="GetSecretValue",
                evidence=SM_LAST_ACCESSED,
            )
        return cred, usage

    # -- SSM Parameter Store --------------------------------------------------------------

    def _parameter_arn(self, region: str, name: str) -> str:
        return f"arn:aws:ssm:{region}:{self._account}:parameter/{name.lstrip('/')}"

    def _parameters(
        self,
        region: str,
        prefix: str,
        pool: ThreadPoolExecutor,
        result: CollectResult,
        progress: Progress | None,
    ) -> list[tuple[Credential, str]]:
        client = self._client("ssm", region)
        listed = self._paginate(
            client, "describe_parameters", "Parameters", f"ssm {region}", result
        )

        def details(item: dict[str, Any]) -> tuple[dict[str, Any], Any, Any]:
            name = item["Name"]
            tags = self._call(
                client.list_tags_for_resource,
                f"ssm {name} tags",
                result,
                ResourceType="Parameter",
                ResourceId=name,
            )
            got = None
            if self._cfg.fingerprint:
                got = self._call(
                    client.get_parameter, f"ssm {name}", result, Name=name, WithDecryption=True
                )
            return item, tags, got

        out = []
        for item, tag_resp, got in pool.map(details, listed):
            name = item["Name"]
            tags = _tags((tag_resp or {}).get("TagList"))
            fields = self._fields_from_tags(tags)
            fingerprint = None
            if got:
                value = (got.get("Parameter") or {}).get("Value")
                if isinstance(value, str):
                    fingerprint = fingerprint_of(value)
                got.clear()
            modified = _utc(item.get("LastModifiedDate"))
            arn = item.get("ARN") or self._parameter_arn(region, name)
            cred = Credential(
                id=credential_id(self.name, "ssm-parameter", prefix + name),
                source=self.name,
                kind="ssm-parameter",
                native_id=prefix + name,
                name=name,
                location=arn,
                created_at=_utc(tags.get("created")) or modified,
                rotated_at=modified,
                fingerprint=fingerprint,
                version=str(item["Version"]) if item.get("Version") is not None else None,
                **{
                    **fields,
                    "tags": {**fields["tags"], "region": region, "type": str(item.get("Type"))},
                },
            )
            out.append((cred, arn))
            if progress:
                progress(name)
        return out

    # -- IAM ----------------------------------------------------------------------------

    def _user_policies(self, iam: Any, user: dict[str, Any], result: CollectResult) -> UserPolicies:
        """The user's own policies, its groups' and its permission boundary. A document
        keyshift cannot read is named in ``result.errors`` and in ``unreadable``."""
        name = user["UserName"]
        where = f"iam user {name}"
        found = UserPolicies(name, user.get("Arn", ""))
        add = _adder(found, where, result)
        self._entity_policies(iam, "user", name, where, "", found, add, result)
        for group in self._paginate(
            iam, "list_groups_for_user", "Groups", f"{where} groups", result, UserName=name,
        ):
            gname = group["GroupName"]
            self._entity_policies(
                iam, "group", gname, f"iam group {gname}", f"group {gname}: ", found, add, result
            )
        self._boundary(iam, "user", name, where, found, add, result)
        return found

    def _role_policies(
        self, iam: Any, role: dict[str, Any], result: CollectResult
    ) -> UserPolicies:
        """A role's managed and inline policies and its permission boundary (GetRole: ListRoles
        does not carry the boundary)."""
        name = role["RoleName"]
        where = f"iam role {name}"
        found = UserPolicies(name, role.get("Arn", ""), kind="role")
        add = _adder(found, where, result)
        self._entity_policies(iam, "role", name, where, "", found, add, result)
        self._boundary(iam, "role", name, where, found, add, result)
        return found

    def _entity_policies(
        self, iam: Any, entity: str, name: str, where: str, label_prefix: str,
        found: UserPolicies, add: Callable[[str, Any, list[Statement]], None],
        result: CollectResult,
    ) -> None:
        """One IAM user's, group's or role's managed and inline policies, into ``found``."""
        attached, listed, get, key = _IAM_ENTITY[entity]
        for label, document in self._managed(iam, attached, where, result, **{key: name}):
            found.policy_names.append(label_prefix + label)
            add(label_prefix + label, document, found.statements)
        for pname in self._paginate(
            iam, listed, "PolicyNames", f"{where} inline policies", result, **{key: name}
        ):
            doc = self._call(
                getattr(iam, get), f"{where} policy {pname}", result,
                **{key: name, "PolicyName": pname},
            )
            if doc:
                found.policy_names.append(label_prefix + pname)
                add(label_prefix + pname, doc.get("PolicyDocument"), found.statements)

    def _boundary(
        self, iam: Any, entity: str, name: str, where: str, found: UserPolicies,
        add: Callable[[str, Any, list[Statement]], None], result: CollectResult,
    ) -> None:
        """A user's or role's permission boundary (GetUser / GetRole: the lists omit it)."""
        key = _IAM_ENTITY[entity][3]
        detail_key = key.removesuffix("Name")
        detail = self._call(getattr(iam, f"get_{entity}"), where, result, **{key: name}) or {}
        boundary = ((detail.get(detail_key) or {}).get("PermissionsBoundary") or {}).get(
            "PermissionsBoundaryArn"
        )
        if boundary:
            found.boundary = []
            document = self._policy_document(iam, boundary, result)
            label = f"boundary {boundary.rsplit('/', 1)[-1]}"
            if document is None:
                found.unreadable.append(label)
            else:
                add(label, document, found.boundary)

    def _managed(
        self, iam: Any, operation: str, where: str, result: CollectResult, **kwargs: Any
    ) -> list[tuple[str, Any]]:
        """(name, document) of each managed policy an operation lists."""
        out = []
        for pol in self._paginate(
            iam, operation, "AttachedPolicies", f"{where} policies", result, **kwargs
        ):
            arn = pol["PolicyArn"]
            document = self._policy_document(iam, arn, result)
            if document is not None:
                out.append((pol.get("PolicyName") or arn.rsplit("/", 1)[-1], document))
        return out

    def _policy_document(self, iam: Any, arn: str, result: CollectResult) -> Any:
        meta = self._call(iam.get_policy, f"iam policy {arn}", result, PolicyArn=arn)
        if not meta:
            return None
        version = self._call(
            iam.get_policy_version, f"iam policy {arn}", result,
            PolicyArn=arn, VersionId=meta["Policy"].get("DefaultVersionId"),
        )
        return version["PolicyVersion"].get("Document") if version else None

    def _iam(
        self, region: str, pool: ThreadPoolExecutor, progress: Progress | None
    ) -> tuple[CollectResult, _Iam]:
        """IAM is global: read once per account. Every user's access keys; the policies of
        the users and roles agents act as, and of the roles those may assume."""
        result = CollectResult()
        try:
            iam = self._client("iam", region)
        except botocore.exceptions.BotoCoreError as exc:
            raise SourceError(f"{self.name}: iam: {type(exc).__name__}") from None
        users = self._paginate(iam, "list_users", "Users", "iam users", result)
        principals = self._agent_principals()
        wanted = {name for kind, name in principals if kind == "aws-iam-user"}

        def one(user: dict[str, Any]) -> tuple[dict, dict[str, str], list, list, Any]:
            name = user["UserName"]
            tag_resp = self._call(
                iam.list_user_tags, f"iam user {name} tags", result, UserName=name
            )
            keys = self._paginate(
                iam,
                "list_access_keys",
                "AccessKeyMetadata",
                f"iam user {name} keys",
                result,
                UserName=name,
            )
            last_used = [
                self._call(
                    iam.get_access_key_last_used,
                    f"iam key {k['AccessKeyId']}",
                    result,
                    AccessKeyId=k["AccessKeyId"],
                )
                for k in keys
            ]
            policies = self._user_policies(iam, user, result) if name in wanted else None
            return user, _tags((tag_resp or {}).get("Tags")), keys, last_used, policies

        out: dict[str, UserPolicies] = {}
        for user, tags, keys, last_used, policies in pool.map(one, users):
            name = user["UserName"]
            if policies is not None:
                out[name] = policies
            fields = self._fields_from_tags(tags)
            if policies is not None and not fields["scope"]:
                fields["scope"] = ", ".join(policies.policy_names) or None
            for key, used in zip(keys, last_used, strict=True):
                key_id = key["AccessKeyId"]
                info = (used or {}).get("AccessKeyLastUsed") or {}
                last = _utc(info.get("LastUsedDate"))
                extra = {"user": name}
                if key_id == self._own_key:
                    # keyshift's own calls are this key's latest use: reporting them would
                    # show a use (and a change) on every sync
                    info, last = {}, None
                    extra["used_by"] = "keyshift (the key this source collects with)"
                for src, dst in (
                    ("ServiceName", "last_used_service"),
                    ("Region", "last_used_region"),
                ):
                    if info.get(src) and info[src] != "N/A":
                        extra[dst] = str(info[src])
                if used is not None and last is None and "used_by" not in extra:
                    # AWS answered and has no use: it records a key's last use for its whole
                    # life (since 2015), so this is evidence of no use, not a lack of it
                    extra["last_used"] = NO_USE_RECORDED
                created = _utc(key.get("CreateDate"))
                cred = Credential(
                    id=credential_id(self.name, "iam-key", key_id),
                    source=self.name,
                    kind="iam-key",
                    native_id=key_id,
                    name=f"{name}/{key_id}",
                    location=user.get("Arn") or f"iam user {name}",
                    created_at=created,
                    rotated_at=created,  # a key is never changed, only replaced
                    last_used_at=last,
                    last_used_evidence="aws:GetAccessKeyLastUsed" if last else None,
                    status=(
                        CredentialStatus.inactive
                        if key.get("Status") == "Inactive"
                        else CredentialStatus.active
                    ),
                    **{**fields, "tags": {**fields["tags"], **extra}},
                )
                result.credentials.append(cred)
                if last:
                    result.usage.append(
                        UsageEvent(
                            credential_id=cred.id,
                            at=last,
                            identity=f"iam-user:{name}",
                            operation=extra.get("last_used_service"),
                            remote=extra.get("last_used_region"),
                            evidence="aws:GetAccessKeyLastUsed",
                        )
                    )
                if progress:
                    progress(cred.name)
        found = _Iam(users=out)
        if principals:
            found.roles, found.assumable = self._roles(iam, pool, found.users, result)
        return result, found

    def _roles(
        self,
        iam: Any,
        pool: ThreadPoolExecutor,
        users: dict[str, UserPolicies],
        result: CollectResult,
    ) -> tuple[dict[str, UserPolicies], dict[str, list[tuple[str, Decision]]]]:
        """The policies of the roles agents act as, and of the roles an agent's user or role
        may assume (one step: its policies and the role's trust policy decide), with how."""
        listed = self._paginate(iam, "list_roles", "Roles", "iam roles", result)
        roles = {r["RoleName"]: r for r in listed}
        principals = self._agent_principals()
        own = [name for kind, name in principals if kind == "aws-iam-role" and name in roles]

        def policies_of(names: list[str]) -> dict[str, UserPolicies]:
            read = pool.map(lambda n: self._role_policies(iam, roles[n], result), names)
            return dict(zip(names, read, strict=True))

        found = policies_of(own)
        trusts: dict[str, list[Statement]] = {}
        for name, role in roles.items():
            try:
                trusts[name] = parse_policy_document(
                    f"trust {name}", role.get("AssumeRolePolicyDocument") or {}
                )
            except PolicyDocumentError as exc:
                result.errors.append(
                    ItemError(
                        where=f"iam role {name}",
                        message=f"{exc}; who may assume it is unknown",
                    )
                )
        # principal key ("user:<name>" / "role:<name>") -> (role it may assume, decision)
        assumable: dict[str, list[tuple[str, Decision]]] = {}
        sources = [(f"user:{n}", p) for n, p in users.items()] + [
            (f"role:{n}", p) for n, p in found.items()
        ]
        for key, policies in sources:
            if policies.unreadable:
                continue  # its grants are unknown already; no assume step is claimed
            for name, trust in trusts.items():
                if policies.kind == "role" and name == policies.user:
                    continue
                decision = policies.can_assume(roles[name].get("Arn", ""), trust)
                if decision.allowed:
                    assumable.setdefault(key, []).append((name, decision))
        more = sorted({n for pairs in assumable.values() for n, _ in pairs} - set(found))
        found.update(policies_of(more))
        return found, assumable

    # -- grants -------------------------------------------------------------------------

    def _agent_principals(self) -> dict[tuple[str, str], list[str]]:
        """(identity type, IAM user or role name) -> agents that act as it on this source."""
        out: dict[tuple[str, str], list[str]] = {}
        for agent in self._loaded.inventory.agents:
            for ident in agent.identities:
                if isinstance(ident, AwsIdentity) and ident.source == self.name:
                    out.setdefault((ident.type, ident.name), []).append(agent.name)
        return out

    def _grants(
        self,
        found: _Iam,
        secrets: list[_Secret],
        parameter_arns: list[tuple[str, str]],
        result: CollectResult,
    ) -> None:
        if "iam" not in self._cfg.services:
            return
        keys_by_user: dict[str, list[Credential]] = {}
        for cred in result.credentials:
            if cred.kind == "iam-key":
                keys_by_user.setdefault(cred.tags.get("user", ""), []).append(cred)
        for (kind, name), agents in self._agent_principals().items():
            is_user = kind == "aws-iam-user"
            policies = (found.users if is_user else found.roles).get(name)
            if policies is None:
                result.errors.append(
                    ItemError(
                        where=f"agent {', '.join(agents)}",
                        message=f"IAM {'user' if is_user else 'role'} {name!r} not found on "
                        f"{self.name}",
                    )
                )
                continue
            identity = f"iam-{'user' if is_user else 'role'}:{name}"
            for agent in agents:
                head = [f"agent:{agent}", identity]
                for key in keys_by_user.get(name, []) if is_user else []:
                    result.grants.append(
                        Grant(
                            agent=agent,
                            credential_id=key.id,
                            capabilities=policies.summary(),
                            chain=[*head, f"policy:{','.join(policies.policy_names) or '(none)'}"],
                            used=key.last_used_at is not None,
                        )
                    )
                self._resource_grants(agent, head, policies, False, secrets, parameter_arns, result)
                key = f"{'user' if is_user else 'role'}:{name}"
                for role, how in found.assumable.get(key, []):
                    assumed = found.roles.get(role)
                    if assumed is None:
                        continue
                    step = [f"policy:{','.join(how.policies)}", f"assume:iam-role:{role}"]
                    self._resource_grants(
                        agent, [*head, *step], assumed, how.conditional, secrets,
                        parameter_arns, result,
                    )

    def _resource_grants(
        self,
        agent: str,
        head: list[str],
        policies: UserPolicies,
        conditional: bool,
        secrets: list[_Secret],
        parameter_arns: list[tuple[str, str]],
        result: CollectResult,
    ) -> None:
        """The secrets and parameters one principal's policies reach, as grants whose chain
        starts with ``head``; ``conditional`` when the way there (an assume step) rests on a
        condition keyshift does not evaluate."""
        targets: list[tuple[str, str, list[str], _Secret | None]] = [
            (s.cred.native_id, s.cred.id, _SECRET_ACTIONS, s) for s in secrets
        ] + [(arn, cid, _PARAMETER_ACTIONS, None) for arn, cid in parameter_arns]
        for arn, cid, actions, secret in targets:
            if policies.unreadable:  # unknown, not "none": say so
                result.grants.append(
                    Grant(
                        agent=agent,
                        credential_id=cid,
                        capabilities=["unknown"],
                        chain=[
                            *head,
                            f"policy:{','.join(policies.unreadable)} (unreadable)",
                            f"resource:{arn}",
                        ],
                    )
                )
                continue
            resource_policy = secret.policy if secret else []
            allowed, granting = policies.allowed(actions, arn, resource_policy or [])
            tail: list[str] = []
            if secret is not None and resource_policy is None and allowed:
                # the secret's own policy could not be read: it may deny what identity allows
                allowed = [_conditional(a) for a in allowed]
                tail.append("resource-policy:(unreadable)")
            if secret is not None and secret.kms_key and allowed:
                allowed, kms_step = _kms_needed(policies, secret.kms_key, allowed)
                tail.append(kms_step)
            if conditional:
                allowed = [_conditional(a) for a in allowed]
            if not allowed:
                continue
            # a wide statement (every secret, every action) named as a rule, so the findings
            # can say which statement breaks least privilege
            tail = [*(f"rule:{w}" for w in policies.wide_rules(actions, arn)), *tail]
            result.grants.append(
                Grant(
                    agent=agent,
                    credential_id=cid,
                    capabilities=allowed,
                    chain=[*head, f"policy:{','.join(granting)}", *tail, f"resource:{arn}"],
                )
            )


# ---------------------------------------------------------------------------------------
# helpers

# IAM entity -> (attached policies op, inline policy list op, inline policy get op, name key)
_IAM_ENTITY = {
    "user": ("list_attached_user_policies", "list_user_policies", "get_user_policy", "UserName"),
    "group": (
        "list_attached_group_policies", "list_group_policies", "get_group_policy", "GroupName"
    ),
    "role": ("list_attached_role_policies", "list_role_policies", "get_role_policy", "RoleName"),
}


def _adder(
    found: UserPolicies, where: str, result: CollectResult
) -> Callable[[str, Any, list[Statement]], None]:
    """Parse one policy document into a statement list; one keyshift cannot read is named in
    ``result.errors`` and in ``found.unreadable`` (its grants become unknown)."""

    def add(label: str, document: Any, into: list[Statement]) -> None:
        try:
            into += parse_policy_document(label, document)
        except PolicyDocumentError as exc:
            found.unreadable.append(label)
            result.errors.append(
                ItemError(where=where, message=f"{exc}; what it grants is unknown")
            )

    return add


SM_LAST_ACCESSED = "aws:secretsmanager:last-accessed (day)"  # a date, never a time of day
_BATCH = 20  # BatchGetSecretValue's most secrets a request
_DEFAULT_SM_KEY = "alias/aws/secretsmanager"
# the KMS permission each value action also needs on a customer-managed key
_KMS_FOR = {
    "secretsmanager:GetSecretValue": "kms:Decrypt",
    "secretsmanager:PutSecretValue": "kms:GenerateDataKey",
    "secretsmanager:UpdateSecret": "kms:GenerateDataKey",
}


@dataclass
class _Secret:
    cred: Credential
    policy: list[Statement] | None  # its resource policy; None when it could not be read
    kms_key: str | None  # a customer-managed KMS key, when it uses one


@dataclass
class _Iam:
    users: dict[str, UserPolicies] = field(default_factory=dict)
    roles: dict[str, UserPolicies] = field(default_factory=dict)
    # "user:<name>" / "role:<name>" -> (role it may assume, how)
    assumable: dict[str, list[tuple[str, Decision]]] = field(default_factory=dict)


def _merge(into: CollectResult, part: CollectResult) -> None:
    into.credentials += part.credentials
    into.grants += part.grants
    into.usage += part.usage
    into.errors += part.errors
    into.complete = into.complete and part.complete


def _serialised(progress: Progress | None) -> Progress | None:
    """The regions and IAM report from several threads; the callback sees one at a time."""
    if progress is None:
        return None
    lock = threading.Lock()

    def report(name: str) -> None:
        with lock:
            progress(name)

    return report


def _customer_key(key: Any) -> str | None:
    """ListSecrets' KmsKeyId when it is not Secrets Manager's own AWS-managed key."""
    if not key or str(key) in (_DEFAULT_SM_KEY, "aws/secretsmanager"):
        return None
    return str(key)


def _conditional(capability: str) -> str:
    return capability if capability.startswith(f"{CONDITIONAL}:") else f"{CONDITIONAL}:{capability}"


def _kms_needed(
    policies: UserPolicies, key: str, allowed: list[str]
) -> tuple[list[str], str]:
    """A secret under a customer-managed key: reading or writing its value also needs KMS
    permission on the key, which its key policy decides and keyshift does not read. An
    explicit deny in the principal's own policies still removes the action; otherwise the
    action is conditional, never certain. Returns (capabilities, the chain step saying so)."""
    out = []
    named: list[str] = []
    for capability in allowed:
        action = capability.removeprefix(f"{CONDITIONAL}:")
        needs = _KMS_FOR.get(action)
        if needs is None:
            out.append(capability)
            continue
        if needs not in named:
            named.append(needs)
        if key.startswith("arn:aws:kms:") and ":key/" in key:
            denied = [
                s for s in [*policies.statements, *(policies.boundary or [])]
                if s.effect == "Deny" and not s.conditional and s.applies(needs, key)
            ]
            if denied:
                continue
        out.append(_conditional(capability))
    return out, f"kms:{key} ({', '.join(named)} needed; key policy not evaluated)"
