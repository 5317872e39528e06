"""The persistence hunt: what an attacker with a stolen key may have left in an AWS account.

keyshift cannot say who created something (no CloudTrail: moto has no LookupEvents, and
keyshift does not read it), so the hunt reports what it can see and says why each is listed:

- an IAM user that exists now and was created at or after ``since``, or that the store has
  never seen a key of and that was created after the source's last full sync; with its access
  keys, attached and inline policies and login profile (removed together with the user);
- an access key of an existing user created at or after ``since`` or unknown to the store and
  created after its last sync, unless a keyshift rotation issued it: the ``issue`` step of a
  run that was not rolled back names the key id in its journal (``Store.issued_access_keys``).
  Without that, the hunt after an incident's own eradicate listed the key it had just rotated
  in, and ``--remove`` left the agent with no working key. A key the store merely knows from
  a sync is still listed: a scheduled sync records an attacker's key as readily as any other.

A user the inventory declares (an agent's ``aws-iam-user`` identity, an ``aws-iam`` rotation's
user) is never listed or removed; only a new key of it can be. The same goes for a user
``keyshift incident split`` made (``Store.split_made``, from its audit entries): the hunt after
a split listed the new per-agent users, and ``--remove`` deleted the agents' only working keys
(the shared key was already gone); a key on such a user that the split did not issue is still
listed. Nor is the identity the source
signs in as (STS GetCallerIdentity: the sandbox's ``keyshift-admin``, a real account's
keyshift user): a hunt with an early ``--since`` would otherwise list it, and removing its
policies locks keyshift (and the responder) out of the account mid-incident; the key it signs
with is never listed either. When the source cannot say who it signs in as, its hunt is an
error, not a guess. ``remove`` deletes exactly what a hunt found, each deletion an
``incident.remove`` audit entry (references only): a user's policies detached or deleted, its
keys, its login profile and group memberships, then the user; it refuses a declared user and
the signed-in identity whatever a finding says.
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


@dataclass(frozen=True)
class SignedIn:
    """Who a source signs in as: the IAM user name (None for an assumed role) and the access
    key id it signs with (never the secret)."""

    arn: str
    user: str | None
    key_id: str | None


def signed_in(clients: Clients, source: str) -> SignedIn:
    """The source's own identity, asked of STS (a SourceError when it cannot answer)."""
    from console.connections import aws_connection

    got = _aws_call(source, "who the source signs in as",
                    clients.aws(source, "sts").get_caller_identity)
    arn = str(got.get("Arn") or "")
    # arn:aws:iam::<account>:user/<path/>name; an assumed role's ARN is no IAM user
    user = arn.split(":user/", 1)[1].rsplit("/", 1)[-1] if ":user/" in arn else None
    key_id = None
    try:
        cfg = clients.loaded.source(source)
        creds = aws_connection(cfg).session.get_credentials()  # type: ignore[arg-type]
        key_id = creds.access_key if creds is not None else None
    except Exception:  # a profile that cannot be read: the user name still protects it
        key_id = None
    return SignedIn(arn, user, key_id)


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
            me = signed_in(clients, source)
            synced_text = store.last_source_sync(source)
            synced = parse_ts(synced_text) if synced_text else None
            known_users = store.known_iam_key_users(source)
            known_keys = store.known_iam_keys(source)
            # a key listed for the "unknown, after the last sync" reason may predate since
            ours = store.issued_access_keys(min(since, synced) if synced else since)
            # the users and keys `incident split` made: new, undeclared, yet the agents' own
            split = store.split_made(source)
            ours |= {kid for keys in split.values() for kid in keys}
            users: list[dict] = []
            for page in iam.get_paginator("list_users").paginate():
                users += page["Users"]
            for user in users:
                name = user["UserName"]
                keys = _aws_call(source, f"keys of {name}", iam.list_access_keys,
                                 UserName=name)["AccessKeyMetadata"]
                # a declared user is never a finding itself, but a key added to it is the
                # first thing a stolen key with IAM rights leaves behind
                mine = name == me.user or name in split
                why = None if (source, name) in declared or mine else _why(
                    _when(user.get("CreateDate")), since, name in known_users, synced)
                if why:
                    result.findings.append(_user_finding(source, iam, user, keys, why))
                    continue
                for key in keys:
                    kid = key["AccessKeyId"]
                    if kid == me.key_id or kid in ours:
                        continue  # the key keyshift reads with, or one its rotation issued
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
    declared user, and a user or key a split made, is refused whatever the finding says."""
    import botocore.exceptions

    declared = declared_users(loaded)
    out: list[dict[str, Any]] = []
    me: dict[str, SignedIn | str] = {}

    split: dict[str, dict[str, set[str]]] = {}

    def refused(f: Finding) -> str | None:
        if f.what == "user" and (f.source, f.user) in declared:
            return f"{f.label} is declared in the inventory: not removed"
        if f.source not in split:
            split[f.source] = audit.store.split_made(f.source)
        made = split[f.source]
        if (f.what == "user" and f.user in made) or f.name in made.get(f.user, set()):
            return f"{f.label} was made by keyshift incident split (an agent's key): not removed"
        if f.source not in me:
            try:
                me[f.source] = signed_in(clients, f.source)
            except KeyshiftError as exc:
                me[f.source] = exc.one_line()
        who = me[f.source]
        if isinstance(who, str):  # unknown identity: removing might lock keyshift out
            return f"{f.label}: not removed, {who}"
        if f.what == "user" and f.user == who.user:
            return f"{f.label} is the identity {f.source} signs in as: not removed"
        if f.what == "access-key" and f.name == who.key_id:
            return f"{f.label} is the key {f.source} signs in with: not removed"
        return None

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
        why = refused(f)
        if why:
            entry = {"source": f.source, "what": f.what, "user": f.user, "name": f.name,
                     "incident": incident, "outcome": "failed", "error": why}
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
    """What a removal deleted that the account still has, or could not be checked (verify,
    by reference). Only IAM's NoSuchEntity says a thing is gone: a denial, throttling or a
    server that does not answer says nothing about it, and is reported as a failed check."""
    import botocore.exceptions

    left: list[str] = []
    for entry in removed:
        if entry.get("outcome") != "deleted" or entry["what"] not in ("user", "access-key"):
            continue
        label = (f"iam user {entry['user']}" if entry["what"] == "user"
                 else f"access key {entry['name']} of {entry['user']}")
        try:
            iam = clients.aws(entry["source"], "iam")
            if entry["what"] == "user":
                iam.get_user(UserName=entry["user"])
                left.append(f"iam user {entry['user']} still exists")
            else:
                keys = iam.list_access_keys(UserName=entry["user"])["AccessKeyMetadata"]
                if any(k["AccessKeyId"] == entry["name"] for k in keys):
                    left.append(f"access key {entry['name']} still exists")
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            if code != "NoSuchEntity":
                left.append(f"could not check that {label} is gone at {entry['source']} "
                            f"({code})")
        except botocore.exceptions.BotoCoreError as exc:
            left.append(f"could not check that {label} is gone at {entry['source']} "
                        f"({type(exc).__name__})")
        except KeyshiftError as exc:
            left.append(f"could not check that {label} is gone: {exc.one_line()}")
    return left


# --- a Vault token's requests since a time -----------------------------------------------------


def vault_audit_path(loaded: LoadedInventory, source: str) -> Any:
    """Where the source's file audit device writes (the source's ``audit_log``, or the
    sandbox's own), or None when keyshift does not read it."""
    from pathlib import Path

    cfg = loaded.source(source)
    configured = getattr(cfg, "audit_log", None)
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_absolute() else Path(loaded.base_dir, path)
    if getattr(cfg, "sandbox", False):
        from console.sandbox import load_state

        state = load_state()
        return state.audit_log_path if state else None
    return None


def token_use(clients: Clients, loaded: LoadedInventory, source: str, accessors: list[str],
              since: datetime) -> dict[str, Any]:
    """The requests each token (by accessor) made since ``since``, from the file audit log.
    The device HMACs accessors, so each is hashed by the server (``sys/audit-hash``) and the
    log searched for the hash: no token value is needed. Returns {"accessors": {accessor:
    [{"at", "path", "operation", "error"}]}, "kv_reads": [credential ids], "errors": [...]}."""
    import json

    from console.model import credential_id
    from console.sources.vault_audit import parse_vault_time

    out: dict[str, Any] = {"accessors": {a: [] for a in accessors}, "kv_reads": [],
                           "errors": []}
    path = vault_audit_path(loaded, source)
    if not accessors:
        return out
    if path is None or not path.is_file():
        out["errors"].append(f"{source}: no audit log keyshift reads; token use not checked")
        return out
    client = clients.vault(source)
    try:
        devices = client.adapter.get("/v1/sys/audit") or {}
        devices = devices.get("data") or devices
        hashes: dict[str, str] = {}
        for device in [d for d, v in devices.items() if isinstance(v, dict)]:
            for accessor in accessors:
                got = client.adapter.post(f"/v1/sys/audit-hash/{device.strip('/')}",
                                          json={"input": accessor})
                hashed = ((got or {}).get("data") or got or {}).get("hash")
                if hashed:
                    hashes[hashed] = accessor
    except Exception as exc:  # hvac's, requests': named by type, never by text
        out["errors"].append(f"{source}: sys/audit-hash failed ({type(exc).__name__})")
        return out
    needles = [h.encode() for h in hashes]
    kv = set()
    with path.open("rb") as fh:
        for raw in fh:
            if not any(n in raw for n in needles):
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if entry.get("type") != "response":
                continue
            accessor = hashes.get(str((entry.get("auth") or {}).get("accessor")))
            at = parse_vault_time(entry.get("time"))
            if accessor is None or at is None or at < since:
                continue
            request = entry.get("request") or {}
            req_path = str(request.get("path") or "")
            failed = bool(entry.get("error"))
            out["accessors"][accessor].append({
                "at": _iso(at), "path": req_path, "operation": request.get("operation"),
                "error": failed})
            mount, sep, rest = req_path.partition("/data/")
            if sep and not failed and request.get("operation") == "read":
                kv.add(credential_id(source, "kv", f"{mount}/{rest}"))
    out["kv_reads"] = sorted(kv)
    return out
