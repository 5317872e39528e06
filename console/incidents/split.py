"""Splitting a shared IAM access key into one least-privilege key per agent.

One over-privileged key read by several agents is one blast radius for all of them. ``split_key``
gives each agent an IAM user of its own (``<user>-<agent>``, tagged ``keyshift-split-from``)
with an inline policy allowing exactly the listed actions on exactly the listed resources,
creates its key, checks it at STS (with backoff: a new IAM key takes seconds to work), only then
delivers it where the agent read the shared key (the env-file target of the shared key's
``aws-iam`` rotation, written by the env-file target's own code), and only when every agent has
its key deactivates and deletes the shared key. Each step is an ``incident.split`` audit entry
with references only (user names, key ids: an access key id is not secret); the persistence
hunt reads them, so the users and keys a split made are never taken for an attacker's. A failure
before the shared key is touched leaves it working, so no agent is left without a key, and the
same split can run again: its users are reused, their policies and keys replaced.

The plan refuses what would leave a consumer without a key: an agent that reads the key (the
rotation's ``agents:``, a grant in the store) or an env-file target that no named agent covers,
two agents resolving to one env file, and a rotation target that is no env file.

Which target is whose: the env file inside one of the agent's workspace identities, else the
rotation's targets paired with its ``agents:`` in order when they are as many. keyshift does not
edit the inventory: the result says what to declare (one aws-iam rotation per new user).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.errors import (
    KeyshiftError,
    NotFoundError,
    ReadOnlyError,
    SourceError,
    UsageError,
)
from console.rotation.run import RetryPolicy

if TYPE_CHECKING:
    from console.audit import AuditLog
    from console.config import LoadedInventory
    from console.store import Store

POLICY_NAME = "keyshift-least-privilege"
SPLIT_TAG = "keyshift-split-from"  # on each user a split makes: the user it was split from
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


def _who_reads(store: Store, loaded: LoadedInventory, rotation: Any, cid: str) -> list[str]:
    """Every agent the inventory or the store says reads the key: the rotation's ``agents:``
    and the agents holding a grant on it (sync's record of who can use it)."""
    names = list(rotation.agents or [])
    names += [g.agent for g in store.grants_for_credential(cid)]
    return list(dict.fromkeys(names))


def plan_split(store: Store, loaded: LoadedInventory, credential: str, grants: list[Grant],
               actions: list[str]) -> SplitPlan:
    """The plan, or a UsageError when it would leave a consumer of the shared key without a
    key: every env-file target of its rotation and every agent reading it must be named, no
    two agents may resolve to one target (the second write would overwrite the first's key),
    and a target that is no env file (the split cannot deliver there) is refused."""
    from console.inventory import EnvFileTarget

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
    other = [t for t in rotation.targets if not isinstance(t, EnvFileTarget)]
    if other:
        kinds = ", ".join(sorted({str(getattr(t, "type", type(t).__name__)) for t in other}))
        raise UsageError(f"rotation {rotation.name} also delivers the key to a {kinds} target: "
                         "a split delivers only to env files, and deleting the shared key "
                         "would break whoever reads it there",
                         hint="rotate the key instead (keyshift rotate), or move those "
                              "consumers to env files first")
    plan = SplitPlan(cred.id, cred.source, user, cred.native_id, list(actions))
    taken: dict[str, str] = {}
    for g in grants:
        target = _target_of(loaded, rotation, g.agent)
        path = str(loaded.resolve_path(target.path))
        if path in taken:
            raise UsageError(f"{g.agent} and {taken[path]} both read the key from {target.path}: "
                             "one env file cannot hold two agents' keys",
                             hint="give each agent a workspace identity holding its own env file")
        taken[path] = g.agent
        plan.agents.append({"agent": g.agent, "user": f"{user}-{g.agent}"[:64],
                            "resources": g.resources, "target": target,
                            "place": f"{target.path}"})
    named = {g.agent for g in grants}
    left = [str(t.path) for t in rotation.targets
            if str(loaded.resolve_path(t.path)) not in taken]
    unnamed = [a for a in _who_reads(store, loaded, rotation, cred.id) if a not in named]
    if left or unnamed:
        who = "; ".join(([f"{', '.join(unnamed)} read{'s' if len(unnamed) == 1 else ''} it"]
                         if unnamed else [])
                        + ([f"no named agent reads {', '.join(left)}"] if left else []))
        raise UsageError(f"split {cred.native_id}: {who}; deleting the shared key would leave "
                         "them with no working key",
                         hint="name every agent that reads the key with --agent "
                              "NAME=RESOURCE (a split covers all of its consumers)")
    return plan


def _policy(actions: list[str], resources: list[str]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": actions, "Resource": resources}]})


STS_RETRY = RetryPolicy(attempts=8, base_seconds=1.0, cap_seconds=8.0)
# STS's answers for a key it does not accept (yet: a new IAM key takes seconds to work)
_REFUSED = {"InvalidClientTokenId", "SignatureDoesNotMatch", "AccessDenied", "AuthFailure"}


def _code(exc: Exception) -> str:
    import botocore.exceptions

    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


class _StepFailed(Exception):
    """One agent's split step failed: ``what`` names the step, ``code`` the AWS error code or
    the exception's type (never its text, which may quote a request)."""

    def __init__(self, what: str, code: str) -> None:
        super().__init__(what)
        self.what, self.code = what, code


def _aws(what: str, call: Any, **kw: Any) -> Any:
    import botocore.exceptions

    try:
        return call(**kw)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise _StepFailed(what, _code(exc)) from None


def _own_user(iam: Any, name: str, split_from: str) -> bool:
    """Whether ``name`` exists (False: not yet). One that exists must carry the tag a split
    of ``split_from`` gives its users, else it is someone else's and is not adopted."""
    import botocore.exceptions

    try:
        iam.get_user(UserName=name)
    except botocore.exceptions.ClientError as exc:
        if _code(exc) == "NoSuchEntity":
            return False
        raise _StepFailed(f"looking up {name}", _code(exc)) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise _StepFailed(f"looking up {name}", _code(exc)) from None
    tags = _aws(f"reading the tags of {name}", iam.list_user_tags, UserName=name)["Tags"]
    if not any(t["Key"] == SPLIT_TAG and t["Value"] == split_from for t in tags):
        raise _StepFailed(f"IAM user {name} exists and no split of {split_from} made it "
                          f"(no {SPLIT_TAG}={split_from} tag)", "NotOurs")
    return True


def _sts_check(clients: Any, source: str, key_id: str, secret: str,
               retry: RetryPolicy) -> str:
    """The ARN STS answers for the new key, waiting with backoff while STS does not accept
    it yet (IAM is eventually consistent: on AWS a new key works after a few seconds)."""
    import botocore.exceptions

    code = "InvalidClientTokenId"
    for attempt in range(1, retry.attempts + 1):
        sts = clients.aws_as(source, "sts", key_id, secret)
        try:
            return str(sts.get_caller_identity()["Arn"])
        except botocore.exceptions.ClientError as exc:
            code = _code(exc)
            if code not in _REFUSED:
                break
        except botocore.exceptions.BotoCoreError as exc:
            code = _code(exc)  # a connection that failed may work on the next try
        finally:
            sts.close()
        if attempt < retry.attempts:
            time.sleep(retry.delay(attempt))
    raise _StepFailed(f"checking the new key {key_id} at STS", code)


def _delivered_key_id(path: Path, target: Any) -> str | None:
    """The access key id the agent's env file holds now (an id is not secret), when the
    target names a variable for it."""
    from rotators.targets.env_file import read_vars

    var = (target.vars or {}).get("access_key_id")
    if not var:
        return None
    return read_vars(path).get(var) or None


def _keep(keys: list[dict[str, Any]], current: str | None) -> str | None:
    """Which existing key of a split user the agent may read now: the one its env file
    names, else (a target without an id variable) the newest."""
    if current is not None or not keys:
        return current
    return str(max(keys, key=lambda k: k.get("CreateDate") or 0)["AccessKeyId"])


def split_key(store: Store, audit: AuditLog, loaded: LoadedInventory, plan: SplitPlan, *,
              actor: str, incident: str | None = None, before_user: Any = None,
              retry: RetryPolicy = STS_RETRY) -> dict[str, Any]:
    """Carry out ``plan``. ``before_user(name)`` is called before each user is created (a
    drill notes it for its cleanup). Returns {"agents": [{agent, user, key_id, seq}],
    "shared": outcome, "ok"}.

    Every step can run again after a failure part way: a user this split made before (tagged
    ``keyshift-split-from``) is reused, its policy replaced and its key replaced; a user of
    that name nobody split is refused. Per agent: the new key is created (and audited by id),
    checked at STS with backoff, and only then written to the agent's env file; the key it
    replaces is deleted after. A failure before the write deletes the new key and leaves the
    agent reading what it read before (the shared key, or its key from an earlier run)."""
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
        name, target = a["user"], a["target"]
        ref = f"{plan.source}:iam-user:{name}"
        path = Path(loaded.resolve_path(target.path))
        new_id: str | None = None
        replaced: list[str] = []
        try:
            if before_user is not None:
                before_user(name)
            if not _own_user(iam, name, plan.user):
                _aws(f"creating {name}", iam.create_user, UserName=name,
                     Tags=[{"Key": SPLIT_TAG, "Value": plan.user}])
            _aws(f"setting the policy of {name}", iam.put_user_policy, UserName=name,
                 PolicyName=POLICY_NAME, PolicyDocument=_policy(plan.actions, a["resources"]))
            # keys left by an earlier run: the one the agent reads now stays until the new one
            # is delivered; any other was never delivered (IAM allows two keys per user)
            listed = _aws(f"listing the keys of {name}", iam.list_access_keys,
                          UserName=name)["AccessKeyMetadata"]
            keys = [str(k["AccessKeyId"]) for k in listed]
            current = _keep(listed, _delivered_key_id(path, target))
            for kid in keys:
                if kid != current:
                    _aws(f"deleting undelivered key {kid} of {name}", iam.delete_access_key,
                         UserName=name, AccessKeyId=kid)
                    note(ref, {"agent": a["agent"], "outcome": "key deleted", "key_id": kid,
                               "why": "never delivered"})
            replaced = [kid for kid in keys if kid == current]
            key = _aws(f"creating a key for {name}", iam.create_access_key,
                       UserName=name)["AccessKey"]
            new_id = str(key["AccessKeyId"])
            # audited at once: the hunt knows it for keyshift's own even if the run dies here
            note(ref, {"agent": a["agent"], "outcome": "key issued", "key_id": new_id})
            values = {"access_key_id": new_id, "secret_access_key": key.pop("SecretAccessKey")}
            arn = _sts_check(clients, plan.source, new_id, values["secret_access_key"], retry)
            if not arn.endswith(f":user/{name}"):
                raise _StepFailed(f"the new key of {a['agent']} answers as {arn}", "WrongUser")
            try:
                write_vars(path, {var: values[part] for part, var in (target.vars or {}).items()}
                           if target.vars else {str(target.var): values["secret_access_key"]})
            except Exception as exc:  # an OSError, the writer's own refusal: by type
                raise _StepFailed(f"writing {a['place']}", type(exc).__name__) from None
            finally:
                del values
        except _StepFailed as exc:
            discarded = None
            if new_id is not None:  # never delivered: nobody may hold a key nobody reads
                try:
                    iam.delete_access_key(UserName=name, AccessKeyId=new_id)
                    discarded = "deleted"
                except Exception as gone:
                    discarded = f"left ({_code(gone)})"
            note(ref, {"agent": a["agent"], "outcome": "failed", "step": exc.what,
                       "error": exc.code, "key_id": new_id, "new_key": discarded})
            done = f"; {len(made)} agent(s) split before it" if made else ""
            raise SourceError(f"split {plan.key_id}: {exc.what} for {a['agent']} failed "
                              f"({exc.code}){done}; the shared key still works",
                              hint="fix it and run the same split again: users it made are "
                                   "reused, their keys replaced") from None
        left = []
        for kid in replaced:  # the agent reads the new key now: the one it replaced goes
            try:
                iam.delete_access_key(UserName=name, AccessKeyId=kid)
            except Exception as exc:
                if _code(exc) != "NoSuchEntity":
                    left.append(f"{kid} ({_code(exc)})")
        made.append({"agent": a["agent"], "user": name, "key_id": new_id,
                     "resources": a["resources"], "place": a["place"],
                     "seq": note(ref, {
                         "agent": a["agent"], "outcome": "created", "key_id": new_id,
                         "replaced": replaced, "not_deleted": left,
                         "actions": plan.actions, "resources": a["resources"],
                         "delivered_to": a["place"]})})
    ref = act.Ref(plan.source, act.IAM_KEY, plan.key_id, user=plan.user)
    shared = act.contain(clients, audit, [ref], actor=actor, incident=incident,
                         action="incident.split")[0]
    try:
        deleted = act.delete_key(clients, ref) if shared.ok else "kept"
    except KeyshiftError as exc:
        deleted = f"not deleted ({exc.one_line()})"
    seq = note(plan.credential, {"outcome": deleted, "contain": shared.outcome,
                                 "error": shared.error})
    return {"agents": made, "shared": {"key_id": plan.key_id, "deactivated": shared.outcome,
                                       "deleted": deleted, "seq": seq, "error": shared.error},
            "ok": shared.ok and deleted in ("deleted", "already gone"),
            "declare": [f"rotation for {m['user']} (aws-iam, source {plan.source}) delivered to "
                        f"{m['place']}" for m in made]}
