"""Splitting a shared IAM access key into one least-privilege key per agent.

One over-privileged key read by several agents is one blast radius for all of them. ``split_key``
gives each agent an IAM user of its own (``<user>-<agent>``) with an inline policy allowing
exactly the listed actions on exactly the listed resources, creates its key, delivers it where
the agent read the shared key (the env-file target of the shared key's ``aws-iam`` rotation,
written by the env-file target's own code), checks it at STS, and only then deactivates and
deletes the shared key. Each step is an ``incident.split`` audit entry with references only
(user names, key ids: an access key id is not secret). A failure before the shared key is
touched leaves it working, so no agent is left without a key.

Which target is whose: the env file inside one of the agent's workspace identities, else the
rotation's targets paired with its ``agents:`` in order when they are as many. keyshift does not
edit the inventory: the result says what to declare (one aws-iam rotation per new user).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.errors import NotFoundError, ReadOnlyError, SourceError, UsageError

if TYPE_CHECKING:
    from console.audit import AuditLog
    from console.config import LoadedInventory
    from console.store import Store

POLICY_NAME = "keyshift-least-privilege"
MAX_AGENTS = 20


@dataclass
class Grant:
    agent: str
    resources: list[str]


@dataclass
class SplitPlan:
    credential: str
    source: str
    user: str
    key_id: str
    actions: list[str]
    agents: list[dict[str, Any]] = field(default_factory=list)  # agent, user, target, resources

    def lines(self) -> list[str]:
        out = [f"split access key {self.key_id} of {self.user} ({self.source}):"]
        for a in self.agents:
            out.append(f"  {a['agent']}: new user {a['user']}, allowed {', '.join(self.actions)}"
                       f" on {', '.join(a['resources'])}; key delivered to {a['place']}")
        out.append(f"  then deactivate and delete {self.key_id}")
        return out


def parse_agents(specs: tuple[str, ...] | list[str]) -> list[Grant]:
    """``NAME=RESOURCE[,RESOURCE...]`` each."""
    out: list[Grant] = []
    for spec in specs:
        name, sep, rest = spec.partition("=")
        resources = [r.strip() for r in rest.split(",") if r.strip()]
        if not sep or not name.strip() or not resources:
            raise UsageError(f"--agent {spec!r} is not NAME=RESOURCE[,RESOURCE...]",
                             hint="e.g. --agent indexer=arn:aws:s3:::data/indexer/*")
        out.append(Grant(name.strip(), resources))
    names = [g.agent for g in out]
    if len(set(names)) != len(names):
        raise UsageError("an agent is named twice", hint="one --agent per agent")
    if not out:
        raise UsageError("name the agents that read the key", hint="--agent NAME=RESOURCE")
    if len(out) > MAX_AGENTS:
        raise UsageError(f"at most {MAX_AGENTS} agents at once")
    return out


def _rotation_for(loaded: LoadedInventory, source: str, user: str) -> Any:
    found = [r for r in loaded.inventory.rotations
             if r.issuer.type == "aws-iam" and r.issuer.source == source
             and r.issuer.user == user]  # type: ignore[union-attr]
    if len(found) != 1:
        raise UsageError(f"{'no' if not found else 'more than one'} aws-iam rotation declares "
                         f"user {user} of {source}",
                         hint="declare where the key is delivered: rotations: with issuer "
                              f"aws-iam, user {user}, and its env-file targets")
    return found[0]


def _target_of(loaded: LoadedInventory, rotation: Any, agent: str) -> Any:
    from console.inventory import EnvFileTarget, WorkspaceIdentity

    targets = [t for t in rotation.targets if isinstance(t, EnvFileTarget)]
    decl = next((a for a in loaded.inventory.agents if a.name == agent), None)
    if decl is None:
        raise NotFoundError(f"no agent {agent!r} in the inventory", hint="keyshift agent ls")
    folders = [loaded.resolve_path(i.path) for i in decl.identities
               if isinstance(i, WorkspaceIdentity)]
    inside = [t for t in targets if any(Path(loaded.resolve_path(t.path)).is_relative_to(f)
                                        for f in folders)]
    if len(inside) == 1:
        return inside[0]
    if len(targets) == len(rotation.agents) and agent in rotation.agents:
        return targets[rotation.agents.index(agent)]
    raise UsageError(f"cannot tell where {agent} reads the key of rotation {rotation.name}",
                     hint="give the agent a workspace identity holding its env file, or list "
                          "the rotation's agents in the order of its env-file targets")


def plan_split(store: Store, loaded: LoadedInventory, credential: str, grants: list[Grant],
               actions: list[str]) -> SplitPlan:
    cred = store.get_credential(credential)
    if cred is None:
        raise NotFoundError(f"no credential {credential!r}", hint="keyshift ls")
    if cred.kind != "iam-key" or cred.gone_at:
        raise UsageError(f"{cred.name} is a {cred.kind}{' (gone)' if cred.gone_at else ''}: "
                         "only an IAM access key can be split")
    user = (cred.tags or {}).get("user")
    if not user:
        raise UsageError(f"{cred.name}: the store does not say which IAM user holds it",
                         hint="run keyshift sync, then try again")
    if not actions:
        raise UsageError("name the actions each agent needs", hint="e.g. --action s3:GetObject")
    rotation = _rotation_for(loaded, cred.source, user)
    plan = SplitPlan(cred.id, cred.source, user, cred.native_id, list(actions))
    for g in grants:
        target = _target_of(loaded, rotation, g.agent)
        plan.agents.append({"agent": g.agent, "user": f"{user}-{g.agent}"[:64],
                            "resources": g.resources, "target": target,
                            "place": f"{target.path}"})
    return plan


def _policy(actions: list[str], resources: list[str]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": actions, "Resource": resources}]})


def split_key(store: Store, audit: AuditLog, loaded: LoadedInventory, plan: SplitPlan, *,
              actor: str, incident: str | None = None,
              before_user: Any = None) -> dict[str, Any]:
    """Carry out ``plan``. ``before_user(name)`` is called before each user is created (a
    drill notes it for its cleanup). Returns {"agents": [{agent, user, key_id, seq}],
    "shared": outcome, "ok"}."""
    import botocore.exceptions

    from console.incidents import actions as act
    from console.rotation.context import Clients
    from rotators.targets.env_file import write_vars

    if store.read_only:
        raise ReadOnlyError(f"split {plan.credential}")
    clients = Clients(loaded)
    iam = clients.aws(plan.source, "iam")
    made: list[dict[str, Any]] = []

    def note(target: str, detail: dict[str, Any]) -> int:
        return audit.append(actor, "incident.split", target,
                            {"incident": incident, "shared_key": plan.key_id, **detail}).seq

    for a in plan.agents:
        try:
            if before_user is not None:
                before_user(a["user"])
            iam.create_user(UserName=a["user"], Tags=[
                {"Key": "keyshift-split-from", "Value": plan.user}])
            iam.put_user_policy(UserName=a["user"], PolicyName=POLICY_NAME,
                                PolicyDocument=_policy(plan.actions, a["resources"]))
            key = iam.create_access_key(UserName=a["user"])["AccessKey"]
            values = {"access_key_id": key["AccessKeyId"],
                      "secret_access_key": key.pop("SecretAccessKey")}
            target = a["target"]
            write_vars(loaded.resolve_path(target.path),
                       {var: values[part] for part, var in (target.vars or {}).items()}
                       if target.vars else {str(target.var): values["secret_access_key"]})
            sts = clients.aws_as(plan.source, "sts", values["access_key_id"],
                                 values["secret_access_key"])
            arn = str(sts.get_caller_identity()["Arn"])
            del values
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            note(f"{plan.source}:iam-user:{a['user']}", {"agent": a["agent"], "outcome": "failed",
                                                         "error": code})
            raise SourceError(f"split {plan.key_id}: creating {a['user']} for {a['agent']} "
                              f"failed ({code}); the shared key still works",
                              hint="fix it and run the split again (users already made stay)"
                              ) from None
        if not arn.endswith(f":user/{a['user']}"):
            raise SourceError(f"split {plan.key_id}: the new key of {a['agent']} answers as "
                              f"{arn}; the shared key still works")
        made.append({"agent": a["agent"], "user": a["user"], "key_id": key["AccessKeyId"],
                     "resources": a["resources"], "place": a["place"],
                     "seq": note(f"{plan.source}:iam-user:{a['user']}", {
                         "agent": a["agent"], "outcome": "created", "key_id": key["AccessKeyId"],
                         "actions": plan.actions, "resources": a["resources"],
                         "delivered_to": a["place"]})})
    ref = act.Ref(plan.source, act.IAM_KEY, plan.key_id, user=plan.user)
    shared = act.contain(clients, audit, [ref], actor=actor, incident=incident,
                         action="incident.split")[0]
    deleted = act.delete_key(clients, ref) if shared.ok else "kept"
    seq = note(plan.credential, {"outcome": deleted, "contain": shared.outcome})
    return {"agents": made, "shared": {"key_id": plan.key_id, "deactivated": shared.outcome,
                                       "deleted": deleted, "seq": seq},
            "ok": shared.ok and deleted in ("deleted", "already gone"),
            "declare": [f"rotation for {m['user']} (aws-iam, source {plan.source}) delivered to "
                        f"{m['place']}" for m in made]}
