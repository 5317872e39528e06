"""Incident actions against the real sandbox (OpenBao + moto): contain revokes a token and a
secret-id by accessor and deactivates an access key, and the stolen copies (held by the test,
as an attacker would) are refused by their issuers afterwards; a skipped contain leaves them
valid and verify says so; the hunt finds the user, key and policies an attacker made with the
stolen key and removes exactly them (a declared user and the identity the source signs in as
stay); `incident run` removes them only with --remove-found, else its remove task waits and
names the command; `incident run` end to end through the CLI; `keyshift revoke`; no planted
or stolen value in any output, log, export or audit entry.

Each test builds its own world: a KV mount, an AppRole role and an IAM user (with IAM rights,
so the stolen key can leave persistence) for one agent, declared with an aws-iam rotation
whose key consumers read from KV, synced into a fresh store."""

from __future__ import annotations

import json
import os
import secrets as pysecrets
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import hvac
import hvac.exceptions
import pytest
from rotation_support import FAST
from test_drills import main as main  # the fixture, re-exported

from console import incidents
from console.audit import AuditLog
from console.config import load_inventory
from console.errors import KeyshiftError
from console.incidents import actions
from console.incidents import hunt as hunting
from console.incidents.runner import run_incident
from console.rotation import RotationEngine
from console.rotation.context import Clients
from console.sandbox import ADMIN_USER, SandboxState, aws_client, vault_client
from console.store import Store
from console.sync import run_sync

KEYSHIFT = str(Path(sys.executable).parent / "keyshift")
IAM_RIGHTS = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["iam:*", "sts:GetCallerIdentity"], "Resource": "*"}]})


@dataclass
class Stolen:
    """What an attacker holds, in memory only: never written anywhere by the test."""

    token: str
    secret_id: str
    role_id: str
    key_id: str
    key_secret: str


@dataclass
class World:
    tmp: Path
    tag: str
    mount: str
    agent: str
    user: str
    other_user: str  # declared in the inventory (another agent's), created after since
    vault: Any
    iam: Any
    sandbox: SandboxState
    inventory: Path
    db: Path
    store: Store
    audit: AuditLog
    loaded: Any
    stolen: Stolen
    since: datetime
    values: list[str] = field(default_factory=list)

    def engine(self) -> RotationEngine:
        return RotationEngine(self.store, self.audit, self.loaded, retry=FAST)

    def cli(self, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, KEYSHIFT_ACTOR="ia-cli", KEYSHIFT_HOME=str(home))
        return subprocess.run(
            [KEYSHIFT, "--inventory", str(self.inventory), "--db", str(self.db), *args],
            env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        )

    # the attacker's view: its stolen copies, tried against the real servers
    def token_works(self) -> bool:
        client = hvac.Client(url=self.vault.url, token=self.stolen.token, timeout=30)
        try:
            client.auth.token.lookup_self()
        except hvac.exceptions.Forbidden:
            return False
        return True

    def secret_id_works(self) -> bool:
        client = hvac.Client(url=self.vault.url, timeout=30)
        try:
            client.auth.approle.login(role_id=self.stolen.role_id,
                                      secret_id=self.stolen.secret_id)
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
            return False
        client.auth.token.revoke_self()
        return True

    def attacker(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.sandbox.moto_endpoint,
                            region_name="us-east-1", aws_access_key_id=self.stolen.key_id,
                            aws_secret_access_key=self.stolen.key_secret)

    def key_works(self) -> bool:
        try:
            self.attacker("sts").get_caller_identity()
        except botocore.exceptions.ClientError as exc:
            assert exc.response["Error"]["Code"] in ("InvalidClientTokenId", "AccessDenied")
            return False
        return True

    def kv(self, path: str) -> str:
        got = self.vault.secrets.kv.v2.read_secret_version(
            path, mount_point=self.mount, raise_on_deleted_version=True)
        return str(got["data"]["data"]["value"])

    def canaries(self) -> set[str]:
        s = self.stolen
        return {*self.values, s.token, s.secret_id, s.key_secret}


@pytest.fixture
def world(sandbox: SandboxState, tmp_path: Path) -> Iterator[World]:
    tag = uuid.uuid4().hex[:8]
    vault = vault_client(sandbox)
    iam = aws_client(sandbox, "iam")
    mount = f"ia-{tag}"
    vault.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    values = []
    for path in ("app/a", "app/b"):
        value = "canary-" + pysecrets.token_urlsafe(24)
        values.append(value)
        vault.secrets.kv.v2.create_or_update_secret(path, {"value": value}, mount_point=mount)
        vault.secrets.kv.v2.update_metadata(path, mount_point=mount, custom_metadata={
            "keyshift-issuer": "generated", "owner": "team-ia", "environment": "prod"})
    vault.sys.create_or_update_policy(f"ia-{tag}", f'path "{mount}/data/app/*" {{\n'
                                                   '  capabilities = ["read"]\n}\n')
    if "approle/" not in vault.sys.list_auth_methods()["data"]:
        vault.sys.enable_auth_method("approle")
    role = f"ia-{tag}"
    vault.auth.approle.create_or_update_approle(role, token_policies=[f"ia-{tag}"])
    role_id = vault.auth.approle.read_role_id(role_name=role)["data"]["role_id"]
    secret_id = vault.auth.approle.generate_secret_id(role_name=role)["data"]["secret_id"]
    login = hvac.Client(url=vault.url, timeout=30)
    login.auth.approle.login(role_id=role_id, secret_id=secret_id)
    user = f"ia-{tag}-agent"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="iam-rights", PolicyDocument=IAM_RIGHTS)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    vault.secrets.kv.v2.create_or_update_secret(
        "aws/key", {"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                    "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}, mount_point=mount)
    agent, other = f"bot-{tag}", f"ia-{tag}-declared"
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(textwrap.dedent(f"""\
        version: 1
        sources:
          - {{name: v, type: openbao, sandbox: true, kv_mounts: [{mount}], leases: false,
             issuer_tag: keyshift-issuer}}
          - {{name: aws, type: aws, sandbox: true, services: [iam]}}
        agents:
          - name: {agent}
            owner: team-ia
            environment: prod
            identities:
              - {{type: vault-approle, source: v, role: {role}}}
              - {{type: aws-iam-user, source: aws, name: {user}}}
          - name: helper-{tag}
            owner: team-other
            environment: prod
            identities: [{{type: aws-iam-user, source: aws, name: {other}}}]
        rotations:
          - name: key-{tag}
            issuer: {{type: aws-iam, source: aws, user: {user}}}
            targets:
              - type: vault-kv
                source: v
                path: {mount}/aws/key
                keys: {{access_key_id: AWS_ACCESS_KEY_ID,
                        secret_access_key: AWS_SECRET_ACCESS_KEY}}
            agents: [{agent}]
            owner: team-ia
            environment: prod
        """))
    loaded = load_inventory(inventory)
    db = tmp_path / "ks.db"
    store = Store(db)
    audit = AuditLog(store)
    summary = run_sync(loaded, store, audit, actor="ia-test")
    # partial only because the declared helper's user is made after since (below)
    errors = [e for src in summary.as_dict()["sources"] for e in src["errors"]]
    assert errors == [f"agent helper-{tag}: IAM user '{other}' not found on aws"], errors
    stolen = Stolen(str(login.token), secret_id, role_id, key["AccessKeyId"],
                    key["SecretAccessKey"])
    since = datetime.now(UTC)
    iam.create_user(UserName=other)  # declared: created after since, never a finding
    w = World(tmp_path, tag, mount, agent, user, other, vault, iam, sandbox, inventory, db,
              store, audit, loaded, stolen, since, values)
    yield w
    store.close()


def leave_persistence(w: World) -> dict[str, str]:
    """What an attacker with the stolen key leaves: a user with a key, an attached managed
    policy, an inline policy and a login profile, and a second key on the agent's own user."""
    iam = w.attacker("iam")
    name = f"ia-{w.tag}-persist"
    iam.create_user(UserName=name)
    arn = iam.create_policy(PolicyName=f"ia-{w.tag}-admin", PolicyDocument=IAM_RIGHTS)[
        "Policy"]["Arn"]
    iam.attach_user_policy(UserName=name, PolicyArn=arn)
    iam.put_user_policy(UserName=name, PolicyName="backdoor", PolicyDocument=IAM_RIGHTS)
    iam.create_login_profile(UserName=name, Password="Pw-" + pysecrets.token_urlsafe(12))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    extra = iam.create_access_key(UserName=w.user)["AccessKey"]
    w.values += [key["SecretAccessKey"], extra["SecretAccessKey"]]
    return {"user": name, "policy": arn, "key": key["AccessKeyId"],
            "extra": extra["AccessKeyId"]}


def test_contain_revokes_by_reference_and_a_skipped_contain_leaves_them_valid(
        world: World) -> None:
    w = world
    assert w.token_works() and w.secret_id_works() and w.key_works()
    inc = incidents.open_incident(w.store, w.audit, w.loaded, actor="ia-test", agent=w.agent)
    assert {t["step"]: t["mode"] for t in inc["tasks"]}["contain"] == "auto"

    # verify before contain: the check can fail, and the stolen copies still work
    first = run_incident(w.store, w.audit, w.loaded, inc["id"], actor="ia-test",
                         engine=w.engine(), only=["verify"])
    [verify] = first["tasks"]
    assert not first["ok"] and verify["status"] == "failed"
    assert "still valid" in verify["note"]
    assert w.token_works() and w.secret_id_works() and w.key_works()
    task = next(t for t in first["incident"]["tasks"] if t["step"] == "verify")
    assert task["status"] == "doing" and task["note"].startswith("failed: ")

    events: list[dict] = []
    second = run_incident(w.store, w.audit, w.loaded, inc["id"], actor="ia-test",
                          engine=w.engine(), only=["contain", 8], on_event=events.append)
    assert [t["step"] for t in second["tasks"]] == ["contain", "verify"]
    assert second["tasks"][0]["status"] == "done", second["tasks"]
    # contained, but nothing rotated yet: verify names each credential still on its old
    # value (eradicate has not run), and nothing as still valid at its issuer
    check = second["tasks"][1]
    assert not second["ok"] and check["status"] == "failed"
    assert "still valid" not in check["note"]
    for path in ("app/a", "app/b"):
        assert f"v:kv:{w.mount}/{path} was not rotated (eradicate: not run)" in check["note"]
    assert not w.token_works() and not w.secret_id_works() and not w.key_works()
    contained = json.loads(json.dumps(w.store.get_incident(inc["id"])["detail"]["auto"]))
    outcomes = {o["credential"]: o for o in contained["contain"]["outcomes"]}
    key_cid = f"aws:iam-key:{w.stolen.key_id}"
    assert outcomes[key_cid]["outcome"] == "deactivated"
    assert {o["kind"] for o in outcomes.values()} == {"vault-token", "approle-secret-id",
                                                      "iam-key"}
    status = w.iam.list_access_keys(UserName=w.user)["AccessKeyMetadata"][0]["Status"]
    assert status == "Inactive"
    assert any(e["event"] == "task-start" and e["step"] == "contain" for e in events)
    # each action is an audit entry with references, and the task's evidence names it
    task = next(t for t in second["incident"]["tasks"] if t["step"] == "contain")
    seqs = {int(e["ref"]) for e in task["evidence"] if e["kind"] == "audit"}
    entries = {e.seq: e for e in w.audit.tail(200) if e.seq in seqs}
    assert {e.action for e in entries.values()} == {"incident.contain"}
    assert {e.target for e in entries.values()} == set(outcomes)

    # idempotent: the same actions again are ok, and say they were done already
    refs = [actions.ref_from_credential_or_id(w.store, cid) for cid in outcomes]
    again = actions.contain(Clients(w.loaded), w.audit, refs, actor="ia-test")
    assert all(o.ok and o.outcome.startswith("already") for o in again), again

    # a server that refuses: a secret-id of a role that does not exist is already gone; a
    # vault source that is not in the inventory fails with one line naming it, the rest go on
    bad = [actions.Ref("nowhere", "vault-token", "abc", name="token/x"), refs[0]]
    mixed = actions.contain(Clients(w.loaded), w.audit, bad, actor="ia-test")
    assert mixed[0].outcome == "failed" and "nowhere" in (mixed[0].error or "")
    assert "\n" not in (mixed[0].error or "") and mixed[1].ok


def test_hunt_finds_what_the_stolen_key_made_and_removes_exactly_that(
        world: World, tmp_path: Path) -> None:
    w = world
    left = leave_persistence(w)
    # through the CLI: the incident's since and AWS sources; --remove asks first
    home = tmp_path / "home"
    home.mkdir()
    iid = incidents.open_incident(w.store, w.audit, w.loaded, actor="ia-test", agent=w.agent,
                                  since=w.since.isoformat())["id"]
    listed = w.cli("incident", "hunt", iid, "--format", "json", home=home)
    assert listed.returncode == 0, listed.stderr
    assert {(f["what"], f["name"]) for f in json.loads(listed.stdout)["findings"]
            if f["user"].startswith(f"ia-{w.tag}")} == {("user", left["user"]),
                                                       ("access-key", left["extra"])}
    unasked = w.cli("incident", "hunt", iid, "--remove", home=home)
    assert unasked.returncode == 1 and "needs confirmation" in unasked.stderr
    assert w.cli("--read-only", "incident", "hunt", iid, "--remove", "--yes",
                 home=home).returncode == 4
    assert w.iam.get_user(UserName=left["user"])["User"]["UserName"] == left["user"]
    for value in w.canaries():
        assert value not in listed.stdout + unasked.stdout + unasked.stderr
    clients = Clients(w.loaded)
    found = hunting.hunt(w.store, w.loaded, clients, ["aws"], w.since)
    assert not found.errors
    mine = [f for f in found.findings if f.user.startswith(f"ia-{w.tag}")]
    by = {(f.what, f.name): f for f in mine}
    assert set(by) == {("user", left["user"]), ("access-key", left["extra"])}
    user = by[("user", left["user"])]
    assert user.keys == [left["key"]] and user.attached_policies == [left["policy"]]
    assert user.inline_policies == ["backdoor"] and user.login_profile
    assert "created at or after" in user.reason
    assert all(f.user != w.other_user for f in found.findings)  # declared: never a finding

    removed = hunting.remove(clients, w.audit, w.loaded, mine, actor="ia-test")
    assert {r["outcome"] for r in removed} == {"deleted"}, removed
    with pytest.raises(botocore.exceptions.ClientError):
        w.iam.get_user(UserName=left["user"])
    keys = {k["AccessKeyId"] for k in
            w.iam.list_access_keys(UserName=w.user)["AccessKeyMetadata"]}
    assert keys == {w.stolen.key_id}  # the extra key only; the agent's own key stays
    assert w.iam.get_user(UserName=w.other_user)["User"]["UserName"] == w.other_user
    assert w.iam.get_user(UserName=w.user)["User"]["UserName"] == w.user
    assert hunting.still_there(clients, removed) == []
    assert {e.action for e in w.audit.tail(len(removed))} == {"incident.remove"}
    # a forged finding naming a declared user is refused, not removed
    forged = hunting.Finding("aws", "user", w.other_user, w.other_user, None, "forged")
    [refused] = hunting.remove(clients, w.audit, w.loaded, [forged], actor="ia-test")
    assert refused["outcome"] == "failed" and "declared" in refused["error"]
    assert w.iam.get_user(UserName=w.other_user)["User"]["UserName"] == w.other_user
    # nothing new since: the hunt is empty for this world now
    again = hunting.hunt(w.store, w.loaded, clients, ["aws"], w.since)
    assert not [f for f in again.findings if f.user.startswith(f"ia-{w.tag}")]


def test_the_identity_the_source_signs_in_as_is_never_hunted_nor_removed(world: World) -> None:
    w = world
    left = leave_persistence(w)
    clients = Clients(w.loaded)
    me = hunting.signed_in(clients, "aws")
    assert me.user == ADMIN_USER and me.key_id and me.arn.endswith(f":user/{ADMIN_USER}")
    admin_keys = {k["AccessKeyId"] for k in
                  w.iam.list_access_keys(UserName=ADMIN_USER)["AccessKeyMetadata"]}
    assert me.key_id in admin_keys
    policies = w.iam.list_attached_user_policies(UserName=ADMIN_USER)["AttachedPolicies"]
    assert policies  # what the broken hunt's removal took away
    # a since before the sandbox started: the admin user and its key were created after it
    early = datetime(2000, 1, 1, tzinfo=UTC)
    found = hunting.hunt(w.store, w.loaded, clients, ["aws"], early)
    assert not found.errors, found.errors
    names = {(f.what, f.name) for f in found.findings}
    assert ("user", left["user"]) in names  # the hunt does list what was made
    assert ("user", ADMIN_USER) not in names
    assert not any(f.user == ADMIN_USER and f.name == me.key_id for f in found.findings)
    # remove refuses it whatever a finding says: the user, and the key it signs with
    forged = [hunting.Finding("aws", "user", ADMIN_USER, ADMIN_USER, None, "forged",
                              keys=sorted(admin_keys),
                              attached_policies=[p["PolicyArn"] for p in policies]),
              hunting.Finding("aws", "access-key", ADMIN_USER, me.key_id, None, "forged")]
    got = hunting.remove(clients, w.audit, w.loaded, forged, actor="ia-test")
    assert [r["outcome"] for r in got] == ["failed", "failed"], got
    assert "signs in as" in got[0]["error"] and "signs in with" in got[1]["error"]
    assert w.iam.list_attached_user_policies(UserName=ADMIN_USER)["AttachedPolicies"] == policies
    assert {k["AccessKeyId"] for k in w.iam.list_access_keys(
        UserName=ADMIN_USER)["AccessKeyMetadata"]} == admin_keys
    assert {e.action for e in w.audit.tail(2)} == {"incident.remove"}


def test_remove_waits_for_a_person_unless_remove_found(world: World) -> None:
    w = world
    left = leave_persistence(w)
    iid = incidents.open_incident(w.store, w.audit, w.loaded, actor="ia-test", agent=w.agent,
                                  since=w.since.isoformat())["id"]
    steps = [t["step"] for t in incidents.load(w.store, iid)["tasks"]]
    assert steps.index("review") < steps.index("remove") < steps.index("eradicate")
    first = run_incident(w.store, w.audit, w.loaded, iid, actor="ia-test", engine=w.engine(),
                         only=["review", "remove"])
    assert [(t["step"], t["status"]) for t in first["tasks"]] == [("review", "done"),
                                                                  ("remove", "waiting")]
    assert not first["ok"] and first["waiting"] == [steps.index("remove") + 1]
    note = first["tasks"][1]["note"]
    mine = [f for f in w.store.get_incident(iid)["detail"]["auto"]["review"]["hunt"]["findings"]]
    assert note.startswith("waiting: ") and f"{len(mine)} hunt finding(s) wait" in note
    assert f"keyshift incident hunt {iid} --remove" in note and left["user"] in note
    task = next(t for t in first["incident"]["tasks"] if t["step"] == "remove")
    assert task["status"] == "doing"
    # nothing was deleted
    assert w.iam.get_user(UserName=left["user"])["User"]["UserName"] == left["user"]
    assert left["extra"] in {k["AccessKeyId"] for k in w.iam.list_access_keys(
        UserName=w.user)["AccessKeyMetadata"]}
    # a person checked the list: remove deletes exactly it, and verify sees it gone
    second = run_incident(w.store, w.audit, w.loaded, iid, actor="ia-test", engine=w.engine(),
                          only=["remove"], remove_found=True)
    assert second["ok"] and second["tasks"][0]["status"] == "done", second["tasks"]
    with pytest.raises(botocore.exceptions.ClientError):
        w.iam.get_user(UserName=left["user"])
    assert left["extra"] not in {k["AccessKeyId"] for k in w.iam.list_access_keys(
        UserName=w.user)["AccessKeyMetadata"]}
    assert w.iam.get_user(UserName=w.other_user)["User"]["UserName"] == w.other_user
    assert w.iam.get_user(UserName=ADMIN_USER)["User"]["UserName"] == ADMIN_USER
    removed = w.store.get_incident(iid)["detail"]["auto"]["remove"]["removed"]
    assert {r["outcome"] for r in removed} == {"deleted"}
    # verify fails while what was removed is back (an attacker's re-creation), by reference
    w.iam.create_user(UserName=left["user"])
    check = run_incident(w.store, w.audit, w.loaded, iid, actor="ia-test", engine=w.engine(),
                         only=["verify"])
    assert not check["ok"] and f"iam user {left['user']} still exists" in check["tasks"][0][
        "note"]
    w.iam.delete_user(UserName=left["user"])


def test_incident_run_end_to_end_through_the_cli(world: World, tmp_path: Path) -> None:
    w = world
    home = tmp_path / "home"
    home.mkdir()
    runs: list[subprocess.CompletedProcess[str]] = []

    def ks(*args: str) -> subprocess.CompletedProcess[str]:
        got = w.cli(*args, home=home)
        runs.append(got)
        return got

    left = leave_persistence(w)
    old = {p: w.kv(p) for p in ("app/a", "app/b")}
    # the attacker reads app/a with the stolen token; the audit log has it by accessor (HMAC)
    accessor = w.vault.auth.token.lookup(w.stolen.token)["data"]["accessor"]
    thief = hvac.Client(url=w.vault.url, token=w.stolen.token, timeout=30)
    thief.secrets.kv.v2.read_secret_version("app/a", mount_point=w.mount,
                                            raise_on_deleted_version=True)
    read_cid = f"v:kv:{w.mount}/app/a"
    for _ in range(50):  # the audit device may write the line a moment after the response
        seen = hunting.token_use(Clients(w.loaded), w.loaded, "v", [accessor], w.since)
        if seen["kv_reads"]:
            break
    assert seen["kv_reads"] == [read_cid] and not seen["errors"]
    opened = ks("incident", "open", "--agent", w.agent, "--since", w.since.isoformat(),
                "--format", "json")
    assert opened.returncode == 0, opened.stderr
    iid = json.loads(opened.stdout)["id"]
    assert ks("--read-only", "incident", "run", iid, "--yes").returncode == 4
    unasked = ks("incident", "run", iid)
    assert unasked.returncode == 1 and "needs confirmation" in unasked.stderr
    assert ks("incident", "run", iid, "--skip", "nosuch", "--yes").returncode == 2

    assert "[waits: lists the hunt's findings, deletes nothing]" in unasked.stdout
    # without --remove-found nothing the hunt found is deleted: the remove task waits, the
    # exit code says not everything was done, and the attacker's extra key on the agent's
    # user makes the key's rotation fail (IAM allows two keys)
    waits = ks("incident", "run", iid, "--yes", "--format", "json")
    assert waits.returncode == 1, waits.stdout + waits.stderr
    result = json.loads(waits.stdout)
    got = {t["step"]: t for t in result["tasks"]}
    assert not result["ok"] and got["remove"]["status"] == "waiting"
    assert [got[s]["status"] for s in ("contain", "review")] == ["done", "done"]
    assert f"keyshift incident hunt {iid} --remove" in got["remove"]["note"]
    assert w.iam.get_user(UserName=left["user"])["User"]["UserName"] == left["user"]
    assert got["eradicate"]["status"] == "failed" and "still wait" in got["eradicate"]["note"]
    assert got["verify"]["status"] == "failed" and "was not rotated" in got["verify"]["note"]
    # the person checks the list, then removes it: the remove task is recorded done
    hunted = ks("incident", "hunt", iid, "--remove", "--yes")
    assert hunted.returncode == 0, hunted.stdout + hunted.stderr
    assert left["user"] in hunted.stdout and "(remove): recorded" in hunted.stdout
    assert ADMIN_USER not in hunted.stdout
    done = ks("incident", "run", iid, "--yes", "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["ok"], json.dumps(result["tasks"], indent=1)
    assert [(t["step"], t["status"]) for t in result["tasks"]] == [
        ("eradicate", "done"), ("verify", "done")]
    # the attacker's copies are refused; what it made is gone; the agent's secrets rotated
    assert not w.token_works() and not w.secret_id_works() and not w.key_works()
    with pytest.raises(botocore.exceptions.ClientError):
        w.iam.get_user(UserName=left["user"])
    assert w.iam.get_user(UserName=w.other_user)["User"]["UserName"] == w.other_user
    assert all(w.kv(p) != old[p] for p in old)
    keys = w.iam.list_access_keys(UserName=w.user)["AccessKeyMetadata"]
    assert len(keys) == 1 and keys[0]["AccessKeyId"] not in (w.stolen.key_id, left["extra"])
    assert keys[0]["Status"] == "Active"
    inc = incidents.load(w.store, iid)
    tasks = {t["step"]: t for t in inc["tasks"]}
    assert tasks["eradicate"]["rotation_run_id"]
    runs_done = [e["ref"] for e in tasks["eradicate"]["evidence"] if e["kind"] == "run"]
    assert len(runs_done) >= 4  # the playbook run, app/a, app/b and the key
    assert tasks["remove"]["status"] == "done"
    assert tasks["declare"]["status"] == "todo"  # manual tasks stay manual
    review = w.store.get_incident(iid)["detail"]["auto"]["review"]["token_use"]
    reads = [r for r in review["accessors"][accessor] if r["operation"] == "read"]
    assert f"{w.mount}/data/app/a" in {r["path"] for r in reads}
    assert review["kv_reads"] == [read_cid]
    assert "1 token(s) made" in tasks["review"]["note"]
    again = ks("incident", "run", iid, "--yes")
    assert again.returncode == 0 and "no automated task is open" in again.stdout
    exported = ks("incident", "export", iid, "--format", "json")
    assert exported.returncode == 0, exported.stderr
    metrics = json.loads(exported.stdout)["metrics"]
    assert metrics["time_to_contain_s"] is not None and metrics["time_to_verify_s"] is not None

    # canary: no planted or stolen value in any output, the store, a log or the audit log
    w.values += [w.kv(p) for p in old]
    outputs = "".join(p.stdout + p.stderr for p in runs)
    db_bytes = b"".join(p.read_bytes() for p in w.tmp.glob("ks.db*"))
    logs = b"".join(p.read_bytes() for p in home.rglob("*.log"))
    audit_text = json.dumps([e.detail for e in w.audit.tail(500)])
    for value in w.canaries():
        assert value not in outputs and value not in audit_text
        assert value.encode() not in db_bytes and value.encode() not in logs


def test_revoke_cli_one_credential(world: World, tmp_path: Path) -> None:
    w = world
    home = tmp_path / "home"
    home.mkdir()
    key_cid = f"aws:iam-key:{w.stolen.key_id}"
    kv = ks_out = w.cli("revoke", f"{w.mount}/app/a", "--yes", home=home)
    assert kv.returncode == 2 and "rotate it instead" in kv.stderr
    assert kv.stderr.count("\n") == 1
    assert w.cli("--read-only", "revoke", key_cid, "--yes", home=home).returncode == 4
    assert w.key_works()
    done = w.cli("revoke", key_cid, "--yes", "--format", "json", home=home)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outcome"] == "deactivated"
    assert not w.key_works()
    again = w.cli("revoke", key_cid, "--yes", home=home)
    assert again.returncode == 0 and "already inactive" in again.stdout
    entry = w.audit.tail(1)[0]
    assert (entry.action, entry.target) == ("credential.revoke", key_cid)
    assert w.cli("revoke", "no-such-credential", "--yes", home=home).returncode == 3
    for value in w.canaries():
        assert value not in ks_out.stderr + done.stdout + again.stdout


def test_leaked_credential_and_departed_owner(world: World) -> None:
    w = world
    # a leaked access key: contain deactivates it, eradicate rotates it (grace 0), verify
    key_cid = f"aws:iam-key:{w.stolen.key_id}"
    leaked = incidents.open_incident(w.store, w.audit, w.loaded, actor="ia-test",
                                     credential=key_cid, kind="leaked-credential",
                                     since=w.since.isoformat())
    got = run_incident(w.store, w.audit, w.loaded, leaked["id"], actor="ia-test",
                       engine=w.engine(), skip=["review", "remove"])
    assert got["ok"], got["tasks"]
    assert [t["step"] for t in got["tasks"]] == ["contain", "eradicate", "verify"]
    assert not w.key_works()
    keys = w.iam.list_access_keys(UserName=w.user)["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] != [w.stolen.key_id] and len(keys) == 1
    review = next(t for t in got["incident"]["tasks"] if t["step"] == "review")
    assert review["status"] == "todo"  # skipped steps are left undone
    # a leaked KV secret cannot be revoked: contain says so, eradicate rotates it
    kv = incidents.open_incident(w.store, w.audit, w.loaded, actor="ia-test",
                                 credential=f"{w.mount}/app/b")
    before = w.kv("app/b")
    done = run_incident(w.store, w.audit, w.loaded, kv["id"], actor="ia-test",
                        engine=w.engine(), only=["contain", "eradicate"])
    assert [(t["step"], t["status"]) for t in done["tasks"]] == [
        ("contain", "skipped"), ("eradicate", "done")]
    assert "cannot be revoked" in done["tasks"][0]["note"]
    assert w.kv("app/b") != before
    w.values.append(w.kv("app/b"))

    # a departed owner: their agent's reach and their credentials, rotated; reassign manual
    with pytest.raises(incidents.UsageError, match="does not fit"):
        incidents.open_incident(w.store, w.audit, w.loaded, actor="t", owner="team-ia",
                                kind="compromised-agent")
    with pytest.raises(incidents.NotFoundError, match="nobody named"):
        incidents.open_incident(w.store, w.audit, w.loaded, actor="t", owner="nobody-here")
    run_sync(w.loaded, w.store, w.audit, actor="ia-test")
    gone = incidents.open_incident(w.store, w.audit, w.loaded, actor="ia-test",
                                   owner="TEAM-IA")
    assert gone["kind"] == "departed-owner"
    assert [a["name"] for a in gone["scope"]["agents"]] == [w.agent]
    cids = {c["credential"] for c in gone["scope"]["credentials"]}
    assert {f"v:kv:{w.mount}/app/a", f"v:kv:{w.mount}/app/b"} <= cids
    steps = {t["step"]: t for t in gone["tasks"]}
    assert steps["reassign"]["mode"] == "manual" and str(w.inventory) in steps["reassign"][
        "title"]
    a_before = w.kv("app/a")
    ran = run_incident(w.store, w.audit, w.loaded, gone["id"], actor="ia-test",
                       engine=w.engine(), skip=["review", "remove"])
    assert ran["ok"], ran["tasks"]
    assert [t["step"] for t in ran["tasks"]] == ["eradicate", "verify"]
    assert w.kv("app/a") != a_before
    w.values.append(w.kv("app/a"))
    md = incidents.export_markdown(incidents.export(w.store, w.audit, gone["id"]))
    assert f"Owner team-ia owns 1 agent(s) ({w.agent})" in md
    for value in w.canaries():
        assert value not in md


def test_a_declared_token_rotation_still_rotates_after_contain_revoked_its_token(
        sandbox: SandboxState, tmp_path: Path) -> None:
    """contain revokes the agent's token by accessor; eradicate then rotates the declared
    vault-token rotation: the old token is already refused, so the new one is minted from the
    issuer's token role (the engine used to refuse: "the current token is not valid")."""
    from rotators.targets.env_file import read_vars, write_vars

    tag = uuid.uuid4().hex[:8]
    vault = vault_client(sandbox)
    policy, role = f"tok-{tag}", f"tok-{tag}"
    vault.sys.create_or_update_policy(policy, f'path "secret/data/tok-{tag}/*" '
                                      '{ capabilities = ["read"] }')
    vault.adapter.post(f"/v1/auth/token/roles/{role}",
                       json={"allowed_policies": [policy], "orphan": True})
    old = vault.adapter.post(f"/v1/auth/token/create/{role}", json={"policies": [policy],
                                                                     "ttl": "1h"})["auth"]
    env = tmp_path / "agent" / ".env"
    env.parent.mkdir()
    write_vars(env, {"VAULT_TOKEN": old["client_token"]})
    agent, norole = f"tok-{tag}", f"norole-{tag}"
    plain = vault.auth.token.create(policies=[policy], ttl="1h")["auth"]
    write_vars(tmp_path / "agent" / "plain.env", {"VAULT_TOKEN": plain["client_token"]})
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(textwrap.dedent(f"""\
        version: 1
        sources:
          - {{name: v, type: openbao, sandbox: true, kv_mounts: [], leases: false}}
          - {{name: declared, type: declared}}
        agents:
          - name: {agent}
            owner: team-tok
            environment: prod
            identities: [{{type: vault-token-role, source: v, role: {role}}}]
        rotations:
          - name: token-{tag}
            issuer: {{type: vault-token, source: v, role: {role}}}
            targets: [{{type: env-file, path: agent/.env, var: VAULT_TOKEN}}]
            agents: [{agent}]
            owner: team-tok
          - name: {norole}
            issuer: {{type: vault-token, source: v}}
            targets: [{{type: env-file, path: agent/plain.env, var: VAULT_TOKEN}}]
            owner: team-tok
        """))
    loaded = load_inventory(inventory)
    store = Store(tmp_path / "ks.db")
    audit = AuditLog(store)
    try:
        run_sync(loaded, store, audit, actor="ia-test")

        def works(token: str) -> bool:
            client = hvac.Client(url=vault.url, token=token, timeout=30)
            try:
                data = client.auth.token.lookup_self()["data"]
            except hvac.exceptions.Forbidden:
                return False
            return policy in data["policies"]

        assert works(old["client_token"])
        inc = incidents.open_incident(store, audit, loaded, actor="ia-test", agent=agent)
        engine = RotationEngine(store, audit, loaded, retry=FAST)
        got = run_incident(store, audit, loaded, inc["id"], actor="ia-test", engine=engine,
                           only=["contain", "eradicate", "verify"])
        assert got["ok"], json.dumps(got["tasks"], indent=1)
        contained = store.get_incident(inc["id"])["detail"]["auto"]["contain"]["outcomes"]
        assert {o["credential"]: o["outcome"] for o in contained} == {
            f"v:vault-token:{old['accessor']}": "revoked"}
        new = str(read_vars(env)["VAULT_TOKEN"])
        assert new != old["client_token"]
        assert works(new) and not works(old["client_token"])
        data = vault.auth.token.lookup(new)["data"]
        assert data["role"] == role and data["orphan"] is True
        rotation = store.get_incident(inc["id"])["detail"]["auto"]["eradicate"]["rotations"]
        assert [(r["credential"], r["status"]) for r in rotation] == [
            (f"declared:vault-token:token-{tag}", "done")]

        # no token role to mint from: refused in one line that names the fix, nothing minted
        vault.auth.token.revoke_accessor(plain["accessor"])
        with pytest.raises(KeyshiftError, match="names no token role"):
            engine.rotate(f"declared:vault-token:{norole}", actor="ia-test")
        assert read_vars(tmp_path / "agent" / "plain.env")["VAULT_TOKEN"] == plain[
            "client_token"]
    finally:
        store.close()


def test_the_key_an_incident_rotated_in_is_no_hunt_finding_and_remove_leaves_it(
        world: World, tmp_path: Path) -> None:
    """The hunt used to list the key eradicate had just issued (created after since), and
    `incident hunt --remove` deleted it: the agent was left with no working key. A key a
    keyshift rotation issued (its journal names the key id) is not a finding, before or
    after a sync has recorded it; a key someone else adds to the same user still is."""
    w = world
    key_cid = f"aws:iam-key:{w.stolen.key_id}"
    iid = incidents.open_incident(w.store, w.audit, w.loaded, actor="ia-test",
                                  credential=key_cid, kind="leaked-credential",
                                  since=w.since.isoformat())["id"]
    got = run_incident(w.store, w.audit, w.loaded, iid, actor="ia-test", engine=w.engine(),
                       skip=["review", "remove"])
    assert got["ok"], got["tasks"]
    [new] = w.iam.list_access_keys(UserName=w.user)["AccessKeyMetadata"]
    assert new["AccessKeyId"] != w.stolen.key_id and new["Status"] == "Active"
    assert new["AccessKeyId"] in w.store.issued_access_keys(w.since)
    clients = Clients(w.loaded)

    def mine(found: hunting.HuntResult) -> set[tuple[str, str]]:
        assert not found.errors, found.errors
        return {(f.what, f.name) for f in found.findings if f.user.startswith(f"ia-{w.tag}")}

    assert mine(hunting.hunt(w.store, w.loaded, clients, ["aws"], w.since)) == set()
    run_sync(w.loaded, w.store, w.audit, actor="ia-test")  # the store now knows the new key
    assert mine(hunting.hunt(w.store, w.loaded, clients, ["aws"], w.since)) == set()
    # the person's remove through the CLI deletes nothing of the agent's
    home = tmp_path / "home"
    home.mkdir()
    listed = w.cli("incident", "hunt", iid, "--format", "json", home=home)
    assert listed.returncode == 0, listed.stderr
    assert new["AccessKeyId"] not in listed.stdout
    removed = w.cli("incident", "hunt", iid, "--remove", "--yes", home=home)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert new["AccessKeyId"] not in removed.stdout
    assert [k["AccessKeyId"] for k in w.iam.list_access_keys(
        UserName=w.user)["AccessKeyMetadata"]] == [new["AccessKeyId"]]
    values = w.vault.secrets.kv.v2.read_secret_version(
        "aws/key", mount_point=w.mount, raise_on_deleted_version=True)["data"]["data"]
    sts = boto3.client("sts", endpoint_url=w.sandbox.moto_endpoint, region_name="us-east-1",
                       aws_access_key_id=values["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=values["AWS_SECRET_ACCESS_KEY"])
    assert sts.get_caller_identity()["Arn"].endswith(f":user/{w.user}")
    w.values.append(values["AWS_SECRET_ACCESS_KEY"])
    # a second key someone else made on the same user is still found, known to the store
    # or not: the exemption is the rotation's journal, not the user nor a sync
    other = w.iam.create_access_key(UserName=w.user)["AccessKey"]
    w.values.append(other["SecretAccessKey"])
    run_sync(w.loaded, w.store, w.audit, actor="ia-test")
    assert mine(hunting.hunt(w.store, w.loaded, clients, ["aws"], w.since)) == {
        ("access-key", other["AccessKeyId"])}
    for value in w.canaries():
        assert value not in listed.stdout + removed.stdout + removed.stderr


def test_still_there_counts_only_no_such_entity_as_gone(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """verify asked IAM whether what remove deleted is gone, and took any error for "gone":
    a responder whose key may not read IAM (AccessDenied) verified a removal it never saw."""
    w = world
    peek = f"ia-{w.tag}-peek"
    w.iam.create_user(UserName=peek)
    w.iam.put_user_policy(UserName=peek, PolicyName="sts-only", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]}))
    key = w.iam.create_access_key(UserName=peek)["AccessKey"]
    w.values.append(key["SecretAccessKey"])
    monkeypatch.setenv("IA_PEEK_ID", key["AccessKeyId"])
    monkeypatch.setenv("IA_PEEK_SECRET", key["SecretAccessKey"])
    inventory = tmp_path / "peek.yaml"
    inventory.write_text(textwrap.dedent(f"""\
        version: 1
        sources:
          - {{name: aws, type: aws, endpoint_url: "{w.sandbox.moto_endpoint}",
             access_key_id: "env:IA_PEEK_ID", secret_access_key: "env:IA_PEEK_SECRET",
             services: [iam]}}
        """))
    denied = Clients(load_inventory(inventory))
    admin = Clients(w.loaded)
    gone = f"ia-{w.tag}-gone"
    removed = [{"source": "aws", "what": "user", "user": gone, "name": gone,
                "outcome": "deleted"},
               {"source": "aws", "what": "access-key", "user": w.user,
                "name": w.stolen.key_id, "outcome": "deleted"},
               {"source": "nowhere", "what": "user", "user": gone, "name": gone,
                "outcome": "deleted"}]
    got = hunting.still_there(denied, removed[:2])
    assert got == [f"could not check that iam user {gone} is gone at aws (AccessDenied)",
                   f"could not check that access key {w.stolen.key_id} of {w.user} is gone "
                   "at aws (AccessDenied)"], got
    # with rights: the user is gone (NoSuchEntity), the key is there; an unknown source is
    # a failed check in one line, not an exception
    got = hunting.still_there(admin, removed)
    assert got[0] == f"access key {w.stolen.key_id} still exists"
    assert len(got) == 2 and got[1].startswith(f"could not check that iam user {gone} is gone:")
    assert "nowhere" in got[1] and "\n" not in got[1]
    for text in got:
        assert key["SecretAccessKey"] not in text


def test_eradicate_waits_for_a_person_and_verify_until_the_provider_key_is_rotated(
        main: Any, sandbox: SandboxState) -> None:
    """A provider key is minted by a person: eradicate used to be done while its playbook step
    ended `manual`, and verify passed. Now eradicate waits, naming the key and the command;
    verify waits too; the run is not ok. Once the person has rotated it (keyshift rotate, the
    provider's checklist), the next run carries on without rotating anything twice."""
    from console import drills
    from console.drills.loader import loads_scenario
    from console.drills.responders import DrillPerson
    from console.drills.world import load_world, standin_accepts

    scenario = loads_scenario(textwrap.dedent("""\
        title: a support agent compromised
        world:
          agents: [{name: support, owner: team-support}]
          parts:
            - {part: provider-key, name: llm-key, agent: support}
            - {part: kv-generated, name: support-db, agent: support}
        inject:
          - {step: steal-agent, agent: support}
        respond:
          incident: {agent: support}
        checks:
          - {check: rotated, agent: support}
        """), "manual.yaml", default_name="manual-wait")
    row = drills.run_drill(main.store, main.audit, scenario, actor="t", auto=False)
    assert row["status"] == "awaiting-response"
    run_dir = Path(row["detail"]["dir"])
    world = load_world(run_dir, sandbox)
    loaded = load_inventory(run_dir / "inventory.yaml")
    store = Store(Path(row["detail"]["drill_db"]))
    audit = AuditLog(store)
    iid = row["detail"]["incident"]
    provider_cid = world.items["llm-key"].credential_id
    kv_cid = world.items["support-db"].credential_id
    old_key = world.items["llm-key"].read()["value"]
    try:
        engine = RotationEngine(store, audit, loaded, retry=FAST)
        first = run_incident(store, audit, loaded, iid, actor="ia-test", engine=engine,
                             only=["eradicate", "verify"])
        got = {t["step"]: t for t in first["tasks"]}
        assert not first["ok"] and got["eradicate"]["status"] == "waiting", first["tasks"]
        note = got["eradicate"]["note"]
        assert note.startswith("waiting: 1 credential(s) need a person")
        assert f"keyshift rotate {provider_cid}" in note and "1 manual, 1 done" in note
        assert got["verify"]["status"] == "waiting"
        assert f"keyshift rotate {provider_cid}" in got["verify"]["note"]
        tasks = {t["step"]: t for t in first["incident"]["tasks"]}
        assert tasks["eradicate"]["status"] == "doing" and tasks["verify"]["status"] == "doing"
        assert sorted(first["waiting"]) == sorted(
            [tasks["eradicate"]["position"], tasks["verify"]["position"]])
        [kv_run] = [r["id"] for r in store.rotation_runs(kv_cid, status="completed")]
        assert standin_accepts(world.items["llm-key"].record["provider"], old_key)

        # the person rotates the provider key through its checklist
        person = DrillPerson(world.items["llm-key"].record["provider"])
        done = engine.rotate(provider_cid, actor="ia-person", grace=timedelta(0),
                             interaction=person)
        assert done.status == "completed"
        second = run_incident(store, audit, loaded, iid, actor="ia-test", engine=engine)
        assert second["ok"], second["tasks"]
        got = {t["step"]: t for t in second["tasks"]}
        assert got["eradicate"]["status"] == "done"
        assert "2 rotated already since the incident opened" in got["eradicate"]["note"]
        assert got["verify"]["status"] == "done"
        # nothing rotated twice: the KV secret still has its one eradicate run
        assert [r["id"] for r in store.rotation_runs(kv_cid, status="completed")] == [kv_run]
        assert not standin_accepts(world.items["llm-key"].record["provider"], old_key)
        texts = json.dumps([first["tasks"], second["tasks"]], default=str)
        assert old_key not in texts and world.items["llm-key"].read()["value"] not in texts
    finally:
        store.close()
        drills.cleanup_drill(main.store, main.audit, row["id"], actor="t")


# --- incident split: one shared key into one per agent -----------------------------------------

SHARED_RIGHTS = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:*", "sts:GetCallerIdentity"], "Resource": "*"}]})


@dataclass
class SplitWorld:
    tmp: Path
    user: str
    key: dict[str, str]
    inventory: Path
    db: Path
    store: Store
    audit: AuditLog
    loaded: Any
    incident: str
    sandbox: SandboxState
    iam: Any

    @property
    def cid(self) -> str:
        return f"aws:iam-key:{self.key['AccessKeyId']}"

    def env(self, agent: str) -> Path:
        return self.tmp / agent / ".env"

    def key_id_of(self, agent: str) -> str:
        from rotators.targets.env_file import read_vars

        return str(read_vars(self.env(agent))["AWS_ACCESS_KEY_ID"])

    def answers_as(self, agent: str) -> str | None:
        """Who STS says the agent's env file's key is (None: refused), as the agent would."""
        from rotators.targets.env_file import read_vars

        values = read_vars(self.env(agent))
        sts = boto3.client("sts", endpoint_url=self.sandbox.moto_endpoint,
                           region_name="us-east-1",
                           aws_access_key_id=values["AWS_ACCESS_KEY_ID"],
                           aws_secret_access_key=values["AWS_SECRET_ACCESS_KEY"])
        try:
            return str(sts.get_caller_identity()["Arn"]).rsplit("/", 1)[-1]
        except botocore.exceptions.ClientError:
            return None

    def keys_of(self, user: str) -> list[str]:
        return [k["AccessKeyId"] for k in
                self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]]

    def users(self) -> set[str]:
        return {u["UserName"] for u in self.iam.list_users()["Users"]
                if u["UserName"].startswith(self.user)}

    def split_entries(self) -> list[dict[str, Any]]:
        return [{"target": e.target, **e.detail} for e in self.audit.tail(200)
                if e.action == "incident.split"]


def _split_inventory(tmp: Path, user: str, tag: str, source: str) -> str:
    """Agents a, b and c each read the shared key from their own env file; agent d's
    workspace is a's folder (so it resolves to a's env file) and it reads nothing."""
    agents = "".join(f"""
  - name: {a}
    owner: team-split
    environment: prod
    identities: [{{type: workspace, path: {"a" if a == "d" else a}}}]""" for a in "abcd")
    targets = "".join(f"""
      - {{type: env-file, path: {a}/.env,
         vars: {{access_key_id: AWS_ACCESS_KEY_ID, secret_access_key: AWS_SECRET_ACCESS_KEY}}}}"""
                      for a in "abc")
    return f"""version: 1
sources:
  - {source}
agents:{agents}
rotations:
  - name: key-{tag}
    issuer: {{type: aws-iam, source: aws, user: {user}}}
    targets:{targets}
    agents: [a, b, c]
    owner: team-split
    environment: prod
"""


@pytest.fixture
def split_world(sandbox: SandboxState, tmp_path: Path) -> Iterator[SplitWorld]:
    from rotators.targets.env_file import write_vars

    tag = uuid.uuid4().hex[:8]
    iam = aws_client(sandbox, "iam")
    user = f"sp-{tag}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="broad", PolicyDocument=SHARED_RIGHTS)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    for agent in "abc":
        write_vars(tmp_path / agent / ".env", {"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                                               "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]})
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(_split_inventory(
        tmp_path, user, tag, "{name: aws, type: aws, sandbox: true, services: [iam]}"))
    loaded = load_inventory(inventory)
    store = Store(tmp_path / "ks.db")
    audit = AuditLog(store)
    run_sync(loaded, store, audit, actor="sp-test")
    inc = incidents.open_incident(store, audit, loaded, actor="sp-test",
                                  credential=f"aws:iam-key:{key['AccessKeyId']}", since="1h")
    w = SplitWorld(tmp_path, user, {"AccessKeyId": key["AccessKeyId"],
                                    "SecretAccessKey": key["SecretAccessKey"]},
                   inventory, tmp_path / "ks.db", store, audit, loaded, inc["id"], sandbox, iam)
    try:
        yield w
    finally:
        store.close()
        for name in w.users():
            for kid in w.keys_of(name):
                iam.delete_access_key(UserName=name, AccessKeyId=kid)
            for pol in iam.list_user_policies(UserName=name)["PolicyNames"]:
                iam.delete_user_policy(UserName=name, PolicyName=pol)
            iam.delete_user(UserName=name)


def _grants(*agents: str) -> list[Any]:
    from console.incidents.split import parse_agents

    return parse_agents([f"{a}=arn:aws:s3:::data-sp/{a}/*" for a in agents])


def test_split_refuses_a_plan_that_leaves_a_reader_of_the_shared_key_behind(
        split_world: SplitWorld) -> None:
    """The split deleted the shared key while agent c, which nobody named, still read it (and
    said ok); and two agents resolving to one env file had the second write overwrite the
    first's key. The plan now refuses both, before anything is made."""
    from console.incidents.split import plan_split

    w = split_world
    with pytest.raises(KeyshiftError) as got:
        plan_split(w.store, w.loaded, w.cid, _grants("a", "b"), ["s3:GetObject"])
    assert got.value.exit_code == 2
    line = got.value.one_line()
    assert "c reads it" in line and "no named agent reads c/.env" in line, line
    # d's workspace is a's folder: a and d would share a/.env
    with pytest.raises(KeyshiftError, match=r"d and a both read the key from a/\.env"):
        plan_split(w.store, w.loaded, w.cid, _grants("a", "b", "c", "d"), ["s3:GetObject"])
    assert w.users() == {w.user} and w.keys_of(w.user) == [w.key["AccessKeyId"]]
    assert all(w.answers_as(a) == w.user for a in "abc")
    plan = plan_split(w.store, w.loaded, w.cid, _grants("c", "a", "b"), ["s3:GetObject"])
    assert [(a["agent"], a["place"]) for a in plan.agents] == [
        ("c", "c/.env"), ("a", "a/.env"), ("b", "b/.env")]


def test_the_hunt_after_a_split_leaves_the_agents_keys_but_finds_a_key_added_to_them(
        split_world: SplitWorld) -> None:
    """The hunt after a split listed the new per-agent users (new, undeclared) and --remove
    deleted them: the agents were left with no working key, the shared one being gone. What
    the split made (its audit entries name each user and key id) is no finding and cannot be
    removed; a second key someone else adds to such a user still is, and only it goes."""
    from console.incidents.runner import aws_sources, incident_since
    from console.incidents.split import plan_split, split_key

    w = split_world
    plan = plan_split(w.store, w.loaded, w.cid, _grants("a", "b", "c"), ["s3:GetObject"])
    result = split_key(w.store, w.audit, w.loaded, plan, actor="sp-test", incident=w.incident)
    assert result["ok"] and result["shared"]["deleted"] == "deleted"
    assert {a: w.answers_as(a) for a in "abc"} == {a: f"{w.user}-{a}" for a in "abc"}
    assert w.keys_of(w.user) == []
    made = {m["user"]: m["key_id"] for m in result["agents"]}
    assert {u: w.keys_of(u) for u in made} == {u: [k] for u, k in made.items()}
    assert w.store.split_made("aws") == {u: {k} for u, k in made.items()}
    inc = incidents.load(w.store, w.incident)
    clients = Clients(w.loaded)

    def hunted() -> set[tuple[str, str]]:
        found = hunting.hunt(w.store, w.loaded, clients, aws_sources(w.loaded, inc["scope"]),
                             incident_since(inc))
        assert not found.errors, found.errors
        return {(f.what, f.name) for f in found.findings if f.user.startswith(w.user)}

    assert hunted() == set()
    run_sync(w.loaded, w.store, w.audit, actor="sp-test")  # the store knows the new keys now
    assert hunted() == set()
    # someone adds a second key to a's new user: that key is a finding, a's own is not
    extra = w.iam.create_access_key(UserName=f"{w.user}-a")["AccessKey"]["AccessKeyId"]
    assert hunted() == {("access-key", extra)}
    # remove refuses the split's user and key even when a finding names them
    forged = [hunting.Finding("aws", "user", f"{w.user}-b", f"{w.user}-b", None, "forged",
                              keys=[made[f"{w.user}-b"]]),
              hunting.Finding("aws", "access-key", f"{w.user}-a", made[f"{w.user}-a"], None,
                              "forged"),
              hunting.Finding("aws", "access-key", f"{w.user}-a", extra, None, "found")]
    removed = hunting.remove(clients, w.audit, w.loaded, forged, actor="sp-test",
                             incident=w.incident)
    assert [(r["name"], r["outcome"]) for r in removed] == [
        (f"{w.user}-b", "failed"), (made[f"{w.user}-a"], "failed"), (extra, "deleted")]
    assert "made by keyshift incident split" in removed[0]["error"]
    assert {a: w.answers_as(a) for a in "abc"} == {a: f"{w.user}-{a}" for a in "abc"}
    assert w.keys_of(f"{w.user}-a") == [made[f"{w.user}-a"]]


def test_a_split_that_failed_part_way_runs_again_and_replaces_what_it_made(
        split_world: SplitWorld) -> None:
    """A split that failed part way could never run again (create_user: EntityAlreadyExists).
    Now each step can: the user it made is reused (policy and key replaced, the old key
    deleted once the new one is delivered), a user of that name nobody split is refused, and
    every failure is an audit entry naming the step and the AWS error code; the shared key
    keeps working until every agent has its own."""
    from console.incidents.split import parse_agents, plan_split, split_key

    w = split_world
    bad = plan_split(w.store, w.loaded, w.cid, parse_agents(
        ["a=arn:aws:s3:::data-sp/a/*", "b=not an arn", "c=arn:aws:s3:::data-sp/c/*"]),
        ["s3:GetObject"])
    with pytest.raises(KeyshiftError) as got:
        split_key(w.store, w.audit, w.loaded, bad, actor="sp-test", incident=w.incident)
    assert got.value.exit_code == 8
    assert "setting the policy of" in got.value.one_line() and "MalformedPolicyDocument" in \
        got.value.one_line() and "the shared key still works" in got.value.one_line()
    first_a = w.key_id_of("a")
    assert w.answers_as("a") == f"{w.user}-a"
    assert w.answers_as("b") == w.user and w.answers_as("c") == w.user  # shared key intact
    assert w.keys_of(w.user) == [w.key["AccessKeyId"]]
    failed = [e for e in w.split_entries() if e["outcome"] == "failed"]
    assert [(e["agent"], e["error"]) for e in failed] == [("b", "MalformedPolicyDocument")]

    # c's user name is taken by a user no split made: refused, c keeps the shared key
    w.iam.create_user(UserName=f"{w.user}-c")
    good = plan_split(w.store, w.loaded, w.cid, _grants("a", "b", "c"), ["s3:GetObject"])
    with pytest.raises(KeyshiftError, match=f"IAM user {w.user}-c exists and no split"):
        split_key(w.store, w.audit, w.loaded, good, actor="sp-test", incident=w.incident)
    assert w.answers_as("c") == w.user and w.keys_of(w.user) == [w.key["AccessKeyId"]]
    second_a = w.key_id_of("a")
    assert second_a != first_a and w.keys_of(f"{w.user}-a") == [second_a]
    w.iam.delete_user(UserName=f"{w.user}-c")

    result = split_key(w.store, w.audit, w.loaded, good, actor="sp-test", incident=w.incident)
    assert result["ok"], result
    assert {a: w.answers_as(a) for a in "abc"} == {a: f"{w.user}-{a}" for a in "abc"}
    for agent in "abc":  # one key each: the one its env file holds
        assert w.keys_of(f"{w.user}-{agent}") == [w.key_id_of(agent)]
    assert w.key_id_of("a") not in (first_a, second_a)
    policy = w.iam.get_user_policy(UserName=f"{w.user}-b", PolicyName="keyshift-least-privilege")
    assert policy["PolicyDocument"]["Statement"][0]["Resource"] == ["arn:aws:s3:::data-sp/b/*"]
    assert w.keys_of(w.user) == []
    # every key the split issued is in the audit log, by id
    issued = {e["key_id"] for e in w.split_entries() if e["outcome"] == "key issued"}
    assert {first_a, second_a, *(w.key_id_of(a) for a in "abc")} <= issued
    assert w.audit.verify().ok
    text = json.dumps(w.split_entries()) + json.dumps(result)
    assert w.key["SecretAccessKey"] not in text


def test_split_reports_an_aws_it_cannot_reach_by_type_and_audits_it(
        split_world: SplitWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's own errors (no answer from the endpoint) escaped as internal errors with no
    audit entry; now one line naming the step and the error's type, and an audit entry."""
    from console.incidents.split import plan_split, split_key

    w = split_world
    monkeypatch.setenv("SP_OFFLINE_ID", "AKIAOFFLINEEXAMPLE00")
    monkeypatch.setenv("SP_OFFLINE_SECRET", "offline-example-not-a-key")
    w.inventory.write_text(_split_inventory(
        w.tmp, w.user, "x", '{name: aws, type: aws, endpoint_url: "http://127.0.0.1:9", '
        'access_key_id: "env:SP_OFFLINE_ID", secret_access_key: "env:SP_OFFLINE_SECRET", '
        'services: [iam]}'))
    offline = load_inventory(w.inventory)
    plan = plan_split(w.store, offline, w.cid, _grants("a", "b", "c"), ["s3:GetObject"])
    with pytest.raises(KeyshiftError) as got:
        split_key(w.store, w.audit, offline, plan, actor="sp-test", incident=w.incident)
    assert got.value.exit_code == 8 and "EndpointConnectionError" in got.value.one_line()
    [entry] = [e for e in w.split_entries() if e["outcome"] == "failed"]
    assert (entry["agent"], entry["error"]) == ("a", "EndpointConnectionError")
    assert all(w.answers_as(a) == w.user for a in "abc")


def test_split_cli_exits_8_when_the_shared_key_is_not_deactivated(
        split_world: SplitWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """`keyshift incident split` exited 0 when the shared key could not be deactivated (the
    result's ok was ignored): the stolen key still worked and the split looked done. Here
    keyshift signs in as a user IAM refuses UpdateAccessKey: every agent gets its own key, the
    shared key still answers, and the command says so and exits 8."""
    w = split_world
    limited = f"{w.user}-responder"
    w.iam.create_user(UserName=limited)
    w.iam.put_user_policy(UserName=limited, PolicyName="no-deactivate", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["iam:*", "sts:GetCallerIdentity"], "Resource": "*"},
            {"Effect": "Deny", "Action": ["iam:UpdateAccessKey"], "Resource": "*"}]}))
    key = w.iam.create_access_key(UserName=limited)["AccessKey"]
    inventory = w.tmp / "responder.yaml"
    inventory.write_text(_split_inventory(
        w.tmp, w.user, "r", f'{{name: aws, type: aws, endpoint_url: "{w.sandbox.moto_endpoint}", '
        'access_key_id: "env:SP_RESP_ID", secret_access_key: "env:SP_RESP_SECRET", '
        'services: [iam]}'))
    home = w.tmp / "home"
    home.mkdir()
    env = dict(os.environ, KEYSHIFT_ACTOR="sp-cli", KEYSHIFT_HOME=str(home),
               SP_RESP_ID=key["AccessKeyId"], SP_RESP_SECRET=key["SecretAccessKey"])
    args = [KEYSHIFT, "--inventory", str(inventory), "--db", str(w.db), "incident", "split",
            w.incident, "--credential", w.cid, "--action", "s3:GetObject", "--yes"]
    for agent in "abc":
        args += ["--agent", f"{agent}=arn:aws:s3:::data-sp/{agent}/*"]
    w.store.close()  # the CLI is another process on the same store
    got = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    assert got.returncode == 8, got.stdout + got.stderr
    assert {a: w.answers_as(a) for a in "abc"} == {a: f"{w.user}-{a}" for a in "abc"}
    assert w.keys_of(w.user) == [w.key["AccessKeyId"]]
    shared = boto3.client("sts", endpoint_url=w.sandbox.moto_endpoint, region_name="us-east-1",
                          aws_access_key_id=w.key["AccessKeyId"],
                          aws_secret_access_key=w.key["SecretAccessKey"])
    assert shared.get_caller_identity()["Arn"].endswith(f":user/{w.user}")
    err = got.stderr.strip().splitlines()
    assert len(err) == 1 and "the shared key was not deactivated and deleted" in err[0], err
    assert "AccessDenied" in err[0] and "Traceback" not in got.stderr
    assert f"shared key {w.key['AccessKeyId']}: failed, kept" in got.stdout
    for value in (w.key["SecretAccessKey"], key["SecretAccessKey"]):
        assert value not in got.stdout + got.stderr
    w.store = Store(w.db)


def test_eradicate_is_not_done_while_a_rotation_in_its_grace_kept_the_stolen_key_valid(
        world: World) -> None:
    """eradicate reported done when its playbook step was skipped (the previous rotation still
    in its grace period): the stolen key stayed valid and nothing retried it. A skipped step
    now counts unless a completed rotation since the incident opened covers it: eradicate
    waits, naming the run and how to revoke it now; once revoked, the next run rotates."""
    w = world
    key_cid = f"aws:iam-key:{w.stolen.key_id}"
    engine = w.engine()
    before = engine.rotate(key_cid, actor="ia-test", grace=timedelta(hours=4))
    assert before.status == "awaiting-revoke"
    iid = incidents.open_incident(w.store, w.audit, w.loaded, actor="ia-test",
                                  credential=key_cid, kind="leaked-credential",
                                  since=w.since.isoformat())["id"]
    first = run_incident(w.store, w.audit, w.loaded, iid, actor="ia-test", engine=engine,
                         only=["eradicate"])
    [got] = first["tasks"]
    assert not first["ok"] and got["status"] == "waiting", got
    assert f"{key_cid}: not rotated: rotation {before.run_id[:12]} still waits out its grace" \
        in got["note"]
    assert f"keyshift runs finish {before.run_id} --now" in got["note"]
    assert w.key_works()  # the stolen key: why eradicate is not done
    task = next(t for t in first["incident"]["tasks"] if t["step"] == "eradicate")
    assert task["status"] == "doing" and task["note"].startswith("waiting: ")

    engine.finish_run(before.run_id, actor="ia-test", now_regardless=True)
    assert not w.key_works()
    second = run_incident(w.store, w.audit, w.loaded, iid, actor="ia-test", engine=engine,
                          only=["eradicate", "verify"])
    assert second["ok"], second["tasks"]
    rotations = w.store.get_incident(iid)["detail"]["auto"]["eradicate"]["rotations"]
    [(cid, status, run)] = [(r["credential"], r["status"], r["run"]) for r in rotations]
    assert (cid, status) == (key_cid, "done") and run != before.run_id
    assert w.store.get_rotation_run(run)["status"] == "completed"
