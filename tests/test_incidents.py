"""Incidents against the real sandbox: the scope of an agent is exactly its reach, with the use
an agent really made (an AppRole login and a KV read in OpenBao's audit log); a credential's
scope has its holders and the other place its value lives; the scope is a snapshot a later
sync does not change; tasks, evidence, close and export through the CLI, the export's anchor
accepted by `keyshift audit verify`, read-only refusals, bad input, and no value anywhere.

The store and agent come from tests/test_playbooks.py's ``world`` (its own mount, role and
agent in the session sandbox, synced by the real sync)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import hvac
import pytest
from test_playbooks import World
from test_playbooks import world as world  # the fixture, re-exported

from console import incidents, reach
from console.errors import NotFoundError, UsageError
from console.refs import resolve_credential
from console.store import parse_ts
from console.sync import run_sync


def agent_reads(w: World, path: str) -> None:
    """The agent's own login and read: what OpenBao's audit device records as its use."""
    role = f"pb-{w.tag}"
    role_id = w.vault.auth.approle.read_role_id(role_name=role)["data"]["role_id"]
    secret_id = w.vault.auth.approle.generate_secret_id(role_name=role)["data"]["secret_id"]
    agent = hvac.Client(url=w.vault.url, timeout=30)
    agent.auth.approle.login(role_id=role_id, secret_id=secret_id)
    agent.secrets.kv.v2.read_secret_version(path, mount_point=w.mount,
                                            raise_on_deleted_version=True)


def sync_until_used(w: World, cid: str) -> None:
    for _ in range(20):  # the audit device may flush the line a moment after the response
        run_sync(w.loaded, w.store, w.audit, actor="inc-test")
        if w.store.usage_for_credential(cid):
            return
    raise AssertionError(f"no usage of {cid} after the agent's read")


def test_agent_scope_is_its_reach_with_use_since_and_stays_a_snapshot(world: World) -> None:
    w = world
    first = incidents.open_incident(w.store, w.audit, w.loaded, actor="inc-test",
                                    agent=w.agent.upper(), since="7d")
    scope = first["scope"]
    assert scope["kind"] == "agent" and scope["agent"]["name"] == w.agent
    assert scope["grants"] == reach.agent_grants(w.store, w.agent)
    expected = {w.cid(p) for p in ("app/a", "app/b", "app/c", "app/manual")}
    assert {c["credential"] for c in scope["credentials"]} == expected
    assert {c["owner"] for c in scope["credentials"]} == {"team-x"}
    assert all(g["chain"] for g in scope["grants"])
    assert scope["usage"] == []
    assert [t["step"] for t in first["tasks"]] == [
        "declare", "categorise", "contain", "review", "magnitude", "remove", "eradicate",
        "verify", "notify", "recover", "lessons"]
    eradicate = next(t for t in first["tasks"] if t["step"] == "eradicate")
    assert eradicate["command"] == f"keyshift playbook run rotate-agent --agent {w.agent}"
    assert eradicate["csf"] == "RS.MI-02" and eradicate["mode"] == "auto"
    assert eradicate["action"] == "eradicate"
    review = next(t for t in first["tasks"] if t["step"] == "review")
    assert "CloudTrail" in review["limits"]
    opened = w.audit.tail(1)[0]
    assert (opened.action, opened.target) == ("incident.open", first["id"])

    # the agent really uses app/a; the store learns it, the first incident does not change
    agent_reads(w, "app/a")
    sync_until_used(w, w.cid("app/a"))
    assert incidents.load(w.store, first["id"])["scope"] == scope
    second = incidents.open_incident(w.store, w.audit, w.loaded, actor="inc-test",
                                     agent=w.agent)
    used = second["scope"]["usage"]
    assert {u["credential"] for u in used} == {w.cid("app/a")}
    assert {u["identity"] for u in used} == {f"approle:pb-{w.tag}"}
    # a usage event in the scope is evidence; one that does not exist, or a finding, is not
    iid = second["id"]
    incidents.update_task(w.store, w.audit, iid, 4, "done", actor="inc-test",
                          evidence=[f"usage:{used[0]['id']}"])
    assert incidents.load(w.store, iid)["tasks"][3]["evidence"] == [
        {"kind": "usage", "ref": str(used[0]["id"])}]
    for bogus in ("usage:987654321", "finding:no-such-finding", "audit:987654321"):
        with pytest.raises(NotFoundError, match="evidence"):
            incidents.update_task(w.store, w.audit, iid, 5, "done", actor="t", evidence=[bogus])
    assert incidents.load(w.store, iid)["tasks"][4]["status"] == "todo"  # nothing half-done
    # a since after the read leaves it out (a date, not a duration)
    after = parse_ts(used[-1]["at"]) + timedelta(microseconds=1)
    later = incidents.open_incident(w.store, w.audit, w.loaded, actor="inc-test",
                                    agent=w.agent, since=after.isoformat())
    assert later["scope"]["usage"] == []

    with pytest.raises(NotFoundError, match="no agent"):
        incidents.open_incident(w.store, w.audit, w.loaded, actor="t", agent="nobody-here")
    with pytest.raises(UsageError, match="neither a duration nor a date"):
        incidents.open_incident(w.store, w.audit, w.loaded, actor="t", agent=w.agent,
                                since="last tuesday")


def test_credential_scope_has_holders_and_the_same_value_elsewhere(world: World) -> None:
    w = world
    w.vault.secrets.kv.v2.create_or_update_secret(
        "other/copy", {"value": w.value("app/b")}, mount_point=w.mount)
    run_sync(w.loaded, w.store, w.audit, actor="inc-test")
    inc = incidents.open_incident(w.store, w.audit, w.loaded, actor="inc-test",
                                  credential=f"{w.mount}/app/b")
    scope = inc["scope"]
    cred = resolve_credential(w.store, w.cid("app/b"))
    assert scope["credential"]["credential"] == cred.id
    assert scope["holders"] == reach.holders(w.store, cred)
    assert [h["agent"] for h in scope["holders"]] == [w.agent]
    assert [s["credential"] for s in scope["same_value"]] == [w.cid("other/copy")]
    assert inc["kind"] == "leaked-credential"
    with pytest.raises(NotFoundError, match="no credential"):
        incidents.open_incident(w.store, w.audit, w.loaded, actor="t", credential="zz-none")
    with pytest.raises(UsageError, match="exactly one"):
        incidents.open_incident(w.store, w.audit, w.loaded, actor="t")


def test_the_checklist_through_the_cli(world: World, tmp_path: Path) -> None:
    w = world
    home = tmp_path / "home"
    home.mkdir()
    runs: list = []

    def ks(*args: str):  # type: ignore[no-untyped-def]
        got = w.cli(*args, home=home)
        runs.append(got)
        return got

    opened = ks("incident", "open", "--agent", w.agent, "--format", "json")
    assert opened.returncode == 0, opened.stderr
    iid = json.loads(opened.stdout)["id"]
    assert iid.startswith("INC-") and len(iid) == 10
    short = iid[4:8].lower()

    shown = ks("incident", "show", short)
    assert shown.returncode == 0, shown.stderr
    assert "DETECT" in shown.stdout and "RECOVER" in shown.stdout
    assert f"keyshift playbook run rotate-agent --agent {w.agent}" in shown.stdout
    listed = ks("incident", "ls", "--format", "json")
    assert [r["id"] for r in json.loads(listed.stdout)] == [iid]

    # states: start -> done with a note and real evidence; a bogus run is refused
    assert ks("incident", "task", iid, "1", "start").returncode == 0
    head = w.audit.tail(1)[0].seq
    bogus = ks("incident", "task", iid, "1", "done", "--evidence", "run:no-such-run")
    assert bogus.returncode == 3 and bogus.stderr.count("\n") == 1
    assert "no rotation or playbook run 'no-such-run'" in bogus.stderr
    bad_kind = ks("incident", "task", iid, "1", "done", "--evidence", "ticket:9")
    assert bad_kind.returncode == 2 and "KIND:REF" in bad_kind.stderr
    done = ks("incident", "task", iid, "1", "done", "--note", "paged on-call",
              "--evidence", f"audit:{head}")
    assert done.returncode == 0, done.stderr
    again = ks("incident", "task", iid, "1", "start")
    assert again.returncode == 2 and "task 1 is done" in again.stderr
    contained = ks("incident", "task", iid, "3", "done", "--note", "secret-ids destroyed")
    assert contained.returncode == 0, contained.stderr
    assert ks("incident", "task", iid, "99", "done").returncode == 3
    task1, task3 = (t for t in incidents.load(w.store, iid)["tasks"] if t["position"] in (1, 3))
    assert task1["status"] == "done" and task1["started_at"] < task1["done_at"]
    assert task1["evidence"] == [{"kind": "audit", "ref": str(head)}]
    # started with no owner: owned by whoever started it; done straight away: nobody's
    assert task1["note"] == "paged on-call" and task1["owner"] == task1["actor"] == "pb-cli"
    assert task3["started_at"] == task3["done_at"] and task3["owner"] is None

    # assign: an open task's owner, its status unchanged; a closed task or no --owner refused
    assigned = ks("incident", "task", iid, "4", "assign", "--owner", "alice")
    assert assigned.returncode == 0 and "owner alice" in assigned.stdout, assigned.stderr
    assert ks("incident", "task", iid, "4", "assign").returncode == 2
    assert ks("incident", "task", iid, "1", "assign", "--owner", "bob").returncode == 2
    task4 = next(t for t in incidents.load(w.store, iid)["tasks"] if t["position"] == 4)
    assert task4["owner"] == "alice" and task4["status"] == "todo"
    assert w.audit.tail(1)[0].detail["owner"] == "alice"
    assert "owner alice" in ks("incident", "show", iid).stdout

    # read-only refuses every change, still shows
    for args in (("open", "--agent", w.agent), ("task", iid, "2", "start"), ("close", iid)):
        refused = w.cli("--read-only", "incident", *args, home=home)
        assert refused.returncode == 4 and "read-only" in refused.stderr, args
    assert w.cli("--read-only", "incident", "show", iid, home=home).returncode == 0

    # close: refused with open tasks, forced records them as skipped
    refused = ks("incident", "close", iid)
    assert refused.returncode == 2 and "9 open task(s)" in refused.stderr
    forced = ks("incident", "close", iid, "--force", "--note", "drill over")
    assert forced.returncode == 0, forced.stderr
    inc = incidents.load(w.store, iid)
    assert inc["status"] == "closed"
    assert [t["status"] for t in inc["tasks"]].count("skipped") == 9
    actions = [e.action for e in w.audit.tail(6)]
    assert actions[-1] == "incident.close" and "incident.task" in actions
    assert ks("incident", "task", iid, "2", "done").returncode == 2

    # export: timeline in UTC, scope, actions, metrics and an anchor audit verify accepts
    exported = ks("incident", "export", iid, "--format", "json")
    assert exported.returncode == 0, exported.stderr
    data = json.loads(exported.stdout)
    events = [e["event"] for e in data["timeline"]]
    assert events[0] == "opened" and events[-1] == "closed"
    assert "task 1 started" in events and "task 1 done" in events and "task 2 skipped" in events
    assert all(e["at"].endswith("Z") for e in data["timeline"])
    assert data["metrics"]["time_to_contain_s"] is not None
    assert data["metrics"]["time_to_eradicate_s"] is None  # skipped is not done
    assert data["scope"]["grants"] == reach.agent_grants(w.store, w.agent)
    anchor = data["audit_anchor"]["anchor"]
    assert int(anchor.split(":")[0]) == w.audit.tail(1)[0].seq
    md = ks("incident", "export", iid, "--format", "md")
    assert md.returncode == 0 and "## Timeline (UTC)" in md.stdout and anchor in md.stdout
    ks("incident", "open", "--agent", w.agent)  # the chain grows after the export
    verified = ks("audit", "verify", "--anchor", anchor)
    assert verified.returncode == 0, verified.stderr
    forged = ks("audit", "verify", "--anchor", anchor.split(":")[0] + ":" + "0" * 64)
    assert forged.returncode != 0

    # bad input: one line each, typed exit codes
    for args, code in (((("open", "--agent", "nobody-here")), 3),
                       ((("open", "--agent", w.agent, "--since", "soon")), 2),
                       ((("show", "INC-FFFFFF")), 3)):
        got = ks("incident", *args)
        assert got.returncode == code and got.stderr.count("\n") == 1, (args, got.stderr)
        assert "Traceback" not in got.stderr

    # canary: no planted value in any output, the store or the log
    w.remember_values()
    outputs = "".join(p.stdout + p.stderr for p in runs)
    db_bytes = b"".join(p.read_bytes() for p in w.tmp.glob("ks.db*"))
    logs = b"".join(p.read_bytes() for p in home.rglob("*.log"))
    assert len(set(w.values)) >= 5
    for value in set(w.values):
        assert value not in outputs
        assert value.encode() not in db_bytes and value.encode() not in logs


def test_an_incident_or_drill_run_by_prefix(tmp_path: Path) -> None:
    """Ids are taken by a unique prefix, any case, with or without INC-/DRL-; an ambiguous one
    lists the candidates, an unknown one names the command that lists them."""
    from console.drills.runner import resolve_run
    from console.incidents import resolve_id
    from console.store import Store

    store = Store(tmp_path / "ks.db")
    now = datetime.now(UTC)
    for iid in ("INC-AB1111", "INC-AB2222"):
        store.create_incident(iid, title="t", kind="leaked-credential", severity="high",
                              actor="t", opened_at=now, detail={}, tasks=[])
    assert resolve_id(store, "ab11") == "INC-AB1111"
    assert resolve_id(store, "inc-ab2222") == "INC-AB2222"
    with pytest.raises(UsageError, match="INC-AB1111, INC-AB2222"):
        resolve_id(store, "AB")
    with pytest.raises(NotFoundError) as missing:
        resolve_run(store, "DRL-FFFF")
    assert missing.value.hint == "list them with: keyshift drill ls"
    store.close()
