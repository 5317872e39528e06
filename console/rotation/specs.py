"""What a credential holds, and so how it rotates: one issuer and its delivery targets.

Found, in this order, from:

1. a ``rotations:`` entry of the inventory whose issuer or one of whose targets is this
   credential (a KV path, a Secrets Manager secret, an SSM parameter, a keyring entry, the
   access keys of an IAM user, the row the declared source lists for the rotation itself);
2. a declared provider credential (``credentials:``): issuer ``provider:<name>``, targets its
   ``delivered_to``;
3. the custom metadata / tag a source names with ``issuer_tag`` on the secret itself;
4. nothing: the issuer is unknown, so a person rotates it by hand (the provider checklist with
   no provider), never a random value in its place.

A credential a third-party whole rotator claims (``rotator: <name>`` naming one) goes to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from console.config import target_place
from console.inventory import (
    GeneratedIssuer,
    KeyringTarget,
    KvTarget,
    ProviderIssuer,
    Rotation,
    SecretsManagerTarget,
    SsmTarget,
    issuer_parts,
    target_fields,
)
from console.model import Credential, credential_id
from rotators import registry

if TYPE_CHECKING:
    from console.config import LoadedInventory
    from console.store import Store

# An older keyshift wrote ``rotator: vault-kv`` (and declared sources ``manual``) on every
# secret: neither says who issues the value, so neither counts as a declaration now.
NOT_A_DECLARATION = {"vault-kv", "manual"}


@dataclass(frozen=True)
class TargetSpec:
    type: str
    spec: dict[str, Any]
    fields: dict[str, str]  # part -> field at the target
    credential_id: str | None  # the store row that is this target, when there is one
    place: str


@dataclass(frozen=True)
class Spec:
    subject: str  # what a run claims: two runs may never rotate one subject at once
    issuer: dict[str, Any]  # {"type": ..., ...}
    targets: list[TargetSpec]
    origin: str  # where the declaration comes from, for the plan
    name: str | None = None  # the rotation's name, when declared under rotations:
    grace_hours: float | None = None
    problem: str | None = None  # a declaration found but unusable: the plan is refused
    legacy: str | None = None  # a third-party whole rotator's name
    warnings: list[str] = field(default_factory=list)

    @property
    def issuer_label(self) -> str:
        kind = self.issuer.get("type", "unknown")
        if kind == "provider":
            return f"provider:{self.issuer.get('provider', 'unknown')}"
        return str(kind)

    @property
    def parts(self) -> tuple[str, ...]:
        fixed = {"vault-approle": ("secret_id",), "vault-token": ("token",),
                 "aws-iam": ("access_key_id", "secret_access_key")}
        return fixed.get(self.issuer.get("type", ""), tuple(self.issuer.get("parts") or
                                                            ("value",)))


def resolve(cred: Credential, loaded: LoadedInventory, store: Store) -> Spec:
    """How ``cred`` rotates (see the module docstring)."""
    if cred.rotator and cred.rotator not in NOT_A_DECLARATION:
        try:
            cls = registry.get(cred.rotator)
        except LookupError:
            cls = None
        if cls is not None and registry.role_of(cls) == "rotator":
            return Spec(cred.id, {"type": cred.rotator}, [], f"rotator {cred.rotator}",
                        legacy=cred.rotator)
    inv = loaded.inventory
    matches = [(i, r) for i, r in enumerate(inv.rotations) if _covers(r, cred)]
    if len(matches) > 1:
        names = ", ".join(r.name for _, r in matches)
        return Spec(cred.id, {"type": "unknown"}, [], "rotations:",
                    problem=f"{cred.id} is declared by more than one rotation ({names})")
    if matches:
        i, rot = matches[0]
        return _from_rotation(rot, i, loaded, store)
    declared = _declared(cred, loaded)
    if declared is not None:
        return _from_declared(declared, cred, loaded, store)
    tagged = _from_tag(cred, loaded)
    if tagged is not None:
        return tagged
    return _undeclared(cred)


# --- matching a credential to a declaration ------------------------------------------------


def _covers(rot: Rotation, cred: Credential) -> bool:
    issuer = rot.issuer
    if cred.native_id == rot.name and cred.tags.get("rotation") == rot.name:
        return True  # the row the declared source lists for the rotation itself
    if (
        issuer.type == "aws-iam"
        and cred.kind == "iam-key"
        and cred.source == issuer.source
        and cred.tags.get("user") == issuer.user
    ):
        return True
    return any(_is_target(t, cred) for t in rot.targets)


def _is_target(target: Any, cred: Credential) -> bool:
    if isinstance(target, KvTarget):
        # a KV v1 secret is a row of its own kind, and may still be a rotation's target
        return cred.kind in ("kv", "kv-v1") and cred.source == target.source and (
            cred.native_id.strip("/") == target.path.strip("/")
        )
    if isinstance(target, SecretsManagerTarget):
        return (
            cred.kind == "secretsmanager"
            and cred.source == target.source
            and target.secret in (cred.name, cred.native_id)
            and (target.region is None or cred.tags.get("region") in (None, target.region))
        )
    if isinstance(target, SsmTarget):
        return (
            cred.kind == "ssm-parameter"
            and cred.source == target.source
            and cred.name == target.parameter
            and (target.region is None or cred.tags.get("region") in (None, target.region))
        )
    if isinstance(target, KeyringTarget):
        refs = [target.ref] if target.ref else list((target.refs or {}).values())
        return cred.kind == "keyring" and f"keyring:{cred.native_id}" in refs
    return False


def _target_credential(target: Any, loaded: LoadedInventory, store: Store) -> str | None:
    """The store row that is this target (its rotation is recorded there), if one exists."""
    if isinstance(target, KvTarget):
        v1 = f"{target.source}:kv-v1:{target.path.strip('/')}"
        if store.get_credential(v1) is not None:
            return v1
        return f"{target.source}:kv:{target.path.strip('/')}"
    if isinstance(target, SecretsManagerTarget):
        return store.find_credential_id(target.source, "secretsmanager", target.secret)
    if isinstance(target, SsmTarget):
        return store.find_credential_id(target.source, "ssm-parameter", target.parameter)
    if isinstance(target, KeyringTarget) and target.ref:
        for src in loaded.sources_of_type("keyring"):
            cid = f"{src.name}:keyring:{target.ref.removeprefix('keyring:')}"
            if store.get_credential(cid) is not None:
                return cid
    return None


def delivery_groups(loaded: LoadedInventory, store: Store) -> list[set[str]]:
    """Sets of store rows that hold one value by design: a declared credential with the
    places it is delivered to, and each rotation's targets. The same fingerprint within one
    set is a delivery, not reuse."""
    from console.sources.declared import ROTATION_ROW_KINDS

    groups: list[set[str]] = []
    for name, decl in loaded.credentials_by_name.items():
        targets = {_target_credential(t, loaded, store) for t in decl.delivered_to}
        groups.append({credential_id(decl.source, decl.kind, name)} | {t for t in targets if t})
    first = next(iter(loaded.sources_of_type("declared")), None)
    for rot in loaded.inventory.rotations:
        group = {t for t in (_target_credential(t, loaded, store) for t in rot.targets) if t}
        kind = ROTATION_ROW_KINDS.get(rot.issuer.type)
        if first is not None and kind is not None:
            group.add(credential_id(first.name, kind, rot.name))  # its declared row, if any
        groups.append(group)
    return [g for g in groups if len(g) > 1]


def _targets(
    targets: list[Any], parts: tuple[str, ...], loaded: LoadedInventory, store: Store
) -> Iterator[TargetSpec]:
    for t in targets:
        spec = t.model_dump(mode="json")
        yield TargetSpec(
            type=t.type,
            spec=spec,
            fields=target_fields(t, parts),
            credential_id=_target_credential(t, loaded, store),
            place=target_place(t),
        )


def _from_rotation(rot: Rotation, index: int, loaded: LoadedInventory, store: Store) -> Spec:
    issuer = rot.issuer.model_dump(mode="json")
    if issuer["type"] == "vault-approle" and not issuer.get("mount"):
        src = loaded.sources_by_name.get(issuer["source"])
        issuer["mount"] = getattr(src, "approle_mount", "approle")
    parts = issuer_parts(rot.issuer)
    return Spec(
        subject=f"rotation:{rot.name}",
        issuer=issuer,
        targets=list(_targets(rot.targets, parts, loaded, store)),
        origin=f"{loaded.display}: rotations[{index}] ({rot.name})",
        name=rot.name,
        grace_hours=rot.grace_period_hours,
    )


def _declared(cred: Credential, loaded: LoadedInventory) -> Any:
    src = loaded.sources_by_name.get(cred.source)
    if src is None or src.type != "declared":
        return None
    return loaded.credentials_by_name.get(cred.native_id)


def _from_declared(decl: Any, cred: Credential, loaded: LoadedInventory, store: Store) -> Spec:
    issuer = {"type": "provider", "provider": decl.provider, "parts": ["value"]}
    if decl.rotator and decl.rotator not in NOT_A_DECLARATION:
        return Spec(cred.id, issuer, [], "credentials:",
                    problem=f"rotator {decl.rotator!r} is not installed (or not a rotator)")
    targets = list(_targets(decl.delivered_to, ("value",), loaded, store))
    targets = [
        TargetSpec(t.type, t.spec, t.fields, cred.id, t.place) for t in targets
    ]
    spec = Spec(
        subject=cred.id,
        issuer=issuer,
        targets=targets,
        origin=f"{loaded.display}: credentials ({decl.name})",
    )
    if not targets:
        return replace(spec, problem=(
            f"{decl.name} is delivered nowhere keyshift can write (no delivered_to): rotate it "
            "where its consumers read it, then update the inventory"))
    return spec


# --- custom metadata / tags ------------------------------------------------------------------

_TAG_VALUE = re.compile(
    r"^(?:(?P<generated>generated)(?::(?P<alphabet>[a-z]+):(?P<length>[0-9]+))?"
    r"|provider:(?P<provider>[a-z0-9][a-z0-9._-]*)|(?P<manual>manual))$"
)


def parse_issuer_tag(text: str) -> dict[str, dict[str, Any] | None]:
    """The value of an ``issuer_tag``: ``generated``, ``generated:<alphabet>:<length>``,
    ``provider:<name>`` or ``manual``; per key of a multi-key secret
    ``<key>=<one of those>;<key>=static``. Returns key (or "" for the whole secret) -> issuer
    (None for a static key). ValueError says what is wrong."""
    out: dict[str, dict[str, Any] | None] = {}
    items = [i.strip() for i in text.split(";") if i.strip()]
    if not items:
        raise ValueError("it is empty")
    for item in items:
        key, sep, decl = item.partition("=")
        if not sep:
            key, decl = "", item
        elif not key:
            raise ValueError(f"{item!r} names no key")
        if decl == "static":
            out[key] = None
            continue
        m = _TAG_VALUE.match(decl)
        if not m:
            raise ValueError(
                f"{decl!r} is not generated, generated:<alphabet>:<length>, provider:<name>, "
                "manual or static"
            )
        if m["generated"]:
            gen: dict[str, Any] = {}
            if m["alphabet"]:
                gen = {"alphabet": m["alphabet"], "length": int(m["length"])}
            try:
                issuer = GeneratedIssuer.model_validate(
                    {"type": "generated", "generator": gen}
                ).model_dump(mode="json")
            except ValidationError as exc:
                msg = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
                raise ValueError(f"{decl}: {msg}") from None
        elif m["provider"]:
            issuer = ProviderIssuer.model_validate(
                {"type": "provider", "provider": m["provider"]}
            ).model_dump(mode="json")
        else:
            issuer = {"type": "provider", "provider": "unknown", "parts": ["value"]}
        out[key] = issuer
    return out


def _from_tag(cred: Credential, loaded: LoadedInventory) -> Spec | None:
    src = loaded.sources_by_name.get(cred.source)
    tag = getattr(src, "issuer_tag", None)
    if not tag or tag not in cred.tags:
        return None
    origin = f"{tag} on {cred.location or cred.native_id}"
    try:
        decls = parse_issuer_tag(cred.tags[tag])
    except ValueError as exc:
        return Spec(cred.id, {"type": "unknown"}, [], origin, problem=f"{origin}: {exc}")
    issuers = {k: v for k, v in decls.items() if v is not None}
    kinds = {(v["type"], v.get("provider")) for v in issuers.values()}
    if len(kinds) != 1:
        return Spec(cred.id, {"type": "unknown"}, [], origin, problem=(
            f"{origin} gives the keys of one secret different issuers; one secret, one issuer"
            if kinds else f"{origin} declares every key static: nothing to rotate"))
    keys = [k for k in issuers if k]
    issuer = dict(next(iter(issuers.values())))
    parts = tuple(keys) if keys else ("value",)
    issuer["parts"] = list(parts)
    fields = {k: k for k in keys} if keys else {"value": ""}
    target = _self_target(cred, fields)
    if target is None:
        return Spec(cred.id, issuer, [], origin,
                    problem=f"{origin}: a {cred.kind} cannot carry an issuer tag")
    return Spec(cred.id, issuer, [target], origin)


def _self_target(cred: Credential, fields: dict[str, str]) -> TargetSpec | None:
    """The credential itself as a delivery target (``fields``: part -> key; "" = all of it)."""
    if cred.kind == "kv":
        kv_fields = {p: (k or None) for p, k in fields.items()}
        spec = {"type": "vault-kv", "source": cred.source, "path": cred.native_id}
        return TargetSpec("vault-kv", spec, {p: k for p, k in kv_fields.items() if k}
                          or {}, cred.id, f"{cred.source}:kv:{cred.native_id}")
    if cred.kind == "secretsmanager":
        spec = {"type": "secretsmanager", "source": cred.source, "secret": cred.native_id,
                "region": cred.tags.get("region")}
        return TargetSpec("secretsmanager", spec, fields, cred.id, cred.id)
    if cred.kind == "ssm-parameter":
        spec = {"type": "ssm", "source": cred.source, "parameter": cred.name,
                "region": cred.tags.get("region"), "label": "keyshift-current"}
        return TargetSpec("ssm", spec, {p: "" for p in fields}, cred.id, cred.id)
    if cred.kind == "keyring":
        ref = f"keyring:{cred.native_id}"
        part = next(iter(fields))
        return TargetSpec("keyring", {"type": "keyring", "ref": ref}, {part: ref}, cred.id, ref)
    return None


UNDECLARED = "not declared"  # the origin of a spec keyshift found no declaration for


def _undeclared(cred: Credential) -> Spec:
    issuer = {"type": "provider", "provider": "unknown", "parts": ["value"]}
    origin = UNDECLARED
    if cred.kind == "iam-key":
        return Spec(cred.id, {"type": "aws-iam", "source": cred.source,
                              "user": cred.tags.get("user", "?")}, [], origin, problem=(
            "keyshift knows who issues this key (IAM) but not where its consumers read it: "
            "declare its targets under rotations: (issuer aws-iam, user "
            f"{cred.tags.get('user', '?')})"))
    if cred.kind in ("approle-secret-id", "vault-token"):
        return Spec(cred.id, issuer, [], origin, problem=(
            f"where the consumers of this {cred.kind} read it is not declared: declare it "
            "under rotations:"))
    fields = {"value": "value" if cred.kind == "kv" else ""}
    target = _self_target(cred, fields)
    if target is None:
        return Spec(cred.id, issuer, [], origin,
                    problem=f"keyshift has no delivery target for a {cred.kind}")
    if cred.kind == "kv":
        # which key a person's new value goes to is settled by the target's plan (a lone key)
        target = TargetSpec(target.type, target.spec, {}, target.credential_id, target.place)
    return Spec(cred.id, issuer, [target], origin)
