"""AWS drills against the real sandbox (moto with IAM auth enforced, OpenBao): the ``iam-key``
world part and its STS-based checks, and the built-in scenarios aws-key-in-public-repo,
compromised-agent and shared-key-split, each passing --auto and each failing the check its key
response step exists for when that step is skipped.

Canaries as in test_drills.py: every value the world holds is read while the drill runs and
searched for in every output; an access key's id is not secret (it names the key in the store
and in credential ids), so only its secret half is a canary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_drills import KEYSHIFT, Main, checks_of
from test_drills import main as main  # the fixture, re-exported

from console.drills import aws_words
from console.drills.loader import loads_scenario
from console.sandbox import SandboxState, aws_client


class AwsMain(Main):
    def no_canary(self, *texts: str) -> None:
        self.canaries = {c for c in self.canaries if not c.startswith("AKIA")}
        super().no_canary(*texts)


@pytest.fixture
def aws_main(main: Main) -> AwsMain:
    main.__class__ = AwsMain
    return main  # type: ignore[return-value]


KEY_LEAK = """\
title: an IAM key leaked
world:
  agents: [{name: ingest, owner: team-data}]
  parts:
    - {part: iam-key, name: ingest-key, agent: ingest}
inject:
  - {step: steal, credential: ingest-key}
respond:
  incident: {credential: ingest-key}
  steps:
    eradicate:
      - {action: rotate, credential: ingest-key}
checks:
  - {check: stolen-refused, credential: ingest-key}
  - {check: consumer-healthy, credential: ingest-key}
"""


def test_iam_key_part_is_rotated_and_the_stolen_key_refused_by_sts(
        aws_main: AwsMain, sandbox: SandboxState) -> None:
    scenario = loads_scenario(KEY_LEAK, "iam.yaml", default_name="iam-leak")
    seen: dict[str, Any] = {}

    def spy(event: dict[str, Any]) -> None:
        if event["event"] == "start":
            aws_main.current = event["run"]
        if event["event"] == "incident":
            run_dir = Path(aws_main.store.get_drill_run(aws_main.current)["detail"]["dir"])
            seen.update(json.loads((run_dir / "world.json").read_text()))
        aws_main.watch(event)

    from console import drills

    row = drills.run_drill(aws_main.store, aws_main.audit, scenario, actor="t", on_event=spy)
    assert row["status"] == "passed", row["detail"]["checks"]
    rec = seen["records"]["ingest-key"]
    assert rec["user"].startswith("drill-") and rec["holders"] == ["ingest"]
    # cleaned up: the user and the data bucket are gone from moto
    iam = aws_client(sandbox, "iam")
    users = {u["UserName"] for u in iam.list_users()["Users"]}
    assert rec["user"] not in users
    buckets = {b["Name"] for b in aws_client(sandbox, "s3").list_buckets()["Buckets"]}
    assert rec["bucket"] not in buckets
    assert row["detail"]["cleanup"]["errors"] == []

    # the same leak with the rotation skipped: the stolen key still answers at STS
    bad = drills.run_drill(aws_main.store, aws_main.audit, scenario, actor="t",
                           skip=["rotate"], on_event=spy)
    assert bad["status"] == "failed"
    assert checks_of(bad) == {"stolen-refused": False, "consumer-healthy": True}
    assert bad["detail"]["scores"]["still_valid"] == ["ingest-key"]
    aws_main.no_canary(json.dumps(row), json.dumps(bad),
                       aws_main.db.read_bytes().decode("latin-1"))


def test_sts_refuses_a_made_up_key_and_answers_for_a_real_one(sandbox: SandboxState) -> None:
    iam = aws_client(sandbox, "iam")
    user = "drill-sts-probe"
    iam.create_user(UserName=user)
    try:
        made = iam.create_access_key(UserName=user)["AccessKey"]
        good = {"access_key_id": made["AccessKeyId"],
                "secret_access_key": made["SecretAccessKey"]}
        assert str(aws_words.sts_caller(sandbox, good)).endswith(f":user/{user}")
        iam.update_access_key(UserName=user, AccessKeyId=made["AccessKeyId"], Status="Inactive")
        assert aws_words.sts_caller(sandbox, good) is None
        assert aws_words.sts_caller(sandbox, {"access_key_id": "AKIAXXXXXXXXXXXXXXXX",
                                              "secret_access_key": "x" * 40}) is None
        iam.delete_access_key(UserName=user, AccessKeyId=made["AccessKeyId"])
    finally:
        iam.delete_user(UserName=user)


def _run(m: AwsMain, name: str, also: Any = None, **kwargs: Any) -> dict[str, Any]:
    """Main.run with one more spy on the events (``also(event, run_dir)``)."""
    from console import drills

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "start":
            m.current = event["run"]
        m.watch(event)
        if also is not None and event["event"] not in ("start", "finish"):
            also(event, Path(m.store.get_drill_run(m.current)["detail"]["dir"]))

    return drills.run_drill(m.store, m.audit, drills.get_scenario(name), actor="drill-test",
                            on_event=on_event, **kwargs)


def test_aws_key_in_public_repo_passes_and_skipping_the_response_leaves_the_key_valid(
        aws_main: AwsMain, sandbox: SandboxState) -> None:
    pushed: dict[str, Any] = {}

    def at_incident(event: dict[str, Any], run_dir: Path) -> None:
        if event["event"] == "incident":
            (file,) = (run_dir / "workspace" / "repo").rglob("*.py")
            pushed["file"], pushed["mode"] = file, file.stat().st_mode & 0o777
            pushed["world"] = json.loads((run_dir / "world.json").read_text())

    row = _run(aws_main, "aws-key-in-public-repo", at_incident)
    assert row["status"] == "passed", row["detail"]["checks"]
    assert checks_of(row) == {"detected": True, "stolen-refused": True,
                              "consumer-healthy": True, "rotated": True,
                              "key-activity-reviewed": True}
    assert pushed["mode"] == 0o600 and not pushed["file"].exists()  # removed at cleanup
    scores = row["detail"]["scores"]
    assert scores["times"]["ttd"] is not None and scores["times"]["ttr"] is not None
    assert scores["ratings"]["detect"]["level"] == 3
    # the declare task carries the scan's finding, review the key's last use (no CloudTrail)
    from console.audit import AuditLog
    from console.incidents import load
    from console.store import Store

    dstore = Store(Path(row["detail"]["drill_db"]))
    try:
        inc = load(dstore, row["detail"]["incident"])
        tasks = {t["step"]: t for t in inc["tasks"]}
        finding = tasks["declare"]["evidence"][0]
        assert finding["kind"] == "finding"
        assert dstore.get_finding(finding["ref"])["rule"] == "exposure.unknown"
        assert tasks["declare"]["status"] == "done"
        review = tasks["review"]
        assert review["status"] == "done" and "CloudTrail" in review["note"]
        assert "used after the leak" in review["note"]
        assert tasks["contain"]["status"] == "done" and tasks["eradicate"]["status"] == "done"
        assert inc["scope"]["credential"]["credential"] == \
            pushed["world"]["records"]["ingest-aws"]["credential_id"]
        assert AuditLog(dstore).verify().ok
    finally:
        dstore.close()

    # no contain and no rotation: the pushed key still answers at STS
    bad = _run(aws_main, "aws-key-in-public-repo", skip=["contain", "eradicate"])
    assert bad["status"] == "failed"
    assert checks_of(bad) == {"detected": True, "stolen-refused": False,
                              "consumer-healthy": True, "rotated": False,
                              "key-activity-reviewed": True}
    assert bad["detail"]["scores"]["still_valid"] == ["ingest-aws"]
    assert bad["detail"]["scores"]["ratings"]["contain"]["rating"] == "unable to perform"
    aws_main.no_canary(json.dumps(row), json.dumps(bad),
                       aws_main.db.read_bytes().decode("latin-1"),
                       Path(row["detail"]["drill_db"]).read_bytes().decode("latin-1"))


def test_compromised_agent_everything_it_reached_is_refused_and_the_other_agent_untouched(
        aws_main: AwsMain) -> None:
    row = _run(aws_main, "compromised-agent")
    assert row["status"] == "passed", row["detail"]["checks"]
    assert checks_of(row) == {"stolen-refused": True, "attacker-tokens-refused": True,
                              "rotated": True, "consumer-healthy": True, "unaffected": True}
    got = {c["check"]: c for c in row["detail"]["checks"]}
    assert sorted(got["stolen-refused"]["detail"]["tried"]) == [
        "assistant-aws", "assistant-db", "assistant-login", "assistant-webhook"]
    assert got["attacker-tokens-refused"]["detail"]["tokens"] == 1
    assert sorted(got["unaffected"]["detail"]["checked"]) == ["billing-aws", "billing-db",
                                                              "billing-login"]
    assert row["detail"]["cleanup"]["errors"] == []

    # no contain: the attacker's token (and, until eradicate, the login) stay valid; eradicate
    # still rotates, so the stolen values other than the token are refused
    bad = _run(aws_main, "compromised-agent", skip=["contain"])
    assert bad["status"] == "failed"
    assert checks_of(bad)["attacker-tokens-refused"] is False
    assert checks_of(bad)["unaffected"] is True
    assert bad["detail"]["scores"]["ratings"]["contain"]["rating"] == "unable to perform"
    aws_main.no_canary(json.dumps(row), json.dumps(bad),
                       aws_main.db.read_bytes().decode("latin-1"),
                       Path(row["detail"]["drill_db"]).read_bytes().decode("latin-1"))


def test_shared_key_split_gives_each_agent_its_own_least_privilege_key(
        aws_main: AwsMain, sandbox: SandboxState) -> None:
    worlds: list[dict[str, Any]] = []

    def keep_world(event: dict[str, Any], run_dir: Path) -> None:
        if event["event"] == "incident":
            worlds.append(json.loads((run_dir / "world.json").read_text()))

    row = _run(aws_main, "shared-key-split", keep_world)
    assert row["status"] == "passed", row["detail"]["checks"]
    assert checks_of(row) == {"least-privilege": True, "stolen-refused": True,
                              "consumer-healthy": True}
    user = worlds[0]["records"]["shared-key"]["user"]
    # the split's users were noted for cleanup, and cleanup removed them
    listed = {u["UserName"] for u in aws_client(sandbox, "iam").list_users()["Users"]}
    assert not {user, f"{user}-indexer", f"{user}-reporter"} & listed
    assert row["detail"]["cleanup"]["errors"] == []

    # no split: the shared key still answers at STS and still reads both agents' data
    bad = _run(aws_main, "shared-key-split", keep_world, skip=["split-key"])
    assert bad["status"] == "failed"
    assert checks_of(bad) == {"least-privilege": False, "stolen-refused": False,
                              "consumer-healthy": True}
    why = {c["check"]: c["why"] for c in bad["detail"]["checks"]}["least-privilege"]
    assert "reads reporter's data" in why and "shared by" in why
    aws_main.no_canary(json.dumps(row), json.dumps(bad),
                       aws_main.db.read_bytes().decode("latin-1"),
                       Path(row["detail"]["drill_db"]).read_bytes().decode("latin-1"))


def test_incident_split_cli_asks_refuses_read_only_and_audits(
        aws_main: AwsMain, sandbox: SandboxState) -> None:
    import subprocess

    from console import drills
    from console.audit import AuditLog
    from console.store import Store

    row = drills.run_drill(aws_main.store, aws_main.audit,
                           drills.get_scenario("shared-key-split"), actor="t", auto=False)
    assert row["status"] == "awaiting-response"
    run_dir = Path(row["detail"]["dir"])
    world = json.loads((run_dir / "world.json").read_text())
    rec = world["records"]["shared-key"]
    bucket, user = rec["bucket"], rec["user"]
    base = [KEYSHIFT, "--inventory", str(run_dir / "inventory.yaml"), "--db",
            row["detail"]["drill_db"]]
    split = ["incident", "split", row["detail"]["incident"], "--credential",
             rec["credential_id"], "--agent", f"indexer=arn:aws:s3:::{bucket}/indexer/*",
             "--agent", f"reporter=arn:aws:s3:::{bucket}/reporter/*",
             "--action", "s3:GetObject"]

    def ks(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], capture_output=True, text=True, input=stdin,
                              timeout=120)

    iam = aws_client(sandbox, "iam")
    try:
        ro = ks("--read-only", *split, "--yes")
        assert ro.returncode == 4, ro.stderr
        bad = ks(*split[:-4], "--agent", "reporter", "--action", "s3:GetObject", "--yes")
        assert bad.returncode == 2 and "NAME=RESOURCE" in bad.stderr
        no = ks(*split, stdin="n\n")
        assert no.returncode == 1 and "then deactivate and delete" in no.stdout
        users = {u["UserName"] for u in iam.list_users()["Users"]}
        assert f"{user}-indexer" not in users  # declined: nothing made
        done = ks(*split, "--yes", "--format", "json")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert [a["user"] for a in result["agents"]] == [f"{user}-indexer", f"{user}-reporter"]
        assert result["shared"]["deleted"] == "deleted" and result["ok"]
        # each agent's env file now holds its own key: its data yes, the other's no
        from console.drills.world import load_world

        w = load_world(run_dir, sandbox)
        for me, other in (("indexer", "reporter"), ("reporter", "indexer")):
            values = aws_words.key_of(w, me)
            assert aws_words.sts_caller(sandbox, values).endswith(f":user/{user}-{me}")
            assert aws_words.can_read(sandbox, values, bucket, aws_words.data_key(me))
            assert not aws_words.can_read(sandbox, values, bucket, aws_words.data_key(other))
        assert iam.list_access_keys(UserName=user)["AccessKeyMetadata"] == []
        dstore = Store(Path(row["detail"]["drill_db"]))
        try:
            entries = [e for e in AuditLog(dstore).tail(20) if e.action == "incident.split"]
            assert len(entries) >= 3  # two users made, the shared key contained and deleted
            assert AuditLog(dstore).verify().ok
        finally:
            dstore.close()
        assert "Secret" not in done.stdout and "secret_access_key" not in done.stdout
    finally:
        for me in ("indexer", "reporter"):
            name = f"{user}-{me}"
            try:
                for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
                    iam.delete_access_key(UserName=name, AccessKeyId=k["AccessKeyId"])
                iam.delete_user_policy(UserName=name, PolicyName="keyshift-least-privilege")
                iam.delete_user(UserName=name)
            except iam.exceptions.NoSuchEntityException:
                pass
        drills.cleanup_drill(aws_main.store, aws_main.audit, row["id"], actor="t")


def test_persistence_hunt_finds_and_removes_the_backdoor_and_skipping_remove_leaves_it(
        aws_main: AwsMain, sandbox: SandboxState, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from console.drills.injections import INJECTIONS

    # the backdoor key's secret lives only in the drill's attacker: the real injection runs,
    # and a spy copies what it made into the canaries
    real = INJECTIONS.get("leave-persistence")

    def spy(drill: Any, step: Any) -> dict[str, Any]:
        got = real.fn(drill, step)
        aws_main.canaries.add(drill.attacker.stolen["backdoor"]["secret_access_key"])
        return got

    monkeypatch.setitem(INJECTIONS._words, real.name, dataclasses.replace(real, fn=spy))
    worlds: list[dict[str, Any]] = []

    def keep_world(event: dict[str, Any], run_dir: Path) -> None:
        if event["event"] == "incident":
            worlds.append(json.loads((run_dir / "world.json").read_text()))

    iam = aws_client(sandbox, "iam")
    from console.sandbox import ADMIN_USER

    admin_policies = iam.list_attached_user_policies(UserName=ADMIN_USER)["AttachedPolicies"]
    row = _run(aws_main, "persistence-hunt", keep_world)
    assert row["status"] == "passed", row["detail"]["checks"]
    assert checks_of(row) == {"persistence-removed": True, "stolen-refused": True,
                              "consumer-healthy": True, "rotated": True}
    world = worlds[0]
    user = world["records"]["deployer-aws"]["user"]
    backdoor = f"drill-{world['tag']}-backdoor"
    # noted with the world before it was made, so cleanup would remove it whatever happened
    assert {"kind": "iam-user", "name": backdoor} in world["resources"]
    got = {c["check"]: c for c in row["detail"]["checks"]}
    assert got["persistence-removed"]["detail"]["key_tried"] is True
    assert got["persistence-removed"]["detail"]["left"] == []
    assert set(got["persistence-removed"]["detail"]["kept"]) == {user, ADMIN_USER}
    from console.incidents import load
    from console.store import Store

    dstore = Store(Path(row["detail"]["drill_db"]))
    try:
        inc = load(dstore, row["detail"]["incident"])
        tasks = {t["step"]: t for t in inc["tasks"]}
        assert [tasks[s]["status"] for s in ("contain", "review", "remove", "eradicate")] == [
            "done"] * 4, {s: tasks[s]["note"] for s in tasks}
        # the hunt listed exactly the backdoor (its key and attachment with it); remove
        # deleted exactly those: the attachment, the key, then the user
        auto = dstore.get_incident(inc["id"])["detail"]["auto"]
        found = auto["review"]["hunt"]["findings"]
        assert [(f["what"], f["name"]) for f in found] == [("user", backdoor)]
        assert found[0]["attached_policies"] == [aws_words.ADMIN_POLICY]
        assert len(found[0]["keys"]) == 1
        removed = [(r["what"], r["outcome"]) for r in auto["remove"]["removed"]]
        assert removed == [("attached-policy", "deleted"), ("access-key", "deleted"),
                           ("user", "deleted")]
    finally:
        dstore.close()
    listed = {u["UserName"] for u in iam.list_users()["Users"]}
    assert backdoor not in listed and user not in listed  # cleaned up
    assert iam.list_attached_user_policies(UserName=ADMIN_USER)["AttachedPolicies"] == \
        admin_policies
    assert row["detail"]["cleanup"]["errors"] == []

    # no remove: the key is contained and rotated, but the backdoor stays, and the check
    # names each piece of it
    bad = _run(aws_main, "persistence-hunt", keep_world, skip=["remove"])
    assert bad["status"] == "failed"
    assert checks_of(bad) == {"persistence-removed": False, "stolen-refused": True,
                              "consumer-healthy": True, "rotated": True}
    why = {c["check"]: c["why"] for c in bad["detail"]["checks"]}["persistence-removed"]
    backdoor = f"drill-{worlds[1]['tag']}-backdoor"
    assert why.startswith(f"still there: iam user {backdoor}, its access key AKIA")
    assert f"AdministratorAccess attached to {backdoor}" in why
    assert "the backdoor key" in why and "still answers at STS" in why
    assert bad["detail"]["scores"]["ratings"]["eradicate"]["level"] == 1
    # cleanup removed the backdoor the response left (world.json noted it first)
    assert backdoor not in {u["UserName"] for u in iam.list_users()["Users"]}
    assert bad["detail"]["cleanup"]["errors"] == []
    aws_main.no_canary(json.dumps(row), json.dumps(bad),
                       aws_main.db.read_bytes().decode("latin-1"),
                       Path(row["detail"]["drill_db"]).read_bytes().decode("latin-1"),
                       Path(bad["detail"]["drill_db"]).read_bytes().decode("latin-1"))


# --- worked by a person (no --auto), verified by reference in a later process ------------------


def _failed(row: dict[str, Any]) -> set[str]:
    return {c["check"] for c in row["detail"]["checks"] if not c["ok"]}


def test_public_repo_key_worked_by_a_person_is_verified_by_reference(aws_main: AwsMain) -> None:
    run_id, base, info = aws_main.start("aws-key-in-public-repo")
    worked = aws_main.work(base, "incident", "run", info["incident"], "--yes")
    assert worked.returncode == 0, worked.stdout + worked.stderr
    got, row = aws_main.verify(run_id)
    assert got.returncode == 0, got.stdout + got.stderr + json.dumps(row["detail"]["checks"])
    assert checks_of(row) == {"detected": True, "stolen-refused": True,
                              "consumer-healthy": True, "rotated": True,
                              "key-activity-reviewed": True}
    why = {c["check"]: c["why"] for c in row["detail"]["checks"]}
    assert "by reference" in why["stolen-refused"]
    assert "review's evidence" in why["key-activity-reviewed"]
    assert set(row["detail"]["refs"]["ingest-aws"]) == {"key_id", "user"}

    # worked wrongly: contain and eradicate skipped, the pushed key stays Active at IAM
    run_id, base, info = aws_main.start("aws-key-in-public-repo")
    worked = aws_main.work(base, "incident", "run", info["incident"], "--yes",
                           "--skip", "contain", "--skip", "eradicate")
    got, bad = aws_main.verify(run_id)
    assert got.returncode == 1, got.stdout + got.stderr
    assert _failed(bad) == {"stolen-refused", "rotated"}, bad["detail"]["checks"]
    assert bad["detail"]["scores"]["still_valid"] == ["ingest-aws"]
    aws_main.no_canary(got.stdout, got.stderr, worked.stdout, worked.stderr, json.dumps(row),
                       json.dumps(bad), aws_main.db.read_bytes().decode("latin-1"),
                       Path(info["drill_db"]).read_bytes().decode("latin-1"))


def test_compromised_agent_worked_by_a_person_is_verified_by_reference(
        aws_main: AwsMain) -> None:
    run_id, base, info = aws_main.start("compromised-agent")
    worked = aws_main.work(base, "incident", "run", info["incident"], "--yes")
    assert worked.returncode == 0, worked.stdout + worked.stderr
    got, row = aws_main.verify(run_id)
    assert got.returncode == 0, got.stdout + got.stderr + json.dumps(row["detail"]["checks"])
    assert checks_of(row) == {"stolen-refused": True, "attacker-tokens-refused": True,
                              "rotated": True, "consumer-healthy": True, "unaffected": True}
    checks = {c["check"]: c for c in row["detail"]["checks"]}
    assert checks["attacker-tokens-refused"]["detail"]["tokens"] == 1
    assert sorted(checks["unaffected"]["detail"]["checked"]) == ["billing-aws", "billing-db",
                                                                 "billing-login"]
    refs = row["detail"]["refs"]
    assert set(refs["assistant-login"]) == {"accessor"} and set(refs["billing-db"]) == {
        "version"}
    assert len(row["detail"]["notes"]["attacker_tokens"]["assistant"]) == 1

    # worked wrongly: contain skipped, so the token the attacker logged in for stays valid
    run_id, base, info = aws_main.start("compromised-agent")
    worked = aws_main.work(base, "incident", "run", info["incident"], "--yes",
                           "--skip", "contain")
    got, bad = aws_main.verify(run_id)
    assert got.returncode == 1, got.stdout + got.stderr
    assert _failed(bad) == {"attacker-tokens-refused"}, bad["detail"]["checks"]
    aws_main.no_canary(got.stdout, got.stderr, worked.stdout, worked.stderr, json.dumps(row),
                       json.dumps(bad), aws_main.db.read_bytes().decode("latin-1"),
                       Path(info["drill_db"]).read_bytes().decode("latin-1"))


def test_persistence_hunt_worked_by_a_person_is_verified_by_reference(
        aws_main: AwsMain) -> None:
    run_id, base, info = aws_main.start("persistence-hunt")
    worked = aws_main.work(base, "incident", "run", info["incident"], "--yes", "--remove-found")
    assert worked.returncode == 0, worked.stdout + worked.stderr
    got, row = aws_main.verify(run_id)
    assert got.returncode == 0, got.stdout + got.stderr + json.dumps(row["detail"]["checks"])
    assert checks_of(row) == {"persistence-removed": True, "stolen-refused": True,
                              "consumer-healthy": True, "rotated": True}
    persisted = row["detail"]["notes"]["persistence"]
    assert persisted["user"].endswith("-backdoor") and persisted["key_id"].startswith("AKIA")
    removed = {c["check"]: c for c in row["detail"]["checks"]}["persistence-removed"]
    assert removed["detail"]["by_reference"] is True and removed["detail"]["left"] == []

    # worked wrongly: the person runs the incident but never removes what the hunt found
    run_id, base, info = aws_main.start("persistence-hunt")
    worked = aws_main.work(base, "incident", "run", info["incident"], "--yes")
    assert worked.returncode == 1  # remove waits for a person
    got, bad = aws_main.verify(run_id)
    assert got.returncode == 1, got.stdout + got.stderr
    assert _failed(bad) == {"persistence-removed"}, bad["detail"]["checks"]
    why = {c["check"]: c["why"] for c in bad["detail"]["checks"]}["persistence-removed"]
    backdoor = bad["detail"]["notes"]["persistence"]["user"]
    assert why.startswith(f"still there: iam user {backdoor}, its access key AKIA")
    assert "still Active at IAM" in why
    assert bad["detail"]["cleanup"]["errors"] == []
    aws_main.no_canary(got.stdout, got.stderr, worked.stdout, worked.stderr, json.dumps(row),
                       json.dumps(bad), aws_main.db.read_bytes().decode("latin-1"),
                       Path(info["drill_db"]).read_bytes().decode("latin-1"))


def test_shared_key_split_worked_by_a_person_is_verified_by_reference(
        aws_main: AwsMain, sandbox: SandboxState) -> None:
    run_id, base, info = aws_main.start("shared-key-split")
    world = json.loads((Path(info["inventory"]).parent / "world.json").read_text())
    rec = world["records"]["shared-key"]
    bucket = rec["bucket"]
    worked = aws_main.work(base, "incident", "split", info["incident"], "--credential",
                           rec["credential_id"],
                           "--agent", f"indexer=arn:aws:s3:::{bucket}/indexer/*",
                           "--agent", f"reporter=arn:aws:s3:::{bucket}/reporter/*",
                           "--action", "s3:GetObject", "--yes")
    assert worked.returncode == 0, worked.stdout + worked.stderr
    got, row = aws_main.verify(run_id)
    assert got.returncode == 0, got.stdout + got.stderr + json.dumps(row["detail"]["checks"])
    assert checks_of(row) == {"least-privilege": True, "stolen-refused": True,
                              "consumer-healthy": True}
    # the split's users were made by the person's process (world.json never heard of them):
    # cleanup still removed them, by the world's tag
    made = {f"{rec['user']}-indexer", f"{rec['user']}-reporter"}
    assert made <= {r.removeprefix("iam-user:") for r in row["detail"]["cleanup"]["removed"]}
    assert row["detail"]["cleanup"]["errors"] == []
    listed = {u["UserName"] for u in aws_client(sandbox, "iam").list_users()["Users"]}
    assert not made & listed and rec["user"] not in listed

    # worked wrongly: the checklist marked done without splitting anything
    run_id, base, info = aws_main.start("shared-key-split")
    shown = json.loads(aws_main.work(base, "incident", "show", info["incident"], "--format",
                                     "json").stdout)
    eradicate = next(t["position"] for t in shown["tasks"] if t["step"] == "eradicate")
    worked = aws_main.work(base, "incident", "task", info["incident"], str(eradicate), "done",
                           "--note", "looked fine")
    assert worked.returncode == 0, worked.stderr
    got, bad = aws_main.verify(run_id)
    assert got.returncode == 1, got.stdout + got.stderr
    assert _failed(bad) == {"least-privilege", "stolen-refused"}, bad["detail"]["checks"]
    aws_main.no_canary(got.stdout, got.stderr, worked.stdout, worked.stderr, json.dumps(row),
                       json.dumps(bad), aws_main.db.read_bytes().decode("latin-1"),
                       Path(info["drill_db"]).read_bytes().decode("latin-1"))
