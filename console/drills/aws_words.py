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

Values: the keys live in moto and in the agents' env files only; a record holds the user, the
key id (not secret) and paths.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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


@PARTS.word("iam-key", options=("actions", "reads", "resources", "shared_with"),
            help="an IAM user for the agent with an inline policy (actions: default "
                 "s3:GetObject; reads: the agents whose data it may read, default its own, * "
                 "for all; or resources: ARNs), its access key in the env files of the agent "
                 "and of shared_with, rotated by keyshift's aws-iam issuer")
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
