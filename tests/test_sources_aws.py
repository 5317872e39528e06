"""The AWS collector against the sandbox's real moto server (IAM auth enforced, no mocks)."""

from __future__ import annotations

import copy
import json
import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import BUILTIN_INVENTORY

from console.config import LoadedInventory, loads_inventory
from console.errors import SourceError
from console.fingerprint import fingerprint
from console.sources.aws import AwsSource
from rotators.values import generate

AWS = "sandbox-aws"


def loaded_from(inv: dict[str, Any], base_dir: Path) -> LoadedInventory:
    return loads_inventory(yaml.safe_dump(inv), file="inventory.yaml", base_dir=base_dir)


def base_inventory() -> dict[str, Any]:
    inv = copy.deepcopy(BUILTIN_INVENTORY)
    inv["policies"] = {"by_sensitivity": {"high": {"max_age_days": 30}}}
    return inv


def collect(inv: dict[str, Any], tmp_path: Path, source: str = AWS) -> Any:
    loaded = loaded_from(inv, tmp_path)
    return AwsSource(loaded.source(source), loaded).collect()


@pytest.fixture
def iam(seeded_sandbox: Any) -> Any:
    from console.sandbox import aws_client

    return aws_client(seeded_sandbox.state, "iam")


@pytest.fixture
def sm(seeded_sandbox: Any) -> Any:
    from console.sandbox import aws_client

    return aws_client(seeded_sandbox.state, "secretsmanager")


def make_user(iam: Any, prefix: str, document: dict | None, keys: int = 1) -> tuple[str, list]:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=name, Tags=[{"Key": "owner", "Value": "team-test"}])
    if document:
        iam.put_user_policy(
            UserName=name, PolicyName=f"{name}-inline", PolicyDocument=json.dumps(document)
        )
    made = [iam.create_access_key(UserName=name)["AccessKey"] for _ in range(keys)]
    return name, made


def test_collect_finds_the_seeded_aws_credentials(
    seeded_sandbox: Any, iam: Any, sm: Any, tmp_path: Path
) -> None:
    result = collect(base_inventory(), tmp_path)
    assert result.complete, result.errors
    by_name = {c.name: c for c in result.credentials}

    stripe = by_name["prod/support/stripe"]
    arn = sm.describe_secret(SecretId="prod/support/stripe")["ARN"]
    assert stripe.id == f"{AWS}:secretsmanager:{arn}" and stripe.location == arn
    assert (stripe.owner, stripe.environment, stripe.scope, stripe.sensitivity) == (
        "team-support",
        "prod",
        "refunds",
        "high",
    )
    assert stripe.max_age_days == 30
    assert stripe.last_used_at is None  # moto leaves LastAccessedDate empty
    value = sm.get_secret_value(SecretId=arn)["SecretString"]
    assert stripe.fingerprint == fingerprint(value)
    assert stripe.version == sm.get_secret_value(SecretId=arn)["VersionId"]

    param = by_name["/prod/support/db-password"]
    assert param.id == f"{AWS}:ssm-parameter:/prod/support/db-password"
    assert (param.owner, param.environment) == ("team-support", "prod")
    assert param.tags["type"] == "SecureString" and param.fingerprint

    # every access key the account has, each once (the baseline: boto3's own listing)
    expected = {
        k["AccessKeyId"]
        for u in iam.list_users()["Users"]
        for k in iam.list_access_keys(UserName=u["UserName"])["AccessKeyMetadata"]
    }
    keys = {c.native_id: c for c in result.credentials if c.kind == "iam-key"}
    assert set(keys) == expected
    support = [c for c in keys.values() if c.tags["user"] == "support-bot"]
    ci = [c for c in keys.values() if c.tags["user"] == "ci-runner"]
    assert len(support) == 2 and len(ci) == 1
    started = datetime.fromisoformat(seeded_sandbox.state.started_at)
    for key in support + ci:
        assert key.id == f"{AWS}:iam-key:{key.native_id}"
        assert key.name == f"{key.tags['user']}/{key.native_id}"
        assert key.fingerprint is None
        assert key.status == "active"
        # created by the seed, after the sandbox started: the age comes from CreateDate
        assert key.created_at is not None and key.created_at >= started.replace(microsecond=0)
        assert key.created_at.tzinfo == UTC
    assert {k.owner for k in support} == {"team-support"}
    assert {k.environment for k in ci} == {"dev"}
    assert support[0].scope == "ReadOnlyAccess"
    # the admin key keyshift collects with: its own calls are not reported as use
    admin = [c for c in keys.values() if c.tags["user"] == "keyshift-admin"]
    assert admin and all(c.last_used_at is None and "used_by" in c.tags for c in admin)


def test_inactive_key_and_grants(seeded_sandbox: Any, iam: Any, tmp_path: Path) -> None:
    greedy, _ = make_user(
        iam,
        "greedy",
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "secretsmanager:*", "Resource": "*"}],
        },
    )
    narrow, made = make_user(
        iam,
        "narrow",
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["secretsmanager:GetSecretValue"],
                    "Resource": "arn:aws:secretsmanager:*:*:secret:prod/support/*",
                },
                {
                    "Effect": "Deny",
                    "Action": "secretsmanager:GetSecretValue",
                    "Resource": "arn:aws:secretsmanager:*:*:secret:prod/support/blocked*",
                },
            ],
        },
        keys=2,
    )
    iam.update_access_key(UserName=narrow, AccessKeyId=made[1]["AccessKeyId"], Status="Inactive")
    from console.sandbox import aws_client

    sm = aws_client(seeded_sandbox.state, "secretsmanager")
    blocked = f"prod/support/blocked-{uuid.uuid4().hex[:6]}"
    sm.create_secret(Name=blocked, SecretString=generate(30).reveal())
    other = f"dev/other-{uuid.uuid4().hex[:6]}"
    sm.create_secret(Name=other, SecretString=generate(30).reveal())

    # one use of narrow's active key, which GetAccessKeyLastUsed then reports
    import boto3

    boto3.client(
        "sts",
        endpoint_url=seeded_sandbox.state.moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id=made[0]["AccessKeyId"],
        aws_secret_access_key=made[0]["SecretAccessKey"],
    ).get_caller_identity()
    inv = base_inventory()
    inv["sandbox"]["iam_users"] += [
        {"name": greedy, "environment": "dev"},
        {"name": narrow, "environment": "dev"},
    ]
    inv["agents"] += [
        {
            "name": "greedy",
            "environment": "dev",
            "identities": [{"type": "aws-iam-user", "source": AWS, "name": greedy}],
        },
        {
            "name": "narrow",
            "environment": "dev",
            "identities": [{"type": "aws-iam-user", "source": AWS, "name": narrow}],
        },
    ]
    result = collect(inv, tmp_path)
    assert result.complete, result.errors
    creds = {c.id: c for c in result.credentials}
    secret_ids = {c.id for c in result.credentials if c.kind == "secretsmanager"}
    by_agent: dict[str, dict[str, Any]] = {}
    for g in result.grants:
        by_agent.setdefault(g.agent, {})[g.credential_id] = g

    # the over-broad policy grants every secret
    greedy_secrets = {c for c in by_agent["greedy"] if c in secret_ids}
    assert greedy_secrets == secret_ids
    # the narrow one: prod/support/* minus the denied one
    narrow_secrets = {creds[c].name for c in by_agent["narrow"] if c in secret_ids}
    assert "prod/support/stripe" in narrow_secrets
    assert blocked not in narrow_secrets and other not in narrow_secrets
    stripe_id = next(c for c in secret_ids if creds[c].name == "prod/support/stripe")
    g = by_agent["narrow"][stripe_id]
    assert g.capabilities == ["secretsmanager:GetSecretValue"]
    assert g.chain == [
        "agent:narrow",
        f"iam-user:{narrow}",
        f"policy:{narrow}-inline",
        f"resource:{creds[stripe_id].native_id}",
    ]
    # an agent's user's keys are granted to it; the inactive one says so
    narrow_keys = {
        creds[c].native_id: creds[c] for c in by_agent["narrow"] if creds[c].kind == "iam-key"
    }
    assert set(narrow_keys) == {k["AccessKeyId"] for k in made}
    assert narrow_keys[made[1]["AccessKeyId"]].status == "inactive"
    assert narrow_keys[made[0]["AccessKeyId"]].status == "active"
    active = narrow_keys[made[0]["AccessKeyId"]]
    assert active.last_used_at is not None
    assert active.last_used_evidence == "aws:GetAccessKeyLastUsed"
    assert narrow_keys[made[1]["AccessKeyId"]].last_used_at is None
    key_grants = {
        c: by_agent["narrow"][c] for c in by_agent["narrow"] if creds[c].kind == "iam-key"
    }
    assert (
        key_grants[active.id].used
        and not key_grants[creds[f"{AWS}:iam-key:{made[1]['AccessKeyId']}"].id].used
    )
    assert key_grants[active.id].chain == [
        "agent:narrow",
        f"iam-user:{narrow}",
        f"policy:{narrow}-inline",
    ]
    assert any(
        u.credential_id == active.id and u.identity == f"iam-user:{narrow}" for u in result.usage
    )
    # the seeded agents: ReadOnlyAccess reads SSM parameters but no secret values
    support = by_agent["support-bot"]
    assert {creds[c].kind for c in support} == {"iam-key", "ssm-parameter"}
    assert by_agent["support-bot"][f"{AWS}:ssm-parameter:/prod/support/db-password"].chain[2] == (
        "policy:ReadOnlyAccess"
    )
    assert {creds[c].kind for c in by_agent["ci-runner"]} == {"iam-key"}
    assert by_agent["ci-runner"][next(iter(by_agent["ci-runner"]))].capabilities == ["s3:*"]


def test_groups_boundaries_and_conditions_decide_reach_on_the_server_data(
    seeded_sandbox: Any, iam: Any, sm: Any, tmp_path: Path
) -> None:
    """A user with no policy of its own reaches through its group's policies; a Condition
    makes a grant conditional, not certain; a NotAction deny in the group removes one."""
    suffix = uuid.uuid4().hex[:6]
    team = f"team-{suffix}"
    # (user permission boundaries are checked by tests/test_aws_policy.py's table: moto
    # neither sets nor returns them)
    grouped, _ = make_user(iam, "grouped", None)
    iam.create_group(GroupName=team)
    iam.add_user_to_group(GroupName=team, UserName=grouped)
    iam.put_group_policy(
        GroupName=team, PolicyName="team-read",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue",
                                           "secretsmanager:PutSecretValue"],
             "Resource": f"arn:aws:secretsmanager:*:*:secret:{suffix}/*"},
            {"Effect": "Allow", "Action": "secretsmanager:UpdateSecret",
             "Resource": f"arn:aws:secretsmanager:*:*:secret:{suffix}/*",
             "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}},
            {"Effect": "Deny", "NotAction": ["secretsmanager:GetSecretValue",
                                             "secretsmanager:UpdateSecret"],
             "Resource": f"arn:aws:secretsmanager:*:*:secret:{suffix}/*"},
        ]}),
    )
    name = f"{suffix}/app-key"
    sm.create_secret(Name=name, SecretString=generate(30).reveal())
    inv = base_inventory()
    inv["sandbox"]["iam_users"].append({"name": grouped, "environment": "dev"})
    inv["agents"].append(
        {"name": "grouped", "environment": "dev",
         "identities": [{"type": "aws-iam-user", "source": AWS, "name": grouped}]}
    )
    result = collect(inv, tmp_path)
    creds = {c.id: c for c in result.credentials}
    (grant,) = [
        g for g in result.grants
        if g.agent == "grouped" and creds[g.credential_id].name == name
    ]
    # PutSecretValue: allowed, then denied by the NotAction deny; UpdateSecret: conditional
    assert grant.capabilities == [
        "secretsmanager:GetSecretValue", "conditional:secretsmanager:UpdateSecret"
    ]
    assert grant.chain[2] == f"policy:group {team}: team-read"


def test_access_denied_values_are_item_errors(
    seeded_sandbox: Any, iam: Any, sm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user that may list secrets but not read them: every value read is an ItemError, the
    listing still completes (moto checks IAM actions against Resource "*" only, so the deny is
    for every secret rather than one ARN). The batch read is denied too, so keyshift falls back
    to a GetSecretValue per secret: moto checks only the request's own action, so a batch it
    allowed would return values AWS withholds (AWS checks GetSecretValue on each secret of a
    batch and reports each refusal in Errors, which keyshift names per secret the same way)."""
    _user, made = make_user(
        iam,
        "limited",
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["sts:GetCallerIdentity", "secretsmanager:*"],
                    "Resource": "*",
                },
                {
                    "Effect": "Deny",
                    "Action": [
                        "secretsmanager:GetSecretValue",
                        "secretsmanager:BatchGetSecretValue",
                    ],
                    "Resource": "*",
                },
            ],
        },
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", made[0]["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", made[0]["SecretAccessKey"])
    inv = base_inventory()
    inv["sources"] = [
        {
            "name": "real-aws",
            "type": "aws",
            "endpoint_url": seeded_sandbox.state.moto_endpoint,
            "services": ["secretsmanager"],
        }
    ]
    inv["agents"], inv["credentials"], inv["sandbox"] = [], [], None
    result = collect(inv, tmp_path, "real-aws")
    assert not result.complete
    listed = [s["Name"] for s in sm.list_secrets()["SecretList"]]
    assert sorted(c.name for c in result.credentials) == sorted(listed)
    assert all(c.fingerprint is None for c in result.credentials)
    assert sorted(e.where for e in result.errors) == sorted(
        f"secretsmanager {name}" for name in listed
    )
    assert all(e.message.startswith("AccessDenied") for e in result.errors)


def test_refused_credentials_are_a_source_error(
    seeded_sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret-" + uuid.uuid4().hex)
    inv = base_inventory()
    inv["sources"] = [
        {"name": "real-aws", "type": "aws", "endpoint_url": seeded_sandbox.state.moto_endpoint}
    ]
    inv["agents"], inv["credentials"], inv["sandbox"] = [], [], None
    with pytest.raises(SourceError) as err:
        collect(inv, tmp_path, "real-aws")
    line = err.value.one_line()
    assert line.startswith("real-aws: ") and "refused keyshift's credentials" in line
    assert "not-a-real-secret" not in line and "\n" not in line


def test_unreachable_endpoint_is_a_source_error(
    seeded_sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x" * 40)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        inv = base_inventory()
        inv["sources"] = [
            {"name": "real-aws", "type": "aws", "endpoint_url": f"http://127.0.0.1:{port}"}
        ]
        inv["agents"], inv["credentials"], inv["sandbox"] = [], [], None
        with pytest.raises(SourceError) as err:
            collect(inv, tmp_path, "real-aws")
    assert err.value.one_line().startswith(
        f"real-aws: cannot reach http://127.0.0.1:{port} (connection refused)"
    )


# --- last use: Secrets Manager's LastAccessedDate ------------------------------------------


def test_last_accessed_date_is_a_day_of_evidence_and_its_absence_is_unknown(
    tmp_path: Path,
) -> None:
    """moto never sets LastAccessedDate (it answers null for every secret), so the mapping is
    checked on a ListSecrets entry shaped as AWS documents it (boto3 parses it to a datetime,
    truncated to midnight); the moto collection in test_collect_finds_the_seeded_aws_credentials
    checks that a secret without one stays unknown."""
    from console.sources.aws import SM_LAST_ACCESSED

    loaded = loaded_from(base_inventory(), tmp_path)
    source = AwsSource(loaded.source(AWS), loaded)
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/x-AbCdEf"
    item = {
        "ARN": arn,
        "Name": "prod/x",
        "CreatedDate": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "LastAccessedDate": datetime(2024, 5, 3, tzinfo=UTC),
        "KmsKeyId": "alias/aws/secretsmanager",
    }
    cred, usage = source._secret_credential(item, "eu-west-1", None)
    assert cred.last_used_at == datetime(2024, 5, 3, tzinfo=UTC)
    assert cred.last_used_evidence == SM_LAST_ACCESSED == "aws:secretsmanager:last-accessed (day)"
    assert cred.tags["last_accessed"] == "2024-05-03 (day)"
    assert "kms_key" not in cred.tags  # Secrets Manager's own key needs no extra permission
    assert usage is not None
    assert (usage.credential_id, usage.at, usage.evidence) == (
        cred.id, datetime(2024, 5, 3, tzinfo=UTC), SM_LAST_ACCESSED
    )
    # a time of day (a local midnight in another zone) is still reported as its day, not a time
    item["LastAccessedDate"] = datetime(2024, 5, 3, 17, 30, tzinfo=UTC)
    cred, _ = source._secret_credential(item, "eu-west-1", None)
    assert cred.last_used_at == datetime(2024, 5, 3, tzinfo=UTC)
    # no LastAccessedDate: no evidence either way, so unknown (None), never "never"
    del item["LastAccessedDate"]
    cred, usage = source._secret_credential(item, "eu-west-1", None)
    assert cred.last_used_at is None and cred.last_used_evidence is None and usage is None
    assert "last_accessed" not in cred.tags


# --- several regions -------------------------------------------------------------------------


def test_regions_are_collected_together_and_a_failing_one_is_named(
    seeded_sandbox: Any, iam: Any, tmp_path: Path
) -> None:
    """Three regions: two answer, one the server refuses (moto has no backend for a region it
    does not know and fails the request). The failing region is one ItemError naming it; the
    other regions' secrets and the account's IAM keys (global: read once) are all there."""
    from console.sandbox import aws_client

    eu = aws_client(seeded_sandbox.state, "secretsmanager", "eu-west-1")
    name = f"eu/only-{uuid.uuid4().hex[:6]}"
    eu.create_secret(Name=name, SecretString=generate(30).reveal())
    inv = base_inventory()
    source = next(s for s in inv["sources"] if s["name"] == AWS)
    source["regions"] = ["us-east-1", "eu-west-1", "xx-nowhere-1"]
    source["services"] = ["secretsmanager", "iam"]
    result = collect(inv, tmp_path)
    assert not result.complete
    assert [e.where for e in result.errors if "xx-nowhere-1" in e.where] == [
        "secretsmanager xx-nowhere-1"
    ]
    assert all("eu-west-1" not in e.where and "us-east-1" not in e.where for e in result.errors)
    secrets = [c for c in result.credentials if c.kind == "secretsmanager"]
    by_region: dict[str, set[str]] = {}
    for c in secrets:
        by_region.setdefault(c.tags["region"], set()).add(c.name)
    assert name in by_region["eu-west-1"] and name not in by_region["us-east-1"]
    assert "prod/support/stripe" in by_region["us-east-1"]
    assert set(by_region) == {"us-east-1", "eu-west-1"}
    assert by_region["eu-west-1"] == {s["Name"] for s in eu.list_secrets()["SecretList"]}
    keys = [c.native_id for c in result.credentials if c.kind == "iam-key"]
    assert len(keys) == len(set(keys))  # IAM once, not once per region
    expected = {
        k["AccessKeyId"]
        for u in iam.list_users()["Users"]
        for k in iam.list_access_keys(UserName=u["UserName"])["AccessKeyMetadata"]
    }
    assert set(keys) == expected


# --- roles, resource policies, KMS -----------------------------------------------------------


def _document(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def test_role_identities_and_roles_a_user_may_assume(
    seeded_sandbox: Any, iam: Any, sm: Any, tmp_path: Path
) -> None:
    """Roles read from moto (trust, inline policies, a boundary) and decided by keyshift. The
    assume decisions cannot be checked against moto itself: it checks no trust policy and
    matches IAM policies against Resource "*" only; tests/test_aws_policy.py's trust table
    covers the evaluation."""
    suffix = uuid.uuid4().hex[:6]
    account = iam.get_user(UserName="support-bot")["User"]["Arn"].split(":")[4]
    root = f"arn:aws:iam::{account}:root"
    read = f"{suffix}/read/app"
    write = f"{suffix}/write/app"
    for secret in (read, write):
        sm.create_secret(Name=secret, SecretString=generate(30).reveal())
    arns = {s: sm.describe_secret(SecretId=s)["ARN"] for s in (read, write)}
    everything = {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue",
                                                "secretsmanager:PutSecretValue"],
                  "Resource": f"arn:aws:secretsmanager:*:*:secret:{suffix}/*"}

    # a role an agent runs as: inline policy reaches both, its boundary only GetSecretValue
    worker = f"worker-{suffix}"
    boundary_arn = iam.create_policy(
        PolicyName=f"boundary-{suffix}",
        PolicyDocument=_document({"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                                  "Resource": "*"}),
    )["Policy"]["Arn"]
    iam.create_role(
        RoleName=worker, PermissionsBoundary=boundary_arn,
        AssumeRolePolicyDocument=_document(
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
             "Action": "sts:AssumeRole"}),
    )
    iam.put_role_policy(RoleName=worker, PolicyName="worker-inline",
                        PolicyDocument=_document(everything))

    # roles for a user: one trusting the account (the user's policy must allow it), one naming
    # the user directly (no identity policy needed), one trusting someone else
    hopper, _ = make_user(iam, "hopper", {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                       "Resource": f"arn:aws:iam::{account}:role/by-account-{suffix}"}],
    })
    hopper_arn = iam.get_user(UserName=hopper)["User"]["Arn"]
    get = {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": arns[read]}
    put = {"Effect": "Allow", "Action": "secretsmanager:PutSecretValue", "Resource": arns[write]}
    for role, principal, document in (
        (f"by-account-{suffix}", root, get),
        (f"by-name-{suffix}", hopper_arn, put),
        (f"elsewhere-{suffix}", "arn:aws:iam::123456789012:user/nobody", everything),
    ):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=_document(
            {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}))
        iam.put_role_policy(RoleName=role, PolicyName=f"{role}-inline",
                            PolicyDocument=_document(document))

    inv = base_inventory()
    inv["sandbox"]["iam_users"].append({"name": hopper, "environment": "dev"})
    inv["agents"] += [
        {"name": "worker", "environment": "dev",
         "identities": [{"type": "aws-iam-role", "source": AWS, "name": worker}]},
        {"name": "hopper", "environment": "dev",
         "identities": [{"type": "aws-iam-user", "source": AWS, "name": hopper}]},
        {"name": "ghost", "environment": "dev",
         "identities": [{"type": "aws-iam-role", "source": AWS, "name": f"ghost-{suffix}"}]},
    ]
    result = collect(inv, tmp_path)
    creds = {c.id: c for c in result.credentials}
    grants: dict[str, dict[str, list[Any]]] = {}
    for g in result.grants:
        grants.setdefault(g.agent, {}).setdefault(creds[g.credential_id].name, []).append(g)

    # the role's own reach, its boundary applied
    assert {n for n in grants["worker"] if n.startswith(suffix)} == {read, write}
    (g,) = grants["worker"][read]
    assert g.capabilities == ["secretsmanager:GetSecretValue"]
    assert g.chain == ["agent:worker", f"iam-role:{worker}", "policy:worker-inline",
                       f"resource:{arns[read]}"]
    assert grants["worker"][write][0].capabilities == ["secretsmanager:GetSecretValue"]

    # hopper reaches through the two roles it may assume, each step in the chain
    assert {n for n in grants["hopper"] if n.startswith(suffix)} == {read, write}
    (g,) = grants["hopper"][read]
    assert g.capabilities == ["secretsmanager:GetSecretValue"]
    assert g.chain == [
        "agent:hopper", f"iam-user:{hopper}", f"policy:{hopper}-inline,trust",
        f"assume:iam-role:by-account-{suffix}", f"policy:by-account-{suffix}-inline",
        f"resource:{arns[read]}",
    ]
    (g,) = grants["hopper"][write]
    assert g.capabilities == ["secretsmanager:PutSecretValue"]
    assert g.chain[2:4] == ["policy:trust", f"assume:iam-role:by-name-{suffix}"]
    assert not any(f"elsewhere-{suffix}" in step for gs in grants["hopper"].values()
                   for g in gs for step in g.chain)
    # a role that is not in the account is named, as a missing user is
    assert any(e.where == "agent ghost" and f"ghost-{suffix}" in e.message for e in result.errors)


def test_resource_policies_and_customer_keys_shape_the_grants(
    seeded_sandbox: Any, iam: Any, sm: Any, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    owner, _ = make_user(iam, "owner", {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "secretsmanager:*",
                       "Resource": f"arn:aws:secretsmanager:*:*:secret:{suffix}/*"}],
    })
    guest, _ = make_user(iam, "guest", None)
    owner_arn = iam.get_user(UserName=owner)["User"]["Arn"]
    guest_arn = iam.get_user(UserName=guest)["User"]["Arn"]
    shared, fenced, sealed = f"{suffix}/shared", f"{suffix}/fenced", f"{suffix}/sealed"
    for secret in (shared, fenced):
        sm.create_secret(Name=secret, SecretString=generate(30).reveal())
    key_arn = "arn:aws:kms:us-east-1:123456789012:key/" + str(uuid.uuid4())
    sm.create_secret(Name=sealed, SecretString=generate(30).reveal(), KmsKeyId=key_arn)
    # the guest has no policy of its own: the secret's policy names it
    sm.put_resource_policy(SecretId=shared, ResourcePolicy=_document(
        {"Effect": "Allow", "Principal": {"AWS": guest_arn},
         "Action": "secretsmanager:GetSecretValue", "Resource": "*"}))
    # the owner may do anything by its policy, but this secret's policy denies it reads
    sm.put_resource_policy(SecretId=fenced, ResourcePolicy=_document(
        {"Effect": "Deny", "Principal": {"AWS": owner_arn},
         "Action": "secretsmanager:GetSecretValue", "Resource": "*"}))
    inv = base_inventory()
    inv["sandbox"]["iam_users"] += [{"name": owner, "environment": "dev"},
                                    {"name": guest, "environment": "dev"}]
    inv["agents"] += [
        {"name": n, "environment": "dev",
         "identities": [{"type": "aws-iam-user", "source": AWS, "name": u}]}
        for n, u in (("owner", owner), ("guest", guest))
    ]
    result = collect(inv, tmp_path)
    creds = {c.id: c for c in result.credentials}
    grants: dict[tuple[str, str], Any] = {
        (g.agent, creds[g.credential_id].name): g for g in result.grants
    }
    g = grants[("guest", shared)]
    assert g.capabilities == ["secretsmanager:GetSecretValue"]
    assert g.chain[1:3] == [f"iam-user:{guest}", "policy:resource-policy"]
    assert ("guest", fenced) not in grants and ("guest", sealed) not in grants

    fenced_caps = grants[("owner", fenced)].capabilities
    assert "secretsmanager:GetSecretValue" not in fenced_caps
    assert "secretsmanager:PutSecretValue" in fenced_caps
    # a customer-managed key: the value actions also need KMS, whose key policy keyshift does
    # not read, so they are conditional and the chain says why; DeleteSecret needs no key
    sealed_grant = grants[("owner", sealed)]
    assert sealed_grant.capabilities == [
        "conditional:secretsmanager:GetSecretValue",
        "conditional:secretsmanager:PutSecretValue",
        "conditional:secretsmanager:UpdateSecret",
        "secretsmanager:RotateSecret",
        "secretsmanager:DeleteSecret",
    ]
    assert (
        f"kms:{key_arn} (kms:Decrypt, kms:GenerateDataKey needed; key policy not evaluated)"
        in sealed_grant.chain
    )
    assert creds[sealed_grant.credential_id].tags["kms_key"] == key_arn
    assert grants[("owner", shared)].capabilities[0] == "secretsmanager:GetSecretValue"


def test_a_source_reads_the_account_as_an_assumed_role(
    seeded_sandbox: Any, iam: Any, tmp_path: Path
) -> None:
    """``role_arn``: the source's credentials assume the role and everything is read as it
    (moto enforces the role's own policy: it may list secrets, not IAM users). A role that
    cannot be assumed is one line, never a traceback."""
    from console.connections import aws_connection

    suffix = uuid.uuid4().hex[:6]
    me = iam.get_user()["User"]["Arn"]  # the sandbox's admin user, the source's credentials
    account = me.split(":")[4]
    role = iam.create_role(
        RoleName=f"auditor-{suffix}",
        AssumeRolePolicyDocument=_document(  # moto checks the trust names the caller
            {"Effect": "Allow", "Principal": {"AWS": me}, "Action": "sts:AssumeRole"}
        ),
    )["Role"]
    iam.put_role_policy(
        RoleName=role["RoleName"], PolicyName="list-secrets",
        PolicyDocument=_document({"Effect": "Allow", "Resource": "*",
                                  "Action": ["secretsmanager:ListSecrets",
                                             "secretsmanager:BatchGetSecretValue",
                                             "secretsmanager:GetSecretValue"]}),
    )
    inv = base_inventory()
    inv["sources"] = [{"name": "as-role", "type": "aws", "sandbox": True,
                       "role_arn": role["Arn"], "services": ["secretsmanager", "iam"]}]
    inv["agents"], inv["credentials"], inv["sandbox"] = [], [], None
    loaded = loaded_from(inv, tmp_path)
    conn = aws_connection(loaded.source("as-role"))
    caller = conn.client("sts").get_caller_identity()["Arn"]
    assert f"assumed-role/{role['RoleName']}/keyshift-as-role" in caller
    result = AwsSource(loaded.source("as-role"), loaded).collect()
    assert any(c.kind == "secretsmanager" for c in result.credentials)
    assert not any(c.kind == "iam-key" for c in result.credentials)  # the role may not
    assert any("iam" in e.where.lower() for e in result.errors)
    untrusting = iam.create_role(
        RoleName=f"not-you-{suffix}",
        AssumeRolePolicyDocument=_document(
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:user/someone"},
             "Action": "sts:AssumeRole"}
        ),
    )["Role"]
    inv["sources"][0]["role_arn"] = untrusting["Arn"]
    other = loaded_from(inv, tmp_path)
    with pytest.raises(SourceError) as err:
        AwsSource(other.source("as-role"), other).collect()
    line = err.value.one_line()
    assert "cannot assume" in line and "AccessDenied" in line and f"not-you-{suffix}" in line
    assert "\n" not in line
