"""Contain actions: revoke a credential at its issuer by reference, never by value.

- a Vault token: ``auth/token/revoke-accessor`` with its accessor (the row's native id);
- an AppRole secret-id: ``secret-id-accessor/destroy`` with its accessor;
- an IAM access key: ``UpdateAccessKey Status=Inactive`` (contain; eradicate rotates or deletes).

No value is needed or held: tokens and secret-ids are named by accessor, keys by key id. Each
action is idempotent (revoked already, destroyed already, Inactive already, gone: said so, and
ok) and audited with references only. A denial, a server that is down or an unknown source
is one line naming the credential and what happened; a batch carries on with the rest.

What belongs to an agent (``agent_targets``): the revocable rows of its grants in the store,
and what its inventory identities hold at the server now (the AppRole role's secret-ids, the
tokens that role or its token role issued, the IAM user's keys), so a token minted after the
last sync is revoked too. An ``aws-iam-role`` identity has no long-lived key: its sessions
cannot be revoked by keyshift (said in the result's ``limits``).

A role may be shared (two agents' identities, or rotations of other agents minting from one
token role): then only what can be attributed to the scope is revoked: a token keyshift minted
names its run in its metadata (``keyshift_run``), and the run names its rotation; a token of a
role the scope alone uses is the scope's. Everything else of a shared role is left alone and
said so in ``limits`` (eradicate rotates the scope's own with grace 0).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from console.errors import KeyshiftError, NotFoundError, SourceError, UsageError
from console.model import credential_id

if TYPE_CHECKING:
    from console.audit import AuditLog
    from console.config import LoadedInventory
    from console.rotation.context import Clients
    from console.store import Store

TOKEN, SECRET_ID, IAM_KEY = "vault-token", "approle-secret-id", "iam-key"
REVOCABLE = {TOKEN: "revoke-accessor", SECRET_ID: "destroy-secret-id", IAM_KEY: "deactivate"}
LOOKUP_THREADS = 8


@dataclass(frozen=True)
class Ref:
    """A credential to act on, by reference: its source, kind and native id (a token's
    accessor; ``<mount>/<role>/<accessor>`` for a secret-id; the key id, with its user)."""

    source: str
    kind: str
    native_id: str
    user: str | None = None  # an IAM key's user
    name: str | None = None

    @property
    def id(self) -> str:
        return credential_id(self.source, self.kind, self.native_id)

    @property
    def label(self) -> str:
        return self.name or self.id


@dataclass
class Outcome:
    credential: str
    kind: str
    action: str
    outcome: str  # revoked | destroyed | deactivated | deleted | already ... | failed
    error: str | None = None
    audit_seq: int | None = None
    user: str | None = None  # an IAM key's user (what verify asks IAM about)

    @property
    def ok(self) -> bool:
        return self.outcome != "failed"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Targets:
    refs: list[Ref] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # listings that failed, one line each
    limits: list[str] = field(default_factory=list)  # what keyshift cannot revoke


def ref_from_credential(store: Store, cid: str) -> Ref:
    cred = store.get_credential(cid)
    if cred is None:
        raise NotFoundError(f"no credential {cid!r}", hint="keyshift ls")
    return Ref(cred.source, cred.kind, cred.native_id, user=(cred.tags or {}).get("user"),
               name=cred.name)


def ref_from_credential_or_id(store: Store, cid: str) -> Ref:
    """The store's row, else the id's own parts (``<source>:<kind>:<native id>``)."""
    if store.get_credential(cid) is not None:
        return ref_from_credential(store, cid)
    source, kind, native = [*cid.split(":", 2), "", ""][:3]
    return Ref(source, kind, native)


def refuse_unrevocable(ref: Ref) -> None:
    if ref.kind not in REVOCABLE:
        raise UsageError(
            f"{ref.label} is a {ref.kind}: keyshift cannot revoke it at an issuer",
            hint=f"rotate it instead: keyshift rotate {ref.id} --grace 0",
        )


# errors ------------------------------------------------------------------------------------


@contextmanager
def _vault_errors(ref: Ref, doing: str) -> Iterator[None]:
    import hvac.exceptions
    import requests

    try:
        yield
    except KeyshiftError:
        raise
    except hvac.exceptions.Forbidden:
        raise SourceError(f"{doing} {ref.label}: permission denied by {ref.source}",
                          hint="keyshift's token needs the policy for it") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
        raise SourceError(f"{doing} {ref.label}: cannot reach {ref.source}") from None
    except hvac.exceptions.VaultDown:
        raise SourceError(f"{doing} {ref.label}: {ref.source} is sealed") from None
    except hvac.exceptions.VaultError as exc:
        raise SourceError(f"{doing} {ref.label}: {ref.source} answered "
                          f"{type(exc).__name__}") from None


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", "")) if hasattr(
        exc, "response") else ""


@contextmanager
def _aws_errors(ref: Ref, doing: str) -> Iterator[None]:
    import botocore.exceptions

    try:
        yield
    except KeyshiftError:
        raise
    except botocore.exceptions.ClientError as exc:
        code = _code(exc) or "ClientError"
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            raise SourceError(f"{doing} {ref.label}: permission denied by {ref.source} "
                              f"({code})") from None
        raise SourceError(f"{doing} {ref.label}: {ref.source} answered {code}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise SourceError(f"{doing} {ref.label}: cannot reach {ref.source} "
                          f"({type(exc).__name__})") from None


# the actions -------------------------------------------------------------------------------


def _own_accessor(client: Any) -> str | None:
    try:
        return str(client.auth.token.lookup_self()["data"]["accessor"])
    except Exception:  # a token that cannot look itself up is simply not matched
        return None


def _revoke_token(clients: Clients, ref: Ref) -> str:
    import hvac.exceptions

    with _vault_errors(ref, "revoke"):
        client = clients.vault(ref.source)
        if ref.native_id == _own_accessor(client):
            raise UsageError(f"{ref.label} is the token keyshift reads {ref.source} with",
                             hint="revoke it by hand once keyshift has another token")
        try:
            client.adapter.post("/v1/auth/token/lookup-accessor",
                                json={"accessor": ref.native_id})
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.InvalidPath):
            return "already revoked"
        client.adapter.post("/v1/auth/token/revoke-accessor", json={"accessor": ref.native_id})
    return "revoked"


def _secret_id_parts(ref: Ref) -> tuple[str, str, str]:
    mount, _, rest = ref.native_id.partition("/")
    role, _, accessor = rest.rpartition("/")
    if not (mount and role and accessor):
        raise UsageError(f"{ref.label}: not a secret-id reference (mount/role/accessor)")
    return mount, role, accessor


def _destroy_secret_id(clients: Clients, ref: Ref) -> str:
    import hvac.exceptions

    mount, role, accessor = _secret_id_parts(ref)
    base = f"/v1/auth/{mount}/role/{role}"
    with _vault_errors(ref, "destroy"):
        client = clients.vault(ref.source)
        try:
            client.adapter.post(f"{base}/secret-id-accessor/lookup",
                                json={"secret_id_accessor": accessor})
        except (hvac.exceptions.InvalidPath, hvac.exceptions.InvalidRequest):
            return "already destroyed"
        client.adapter.post(f"{base}/secret-id-accessor/destroy",
                            json={"secret_id_accessor": accessor})
    return "destroyed"


def _key_status(iam: Any, ref: Ref) -> str | None:
    """The key's status at IAM, or None when it (or its user) no longer exists."""
    import botocore.exceptions

    try:
        keys = iam.list_access_keys(UserName=ref.user)["AccessKeyMetadata"]
    except botocore.exceptions.ClientError as exc:
        if _code(exc) == "NoSuchEntity":
            return None
        raise
    return next((str(k["Status"]) for k in keys if k["AccessKeyId"] == ref.native_id), None)


def _need_user(ref: Ref) -> str:
    if not ref.user:
        raise UsageError(f"{ref.label}: the store does not say which IAM user holds it",
                         hint="run keyshift sync, then try again")
    return ref.user


def _deactivate_key(clients: Clients, ref: Ref) -> str:
    user = _need_user(ref)
    with _aws_errors(ref, "deactivate"):
        iam = clients.aws(ref.source, "iam")
        status = _key_status(iam, ref)
        if status is None:
            return "already gone"
        if status == "Inactive":
            return "already inactive"
        iam.update_access_key(UserName=user, AccessKeyId=ref.native_id, Status="Inactive")
    return "deactivated"


def delete_key(clients: Clients, ref: Ref) -> str:
    import botocore.exceptions

    user = _need_user(ref)
    with _aws_errors(ref, "delete"):
        iam = clients.aws(ref.source, "iam")
        try:
            iam.delete_access_key(UserName=user, AccessKeyId=ref.native_id)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) == "NoSuchEntity":
                return "already gone"
            raise
    return "deleted"


def still_valid(clients: Clients, ref: Ref) -> str | None:
    """Whether the issuer still accepts the credential, asked by reference: what is still
    there ("token found", "key Active"), or None when it is revoked, destroyed, Inactive or
    gone. A server that cannot answer is a SourceError."""
    import hvac.exceptions

    if ref.kind == TOKEN:
        with _vault_errors(ref, "check"):
            try:
                clients.vault(ref.source).adapter.post(
                    "/v1/auth/token/lookup-accessor", json={"accessor": ref.native_id})
            except (hvac.exceptions.InvalidRequest, hvac.exceptions.InvalidPath):
                return None
        return "its accessor is still found"
    if ref.kind == SECRET_ID:
        mount, role, accessor = _secret_id_parts(ref)
        with _vault_errors(ref, "check"):
            try:
                clients.vault(ref.source).adapter.post(
                    f"/v1/auth/{mount}/role/{role}/secret-id-accessor/lookup",
                    json={"secret_id_accessor": accessor})
            except (hvac.exceptions.InvalidRequest, hvac.exceptions.InvalidPath):
                return None
        return "its accessor is still found"
    if ref.kind == IAM_KEY:
        _need_user(ref)
        with _aws_errors(ref, "check"):
            status = _key_status(clients.aws(ref.source, "iam"), ref)
        return "the key is Active" if status == "Active" else None
    raise UsageError(f"{ref.label}: keyshift cannot ask the issuer of a {ref.kind}")


_ACTIONS: dict[str, Callable[[Clients, Ref], str]] = {
    TOKEN: _revoke_token, SECRET_ID: _destroy_secret_id, IAM_KEY: _deactivate_key,
}


def contain(
    clients: Clients,
    audit: AuditLog,
    refs: list[Ref],
    *,
    actor: str,
    incident: str | None = None,
    action: str = "incident.contain",
) -> list[Outcome]:
    """Revoke each reference at its issuer, in order; a failure is recorded and the rest go
    on. Each outcome, failed or not, is one audit entry (references only)."""
    out: list[Outcome] = []
    for ref in dict.fromkeys(refs):
        what = REVOCABLE.get(ref.kind, "none")
        try:
            refuse_unrevocable(ref)
            done = Outcome(ref.id, ref.kind, what, _ACTIONS[ref.kind](clients, ref),
                           user=ref.user)
        except KeyshiftError as exc:
            done = Outcome(ref.id, ref.kind, what, "failed", error=exc.one_line(), user=ref.user)
        detail = {"kind": ref.kind, "action": what, "outcome": done.outcome,
                  "incident": incident, "error": done.error}
        done.audit_seq = audit.append(actor, action, ref.id, detail).seq
        out.append(done)
    return out


# what an agent holds -----------------------------------------------------------------------

RUN_META = "keyshift_run"  # what keyshift's issuers put in the metadata of what they mint


def _live_secret_ids(client: Any, source: str, mount: str, role: str) -> list[Ref]:
    import hvac.exceptions

    try:
        keys = client.adapter.request("LIST", f"/v1/auth/{mount}/role/{role}/secret-id")
    except hvac.exceptions.InvalidPath:
        return []
    return [Ref(source, SECRET_ID, f"{mount}/{role}/{a}", name=f"approle/{role}/{a[:8]}")
            for a in ((keys or {}).get("data") or {}).get("keys") or []]


def _live_tokens(client: Any, source: str, match: Callable[[dict], bool]
                 ) -> list[tuple[Ref, dict]]:
    """Tokens whose lookup ``match`` accepts, with that lookup (listing them needs sudo on
    the accessors)."""
    import hvac.exceptions

    accessors = (client.adapter.request("LIST", "/v1/auth/token/accessors")
                 or {}).get("data", {}).get("keys") or []

    def look(accessor: str) -> tuple[str, dict | None]:
        try:
            got = client.adapter.post("/v1/auth/token/lookup-accessor",
                                      json={"accessor": accessor})
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.InvalidPath):
            return accessor, None  # revoked or expired since the list
        return accessor, (got or {}).get("data") or {}

    with ThreadPoolExecutor(LOOKUP_THREADS) as pool:
        found = list(pool.map(look, accessors))
    return [(Ref(source, TOKEN, a, name=f"token/{d.get('display_name') or 'token'}/{a[:8]}"), d)
            for a, d in found if d is not None and match(d)]


def _approle_token(mount: str, role: str) -> Callable[[dict], bool]:
    def match(data: dict) -> bool:
        meta = data.get("meta") or {}
        return (meta.get("role_name") == role
                and str(data.get("path", "")).startswith(f"auth/{mount}/login"))
    return match


def _token_role_token(role: str) -> Callable[[dict], bool]:
    def match(data: dict) -> bool:
        return str(data.get("path", "")) == f"auth/token/create/{role}"
    return match


@dataclass(frozen=True)
class RoleUse:
    """Who the inventory says uses one role at one source: agents that declare it as an
    identity, and rotations whose issuer mints from it (with their agents)."""

    agents: frozenset[str]
    rotations: dict[str, frozenset[str]]

    def only(self, agents: set[str]) -> bool:
        """Whether everything the role issues can only be these agents': each user of it is
        one of them, and each rotation minting from it serves only them (a rotation that
        names no agent belongs to nobody keyshift knows, so it shares the role)."""
        return self.agents <= agents and all(a and a <= agents for a in self.rotations.values())

    def others(self, agents: set[str]) -> list[str]:
        out = {*self.agents, *(a for r in self.rotations.values() for a in r)} - agents
        return sorted(out) or [f"rotation {r}" for r, a in self.rotations.items() if not a]


def role_use(loaded: LoadedInventory, source: str, role: str, kind: str) -> RoleUse:
    """``kind``: ``vault-token-role`` (issuer vault-token) or ``vault-approle``."""
    issuer = "vault-token" if kind == "vault-token-role" else "vault-approle"
    inv = loaded.inventory
    agents = frozenset(a.name for a in inv.agents for i in a.identities
                       if i.type == kind and getattr(i, "source", None) == source
                       and getattr(i, "role", None) == role)
    rotations = {r.name: frozenset(r.agents) for r in inv.rotations
                 if r.issuer.type == issuer and getattr(r.issuer, "source", None) == source
                 and getattr(r.issuer, "role", None) == role}
    return RoleUse(agents, rotations)


def _minted_for(store: Store, data: dict) -> str | None:
    """The rotation a token keyshift minted belongs to (its metadata names the run), or
    None for a token keyshift did not mint or whose run this store does not hold."""
    run_id = (data.get("meta") or {}).get(RUN_META)
    run = store.get_rotation_run(str(run_id)) if run_id else None
    subject = str((run or {}).get("subject") or "")
    return subject.removeprefix("rotation:") if subject.startswith("rotation:") else None


def _attribute(store: Store, loaded: LoadedInventory, found: list[tuple[Ref, dict]],
               use: RoleUse, *, agents: set[str], rotation: str | None, role: str,
               whose: str, found_in: Targets) -> None:
    """Keep the tokens of a role that belong to the scope (``agents``; ``rotation``: the one
    declared rotation in scope): those keyshift minted for a rotation of the scope, and, when
    the role is the scope's alone, every other token of it. The rest is left, and said so."""
    left = 0
    for ref, data in found:
        minted = _minted_for(store, data)
        if minted is not None:
            ours = minted == rotation if rotation else bool(use.rotations.get(minted, frozenset())
                                                           & agents)
        else:
            ours = use.only(agents) and (rotation is None or set(use.rotations) <= {rotation})
        if ours:
            found_in.refs.append(ref)
        else:
            left += 1
    if left:
        found_in.limits.append(
            f"token role {role} is shared with {', '.join(use.others(agents)) or 'others'}: "
            f"{left} of its token(s) cannot be attributed to {whose} and were left alone "
            "(eradicate rotates the scope's own with grace 0)")


def agent_targets(store: Store, loaded: LoadedInventory | None, clients: Clients | None,
                  agent: str) -> Targets:
    """Every token, secret-id and access key that belongs to the agent's identities: its
    revocable grants in the store, and (with ``clients``) what the servers hold now. A role
    other agents share gives only what can be attributed to this one (``_attribute``)."""
    from console import reach

    found = Targets()
    declared = None
    if loaded is not None:
        declared = next((a for a in loaded.inventory.agents if a.name.lower() == agent.lower()),
                        None)
    name = declared.name if declared else agent
    for g in reach.agent_grants(store, agent):
        cred = store.get_credential(g["credential"])
        if cred is not None and cred.kind in REVOCABLE and not cred.gone_at:
            tags = cred.tags or {}
            if cred.kind in (TOKEN, SECRET_ID) and tags.get("rotation") == cred.native_id:
                # a declared rotation's row names the value in an env file, not an accessor:
                # the listing of its role below revokes what its role issued
                continue
            if cred.kind == TOKEN and tags.get("role") and loaded is not None and clients:
                # a role's token: the sync grants it to every user of the role; the live
                # listing below keeps only what can be attributed to this agent
                continue
            found.refs.append(Ref(cred.source, cred.kind, cred.native_id,
                                  user=tags.get("user"), name=cred.name))
    idents: list[tuple[str, str, str]] = [(i.type, getattr(i, "source", ""), i.role
                                           if hasattr(i, "role") else getattr(i, "name", ""))
                                          for i in (declared.identities if declared else [])]
    for rot in (loaded.inventory.rotations if loaded is not None and clients else []):
        role = getattr(rot.issuer, "role", None)
        if rot.issuer.type == "vault-token" and role and name in rot.agents:
            idents.append(("vault-token-role", str(getattr(rot.issuer, "source", "")), role))
    for kind, source, role in dict.fromkeys(idents if clients else []):
        try:
            if kind in ("vault-approle", "vault-token-role"):
                use = role_use(loaded, source, role, kind)  # type: ignore[arg-type]
                cfg = loaded.source(source)  # type: ignore[union-attr]
                client = clients.vault(source)  # type: ignore[union-attr]
                with _vault_errors(Ref(source, kind, role), "list"):
                    if kind == "vault-approle":
                        if not use.only({name}):
                            found.limits.append(
                                f"AppRole role {role} is shared with "
                                f"{', '.join(use.others({name}))}: its secret-ids and tokens "
                                f"were left alone (keyshift cannot tell which are {name}'s)")
                            continue
                        mount = getattr(cfg, "approle_mount", "approle").strip("/")
                        found.refs += _live_secret_ids(client, source, mount, role)
                        found.refs += [r for r, _ in _live_tokens(
                            client, source, _approle_token(mount, role))]
                    else:
                        _attribute(store, loaded, _live_tokens(  # type: ignore[arg-type]
                            client, source, _token_role_token(role)), use, agents={name},
                            rotation=None, role=role, whose=name, found_in=found)
            elif kind == "aws-iam-user":
                iam = clients.aws(source, "iam")  # type: ignore[union-attr]
                ref = Ref(source, kind, role, name=f"iam user {role}")
                with _aws_errors(ref, "list keys of"):
                    keys = iam.list_access_keys(UserName=role)["AccessKeyMetadata"]
                found.refs += [Ref(source, IAM_KEY, k["AccessKeyId"], user=role,
                                   name=f"{role}/{k['AccessKeyId']}") for k in keys]
            elif kind == "aws-iam-role":
                found.limits.append(f"role {role}: its sessions cannot be revoked by "
                                    "keyshift (an AWS deny on aws:TokenIssueTime does it)")
            elif kind == "vault-entity":
                found.limits.append(f"entity {role}: tokens of its other login methods "
                                    "are revoked only where the store lists them")
        except KeyshiftError as exc:
            found.errors.append(exc.one_line())
    found.refs = list(dict.fromkeys(_dedupe(found.refs)))
    return found


def declared_token(store: Store, cid: str) -> bool:
    """Whether the row is a declared vault-token rotation's (its native id is the rotation's
    name, the value lives in a target): not an accessor keyshift can revoke."""
    cred = store.get_credential(cid)
    return cred is not None and cred.kind == TOKEN and (
        cred.tags or {}).get("rotation") == cred.native_id


def declared_token_targets(store: Store, loaded: LoadedInventory, clients: Clients,
                           cid: str) -> Targets:
    """The live tokens behind a declared vault-token rotation's row, found through its
    issuer's token role (keyshift names a token by accessor and never reads the value to find
    it): those keyshift minted for this rotation, and every token of the role when the role
    is this rotation's alone. A shared role's other tokens are left (said in ``limits``); a
    rotation without a role cannot be contained this way (said too)."""
    cred = store.get_credential(cid)
    found = Targets()
    name = cred.native_id if cred else cid
    rot = next((r for r in loaded.inventory.rotations if r.name == name), None)
    role = getattr(rot.issuer, "role", None) if rot is not None else None
    if rot is None or rot.issuer.type != "vault-token" or not role:
        found.limits.append(f"{name}: its issuer names no token role, so keyshift cannot find "
                            "the token's accessor: eradicate rotates it (grace 0 revokes it)")
        return found
    source = str(rot.issuer.source)  # type: ignore[union-attr]
    use = role_use(loaded, source, role, "vault-token-role")
    try:
        with _vault_errors(Ref(source, TOKEN, name, name=name), "list the tokens of"):
            live = _live_tokens(clients.vault(source), source, _token_role_token(role))
        _attribute(store, loaded, live, use, agents=set(rot.agents), rotation=name, role=role,
                   whose=f"rotation {name}", found_in=found)
    except KeyshiftError as exc:
        found.errors.append(exc.one_line())
    return found


def _dedupe(refs: list[Ref]) -> list[Ref]:
    """One ref per credential id; the one that names the user (a store row) wins."""
    best: dict[str, Ref] = {}
    for ref in refs:
        if ref.id not in best or (ref.user and not best[ref.id].user):
            best[ref.id] = ref
    return list(best.values())
