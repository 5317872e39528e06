"""AWS: Secrets Manager secrets, SSM parameters and IAM users' access keys, per account.

Values (secrets, parameters) are read only to fingerprint them and never kept. IAM access keys
have no readable secret half after creation, so they carry no fingerprint; the key id is not
secret and is the native id.

Grants: an agent's ``aws-iam-user`` identity holds that user's access keys, and may read the
secrets / parameters its policies allow, decided by aws_policy.py (the user's and its groups'
policies, its permission boundary, Deny, NotAction / NotResource; a Condition makes the grant
conditional).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import botocore.config
import botocore.exceptions

from console.errors import KeyshiftError, SourceError
from console.fingerprint import fingerprint as fingerprint_of
from console.inventory import AwsIdentity
from console.model import Credential, CredentialStatus, Grant, ItemError, UsageEvent, credential_id
from console.sources.aws_policy import (
    PolicyDocumentError,
    Statement,
    UserPolicies,
    parse_policy_document,
)
from console.sources.base import CollectResult, Progress

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
        creds = self._conn.session.get_credentials()
        self._own_key = creds.access_key if creds else ""

    # -- collect ---------------------------------------------------------------------------

    def collect(self, progress: Progress | None = None) -> CollectResult:
        self._connect()
        result = CollectResult()
        services = set(self._cfg.services)
        regions = self._cfg.regions or [self._conn.region if self._conn else "us-east-1"]
        secret_arns: list[tuple[str, str]] = []  # (arn, credential id)
        parameter_arns: list[tuple[str, str]] = []
        with ThreadPoolExecutor(_POOL_SIZE) as pool:
            for i, region in enumerate(regions):
                if "secretsmanager" in services:
                    for cred in self._secrets(region, pool, result, progress):
                        result.credentials.append(cred)
                        secret_arns.append((cred.native_id, cred.id))
                if "ssm" in services:
                    prefix = "" if i == 0 else f"{region}:"
                    for cred, arn in self._parameters(region, prefix, pool, result, progress):
                        result.credentials.append(cred)
                        parameter_arns.append((arn, cred.id))
            users: dict[str, UserPolicies] = {}
            if "iam" in services:
                users = self._iam(regions[0], pool, result, progress)
            self._grants(users, secret_arns, parameter_arns, result)
        if result.errors:
            result.complete = False
        return result

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
    ) -> list[Credential]:
        client = self._client("secretsmanager", region)
        listed = self._paginate(
            client, "list_secrets", "SecretList", f"secretsmanager {region}", result
        )

        def value_of(item: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
            if not self._cfg.fingerprint or item.get("DeletedDate"):
                return item, None
            got = self._call(
                client.get_secret_value,
                f"secretsmanager {item.get('Name')}",
                result,
                SecretId=item["ARN"],
            )
            return item, got

        creds = []
        for item, got in pool.map(value_of, listed):
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
            deleted = item.get("DeletedDate")
            if deleted:
                extra["deleted"] = "scheduled"
            last_accessed = _utc(item.get("LastAccessedDate"))
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
                last_used_evidence="aws:LastAccessedDate" if last_accessed else None,
                fingerprint=fingerprint,
                version=current,
                status=CredentialStatus.inactive if deleted else CredentialStatus.active,
                **{**fields, "tags": {**fields["tags"], **extra}},
            )
            if last_accessed:
                result.usage.append(
                    UsageEvent(
                        credential_id=cred.id,
                        at=last_accessed,
                        operation="GetSecretValue",
                        evidence="aws:LastAccessedDate",
                    )
                )
            creds.append(cred)
            if progress:
                progress(cred.name)
        return creds

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
        found = UserPolicies(name, user.get("Arn", ""))

        def add(label: str, document: Any, into: list[Statement]) -> None:
            try:
                into += parse_policy_document(label, document)
            except PolicyDocumentError as exc:
                found.unreadable.append(label)
                result.errors.append(
                    ItemError(where=f"iam user {name}", message=f"{exc}; what it grants is unknown")
                )

        for label, document in self._managed(
            iam, "list_attached_user_policies", f"iam user {name}", result, UserName=name
        ):
            found.policy_names.append(label)
            add(label, document, found.statements)
        for pname in self._paginate(
            iam, "list_user_policies", "PolicyNames", f"iam user {name} inline policies", result,
            UserName=name,
        ):
            doc = self._call(
                iam.get_user_policy, f"iam user {name} policy {pname}", result,
                UserName=name, PolicyName=pname,
            )
            if doc:
                found.policy_names.append(pname)
                add(pname, doc.get("PolicyDocument"), found.statements)
        for group in self._paginate(
            iam, "list_groups_for_user", "Groups", f"iam user {name} groups", result,
            UserName=name,
        ):
            gname = group["GroupName"]
            for label, document in self._managed(
                iam, "list_attached_group_policies", f"iam group {gname}", result,
                GroupName=gname,
            ):
                found.policy_names.append(f"group {gname}: {label}")
                add(f"group {gname}: {label}", document, found.statements)
            for pname in self._paginate(
                iam, "list_group_policies", "PolicyNames", f"iam group {gname} inline policies",
                result, GroupName=gname,
            ):
                doc = self._call(
                    iam.get_group_policy, f"iam group {gname} policy {pname}", result,
                    GroupName=gname, PolicyName=pname,
                )
                if doc:
                    found.policy_names.append(f"group {gname}: {pname}")
                    add(f"group {gname}: {pname}", doc.get("PolicyDocument"), found.statements)
        detail = self._call(iam.get_user, f"iam user {name}", result, UserName=name) or {}
        boundary = ((detail.get("User") or {}).get("PermissionsBoundary") or {}).get(
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
        return found

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
        self,
        region: str,
        pool: ThreadPoolExecutor,
        result: CollectResult,
        progress: Progress | None,
    ) -> dict[str, UserPolicies]:
        iam = self._client("iam", region)
        users = self._paginate(iam, "list_users", "Users", "iam users", result)
        wanted = self._agent_users()

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
        return out

    # -- grants -------------------------------------------------------------------------

    def _agent_users(self) -> dict[str, list[str]]:
        """IAM user name -> agents that act as it on this source."""
        out: dict[str, list[str]] = {}
        for agent in self._loaded.inventory.agents:
            for ident in agent.identities:
                if (
                    isinstance(ident, AwsIdentity)
                    and ident.source == self.name
                    and ident.type == "aws-iam-user"
                ):
                    out.setdefault(ident.name, []).append(agent.name)
        return out

    def _grants(
        self,
        users: dict[str, UserPolicies],
        secret_arns: list[tuple[str, str]],
        parameter_arns: list[tuple[str, str]],
        result: CollectResult,
    ) -> None:
        if "iam" not in self._cfg.services:
            return
        keys_by_user: dict[str, list[Credential]] = {}
        for cred in result.credentials:
            if cred.kind == "iam-key":
                keys_by_user.setdefault(cred.tags.get("user", ""), []).append(cred)
        for user, agents in self._agent_users().items():
            policies = users.get(user)
            if policies is None:
                result.errors.append(
                    ItemError(
                        where=f"agent {', '.join(agents)}",
                        message=f"IAM user {user!r} not found on {self.name}",
                    )
                )
                continue
            policy_link = f"policy:{','.join(policies.policy_names) or '(none)'}"
            for agent in agents:
                for key in keys_by_user.get(user, []):
                    result.grants.append(
                        Grant(
                            agent=agent,
                            credential_id=key.id,
                            capabilities=policies.summary(),
                            chain=[f"agent:{agent}", f"iam-user:{user}", policy_link],
                            used=key.last_used_at is not None,
                        )
                    )
                for arns, actions in (
                    (secret_arns, _SECRET_ACTIONS),
                    (parameter_arns, _PARAMETER_ACTIONS),
                ):
                    for arn, cid in arns:
                        if policies.unreadable:  # unknown, not "none": say so
                            result.grants.append(
                                Grant(
                                    agent=agent,
                                    credential_id=cid,
                                    capabilities=["unknown"],
                                    chain=[
                                        f"agent:{agent}",
                                        f"iam-user:{user}",
                                        f"policy:{','.join(policies.unreadable)} (unreadable)",
                                        f"resource:{arn}",
                                    ],
                                )
                            )
                            continue
                        allowed, granting = policies.allowed(actions, arn)
                        if not allowed:
                            continue
                        result.grants.append(
                            Grant(
                                agent=agent,
                                credential_id=cid,
                                capabilities=allowed,
                                chain=[
                                    f"agent:{agent}",
                                    f"iam-user:{user}",
                                    f"policy:{','.join(granting)}",
                                    f"resource:{arn}",
                                ],
                            )
                        )
