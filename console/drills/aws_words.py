"""The AWS side of drills: world parts, injections, responder actions and checks over moto.

- ``iam-key`` (world part): an IAM user ``drill-<tag>-<name>`` for an agent, with an inline
  policy from the scenario's options, and an access key delivered to the agent's env file (and
  to the env files of the agents it is shared with), declared as an ``aws-iam`` rotation with
  env-file targets; the agents get an ``aws-iam-user`` identity, so reach and an incident's
  contain see the key. The first such part adds the world's AWS source (``aws``, the sandbox's
  moto, IAM only) and a bucket ``drill-<tag>-data`` holding one object per agent
  (``<agent>/data``): what an agent's policy lets it read, so a consumer probe makes a real
  authorised call and a least-privilege check a real refused one (moto checks IAM policies
  against S3 object ARNs; Secrets Manager and SSM it checks against ``*`` only).
- STS: a key works while ``GetCallerIdentity`` signed with it answers; the attacker's stolen
  copy is tried that way (``stolen-refused``: ``InvalidClientTokenId`` for a deleted key, the
  sandbox's moto refuses an Inactive one too).

- ``leave-persistence`` (injection) and ``persistence-removed`` (check), scenario 3: the
  attacker's stolen key makes a backdoor user with a key and AdministratorAccess attached;
  the check asks IAM (as the sandbox's admin) whether any of it is left, STS whether the
  backdoor key answers, and whether the world's own users and the admin are still there.

Values: the keys live in moto and in the agents' env files only; a record holds the user, the
key id (not secret) and paths.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console import paths
from console.drills.checks import CHECKS
from console.drills.context import ACTOR, Drill
from console.drills.injections import INJECTIONS
from console.drills.model import Action, Check, Injection
from console.drills.responders import RESPONDERS
from console.drills.world import (
    AWS_SOURCE,
    CLEANERS,
    PARTS,
    DrillWorld,
    Item,
    _read_env,
    _write_env,
)
from console.errors import SandboxError
from console.incidents.templates import NO_CLOUDTRAIL

if TYPE_CHECKING:
    from console.drills.model import PartSpec
    from console.sandbox import SandboxState

KEY_VARS = {"access_key_id": "AWS_ACCESS_KEY_ID", "secret_access_key": "AWS_SECRET_ACCESS_KEY"}
# codes under which AWS refuses a key that is wrong, deactivated or deleted
REFUSED = {"InvalidClientTokenId", "SignatureDoesNotMatch", "AuthFailure",
           "InvalidAccessKeyId", "UnrecognizedClientException"}
DENIED = {"AccessDenied", "AccessDeniedException", "Forbidden", "403"}
DATA_OBJECT = "data"


# --- clients ----------------------------------------------------------------------------------


def client_as(state: SandboxState, service: str, values: dict[str, str]) -> Any:
    """A boto3 client for the sandbox's moto signed with ``values`` (a key pair), one attempt:
    a refused key is an answer, not a reason to retry. A session of its own: the probe thread
    and the responder must not share botocore's default session."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        service, endpoint_url=state.moto.address, region_name=state.region,
        aws_access_key_id=values["access_key_id"],
        aws_secret_access_key=values["secret_access_key"],
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30,
                      s3={"addressing_style": "path"}))


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def sts_caller(state: SandboxState, values: dict[str, str]) -> str | None:
    """The ARN STS GetCallerIdentity answers for the key, or None when STS refuses it. Any
    other failure (moto down) raises: it says nothing about the key."""
    from botocore.exceptions import ClientError

    if not values.get("access_key_id") or not values.get("secret_access_key"):
        return None
    sts = client_as(state, "sts", values)
    try:
        return str(sts.get_caller_identity()["Arn"])
    except ClientError as exc:
        if _code(exc) in REFUSED:
            return None
        raise
    finally:
        sts.close()


def can_read(state: SandboxState, values: dict[str, str], bucket: str, key: str) -> bool:
    """Whether the key may GetObject ``bucket/key``: False on a denial or a refused key."""
    from botocore.exceptions import ClientError

    s3 = client_as(state, "s3", values)
    try:
        s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return True
    except ClientError as exc:
        if _code(exc) in DENIED | REFUSED:
            return False
        raise
    finally:
        s3.close()


def data_key(agent: str) -> str:
    return f"{agent}/{DATA_OBJECT}"


# --- the world's AWS side -----------------------------------------------------------------------


def ensure_aws(world: DrillWorld) -> str:
    """The world's AWS source in its inventory and its data bucket (one object per agent),
    made once; returns the bucket's name."""
    if not any(s["name"] == AWS_SOURCE for s in world.inventory["sources"]):
        # IAM only: the keys are the credentials; the shared account's secrets are not ours
        world.inventory["sources"].append({"name": AWS_SOURCE, "type": "aws", "sandbox": True,
                                           "services": ["iam"]})
    bucket = world.name("data")
    if not any(r["kind"] == "s3-bucket" for r in world.resources):
        s3 = world.aws("s3")
        world.created("s3-bucket", name=bucket)
        s3.create_bucket(Bucket=bucket)
        for agent in world.agents:
            s3.put_object(Bucket=bucket, Key=data_key(agent),
                          Body=("drill-data-" + secrets.token_urlsafe(12)).encode())
    return bucket


def _remove_bucket(state: SandboxState, res: dict[str, Any]) -> None:
    from console.sandbox import aws_client

    s3 = aws_client(state, "s3")
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=res["name"]):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=res["name"], Key=obj["Key"])
        s3.delete_bucket(Bucket=res["name"])
    except Exception as exc:
        if _code(exc) != "NoSuchBucket":  # gone already: cleanup is idempotent
            raise


CLEANERS["s3-bucket"] = _remove_bucket


def policy_document(bucket: str, actions: list[str], reads: list[str],
                    resources: list[str]) -> dict[str, Any]:
    """Allow ``actions`` on ``resources`` (as given) or else on the data of the agents in
    ``reads`` (``*``: every agent's)."""
    if not resources:
        resources = [f"arn:aws:s3:::{bucket}/*" if r == "*" else
                     f"arn:aws:s3:::{bucket}/{r}/*" for r in reads]
    return {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resources}]}


def _strings(value: Any, default: list[str]) -> list[str]:
    if value is None:
        return default
    return [value] if isinstance(value, str) else [str(v) for v in value]


def add_identity(world: DrillWorld, agent: str, user: str) -> None:
    for entry in world.inventory["agents"]:
        if entry["name"] == agent:
            ident = {"type": "aws-iam-user", "source": AWS_SOURCE, "name": user}
            if ident not in entry["identities"]:
                entry["identities"].append(ident)


def env_target(world: DrillWorld, agent: str) -> dict[str, Any]:
    return {"type": "env-file", "path": world.rel(world.env_file(agent)), "vars": KEY_VARS}


@PARTS.word("iam-key", options=("actions", "reads", "resources", "shared_with", "repo"),
            help="an IAM user for the agent with an inline policy (actions: default "
                 "s3:GetObject; reads: the agents whose data it may read, default its own, * "
                 "for all; or resources: ARNs), its access key in the env files of the agent "
                 "and of shared_with, rotated by keyshift's aws-iam issuer; repo: true gives "
                 "the agent a repo/ checkout declared as its workspace")
def _iam_key(world: DrillWorld, spec: PartSpec, owner: str | None) -> dict[str, Any]:
    if not spec.agent:
        raise SandboxError(f"world part {spec.name}: iam-key needs an agent")
    holders = [spec.agent, *_strings(spec.options.get("shared_with"), [])]
    unknown = [h for h in holders if h not in world.agents]
    if unknown:
        raise SandboxError(f"world part {spec.name}: no agent {unknown[0]!r} in world.agents")
    bucket = ensure_aws(world)
    actions = _strings(spec.options.get("actions"), ["s3:GetObject"])
    reads = _strings(spec.options.get("reads"), [spec.agent])
    resources = _strings(spec.options.get("resources"), [])
    user = world.name(spec.name)
    iam = world.aws("iam")
    world.created("iam-user", name=user)
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="drill",
                        PolicyDocument=json.dumps(policy_document(bucket, actions, reads,
                                                                  resources)))
    made = iam.create_access_key(UserName=user)["AccessKey"]
    values = {KEY_VARS["access_key_id"]: made["AccessKeyId"],
              KEY_VARS["secret_access_key"]: made["SecretAccessKey"]}
    for holder in holders:
        _write_env(world.env_file(holder), values)
        add_identity(world, holder, user)
    if spec.options.get("repo"):
        add_repo(world, spec.agent)
    environment = world.agents[spec.agent]["environment"]
    world.inventory["rotations"].append({
        "name": spec.name,
        "issuer": {"type": "aws-iam", "source": AWS_SOURCE, "user": user},
        "targets": [env_target(world, h) for h in holders],
        "agents": holders, **({"owner": owner} if owner else {}),
        "environment": environment, "sensitivity": spec.sensitivity,
    })
    from console.model import credential_id

    return {"user": user, "key_id": made["AccessKeyId"], "bucket": bucket, "holders": holders,
            "env_files": {h: world.rel(world.env_file(h)) for h in holders},
            "credential_id": credential_id(AWS_SOURCE, "iam-key", made["AccessKeyId"])}


@dataclass
class IamItem(Item):
    """An access key: ``works`` asks STS; the consumer is every agent holding it, each reading
    its own env file, calling STS and reading its own data."""

    world: DrillWorld | None = None

    def holder_ok(self, agent: str) -> bool:
        assert self.world is not None
        try:
            values = key_of(self.world, agent)
            return (sts_caller(self.world.state, values) is not None
                    and can_read(self.world.state, values, self.record["bucket"],
                                 data_key(agent)))
        except Exception:  # a consumer that cannot read or call is a broken consumer
            return False

    def consumer(self) -> bool:
        return all(self.holder_ok(h) for h in self.record["holders"])


def key_of(world: DrillWorld, agent: str) -> dict[str, str]:
    """The key pair in the agent's env file, as the agent reads it (in memory)."""
    found = _read_env(world.env_file(agent))
    return {part: found.get(var, "") for part, var in KEY_VARS.items()}


def _bind_iam(world: DrillWorld, rec: dict[str, Any]) -> Item:
    def read() -> dict[str, str]:
        return key_of(world, rec["agent"])

    def works(values: dict[str, str]) -> bool:
        return sts_caller(world.state, values) is not None

    return IamItem(rec["name"], rec["part"], rec["credential_id"], rec.get("agent"),
                   rec.get("owner"), read, works, rec, world=world)


PARTS.get("iam-key").extra["bind"] = _bind_iam


def key_status(world: DrillWorld, user: str, key_id: str) -> str | None:
    """Active / Inactive at IAM, or None when the key (or its user) is gone."""
    iam = world.aws("iam")
    with contextlib.suppress(iam.exceptions.NoSuchEntityException):
        for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
            if key["AccessKeyId"] == key_id:
                return str(key["Status"])
    return None


def _iam_ref(world: DrillWorld, item: Item) -> dict[str, Any]:
    # the key id the agent's env file holds now (an id names the key; it is not secret)
    key_id = key_of(world, str(item.record["holders"][0]))["access_key_id"]
    return {"key_id": key_id, "user": item.record["user"]} if key_id else {}


def _iam_refused(world: DrillWorld, item: Item, ref: dict[str, Any]) -> bool:
    # the sandbox's moto refuses an Inactive key at STS, as AWS does; a deleted key is gone
    return key_status(world, str(ref["user"]), str(ref["key_id"])) != "Active"


PARTS.get("iam-key").extra.update(ref=_iam_ref, refused=_iam_refused)


# --- scenario: an access key pushed to a public repo --------------------------------------------

REPO = "repo"
KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")


def repo_dir(world: DrillWorld) -> Path:
    return world.workspace / REPO


def add_repo(world: DrillWorld, agent: str) -> None:
    """The agent's checkout of the repository it pushes to, declared as its workspace: the
    sync's workspace scan reads it (a public repo is where a scanner finds a pushed key)."""
    paths.private_dir(repo_dir(world))
    for entry in world.inventory["agents"]:
        if entry["name"] == agent:
            ident = {"type": "workspace", "path": world.rel(repo_dir(world))}
            if ident not in entry["identities"]:
                entry["identities"].append(ident)


@INJECTIONS.word("push-to-repo", options=("file",),
                 help="the agent commits its access key in a file of its public repo (a file "
                      "in the world's repo/ folder, 0600); the attacker scraping public repos "
                      "copies it and tries it at STS at once")
def push_to_repo(drill: Drill, step: Injection) -> dict[str, Any]:
    (item,) = drill.items_for(step)
    if item.part != "iam-key":
        raise SandboxError(f"push-to-repo leaks an iam-key, not a {item.part}")
    rel = str(step.options.get("file", "deploy/settings.py"))
    target = (repo_dir(drill.world) / rel).resolve()
    if not target.is_relative_to(repo_dir(drill.world).resolve()):
        raise SandboxError(f"push-to-repo: {rel!r} is outside the repo", hint="a relative path")
    paths.private_dir(target.parent)
    values = item.read()
    fd = os.open(target, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# deploy settings\nREGION = \"us-east-1\"\n"
                 f"AWS_ACCESS_KEY_ID = \"{values['access_key_id']}\"\n"
                 f"AWS_SECRET_ACCESS_KEY = \"{values['secret_access_key']}\"\n")
    drill.attacker.stolen[item.name] = values
    # what a scraper does with a fresh key: ask who it is (IAM records the key's last use)
    tried = sts_caller(drill.world.state, values) is not None
    drill.notes.setdefault("pushed", []).append(drill.world.rel(target))
    return {"stolen": [item.name], "file": drill.world.rel(target), "attacker_tried": tried}


def _finding_place(finding: dict[str, Any]) -> tuple[str, int] | None:
    """(file, line) of an exposure finding: its title ends ``at FILE:LINE``."""
    where = str(finding.get("title", "")).rpartition(" at ")[2]
    file, _, line = where.rpartition(":")
    return (file, int(line)) if file and line.isdigit() else None


def _key_ids_at(file: str, line: int) -> list[str]:
    """The access key ids on a line (an id is not secret: it names the key); the rest of
    the line is not kept."""
    try:
        with open(file, encoding="utf-8", errors="replace") as fh:
            for number, text in enumerate(fh, start=1):
                if number == line:
                    return KEY_ID.findall(text)
    except OSError:
        return []
    return []


def exposed_credentials(drill: Drill, finding: dict[str, Any]) -> list[str]:
    """The store's credentials an exposure finding shows: its own credential (a known value)
    or the IAM keys whose ids are on its line."""
    if finding.get("credential_id"):
        return [str(finding["credential_id"])]
    place = _finding_place(finding)
    if place is None:
        return []
    aws = [s.name for s in drill.loaded.inventory.sources if s.type == "aws"]
    from console.model import credential_id

    return [cid for kid in _key_ids_at(*place) for src in aws
            if drill.store.get_credential(cid := credential_id(src, "iam-key", kid))]


@RESPONDERS.word("scan-workspaces",
                 help="sync the drill's inventory: the sync scans the agents' workspaces and "
                      "refreshes the exposure findings; each names a place, and the credential "
                      "is the known value there or the access key whose id is on that line")
def scan_workspaces(drill: Drill, action: Action) -> dict[str, Any]:
    from console.sync import run_sync

    summary = run_sync(drill.loaded, drill.store, drill.audit, actor=ACTOR)
    found: list[str] = []
    evidence: list[str] = []
    for finding in drill.store.findings():
        if not str(finding["rule"]).startswith("exposure.") or finding["status"] != "open":
            continue
        shows = exposed_credentials(drill, finding)
        if shows:
            found += shows
            evidence.append(f"finding:{finding['id']}")
    found = list(dict.fromkeys(found))
    names = [i.name for i in drill.world.items.values() if i.credential_id in found]
    note = (f"workspace scan (sync {summary.sync_id}): {len(evidence)} exposure finding(s) "
            f"showing {', '.join(names) or ', '.join(found) or 'no known credential'}")
    return {"ok": bool(found), "note": note, "evidence": evidence, "found": found}


@RESPONDERS.word("key-activity",
                 help="review an access key's activity: IAM's GetAccessKeyLastUsed (when, "
                      "which service, which region) by its id; its calls are not listed "
                      "(keyshift reads only secret and parameter reads from CloudTrail, and "
                      "moto has no CloudTrail lookup)")
def key_activity(drill: Drill, action: Action) -> dict[str, Any]:
    parts = []
    for item in drill.items_for(action):
        if item.part != "iam-key":
            continue
        key_id = item.record["key_id"]
        got = drill.world.aws("iam").get_access_key_last_used(AccessKeyId=key_id)
        used = got.get("AccessKeyLastUsed") or {}
        when = used.get("LastUsedDate")
        since = drill.injected_at
        after = bool(when and since and when >= since.replace(microsecond=0))
        seen = (f"last used {when.isoformat()} ({used.get('ServiceName')}, "
                f"{used.get('Region')})" if when else "no use recorded by IAM")
        entry = drill.audit.append(ACTOR, "drill.review", item.credential_id, {
            "key_id": key_id, "last_used": when.isoformat() if when else None,
            "service": used.get("ServiceName"), "after_leak": after})
        drill.notes.setdefault("activity", {})[item.name] = {
            "last_used": when.isoformat() if when else None, "after_leak": after}
        parts.append({"evidence": [f"audit:{entry.seq}"], "ok": True,
                      "note": f"{item.name} ({key_id}): {seen}"
                              + ("; used after the leak" if after else "")
                              + "; its calls are not listed: " + NO_CLOUDTRAIL})
    if not parts:
        return {"evidence": [], "ok": False, "note": "no access key to review"}
    return {"evidence": [e for p in parts for e in p["evidence"]], "ok": True,
            "note": "; ".join(p["note"] for p in parts)}


@CHECKS.word("detected", capability="detect",
             advice="scan the agents' workspaces and repos (keyshift sync with workspace "
                    "identities, keyshift scan) so a pushed key is found before anyone else "
                    "finds it",
             help="the detection found the leaked credential the incident is about, with a "
                  "finding as evidence")
def detected(drill: Drill, check: Check) -> dict[str, Any]:
    found = drill.notes.get("detect")
    want = [i.credential_id for i in drill.items_for(check)]
    if not found:
        return {"ok": False, "why": "no detection ran", "detail": {}}
    missed = [i.name for i in drill.items_for(check) if i.credential_id not in found["found"]]
    ok = found["ok"] and not missed
    return {"ok": ok,
            "why": (f"found by the scan: {', '.join(i.name for i in drill.items_for(check))}"
                    if ok else f"not found by the scan: {', '.join(missed) or ', '.join(want)}"),
            "detail": {"evidence": found["evidence"], "missed": missed}}


@CHECKS.word("key-activity-reviewed", capability="detect",
             advice="review a leaked key's use (IAM last used, CloudTrail) before closing: the "
                    "attacker's calls tell what else to look for",
             help="the review recorded each key's last use, and saw the attacker's use after "
                  "the leak")
def key_activity_reviewed(drill: Drill, check: Check) -> dict[str, Any]:
    if "activity" not in drill.notes and drill.notes.get("by_reference"):
        return _activity_reviewed_by_reference(drill, check)
    seen = drill.notes.get("activity", {})
    keys = [i.name for i in drill.items_for(check) if i.part == "iam-key"]
    missing = [n for n in keys if n not in seen]
    unseen = [n for n in keys if n in seen and not seen[n]["after_leak"]]
    ok = bool(keys) and not missing and not unseen
    why = ("not reviewed: " + ", ".join(missing) if missing else
           "the attacker's use after the leak not seen: " + ", ".join(unseen) if unseen else
           f"reviewed: {', '.join(keys)} (used after the leak)")
    return {"ok": ok, "why": why, "detail": {"reviewed": sorted(seen), "missing": missing}}


def _activity_reviewed_by_reference(drill: Drill, check: Check) -> dict[str, Any]:
    """A person worked the review (incident run's review, or incident task ... --evidence
    usage:ID): it saw the attacker's use when the review task is done and its evidence names
    a usage event of the key from the injection on (IAM's last use, which a sync records;
    whole seconds, as IAM gives it)."""
    from console import incidents

    keys = [i for i in drill.items_for(check) if i.part == "iam-key"]
    inc = incidents.load(drill.store, drill.incident_id or "")
    review = next((t for t in inc["tasks"] if t["step"] == "review"), None)
    cited = {str(e["ref"]) for e in (review or {}).get("evidence", []) if e["kind"] == "usage"}
    since = (drill.injected_at or datetime.now(UTC)).replace(microsecond=0)
    missing, unseen = [], []
    for item in keys:
        after = {str(u["id"]) for u in drill.store.usage_since([item.credential_id], since)}
        if review is None or review["status"] != "done":
            missing.append(item.name)
        elif not after & cited:
            unseen.append(item.name)
    ok = bool(keys) and not missing and not unseen
    why = ("not reviewed (the review task is not done): " + ", ".join(missing) if missing else
           "the review's evidence names no use after the leak of: " + ", ".join(unseen)
           if unseen else
           f"reviewed: {', '.join(i.name for i in keys)} (its use after the leak is in the "
           "review's evidence)")
    return {"ok": ok, "why": why, "detail": {"reviewed": [i.name for i in keys
                                                          if i.name not in missing],
                                             "missing": missing, "by_reference": True}}


# --- scenario: a compromised agent -----------------------------------------------------------


def _digest(values: dict[str, str]) -> str:
    """A value's digest to tell later whether it changed: kept in memory only, like the
    attacker's copies."""
    import hashlib

    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


@INJECTIONS.word("prompt-injection",
                 help="a prompt injection makes the agent print its environment: the attacker "
                      "copies everything the agent holds (its env file, the KV secrets its "
                      "login reads) and logs in with its AppRole login, keeping the token; the "
                      "other agents' values are noted (in memory) to show they stay untouched")
def prompt_injection(drill: Drill, step: Injection) -> dict[str, Any]:
    if not step.agent:
        raise SandboxError("prompt-injection needs agent:")
    mine = drill.items_for(step)
    for item in mine:
        drill.attacker.stolen[item.name] = item.read()
    tokens, accessors = [], []
    for item in mine:
        if item.part == "approle-secret-id":
            got = _approle_token(drill, drill.attacker.stolen[item.name])
            if got:
                tokens.append(got[0])
                accessors.append(got[1])
    drill.attacker.stolen[f"{step.agent}:tokens"] = {str(n): t for n, t in enumerate(tokens)}
    # the tokens' accessors name them for a later process (drill verify): not secret, and
    # how contain revokes a token anyway
    drill.notes.setdefault("attacker_tokens", {})[step.agent] = accessors
    drill.notes["untouched"] = {i.name: _digest(i.read()) for i in drill.world.items.values()
                                if i.agent != step.agent}
    drill.notes["compromised"] = step.agent
    return {"stolen": [i.name for i in mine], "tokens": len(tokens)}


def _approle_token(drill: Drill, login: dict[str, str]) -> tuple[str, str] | None:
    """The token (and its accessor) an AppRole login gives."""
    import hvac

    from console.drills.world import _session

    client = hvac.Client(url=drill.world.state.vault.address, timeout=10, session=_session())
    got = client.auth.approle.login(login["role_id"], login["secret_id"])
    auth = got.get("auth") or {}
    return (str(auth["client_token"]), str(auth["accessor"])) if auth else None


def _token_works(drill: Drill, token: str) -> bool:
    import hvac
    import hvac.exceptions

    from console.drills.world import _session

    client = hvac.Client(url=drill.world.state.vault.address, token=token, timeout=10,
                         session=_session())
    try:
        client.auth.token.lookup_self()
        return True
    except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
        return False


@CHECKS.word("attacker-tokens-refused", capability="contain",
             advice="revoke the agent's Vault tokens (keyshift incident run: contain revokes "
                    "what its AppRole issued), not only its secret-ids: a token the attacker "
                    "already holds outlives the secret-id it came from",
             help="the Vault tokens the attacker made with the agent's stolen login are "
                  "refused (lookup-self 403)")
def attacker_tokens_refused(drill: Drill, check: Check) -> dict[str, Any]:
    agent = check.agent or drill.notes.get("compromised")
    tokens = drill.attacker.stolen.get(f"{agent}:tokens")
    if tokens is None and drill.notes.get("by_reference"):
        return _tokens_refused_by_reference(drill, str(agent))
    if tokens is None:
        return {"ok": False, "why": "the attacker holds no token (was it injected?)",
                "detail": {}}
    valid = sum(1 for t in tokens.values() if _token_works(drill, t))
    return {"ok": bool(tokens) and not valid,
            "why": (f"{valid} of {len(tokens)} stolen token(s) still valid" if valid
                    else f"{len(tokens)} stolen token(s) refused by OpenBao"),
            "detail": {"tokens": len(tokens), "still_valid": valid}}


def _tokens_refused_by_reference(drill: Drill, agent: str) -> dict[str, Any]:
    """A later process holds no token: it asks OpenBao about each token the attacker made,
    by the accessor noted at injection; one OpenBao no longer knows is refused."""
    from console.drills.vault_words import accessor_gone

    accessors = (drill.notes.get("attacker_tokens") or {}).get(agent)
    if accessors is None:
        return {"ok": False, "why": "no token accessor was recorded at injection: cannot be "
                                    "checked by reference", "detail": {}}
    valid = sum(1 for a in accessors if not accessor_gone(drill.world, a))
    return {"ok": bool(accessors) and not valid,
            "why": (f"{valid} of {len(accessors)} stolen token(s) still valid (by accessor)"
                    if valid else f"{len(accessors)} stolen token(s) refused by OpenBao (by "
                                  "accessor)") if accessors
            else "the attacker made no token to check",
            "detail": {"tokens": len(accessors), "still_valid": valid, "by_reference": True}}


@CHECKS.word("unaffected", capability="recover",
             advice="scope the response to what the compromised agent could reach: rotating "
                    "or revoking another agent's credentials breaks it for nothing",
             help="the other agents' credentials hold the values they held at injection and "
                  "still work where those agents read them")
def unaffected(drill: Drill, check: Check) -> dict[str, Any]:
    before = drill.notes.get("untouched")
    if before is None and drill.notes.get("by_reference"):
        return _unaffected_by_reference(drill, check)
    if before is None:
        return {"ok": False, "why": "nothing was noted at injection", "detail": {}}
    items = [i for i in drill.items_for(check) if i.name in before]
    changed = [i.name for i in items if _digest(i.read()) != before[i.name]]
    broken = [i.name for i in items if not i.consumer()]
    ok = bool(items) and not changed and not broken
    why = ("changed: " + ", ".join(changed) if changed else
           "broken: " + ", ".join(broken) if broken else
           f"{len(items)} credential(s) unchanged and working")
    return {"ok": ok, "why": why, "detail": {"checked": [i.name for i in items],
                                             "changed": changed, "broken": broken}}


def _unaffected_by_reference(drill: Drill, check: Check) -> dict[str, Any]:
    """A later process has no digest of the values: each credential's reference now (the key
    id, secret-id accessor, KV version its agent's values name) against the one recorded at
    injection, and each consumer working on what its env file holds now."""
    from console.drills.world import ref_of

    refs = drill.notes.get("refs") or {}
    items = drill.items_for(check)
    unknown = [i.name for i in items if not refs.get(i.name)]
    changed = [i.name for i in items if refs.get(i.name) and
               ref_of(drill.world, i) != refs[i.name]]
    broken = [i.name for i in items if not i.consumer()]
    ok = bool(items) and not unknown and not changed and not broken
    why = "; ".join(([f"cannot be checked by reference (none recorded): {', '.join(unknown)}"]
                     if unknown else [])
                    + (["changed: " + ", ".join(changed)] if changed else [])
                    + (["broken: " + ", ".join(broken)] if broken else [])) \
        or f"{len(items)} credential(s) unchanged (by reference) and working"
    return {"ok": ok, "why": why, "detail": {"checked": [i.name for i in items],
                                             "changed": changed, "broken": broken,
                                             "unchecked": unknown}}


# --- scenario: one over-privileged key shared by two agents --------------------------------------


@INJECTIONS.word("shared-key-found",
                 help="an access review finds one over-privileged access key in several "
                      "agents' env files; the drill keeps a copy (in memory) to show at the "
                      "end that the shared key is refused")
def shared_key_found(drill: Drill, step: Injection) -> dict[str, Any]:
    (item,) = drill.items_for(step)
    if item.part != "iam-key" or len(item.record["holders"]) < 2:
        raise SandboxError(f"shared-key-found needs an iam-key shared by agents: {item.name}")
    drill.attacker.stolen[item.name] = item.read()
    return {"stolen": [item.name]}


@RESPONDERS.word("split-key", options=("actions",),
                 help="split the shared access key into one least-privilege key per agent "
                      "(keyshift incident split): each agent allowed the actions (default "
                      "s3:GetObject) on its own data only, as the scenario declares it needs")
def split_key_action(drill: Drill, action: Action) -> dict[str, Any]:
    from console.errors import KeyshiftError
    from console.incidents.split import Grant, plan_split, split_key

    (item,) = drill.items_for(action)
    bucket = item.record["bucket"]
    grants = [Grant(agent, [f"arn:aws:s3:::{bucket}/{agent}/*"])
              for agent in item.record["holders"]]
    actions = _strings(action.options.get("actions"), ["s3:GetObject"])

    def note_user(name: str) -> None:
        drill.world.created("iam-user", name=name)

    try:
        plan = plan_split(drill.store, drill.loaded, item.credential_id, grants, actions)
        result = split_key(drill.store, drill.audit, drill.loaded, plan, actor=ACTOR,
                           incident=drill.incident_id, before_user=note_user)
    except KeyshiftError as exc:
        return {"evidence": [], "ok": False, "note": f"{item.name}: {exc.one_line()}"}
    evidence = [f"audit:{a['seq']}" for a in result["agents"]] + \
        [f"audit:{result['shared']['seq']}"]
    return {"evidence": evidence, "ok": result["ok"],
            "note": f"{item.name} split into " + ", ".join(a["user"] for a in result["agents"])
                    + f"; shared key {result['shared']['deleted']}"}


@CHECKS.word("least-privilege", capability="eradicate",
             advice="give each agent its own key allowed only what it needs (keyshift incident "
                    "split): a shared, broad key makes one agent's compromise everyone's",
             help="each agent holding the key now holds a key of its own that reads its own "
                  "data and is refused every other agent's (AccessDenied from IAM)")
def least_privilege(drill: Drill, check: Check) -> dict[str, Any]:
    problems: list[str] = []
    key_ids: dict[str, str] = {}
    for item in drill.items_for(check):
        if item.part != "iam-key":
            continue
        bucket = item.record["bucket"]
        for agent in item.record["holders"]:
            values = key_of(drill.world, agent)
            key_ids[agent] = values["access_key_id"]
            if not can_read(drill.world.state, values, bucket, data_key(agent)):
                problems.append(f"{agent} cannot read its own data")
            others = [a for a in drill.world.agents if a != agent]
            allowed = [a for a in others
                       if can_read(drill.world.state, values, bucket, data_key(a))]
            if allowed:
                problems.append(f"{agent}'s key reads {', '.join(allowed)}'s data")
    shared = [a for a, k in key_ids.items() if list(key_ids.values()).count(k) > 1]
    if shared:
        problems.append(f"one key still shared by {', '.join(shared)}")
    return {"ok": bool(key_ids) and not problems,
            "why": "; ".join(problems) if problems else
            f"{len(key_ids)} agent(s), each with its own key reading only its own data",
            "detail": {"agents": sorted(key_ids), "problems": problems}}


# --- scenario: the persistence hunt -------------------------------------------------------------

ADMIN_POLICY = "arn:aws:iam::aws:policy/AdministratorAccess"


def backdoor_name(world: DrillWorld) -> str:
    return world.name("backdoor")


@INJECTIONS.word("leave-persistence",
                 help="the attacker copies the IAM key from the agent's env file and, with it, "
                      "creates a user drill-<tag>-backdoor, an access key for that user (its "
                      "secret kept in memory only) and attaches AdministratorAccess to it: what "
                      "a stolen key with IAM rights leaves so it survives the key's rotation")
def leave_persistence(drill: Drill, step: Injection) -> dict[str, Any]:
    (item,) = drill.items_for(step)
    if item.part != "iam-key":
        raise SandboxError(f"leave-persistence needs an iam-key: {item.name}")
    stolen = item.read()
    drill.attacker.stolen[item.name] = stolen
    iam = client_as(drill.world.state, "iam", stolen)
    user = backdoor_name(drill.world)
    # noted before it exists, so cleanup removes it whatever happens next (a kill included)
    drill.world.created("iam-user", name=user)
    try:
        iam.create_user(UserName=user)
        made = iam.create_access_key(UserName=user)["AccessKey"]
        drill.attacker.stolen["backdoor"] = {"access_key_id": made["AccessKeyId"],
                                             "secret_access_key": made["SecretAccessKey"]}
        iam.attach_user_policy(UserName=user, PolicyArn=ADMIN_POLICY)
    finally:
        iam.close()
    drill.notes["persistence"] = {"user": user, "key_id": made["AccessKeyId"],
                                  "policy": ADMIN_POLICY, "with": item.name}
    return {"stolen": [item.name], "user": user}


def _left_behind(drill: Drill) -> tuple[list[str], dict[str, Any]]:
    """What of the backdoor moto still has: the user, its keys, the policy attachment (asked
    by reference, as the sandbox's admin), and whether STS still answers its key."""
    from botocore.exceptions import ClientError

    found = drill.notes.get("persistence") or {}
    user = str(found.get("user") or backdoor_name(drill.world))
    iam = drill.world.aws("iam")
    left: list[str] = []
    try:
        iam.get_user(UserName=user)
        left.append(f"iam user {user}")
        for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
            left.append(f"its access key {key['AccessKeyId']}")
    except ClientError as exc:
        if _code(exc) != "NoSuchEntity":
            raise
    policy = str(found.get("policy") or ADMIN_POLICY)
    attached = [u["UserName"] for page in iam.get_paginator("list_entities_for_policy")
                .paginate(PolicyArn=policy, EntityFilter="User") for u in page["PolicyUsers"]]
    if user in attached:
        left.append(f"{policy.rsplit('/', 1)[-1]} attached to {user}")
    backdoor = drill.attacker.stolen.get("backdoor")
    if backdoor:
        answers = sts_caller(drill.world.state, backdoor) is not None
        if answers:
            left.append(f"the backdoor key {found.get('key_id')} still answers at STS")
    else:
        # a later process (drill verify) has no copy of the key: its id at IAM decides (the
        # sandbox's moto, like AWS, refuses a key that is Inactive or gone)
        answers = bool(found.get("key_id")) and \
            key_status(drill.world, user, str(found["key_id"])) == "Active"
        if answers:
            left.append(f"the backdoor key {found.get('key_id')} is still Active at IAM")
    return left, {"user": user, "key_tried": bool(backdoor), "key_answers": answers,
                  "by_reference": not backdoor}


@CHECKS.word("persistence-removed", capability="eradicate",
             advice="hunt for what a stolen key with IAM rights made (keyshift incident hunt: "
                    "new users, keys, attached policies) and remove it once checked (incident "
                    "hunt --remove): rotating the stolen key leaves the backdoor open",
             help="the backdoor user the attacker made, its access key and its policy "
                  "attachment are gone at IAM, the backdoor key is refused by STS, and every "
                  "user the world declares and the sandbox's own admin are still there")
def persistence_removed(drill: Drill, check: Check) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    from console.sandbox import ADMIN_USER

    if "persistence" not in drill.notes:
        return {"ok": False, "why": "no persistence was recorded (was it injected?)",
                "detail": {}}
    left, detail = _left_behind(drill)
    iam = drill.world.aws("iam")
    keep = sorted({i.record["user"] for i in drill.world.items.values() if i.part == "iam-key"}
                  | {ADMIN_USER})
    lost = []
    for user in keep:
        try:
            iam.get_user(UserName=user)
        except ClientError as exc:
            if _code(exc) != "NoSuchEntity":
                raise
            lost.append(user)
    if not iam.list_attached_user_policies(UserName=ADMIN_USER)["AttachedPolicies"] \
            and ADMIN_USER not in lost:
        lost.append(f"{ADMIN_USER}'s policies")
    ok = not left and not lost
    why = "; ".join(([f"still there: {', '.join(left)}"] if left else [])
                    + ([f"removed but should stay: {', '.join(lost)}"] if lost else [])) \
        or f"backdoor {detail['user']}, its key and its policy attachment removed; " \
           f"{len(keep)} user(s) that should stay are there"
    return {"ok": ok, "why": why, "detail": {**detail, "left": left, "lost": lost,
                                            "kept": keep}}
