"""The persistence hunt: what an attacker with a stolen key may have left in an AWS account.

keyshift cannot say who created something (no CloudTrail: moto has no LookupEvents, and
keyshift does not read it), so the hunt reports what it can see and says why each is listed:

- an IAM user that exists now and was created at or after ``since``, or that the store has
  never seen a key of and that was created after the source's last full sync; with its access
  keys, attached and inline policies and login profile (removed together with the user);
- an access key of an existing user created at or after ``since`` or unknown to the store and
  created after its last sync.

Nothing the inventory declares (an agent's ``aws-iam-user`` identity, an ``aws-iam`` rotation's
user) is ever listed or removed. ``remove`` deletes exactly what a hunt found, each deletion an
``incident.remove`` audit entry (references only): a user's policies detached or deleted, its
keys, its login profile and group memberships, then the user.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from console.errors import KeyshiftError, SourceError

if TYPE_CHECKING:
    from console.audit import AuditLog
    from console.config import LoadedInventory
    from console.rotation.context import Clients
    from console.store import Store


@dataclass
class Finding:
    source: str
    what: str  # user | access-key
    user: str
    name: str  # the user name, or the key id
    created_at: str | None
    reason: str
    keys: list[str] = field(default_factory=list)  # a user's: removed with it
    attached_policies: list[str] = field(default_factory=list)  # ARNs
    inline_policies: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    login_profile: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @property
    def label(self) -> str:
        return (f"iam user {self.name}" if self.what == "user"
                else f"access key {self.name} of {self.user}") + f" ({self.source})"


@dataclass
class HuntResult:
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"findings": [f.as_dict() for f in self.findings], "errors": self.errors,
                "sources": self.sources}


def declared_users(loaded: LoadedInventory | None) -> set[tuple[str, str]]:
    """(source, user) pairs the inventory declares: never hunted, never removed."""
    out: set[tuple[str, str]] = set()
    if loaded is None:
        return out
    for agent in loaded.inventory.agents:
        for ident in agent.identities:
            if ident.type == "aws-iam-user":
                out.add((ident.source, ident.name))
    for rot in loaded.inventory.rotations:
        if getattr(rot.issuer, "type", None) == "aws-iam":
            out.add((rot.issuer.source, rot.issuer.user))  # type: ignore[union-attr]
    return out


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _why(created: datetime | None, since: datetime, known: bool,
         synced: datetime | None) -> str | None:
    if created is not None and created >= since:
        return f"created at or after {_iso(since)}"
    if not known and created is not None and synced is not None and created > synced:
        return f"unknown to the store, created after its last sync ({_iso(synced)})"
    return None


def _aws_call(source: str, what: str, call: Any, **kw: Any) -> Any:
    import botocore.exceptions

    try:
        return call(**kw)
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        raise SourceError(f"hunt {what} in {source}: {code}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise SourceError(f"hunt {what} in {source}: {type(exc).__name__}") from None


def hunt(store: Store, loaded: LoadedInventory, clients: Clients, sources: list[str],
         since: datetime) -> HuntResult:
    """Users and keys in the AWS ``sources`` that exist now and fit a reason above."""
    from console.store import parse_ts

    result = HuntResult(sources=list(sources))
    declared = declared_users(loaded)
    for source in sources:
        try:
            iam = clients.aws(source, "iam")
            synced_text = store.last_source_sync(source)
            synced = parse_ts(synced_text) if synced_text else None
            known_users = store.known_iam_key_users(source)
            known_keys = store.known_iam_keys(source)
            users: list[dict] = []
            for page in iam.get_paginator("list_users").paginate():
                users += page["Users"]
            for user in users:
                name = user["UserName"]
                if (source, name) in declared:
                    continue
                keys = _aws_call(source, f"keys of {name}", iam.list_access_keys,
                                 UserName=name)["AccessKeyMetadata"]
                why = _why(_when(user.get("CreateDate")), since, name in known_users, synced)
                if why:
                    result.findings.append(_user_finding(source, iam, user, keys, why))
                    continue
                for key in keys:
                    kid = key["AccessKeyId"]
                    kwhy = _why(_when(key.get("CreateDate")), since, kid in known_keys, synced)
                    if kwhy:
                        result.findings.append(Finding(
                            source, "access-key", name, kid,
                            _iso(_when(key.get("CreateDate"))), kwhy))
        except KeyshiftError as exc:
            result.errors.append(exc.one_line())
        except Exception as exc:  # botocore's own, from a paginator: named by type only
            result.errors.append(f"hunt in {source}: {type(exc).__name__}")
    return result


def _user_finding(source: str, iam: Any, user: dict, keys: list[dict], why: str) -> Finding:
    import botocore.exceptions

    name = user["UserName"]
    attached = _aws_call(source, f"policies of {name}", iam.list_attached_user_policies,
                         UserName=name)["AttachedPolicies"]
    inline = _aws_call(source, f"inline policies of {name}", iam.list_user_policies,
                       UserName=name)["PolicyNames"]
    groups = _aws_call(source, f"groups of {name}", iam.list_groups_for_user,
                       UserName=name)["Groups"]
    try:
        iam.get_login_profile(UserName=name)
        profile = True
    except botocore.exceptions.ClientError:
        profile = False  # NoSuchEntity: no console password
    return Finding(
        source, "user", name, name, _iso(_when(user.get("CreateDate"))), why,
        keys=[k["AccessKeyId"] for k in keys],
        attached_policies=[p["PolicyArn"] for p in attached],
        inline_policies=list(inline), groups=[g["GroupName"] for g in groups],
        login_profile=profile,
    )


def remove(
    clients: Clients,
    audit: AuditLog,
    loaded: LoadedInventory | None,
    findings: list[Finding],
    *,
    actor: str,
    incident: str | None = None,
) -> list[dict[str, Any]]:
    """Delete exactly what the findings name; one outcome (and one audit entry) each. A
    declared user is refused whatever the finding says."""
    import botocore.exceptions

    declared = declared_users(loaded)
    out: list[dict[str, Any]] = []

    def step(f: Finding, what: str, name: str, call: Any, **kw: Any) -> bool:
        entry: dict[str, Any] = {"source": f.source, "what": what, "user": f.user,
                                 "name": name, "incident": incident}
        try:
            call(**kw)
            entry["outcome"] = "deleted"
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            entry["outcome"] = "already gone" if code == "NoSuchEntity" else "failed"
            if code != "NoSuchEntity":
                entry["error"] = f"remove {what} {name} of {f.user} in {f.source}: {code}"
        except botocore.exceptions.BotoCoreError as exc:
            entry["outcome"] = "failed"
            entry["error"] = f"remove {what} {name} in {f.source}: {type(exc).__name__}"
        entry["audit_seq"] = audit.append(actor, "incident.remove", f"{f.source}:{what}:{name}",
                                          entry).seq
        out.append(entry)
        return entry["outcome"] != "failed"

    for f in findings:
        if (f.source, f.user) in declared:
            entry = {"source": f.source, "what": f.what, "user": f.user, "name": f.name,
                     "incident": incident, "outcome": "failed",
                     "error": f"{f.label} is declared in the inventory: not removed"}
            entry["audit_seq"] = audit.append(actor, "incident.remove",
                                              f"{f.source}:{f.what}:{f.name}", entry).seq
            out.append(entry)
            continue
        try:
            iam = clients.aws(f.source, "iam")
        except KeyshiftError as exc:
            out.append({"source": f.source, "what": f.what, "user": f.user, "name": f.name,
                        "outcome": "failed", "error": exc.one_line()})
            continue
        u = f.user
        if f.what == "access-key":
            step(f, "access-key", f.name, iam.delete_access_key, UserName=u, AccessKeyId=f.name)
            continue
        ok = True
        for arn in f.attached_policies:
            ok &= step(f, "attached-policy", arn, iam.detach_user_policy, UserName=u,
                       PolicyArn=arn)
        for name in f.inline_policies:
            ok &= step(f, "inline-policy", name, iam.delete_user_policy, UserName=u,
                       PolicyName=name)
        for kid in f.keys:
            ok &= step(f, "access-key", kid, iam.delete_access_key, UserName=u, AccessKeyId=kid)
        if f.login_profile:
            ok &= step(f, "login-profile", u, iam.delete_login_profile, UserName=u)
        for group in f.groups:
            ok &= step(f, "group-membership", group, iam.remove_user_from_group, UserName=u,
                       GroupName=group)
        if ok:
            step(f, "user", u, iam.delete_user, UserName=u)
    return out


def still_there(clients: Clients, removed: list[dict[str, Any]]) -> list[str]:
    """What a removal deleted that the account still has (verify, by reference)."""
    import botocore.exceptions

    left: list[str] = []
    for entry in removed:
        if entry.get("outcome") != "deleted" or entry["what"] not in ("user", "access-key"):
            continue
        iam = clients.aws(entry["source"], "iam")
        try:
            if entry["what"] == "user":
                iam.get_user(UserName=entry["user"])
                left.append(f"iam user {entry['user']} still exists")
            else:
                keys = iam.list_access_keys(UserName=entry["user"])["AccessKeyMetadata"]
                if any(k["AccessKeyId"] == entry["name"] for k in keys):
                    left.append(f"access key {entry['name']} still exists")
        except botocore.exceptions.ClientError:
            continue  # NoSuchEntity: gone, as it should be
    return left
