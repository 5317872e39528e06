"""The Vault side of drills: an agent's token, its leak into a log, and what its thief read.

- ``vault-token`` (world part): a token role ``drill-<tag>-<agent>-tok`` with the agent's
  policy, and a token minted from it in the agent's env file (``VAULT_TOKEN``), declared as a
  ``vault-token`` rotation with that role (so a token already revoked by contain is replaced
  from the role); the agent gets a ``vault-token-role`` identity. Cleanup revokes every token
  of the role, then deletes it (a role's tokens outlive the role).
- ``token-leaked-to-log`` (injection): the agent writes its token into its log file in the
  drill's workspace (0600; removed with the workspace at cleanup); the attacker copies it from
  there (in memory) and reads the KV secrets named in ``reads`` with it, keeping what it read.
  The paths it read go in the drill's notes (references only) for ``token-reads-found``.
- ``token-reads-found`` (check): the incident's review found exactly the KV secrets the
  attacker read with the token, in the Vault audit device (by the accessor's HMAC).

Values: the token lives in the agent's env file, the log line and the attacker's memory only;
records hold the role, paths and credential ids.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from console.drills.checks import CHECKS
from console.drills.context import Drill
from console.drills.injections import INJECTIONS
from console.drills.world import (
    CLEANERS,
    DECLARED_SOURCE,
    PARTS,
    VAULT_SOURCE,
    DrillWorld,
    Item,
    _read_env,
    _session,
    _write_env,
)
from console.errors import SandboxError

if TYPE_CHECKING:
    from console.drills.model import Check, Injection, PartSpec
    from console.sandbox import SandboxState

TOKEN_VAR = "VAULT_TOKEN"
LOG_NAME = "agent.log"


# --- the world part ---------------------------------------------------------------------------


@PARTS.word("vault-token", options=("ttl",),
            help="the agent's Vault token, minted from a token role of its own with the agent's "
                 "policy, in its env file; declared as a vault-token rotation with that role")
def _vault_token(world: DrillWorld, spec: PartSpec, owner: str | None) -> dict[str, Any]:
    if not spec.agent:
        raise SandboxError(f"world part {spec.name}: vault-token needs an agent")
    policy = world.agents[spec.agent]["role"]  # the agent's read policy (world.py)
    role = world.name(spec.agent, "tok")
    vault = world.vault()
    world.created("token-role", name=role)
    vault.adapter.post(f"/v1/auth/token/roles/{role}",
                       json={"allowed_policies": [policy], "orphan": True})
    auth = vault.adapter.post(f"/v1/auth/token/create/{role}",
                              json={"policies": [policy],
                                    "ttl": str(spec.options.get("ttl", "1h"))})["auth"]
    env = world.env_file(spec.agent)
    found = _read_env(env) if env.is_file() else {}
    _write_env(env, {**found, TOKEN_VAR: auth["client_token"]})
    for agent in world.inventory["agents"]:
        if agent["name"] == spec.agent:
            agent["identities"].append({"type": "vault-token-role", "source": VAULT_SOURCE,
                                        "role": role})
    for source in world.inventory["sources"]:
        if source["name"] == VAULT_SOURCE:
            # the sync lists the role's token (by accessor, never its value): what the
            # vault-token issuer remembers it by to mint a like one once contain revoked it
            source["auth"] = True
    world.inventory["rotations"].append({
        "name": spec.name,
        "issuer": {"type": "vault-token", "source": VAULT_SOURCE, "role": role},
        "targets": [{"type": "env-file", "path": world.rel(env), "var": TOKEN_VAR}],
        "agents": [spec.agent], **({"owner": owner} if owner else {}),
        "environment": world.agents[spec.agent]["environment"],
        "sensitivity": spec.sensitivity,
    })
    from console.model import credential_id

    return {"role": role, "policy": policy, "env_file": world.rel(env), "var": TOKEN_VAR,
            "credential_id": credential_id(DECLARED_SOURCE, "vault-token", spec.name)}


def _token_works(world: DrillWorld, token: str, policy: str | None = None) -> bool:
    """lookup-self with the token: 403 once it is revoked."""
    import hvac
    import hvac.exceptions

    client = hvac.Client(url=world.state.vault.address, token=token, timeout=10,
                         session=_session())
    try:
        data = client.auth.token.lookup_self()["data"]
    except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
        return False
    return policy is None or policy in (data.get("policies") or [])


def _bind_token(world: DrillWorld, rec: dict[str, Any]) -> Item:
    def read() -> dict[str, str]:
        return {"token": _read_env(world.dir / rec["env_file"])[rec["var"]]}

    def works(values: dict[str, str]) -> bool:
        return _token_works(world, values["token"], rec["policy"])

    return Item(rec["name"], rec["part"], rec["credential_id"], rec.get("agent"),
                rec.get("owner"), read, works, rec)


PARTS.get("vault-token").extra["bind"] = _bind_token


def accessor_of(world: DrillWorld, token: str) -> str | None:
    """The accessor of ``token`` (asked by the sandbox's admin), or None when it is not
    valid: the accessor names the token from then on without holding it."""
    import hvac.exceptions

    try:
        got = world.vault().auth.token.lookup(token)
    except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest, hvac.exceptions.InvalidPath):
        return None
    return str(got["data"]["accessor"]) if got.get("data", {}).get("accessor") else None


def accessor_gone(world: DrillWorld, accessor: str) -> bool:
    """Whether OpenBao no longer knows the token an accessor names (revoked or expired)."""
    import hvac.exceptions

    try:
        world.vault().auth.token.lookup_accessor(accessor)
    except (hvac.exceptions.InvalidRequest, hvac.exceptions.InvalidPath):
        return True  # a denial is no answer about the token: it raises
    return False


def _token_ref(world: DrillWorld, item: Item) -> dict[str, Any]:
    accessor = accessor_of(world, item.read()["token"])
    return {"accessor": accessor} if accessor else {}


def _token_refused(world: DrillWorld, item: Item, ref: dict[str, Any]) -> bool:
    return accessor_gone(world, str(ref["accessor"]))


PARTS.get("vault-token").extra.update(ref=_token_ref, refused=_token_refused)


def _remove_token_role(state: SandboxState, res: dict[str, Any]) -> None:
    import hvac.exceptions

    from console.sandbox import vault_client

    vault = vault_client(state)
    keys = (vault.adapter.request("LIST", "/v1/auth/token/accessors") or {}).get(
        "data", {}).get("keys") or []
    for accessor in keys:
        try:
            data = vault.auth.token.lookup_accessor(accessor)["data"]
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.InvalidPath):
            continue
        if data.get("path") == f"auth/token/create/{res['name']}":
            with contextlib.suppress(hvac.exceptions.InvalidRequest):
                vault.auth.token.revoke_accessor(accessor)
    vault.adapter.delete(f"/v1/auth/token/roles/{res['name']}")


CLEANERS["token-role"] = _remove_token_role


# --- the injection ----------------------------------------------------------------------------


@INJECTIONS.word("token-leaked-to-log", options=("reads",),
                 help="the agent writes its Vault token into its log (0600, in the drill's "
                      "workspace); the attacker copies it there and reads the KV secrets named "
                      "in reads: with it")
def token_leaked_to_log(drill: Drill, step: Injection) -> dict[str, Any]:
    import hvac

    (item,) = drill.items_for(step)
    if item.part != "vault-token":
        raise SandboxError(f"token-leaked-to-log needs a vault-token credential, not {item.part}")
    world = drill.world
    log = world.env_file(item.agent).parent / LOG_NAME
    fd = os.open(log, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as fh:
        # the leak the scenario rehearses: a debug line with the agent's environment
        fh.write(f"DEBUG starting with {TOKEN_VAR}={item.read()['token']}\n")
    # the attacker scrapes the log: the copy lives in its memory only
    line = next(ln for ln in log.read_text().splitlines() if f"{TOKEN_VAR}=" in ln)
    token = line.split(f"{TOKEN_VAR}=", 1)[1].strip()
    drill.attacker.stolen[item.name] = {"token": token}
    names = step.options.get("reads") or []
    names = [names] if isinstance(names, str) else list(names)
    thief = hvac.Client(url=world.state.vault.address, token=token, timeout=10,
                        session=_session())
    read = []
    for name in names:
        target = world.items[name]
        if target.part != "kv-generated":
            raise SandboxError(f"token-leaked-to-log reads KV secrets; {name} is {target.part}")
        got = thief.secrets.kv.v2.read_secret_version(
            target.record["path"], mount_point=world.mount, raise_on_deleted_version=True)
        drill.attacker.stolen[name] = {"value": str(got["data"]["data"]["value"])}
        read.append(name)
    drill.notes["token_reads"] = {item.name: read}
    return {"stolen": [item.name, *read], "log": world.rel(log)}


# --- the check --------------------------------------------------------------------------------


@CHECKS.word("token-reads-found", capability="detect",
             advice="review a leaked token's requests since the leak in the Vault audit device "
                    "(incident review does, by the accessor's HMAC), and rotate what it read",
             help="the incident's review found exactly the KV secrets the attacker read with "
                  "the leaked token")
def token_reads_found(drill: Drill, check: Check) -> dict[str, Any]:
    reads = drill.notes.get("token_reads")
    if reads is None:
        return {"ok": False, "why": "the attacker read nothing (was it injected?)", "detail": {}}
    names = [n for names in reads.values() for n in names]
    wanted = sorted(drill.world.items[n].credential_id for n in names)
    detail = (drill.store.get_incident(drill.incident_id or "") or {}).get("detail") or {}
    review = (detail.get("auto") or {}).get("review") or {}
    found = sorted((review.get("token_use") or {}).get("kv_reads") or [])
    by_id = {drill.world.items[n].credential_id: n for n in drill.world.items}
    missed = [by_id.get(c, c) for c in wanted if c not in found]
    extra = [by_id.get(c, c) for c in found if c not in wanted]
    if not review:
        why = "the review did not run: the token's reads were never looked for"
    elif missed or extra:
        why = ("review missed: " + ", ".join(missed) if missed else "") + (
            ("; " if missed and extra else "") + ("review listed unread: " + ", ".join(extra)
                                                   if extra else ""))
    else:
        why = f"review found the {len(found)} secret(s) the token read: {', '.join(names)}"
    return {"ok": bool(review) and not missed and not extra, "why": why,
            "detail": {"read": names, "found": [by_id.get(c, c) for c in found],
                       "missed": missed, "extra": extra}}
