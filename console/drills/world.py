"""A drill's world: what it builds in the sandbox, under one tag, and how it is torn down.

Each run builds its own small world in the sandbox servers: a KV mount ``drill-<tag>``, an
AppRole role and policy per agent (``drill-<tag>-<agent>``), provider keys at the stand-in
under a provider of its own, IAM users ``drill-<tag>-...``, env files in the run's
``workspace/``, an inventory (``inventory.yaml``) and a store (``drill.db``) in
``<data dir>/drills/<run id>/``, synced by the real sync. The user's inventory and store are
never touched.

Every resource is written to ``world.json`` (references only: names, paths, credential ids)
*before* it is created, so ``drill cleanup`` removes what a killed run left, and a part's
``bind`` rebuilds its runtime handle (how a consumer reads and uses it) from that record in a
later process. Values live in the servers and the agents' env files only, never in
world.json, the store or a report.

World parts are a vocabulary (``PARTS``): a part is ``build(world, spec) -> record`` plus
``bind(world, record) -> Item``, registered by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console import paths
from console.drills.vocab import Vocabulary
from console.errors import SandboxError

if TYPE_CHECKING:
    from console.drills.model import PartSpec, Scenario
    from console.sandbox import SandboxState

PARTS = Vocabulary("world part")
# how cleanup removes a resource kind a world part of another module notes (kind -> remover);
# a kind with none is only listed as removed
CLEANERS: dict[str, Callable[[SandboxState, dict[str, Any]], None]] = {}
WORLD_FILE = "world.json"
VAULT_SOURCE = "v"
AWS_SOURCE = "aws"
DECLARED_SOURCE = "declared"


@dataclass
class Item:
    """One credential of the world, as its consumer and the attacker see it. ``read`` gives
    the current value as the agent reads it (in memory); ``works`` asks the issuer whether a
    value is accepted; ``consumer`` reads and uses it as the agent would."""

    name: str
    part: str
    credential_id: str
    agent: str | None
    owner: str | None
    read: Callable[[], dict[str, str]]
    works: Callable[[dict[str, str]], bool]
    record: dict[str, Any]

    def consumer(self) -> bool:
        try:
            return self.works(self.read())
        except Exception:  # a consumer that cannot read or call is a broken consumer
            return False


@dataclass
class DrillWorld:
    run_id: str
    tag: str
    dir: Path
    state: SandboxState
    resources: list[dict[str, Any]] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    inventory: dict[str, Any] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)

    @property
    def mount(self) -> str:
        return f"drill-{self.tag}"

    @property
    def inventory_path(self) -> Path:
        return self.dir / "inventory.yaml"

    @property
    def db_path(self) -> Path:
        return self.dir / "drill.db"

    @property
    def workspace(self) -> Path:
        return self.dir / "workspace"

    def vault(self) -> Any:
        from console.sandbox import vault_client

        return vault_client(self.state)

    def aws(self, service: str) -> Any:
        from console.sandbox import aws_client

        return aws_client(self.state, service)

    def name(self, *parts: str) -> str:
        return "-".join(("drill", self.tag, *parts))

    def created(self, kind: str, **ref: Any) -> None:
        """Note a resource before creating it (so a kill right after still cleans it up)."""
        self.resources.append({"kind": kind, **ref})
        self.save()

    def save(self) -> None:
        data = {"run_id": self.run_id, "tag": self.tag, "resources": self.resources,
                "records": self.records, "agents": self.agents}
        tmp = self.dir / (WORLD_FILE + ".tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1)
        os.replace(tmp, self.dir / WORLD_FILE)

    def env_file(self, agent: str | None) -> Path:
        folder = paths.private_dir(self.workspace / (agent or "shared"))
        return folder / ".env"

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.dir))

    def bind_all(self) -> None:
        self.items = {name: PARTS.get(rec["part"]).extra["bind"](self, rec)
                      for name, rec in self.records.items()}


def load_world(run_dir: Path, state: SandboxState) -> DrillWorld:
    data = json.loads((run_dir / WORLD_FILE).read_text())
    world = DrillWorld(data["run_id"], data["tag"], run_dir, state, data["resources"],
                       data["records"], data.get("agents", {}))
    world.bind_all()
    return world


# --- stand-in, env files ------------------------------------------------------------------


def _session() -> Any:
    import requests

    session = requests.Session()
    session.trust_env = False  # loopback: no proxy from the environment
    return session


def standin(provider: str, path: str, **body: Any) -> Any:
    from console.sandbox import provider_base

    got = _session().post(f"{provider_base(provider)}/console/{path}", json=body, timeout=10)
    got.raise_for_status()
    return got.json()


def standin_keys(provider: str) -> list[dict[str, Any]]:
    from console.sandbox import provider_base

    got = _session().get(f"{provider_base(provider)}/console/keys", timeout=10)
    got.raise_for_status()
    return list(got.json())


def standin_accepts(provider: str, key: str) -> bool:
    from console.sandbox import provider_base

    got = _session().get(f"{provider_base(provider)}/v1/models",
                         headers={"Authorization": f"Bearer {key}"}, timeout=10)
    return got.status_code == 200


def _read_env(path: Path) -> dict[str, str]:
    from rotators.targets.env_file import read_vars

    return {k: v for k, v in read_vars(path).items() if v is not None}


def _write_env(path: Path, values: dict[str, str]) -> None:
    from rotators.targets.env_file import write_vars

    write_vars(path, dict(values))


# --- building ---------------------------------------------------------------------------------


def _enable_approle(vault: Any) -> None:
    if "approle/" not in vault.sys.list_auth_methods()["data"]:
        with contextlib.suppress(Exception):  # another process enabled it meanwhile
            vault.sys.enable_auth_method("approle")


def build_world(scenario: Scenario, run_id: str, run_dir: Path, state: SandboxState) -> DrillWorld:
    """Build the scenario's world in the sandbox and write its inventory; the caller syncs."""
    # letters only: a hex tag like 3f9a1b2c makes a role name the inventory's secret check
    # reads as a random token (about 3 runs in 100), and the world's inventory is refused
    tag = "".join(secrets.choice(string.ascii_lowercase) for _ in range(8))
    world = DrillWorld(run_id, tag, paths.private_dir(run_dir), state)
    paths.private_dir(world.workspace)
    world.created("dir", path="workspace")
    vault = world.vault()
    world.created("vault-mount", path=world.mount)
    vault.sys.enable_secrets_engine("kv", path=world.mount, options={"version": "2"})
    _enable_approle(vault)
    inv_agents = []
    for agent in scenario.world.agents:
        role = world.name(agent.name)
        policy = role
        world.created("vault-policy", name=policy)
        vault.sys.create_or_update_policy(
            policy, f'path "{world.mount}/data/{agent.name}/*" {{\n  capabilities = ["read"]\n}}\n')
        world.created("approle-role", name=role)
        vault.auth.approle.create_or_update_approle(role, token_policies=[policy],
                                                    token_ttl="10m")
        world.agents[agent.name] = {"role": role, "owner": agent.owner,
                                    "environment": agent.environment}
        inv_agents.append({
            "name": agent.name, "owner": agent.owner, "environment": agent.environment,
            "identities": [{"type": "vault-approle", "source": VAULT_SOURCE, "role": role}],
        })
    world.inventory = {
        "version": 1,
        "sources": [
            {"name": VAULT_SOURCE, "type": "openbao", "sandbox": True, "kv_mounts": [world.mount],
             "auth": False, "leases": False, "issuer_tag": "keyshift-issuer"},
            {"name": DECLARED_SOURCE, "type": "declared"},
        ],
        "agents": inv_agents,
        "providers": [],
        "credentials": [],
        "rotations": [],
        # a drill revokes at once: the response is over when the old value is refused
        "policies": {"grace_period_hours": 0},
    }
    for spec in scenario.world.parts:
        word = PARTS.get(spec.part)
        owner = spec.owner or (world.agents[spec.agent]["owner"] if spec.agent else None)
        record = word.fn(world, spec, owner)
        record |= {"part": spec.part, "name": spec.name, "agent": spec.agent, "owner": owner}
        world.records[spec.name] = record
        world.save()
    write_inventory(world)
    world.bind_all()
    return world


def write_inventory(world: DrillWorld) -> None:
    inv = {k: v for k, v in world.inventory.items() if v != []}
    fd = os.open(world.inventory_path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(inv, fh, indent=1)  # JSON is YAML: the inventory loader reads it as such


def read_inventory(world: DrillWorld) -> dict[str, Any]:
    return json.loads(world.inventory_path.read_text())


def _environment(world: DrillWorld, spec: PartSpec) -> str:
    return world.agents[spec.agent]["environment"] if spec.agent else "prod"


@PARTS.word("kv-generated", options=(),
            help="a shared secret keyshift may generate, in the world's KV mount under the "
                 "agent's folder (its AppRole policy reads it)")
def _kv_generated(world: DrillWorld, spec: PartSpec, owner: str | None) -> dict[str, Any]:
    path = f"{spec.agent or 'shared'}/{spec.name}"
    vault = world.vault()
    vault.secrets.kv.v2.create_or_update_secret(
        path, {"value": "drill-" + secrets.token_urlsafe(24)}, mount_point=world.mount)
    meta = {"keyshift-issuer": "generated", "environment": _environment(world, spec),
            "sensitivity": spec.sensitivity}
    if owner:
        meta["owner"] = owner
    vault.secrets.kv.v2.update_metadata(path, mount_point=world.mount, custom_metadata=meta)
    from console.model import credential_id

    return {"path": path, "credential_id": credential_id(VAULT_SOURCE, "kv",
                                                         f"{world.mount}/{path}")}


def _bind_kv(world: DrillWorld, rec: dict[str, Any]) -> Item:
    def read() -> dict[str, str]:
        # as the agent reads it: its own AppRole login, then the KV read its policy allows
        import hvac

        vault = world.vault()
        role = world.agents[rec["agent"]]["role"] if rec.get("agent") else None
        if role is None:
            client = vault
        else:
            role_id = vault.auth.approle.read_role_id(role)["data"]["role_id"]
            sid = vault.auth.approle.generate_secret_id(role)["data"]
            client = hvac.Client(url=vault.url, timeout=10, session=_session())
            client.auth.approle.login(role_id, sid["secret_id"])
            with contextlib.suppress(Exception):  # one-off: leave no secret-id behind
                vault.auth.approle.destroy_secret_id_accessor(role, sid["secret_id_accessor"])
        try:
            got = client.secrets.kv.v2.read_secret_version(
                rec["path"], mount_point=world.mount, raise_on_deleted_version=True)
        finally:
            if client is not vault:
                with contextlib.suppress(Exception):
                    client.auth.token.revoke_self()
        return {"value": str(got["data"]["data"]["value"])}

    def works(values: dict[str, str]) -> bool:
        # a shared secret is valid while it is the one its other side holds (the current one)
        got = world.vault().secrets.kv.v2.read_secret_version(
            rec["path"], mount_point=world.mount, raise_on_deleted_version=True)
        return bool(values.get("value")) and got["data"]["data"]["value"] == values["value"]

    return Item(rec["name"], rec["part"], rec["credential_id"], rec.get("agent"),
                rec.get("owner"), read, works, rec)


PARTS.get("kv-generated").extra["bind"] = _bind_kv


@PARTS.word("provider-key", options=("var",),
            help="an API key minted at the provider stand-in (a provider of the world's own), "
                 "declared in the inventory and delivered to the agent's env file")
def _provider_key(world: DrillWorld, spec: PartSpec, owner: str | None) -> dict[str, Any]:
    provider = world.name(spec.name)
    var = str(spec.options.get("var", "PROVIDER_API_KEY"))
    env = world.env_file(spec.agent)
    world.created("provider", name=provider)
    _write_env(env, {var: standin(provider, "keys", name="drill")["key"]})
    world.inventory["providers"].append({
        "name": provider, "sandbox": True,
        "verify": {"url": "https://api.example.com/v1/models"}})
    world.inventory["credentials"].append({
        "name": spec.name, "source": DECLARED_SOURCE, "kind": "api-key", "provider": provider,
        **({"owner": owner} if owner else {}), "environment": _environment(world, spec),
        "sensitivity": spec.sensitivity, "agents": [spec.agent] if spec.agent else [],
        "delivered_to": [{"type": "env-file", "path": world.rel(env), "var": var}],
    })
    from console.model import credential_id

    return {"provider": provider, "env_file": world.rel(env), "var": var,
            "credential_id": credential_id(DECLARED_SOURCE, "api-key", spec.name)}


def _bind_provider(world: DrillWorld, rec: dict[str, Any]) -> Item:
    def read() -> dict[str, str]:
        return {"value": _read_env(world.dir / rec["env_file"])[rec["var"]]}

    def works(values: dict[str, str]) -> bool:
        return standin_accepts(rec["provider"], values["value"])

    return Item(rec["name"], rec["part"], rec["credential_id"], rec.get("agent"),
                rec.get("owner"), read, works, rec)


PARTS.get("provider-key").extra["bind"] = _bind_provider


@PARTS.word("approle-secret-id", options=(),
            help="the agent's AppRole login (role id and secret-id) in its env file, rotated "
                 "by keyshift's vault-approle issuer")
def _approle_secret_id(world: DrillWorld, spec: PartSpec, owner: str | None) -> dict[str, Any]:
    if not spec.agent:
        raise SandboxError(f"world part {spec.name}: approle-secret-id needs an agent")
    role = world.agents[spec.agent]["role"]
    vault = world.vault()
    role_id = vault.auth.approle.read_role_id(role)["data"]["role_id"]
    secret_id = vault.auth.approle.generate_secret_id(role)["data"]["secret_id"]
    env = world.env_file(spec.agent)
    _write_env(env, {"VAULT_ROLE_ID": role_id, "VAULT_SECRET_ID": secret_id})
    world.inventory["rotations"].append({
        "name": spec.name,
        "issuer": {"type": "vault-approle", "source": VAULT_SOURCE, "role": role},
        "targets": [{"type": "env-file", "path": world.rel(env), "var": "VAULT_SECRET_ID"}],
        "agents": [spec.agent], **({"owner": owner} if owner else {}),
        "environment": _environment(world, spec), "sensitivity": spec.sensitivity,
    })
    from console.model import credential_id

    return {"role": role, "env_file": world.rel(env),
            "credential_id": credential_id(DECLARED_SOURCE, "approle-secret-id", spec.name)}


def _bind_approle(world: DrillWorld, rec: dict[str, Any]) -> Item:
    def read() -> dict[str, str]:
        found = _read_env(world.dir / rec["env_file"])
        return {"role_id": found["VAULT_ROLE_ID"], "secret_id": found["VAULT_SECRET_ID"]}

    def works(values: dict[str, str]) -> bool:
        import hvac
        import hvac.exceptions

        client = hvac.Client(url=world.state.vault.address, timeout=10, session=_session())
        try:
            got = client.auth.approle.login(values["role_id"], values["secret_id"])
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
            return False
        client.token = got["auth"]["client_token"]
        with contextlib.suppress(Exception):
            client.auth.token.revoke_self()
        return True

    return Item(rec["name"], rec["part"], rec["credential_id"], rec.get("agent"),
                rec.get("owner"), read, works, rec)


PARTS.get("approle-secret-id").extra["bind"] = _bind_approle


# --- references: what identifies a value without holding it ---------------------------------
#
# A part may register ``ref(world, item) -> dict`` (what names the value in use now: a key id,
# an accessor, a KV version; never the value) and ``refused(world, item, ref) -> bool`` (whether
# the issuer now refuses the value that reference named). ``drill verify`` runs in a later
# process than the injection, so the attacker's copies are gone: it checks these instead.


def ref_of(world: DrillWorld, item: Item) -> dict[str, Any]:
    """The reference of the value ``item`` holds now ({} when its part has none)."""
    fn = PARTS.get(item.part).extra.get("ref")
    return dict(fn(world, item)) if fn else {}


def refused_by_ref(world: DrillWorld, item: Item, ref: dict[str, Any]) -> bool | None:
    """Whether the issuer refuses the value ``ref`` named; None when it cannot be told by
    reference (no reference was recorded, or the part has no way to ask)."""
    fn = PARTS.get(item.part).extra.get("refused")
    if not ref or fn is None:
        return None
    return bool(fn(world, item, ref))


def _kv_ref(world: DrillWorld, item: Item) -> dict[str, Any]:
    meta = world.vault().secrets.kv.v2.read_secret_metadata(item.record["path"],
                                                            mount_point=world.mount)
    return {"version": int(meta["data"]["current_version"])}


def _kv_refused(world: DrillWorld, item: Item, ref: dict[str, Any]) -> bool:
    # a shared secret is valid while it is the current one: a version no longer current, or
    # destroyed or deleted, is one the other side no longer accepts
    import hvac.exceptions

    try:
        meta = world.vault().secrets.kv.v2.read_secret_metadata(item.record["path"],
                                                                mount_point=world.mount)
    except hvac.exceptions.InvalidPath:
        return True
    data = meta["data"]
    version = (data.get("versions") or {}).get(str(ref["version"])) or {}
    return (int(data["current_version"]) != int(ref["version"]) or bool(version.get("destroyed"))
            or bool(version.get("deletion_time")))


def _provider_ref(world: DrillWorld, item: Item) -> dict[str, Any]:
    return {"key_ids": sorted(k["id"] for k in standin_keys(item.record["provider"])
                              if not k["revoked"])}


def _provider_refused(world: DrillWorld, item: Item, ref: dict[str, Any]) -> bool:
    live = {k["id"] for k in standin_keys(item.record["provider"]) if not k["revoked"]}
    return not live & set(ref["key_ids"])


def _approle_ref(world: DrillWorld, item: Item) -> dict[str, Any]:
    # the accessor of the secret-id the agent's env file holds, asked of the role by value
    # (in memory, as the consumer would present it); the accessor names it from then on
    got = world.vault().auth.approle.read_secret_id(item.record["role"], item.read()["secret_id"])
    data = (got or {}).get("data") or {}
    return {"accessor": data["secret_id_accessor"]} if data.get("secret_id_accessor") else {}


def _approle_refused(world: DrillWorld, item: Item, ref: dict[str, Any]) -> bool:
    import hvac.exceptions

    try:
        got = world.vault().auth.approle.read_secret_id_accessor(item.record["role"],
                                                                 ref["accessor"])
    except (hvac.exceptions.InvalidRequest, hvac.exceptions.InvalidPath):
        return True  # no such accessor (destroyed, expired, or its role deleted)
    return not ((got or {}).get("data") or {})


for _part, _ref, _refused in (("kv-generated", _kv_ref, _kv_refused),
                              ("provider-key", _provider_ref, _provider_refused),
                              ("approle-secret-id", _approle_ref, _approle_refused)):
    PARTS.get(_part).extra.update(ref=_ref, refused=_refused)


# --- cleanup ----------------------------------------------------------------------------------


def cleanup(run_dir: Path, state: SandboxState) -> dict[str, Any]:
    """Remove what the run's world.json lists, newest first; each failure is reported by the
    resource and the error's type, and the rest still goes. Idempotent."""
    file = run_dir / WORLD_FILE
    if not file.is_file():
        return {"removed": [], "errors": [], "note": "no world recorded"}
    from console.sandbox import aws_client, vault_client

    data = json.loads(file.read_text())
    removed, errors = [], []
    vault = vault_client(state)
    for res in reversed(data.get("resources", [])):
        kind = res["kind"]
        label = f"{kind}:{res.get('name') or res.get('path')}"
        try:
            if kind == "vault-mount":
                vault.sys.disable_secrets_engine(res["path"])
            elif kind == "vault-policy":
                vault.sys.delete_policy(res["name"])
            elif kind == "approle-role":
                vault.auth.approle.delete_role(res["name"])
            elif kind == "provider":
                for key in standin_keys(res["name"]):
                    if not key["revoked"]:
                        standin(res["name"], "revoke", id=key["id"])
            elif kind == "iam-user":
                _remove_iam_user(aws_client(state, "iam"), res["name"])
            elif kind in CLEANERS:
                CLEANERS[kind](state, res)
            elif kind == "dir":
                # the agents' env files hold (sandbox) values: they go; the store stays
                shutil.rmtree(run_dir / res["path"], ignore_errors=True)
            removed.append(label)
        except Exception as exc:  # keep going: one stuck resource must not keep the rest
            errors.append(f"{label}: {type(exc).__name__}")
    if any(r["kind"] == "iam-user" for r in data.get("resources", [])):
        # users a person made for the world in a process of their own (keyshift incident
        # split names them after the shared key's user): world.json never heard of them, but
        # they carry the world's tag
        prefix = f"drill-{data['tag']}-"
        try:
            iam = aws_client(state, "iam")
            names = [u["UserName"] for page in iam.get_paginator("list_users").paginate()
                     for u in page["Users"] if u["UserName"].startswith(prefix)]
        except Exception as exc:
            names = []
            errors.append(f"iam-user:{prefix}*: {type(exc).__name__}")
        for name in names:
            try:
                _remove_iam_user(iam, name)
                removed.append(f"iam-user:{name}")
            except Exception as exc:
                errors.append(f"iam-user:{name}: {type(exc).__name__}")
    return {"removed": removed, "errors": errors}


def _remove_iam_user(iam: Any, name: str) -> None:
    """The user with its keys, attached and inline policies; gone already is fine."""
    with contextlib.suppress(iam.exceptions.NoSuchEntityException):
        for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=name, AccessKeyId=k["AccessKeyId"])
        for p in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]:
            iam.detach_user_policy(UserName=name, PolicyArn=p["PolicyArn"])
        for p in iam.list_user_policies(UserName=name)["PolicyNames"]:
            iam.delete_user_policy(UserName=name, PolicyName=p)
        iam.delete_user(UserName=name)
