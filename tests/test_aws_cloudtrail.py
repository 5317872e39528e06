"""AWS last use from CloudTrail LookupEvents.

moto implements trails but not LookupEvents, so CloudTrail is a stand-in HTTP server here that
speaks botocore's wire protocol for it (JSON 1.1, ``X-Amz-Target``, SigV4-signed POSTs) and
serves the events each test defines. Everything else (secrets, parameters, users, keys, roles,
policies, keyshift's own credentials) is the real moto sandbox with IAM auth enforced, and
keyshift reaches the stand-in through the same client code as a real account's CloudTrail.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import BUILTIN_INVENTORY

from console.audit import AuditLog
from console.config import LoadedInventory, loads_inventory
from console.errors import ConfigError
from console.sources.aws import AwsSource
from console.sources.aws_trail import EVIDENCE, OVERLAP
from console.store import Store
from console.sync import run_sync
from rotators.values import generate

AWS = "sandbox-aws"
TARGET = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents"
SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[A-Z0-9]+)/\d{8}/(?P<region>[a-z0-9-]+)/cloudtrail/"
    r"aws4_request, SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$"
)


# --- the stand-in ---------------------------------------------------------------------------


@dataclass
class Trail:
    """What the stand-in serves and what it was asked."""

    events: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 2  # small, so the tests cross page boundaries
    answers: list[tuple[int, str]] = field(default_factory=list)  # (status, __type) first
    always: tuple[int, str] | None = None  # every request answered so (a refusing account)
    requests: list[dict[str, Any]] = field(default_factory=list)
    served: list[list[str]] = field(default_factory=list)  # event ids each answer carried
    url: str = ""

    def add(
        self, name: str, at: datetime, who: dict[str, Any], params: dict[str, Any],
        error: str | None = None,
    ) -> str:
        event_id = str(uuid.uuid4())
        record: dict[str, Any] = {
            "eventVersion": "1.09",
            "userIdentity": who,
            "eventTime": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eventSource": "secretsmanager.amazonaws.com"
            if name == "GetSecretValue" else "ssm.amazonaws.com",
            "eventName": name,
            "awsRegion": "us-east-1",
            "sourceIPAddress": "198.51.100.7",
            "requestParameters": params,
            "responseElements": None,
            "eventID": event_id,
            "readOnly": True,
            "eventType": "AwsApiCall",
        }
        if error:
            record["errorCode"] = error
            record["errorMessage"] = "User is not authorized to perform this action"
        self.events.append(
            {
                "EventId": event_id,
                "EventName": name,
                "ReadOnly": "true",
                "AccessKeyId": who.get("accessKeyId", ""),
                "EventTime": at.timestamp(),
                "EventSource": record["eventSource"],
                "Username": who.get("userName", ""),
                "Resources": [],
                "CloudTrailEvent": json.dumps(record),
            }
        )
        return event_id

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.always:
            status, kind = self.always
            return status, {"__type": kind, "message": "stand-in refuses"}
        if self.answers:
            status, kind = self.answers.pop(0)
            return status, {"__type": kind, "message": "Rate exceeded"}
        [attr] = body["LookupAttributes"]  # LookupEvents takes one attribute a request
        assert attr["AttributeKey"] == "EventName"
        start, end = body["StartTime"], body["EndTime"]
        wanted = sorted(
            (
                e for e in self.events
                if e["EventName"] == attr["AttributeValue"] and start <= e["EventTime"] <= end
            ),
            key=lambda e: -e["EventTime"],  # newest first, as CloudTrail answers
        )
        offset = int(body.get("NextToken") or 0)
        page = wanted[offset : offset + min(self.page_size, body.get("MaxResults") or 50)]
        self.served.append([e["EventId"] for e in page])
        out: dict[str, Any] = {"Events": page}
        if offset + len(page) < len(wanted):
            out["NextToken"] = str(offset + len(page))
        return 200, out


@pytest.fixture
def trail() -> Iterator[Trail]:
    state = Trail()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            state.requests.append(
                {
                    "target": self.headers.get("X-Amz-Target"),
                    "content_type": self.headers.get("Content-Type"),
                    "authorization": self.headers.get("Authorization", ""),
                    "body": body,
                }
            )
            if self.headers.get("X-Amz-Target") != TARGET:
                status, out = 400, {"__type": "UnknownOperationException"}
            else:
                status, out = state.answer(body)
            data = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- the account --------------------------------------------------------------------------


@dataclass
class Account:
    secret_name: str
    secret_arn: str
    parameter: str
    user: str
    user_arn: str
    user_key: str
    role: str
    role_arn: str
    admin_key: str


@pytest.fixture
def account(seeded_sandbox: Any) -> Account:
    """A secret, a parameter, a user who may read secrets (with a key) and a role that may
    read parameters and the user may assume, made fresh in the sandbox's moto."""
    from console.sandbox import aws_client, sandbox_aws

    tag = uuid.uuid4().hex[:6]
    sm = aws_client(seeded_sandbox.state, "secretsmanager")
    ssm = aws_client(seeded_sandbox.state, "ssm")
    iam = aws_client(seeded_sandbox.state, "iam")
    secret = sm.create_secret(Name=f"trail/{tag}/db", SecretString=generate(30).reveal())
    parameter = f"/trail/{tag}/token"
    ssm.put_parameter(Name=parameter, Value=generate(30).reveal(), Type="SecureString")
    user = f"trail-reader-{tag}"
    made = iam.create_user(UserName=user)["User"]
    iam.put_user_policy(
        UserName=user, PolicyName="read-secrets", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                           "Resource": "*"}],
        }),
    )
    key = iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
    role = f"trail-role-{tag}"
    role_made = iam.create_role(
        RoleName=role, AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17",
            # the user may assume it: the user reaches the parameters through the role
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": made["Arn"]},
                           "Action": "sts:AssumeRole"}],
        }),
    )["Role"]
    iam.put_role_policy(
        RoleName=role, PolicyName="read-parameters", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ssm:GetParameter*", "Resource": "*"}],
        }),
    )
    return Account(
        secret_name=secret["Name"], secret_arn=secret["ARN"], parameter=parameter,
        user=user, user_arn=made["Arn"], user_key=key, role=role, role_arn=role_made["Arn"],
        admin_key=sandbox_aws()[2],
    )


def inventory(acct: Account, **source: Any) -> dict[str, Any]:
    inv = copy.deepcopy(BUILTIN_INVENTORY)
    for src in inv["sources"]:
        if src["name"] == AWS:
            src.update(source)
    # the inventory must declare a sandbox account's users (this one is made by the fixture,
    # not seeded)
    inv["sandbox"]["iam_users"].append({"name": acct.user, "environment": "prod"})
    inv["agents"] += [
        {"name": "reader", "environment": "prod",
         "identities": [{"type": "aws-iam-user", "source": AWS, "name": acct.user}]},
        {"name": "roler", "environment": "prod",
         "identities": [{"type": "aws-iam-role", "source": AWS, "name": acct.role}]},
    ]
    return inv


def loaded_from(inv: dict[str, Any], base_dir: Path) -> LoadedInventory:
    return loads_inventory(yaml.safe_dump(inv), file="inventory.yaml", base_dir=base_dir)


def as_user(acct: Account, key: str | None = None) -> dict[str, Any]:
    return {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": acct.user_arn,
            "accountId": "123456789012", "accessKeyId": key or acct.user_key,
            "userName": acct.user}


def as_role(acct: Account) -> dict[str, Any]:
    return {
        "type": "AssumedRole", "principalId": "AROAEXAMPLE:agent-7",
        "arn": f"arn:aws:sts::123456789012:assumed-role/{acct.role}/agent-7",
        "accountId": "123456789012", "accessKeyId": "ASIAEXAMPLEEXAMPLE01",
        "sessionContext": {"sessionIssuer": {"type": "Role", "userName": acct.role,
                                             "arn": acct.role_arn}},
    }


def ids(store: Store, credential_id: str, evidence: str = EVIDENCE) -> list[tuple]:
    return sorted(
        (u.at, u.identity, u.operation)
        for u in store.usage_for_credential(credential_id)
        if u.evidence == evidence
    )


# --- the tests ------------------------------------------------------------------------------


def test_reads_become_use_and_a_second_sync_asks_from_the_saved_position(
    account: Account, trail: Trail, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    a = account
    secret_id = f"{AWS}:secretsmanager:{a.secret_arn}"
    param_id = f"{AWS}:ssm-parameter:{a.parameter}"
    key_id = f"{AWS}:iam-key:{a.user_key}"
    t_name = now - timedelta(hours=3)  # by name
    t_arn = now - timedelta(minutes=8)  # by ARN; inside the next sync's overlap
    t_param = now - timedelta(hours=2)
    t_denied = now - timedelta(minutes=2)  # refused: the newest event, and no use
    trail.add("GetSecretValue", t_name, as_user(a), {"secretId": a.secret_name})
    trail.add("GetSecretValue", t_arn, as_user(a), {"secretId": a.secret_arn})
    trail.add("GetSecretValue", t_denied, as_user(a), {"secretId": a.secret_name},
              error="AccessDenied")
    trail.add("GetSecretValue", now - timedelta(minutes=30), as_user(a),
              {"secretId": "not/in/the/inventory"})
    # keyshift's own fingerprint reads are not use
    trail.add("GetSecretValue", now - timedelta(minutes=5), as_user(a, a.admin_key),
              {"secretId": a.secret_arn})
    trail.add("GetParameters", t_param, as_role(a),
              {"names": [a.parameter, "/not/listed"], "withDecryption": True})
    # the user itself, naming the parameter by ARN (a hierarchy's first slash dropped)
    t_user_param = now - timedelta(hours=4)
    trail.add("GetParameter", t_user_param, as_user(a),
              {"name": f"arn:aws:ssm:us-east-1:123456789012:parameter{a.parameter}"})
    # older than the window: asked for from 7 days back, it is never served
    old = trail.add("GetSecretValue", now - timedelta(days=10), as_user(a),
                    {"secretId": a.secret_name})
    trail.answers = [(400, "ThrottlingException")]  # the first request: throttled

    loaded = loaded_from(
        inventory(a, cloudtrail=True, cloudtrail_endpoint_url=trail.url), tmp_path
    )
    store = Store(tmp_path / "store.db")
    audit = AuditLog(store)
    summary = run_sync(loaded, store, audit, actor="test", only=[AWS])
    errors = [e for o in summary.outcomes for e in o.errors]
    assert not [e for e in errors if "cloudtrail" in e.lower()], errors

    # the wire: every request a signed JSON 1.1 LookupEvents; the throttled one was retried
    assert trail.requests and all(
        r["target"] == TARGET and r["content_type"] == "application/x-amz-json-1.1"
        for r in trail.requests
    )
    for r in trail.requests:
        signed = SIGV4.match(r["authorization"])
        assert signed and signed["key"] == a.admin_key and signed["region"] == "us-east-1"
    asked = [r["body"]["LookupAttributes"][0]["AttributeValue"] for r in trail.requests]
    # GetSecretValue: throttled, then its 5 events in the window over 3 pages; each
    # parameter event name: one page
    assert asked == ["GetSecretValue"] * 4 + ["GetParameter", "GetParameters"]
    assert [r["body"].get("NextToken") for r in trail.requests[:4]] == [None, None, "2", "4"]
    first_start = trail.requests[0]["body"]["StartTime"]
    assert (now - timedelta(days=10)).timestamp() < first_start < t_name.timestamp()
    assert all(old not in served for served in trail.served)

    # the secret: two reads by the user (the refused one, the unlisted secret's and
    # keyshift's own are not use); its last use is the latest read, to the second
    assert ids(store, secret_id) == [(t_name, a.user_arn, "GetSecretValue"),
                                     (t_arn, a.user_arn, "GetSecretValue")]
    secret = store.get_credential(secret_id)
    assert secret is not None
    assert (secret.last_used_at, secret.last_used_evidence) == (t_arn, EVIDENCE)
    # the parameter: read by the role's session, named as CloudTrail names it
    session = f"arn:aws:sts::123456789012:assumed-role/{a.role}/agent-7"
    assert ids(store, param_id) == [(t_user_param, a.user_arn, "GetParameter"),
                                    (t_param, session, "GetParameters")]
    # the user's key made its three reads: who used it, and for what
    assert ids(store, key_id) == [(t_user_param, a.user_arn, "GetParameter"),
                                  (t_name, a.user_arn, "GetSecretValue"),
                                  (t_arn, a.user_arn, "GetSecretValue")]
    assert ids(store, f"{AWS}:iam-key:{a.admin_key}") == []
    # the agents that made the calls have used their grants on what they read
    assert {g.agent: g.used for g in store.grants_for_credential(secret_id)}["reader"] is True
    assert {g.agent: g.used for g in store.grants_for_credential(param_id)}["roler"] is True
    # the user reaches the parameter only through the role: its call as itself is recorded,
    # but who assumed the role for the role's read is not known, so that grant stays unused
    via_role = [g for g in store.grants_for_credential(param_id) if g.agent == "reader"]
    assert via_role and all(f"assume:iam-role:{a.role}" in g.chain for g in via_role)
    assert not any(g.used for g in via_role)
    stripe = next(c for c in store.all_credentials() if c.name == "prod/support/stripe")
    assert [g.used for g in store.grants_for_credential(stripe.id) if g.agent == "reader"] == [
        False
    ]
    # the position: the newest event read (the refused one counts as read)
    pos = store.read_positions(AWS)["cloudtrail:us-east-1"]
    assert pos.offset == int(t_denied.timestamp())

    # a second sync: from the position less the overlap, which reads t_arn again; a new read
    t_new = now - timedelta(minutes=1)
    trail.add("GetSecretValue", t_new, as_user(a), {"secretId": a.secret_name})
    trail.requests.clear()
    trail.served.clear()
    run_sync(loaded, store, audit, actor="test", only=[AWS])
    starts = {r["body"]["StartTime"] for r in trail.requests}
    assert starts == {(t_denied - OVERLAP).timestamp()}
    served = {e for page in trail.served for e in page}
    assert len(served) == 4  # t_new, t_denied, keyshift's own and t_arn, again
    assert ids(store, secret_id) == [(t_name, a.user_arn, "GetSecretValue"),
                                     (t_arn, a.user_arn, "GetSecretValue"),
                                     (t_new, a.user_arn, "GetSecretValue")]
    secret = store.get_credential(secret_id)
    assert secret is not None and secret.last_used_at == t_new
    assert store.read_positions(AWS)["cloudtrail:us-east-1"].offset == int(t_new.timestamp())


def test_cloudtrail_beats_a_day_of_last_accessed_but_not_a_later_key_use(
    account: Account, trail: Trail, tmp_path: Path
) -> None:
    """The collect's own rows: CloudTrail's time replaces LastAccessedDate's day (the same
    day's midnight is earlier), and an earlier CloudTrail use of a key does not replace a
    later GetAccessKeyLastUsed. moto sets neither date, so both are given on the rows the
    collect lists before the trail is applied (aws_trail.apply is what collect calls)."""
    from console.sources import aws_trail

    a = account
    now = datetime.now(UTC).replace(microsecond=0)
    at = now - timedelta(hours=1)
    trail.add("GetSecretValue", at, as_user(a), {"secretId": a.secret_arn})
    # off: collect reads no trail; the test applies one read itself
    loaded = loaded_from(inventory(a, cloudtrail_endpoint_url=trail.url), tmp_path)
    source = AwsSource(loaded.source(AWS), loaded)
    result = source.collect()
    assert trail.requests == []
    secret = next(c for c in result.credentials if c.native_id == a.secret_arn)
    key = next(c for c in result.credentials if c.native_id == a.user_key)
    secret.last_used_at = at.replace(hour=0, minute=0, second=0)
    secret.last_used_evidence = "aws:secretsmanager:last-accessed (day)"
    later = now - timedelta(minutes=1)
    key.last_used_at, key.last_used_evidence = later, "aws:GetAccessKeyLastUsed"
    read = source._trail("us-east-1", ["GetSecretValue"], now)
    assert read.error is None and len(trail.requests) == 1
    applied = aws_trail.apply(
        [read], result.credentials, result.grants, source._agent_principals(), set(), {}
    )
    assert (secret.last_used_at, secret.last_used_evidence) == (at, EVIDENCE)
    assert (key.last_used_at, key.last_used_evidence) == (later, "aws:GetAccessKeyLastUsed")
    assert {(u.credential_id, u.at) for u in applied.usage} == {(secret.id, at), (key.id, at)}


def test_a_refused_lookup_is_one_item_error_and_the_rows_stay(
    account: Account, trail: Trail, tmp_path: Path
) -> None:
    trail.always = (400, "AccessDeniedException")
    loaded = loaded_from(
        inventory(account, cloudtrail=True, cloudtrail_endpoint_url=trail.url), tmp_path
    )
    store = Store(tmp_path / "store.db")
    summary = run_sync(loaded, store, AuditLog(store), actor="test", only=[AWS])
    [outcome] = summary.outcomes
    assert outcome.status == "partial"
    trail_errors = [e for e in outcome.errors if "CloudTrail" in e]
    assert trail_errors == [
        "cloudtrail us-east-1: region us-east-1: CloudTrail not read (AccessDeniedException)"
    ]
    assert len(trail.requests) == 1  # the region gives up at its first refusal
    secret_id = f"{AWS}:secretsmanager:{account.secret_arn}"
    secret = store.get_credential(secret_id)
    assert secret is not None and secret.status == "active" and secret.stale_since is None
    assert ids(store, secret_id) == []
    assert "cloudtrail:us-east-1" not in store.read_positions(AWS)


def test_cloudtrail_off_makes_no_call(account: Account, trail: Trail, tmp_path: Path) -> None:
    trail.add("GetSecretValue", datetime.now(UTC) - timedelta(hours=1), as_user(account),
              {"secretId": account.secret_arn})
    loaded = loaded_from(inventory(account, cloudtrail_endpoint_url=trail.url), tmp_path)
    assert loaded.source(AWS).cloudtrail is False  # off unless asked
    result = AwsSource(loaded.source(AWS), loaded).collect()
    assert trail.requests == []
    assert not [u for u in result.usage if u.evidence == EVIDENCE]
    assert result.positions == []


@pytest.mark.parametrize(
    ("line", "field", "phrase"),
    [
        ("cloudtrail_days: 0", "cloudtrail_days", "must be at least 1"),
        ("cloudtrail_days: 91", "cloudtrail_days", "must be at most 90"),
        ("cloudtrail_days: week", "cloudtrail_days", "expected a whole number"),
        ("cloudtrail: maybe", "cloudtrail", "expected true or false"),
    ],
)
def test_bad_cloudtrail_settings_are_positioned_errors(
    line: str, field: str, phrase: str, tmp_path: Path
) -> None:
    text = (
        "sources:\n"
        "  - name: aws\n"
        "    type: aws\n"
        f"    {line}\n"
    )
    with pytest.raises(ConfigError) as info:
        loads_inventory(text, file="inv.yaml", base_dir=tmp_path)
    one = info.value.one_line()
    col = 5 + len(field) + 2
    assert one.startswith(f"inv.yaml:4:{col}: sources[0].{field}: "), one
    assert phrase in one, one
