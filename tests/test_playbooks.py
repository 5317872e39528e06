"""Playbooks against the real sandbox: selection by each kind, rotate-due, rotate-agent with a
credential a person must rotate, failure policies with a rotation that really fails, dry runs,
the stop event, claims held elsewhere, finish-due, users' YAML, and the CLI (JSON lines, exit
codes, no value anywhere).

Each test gets its own KV mount, AppRole role and agent in the session sandbox, synced into a
fresh store by the real sync (so the agent's reach is the grants sync found)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets as pysecrets
import subprocess
import sys
import textwrap
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hvac.exceptions
import pytest
from rotation_support import FAST

from console import process
from console.audit import AuditLog
from console.config import load_inventory
from console.errors import (
    ConfigError,
    NotFoundError,
    ReadOnlyError,
    RotatedMeanwhile,
    UsageError,
)
from console.model import Credential, credential_id
from console.playbooks import (
    get_playbook,
    load_playbooks,
    loads_playbook,
    run_playbook,
    select,
)
from console.process import Owner
from console.rotation import RotationEngine
from console.sandbox import SandboxState, vault_client
from console.store import Store
from console.sync import run_sync

KEYSHIFT = str(Path(sys.executable).parent / "keyshift")
LATER = timedelta(days=40)  # past the high sensitivity's 30 days, within medium's 60


@dataclass
class World:
    tmp: Path
    tag: str
    mount: str
    agent: str
    vault: Any
    inventory: Path
    db: Path
    store: Store
    audit: AuditLog
    loaded: Any
    values: list[str] = field(default_factory=list)  # every value planted or seen: canaries

    def cid(self, path: str) -> str:
        return credential_id("v", "kv", f"{self.mount}/{path}")

    def version(self, path: str) -> int:
        meta = self.vault.secrets.kv.v2.read_secret_metadata(path, mount_point=self.mount)
        return int(meta["data"]["current_version"])

    def value(self, path: str) -> str:
        got = self.vault.secrets.kv.v2.read_secret_version(
            path, mount_point=self.mount, raise_on_deleted_version=True)
        return str(got["data"]["data"]["value"])

    def remember_values(self) -> None:
        for path in ("app/a", "app/b", "app/c", "app/manual", "other/d"):
            with contextlib.suppress(hvac.exceptions.InvalidPath):  # deleted by the test
                self.values.append(self.value(path))

    def engine(self, **kwargs: Any) -> RotationEngine:
        return RotationEngine(self.store, self.audit, self.loaded, retry=FAST, **kwargs)

    def run(self, name_or_pb: Any, params: dict | None = None, **kwargs: Any) -> Any:
        pb = get_playbook(name_or_pb, self.tmp) if isinstance(name_or_pb, str) else name_or_pb
        kwargs.setdefault("engine", self.engine())
        return run_playbook(pb, params or {}, store=self.store, audit=self.audit,
                            loaded=self.loaded, actor="pb-test", **kwargs)

    def cli(self, *args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, KEYSHIFT_ACTOR="pb-cli")
        if home is not None:
            env["KEYSHIFT_HOME"] = str(home)
        return subprocess.run(
            [KEYSHIFT, "--inventory", str(self.inventory), "--db", str(self.db), *args],
            env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
        )


SECRETS = {
    # path: custom metadata (the issuer tag, what sync reads into the row)
    "app/a": {"keyshift-issuer": "generated", "environment": "prod", "sensitivity": "high",
              "owner": "team-x"},
    "app/b": {"keyshift-issuer": "generated", "environment": "prod", "sensitivity": "medium",
              "owner": "team-x"},
    "app/c": {"keyshift-issuer": "generated", "environment": "prod", "sensitivity": "low",
              "owner": "team-x"},
    # nobody declared who issues it: a person rotates it, never a random value
    "app/manual": {"environment": "prod", "sensitivity": "high", "owner": "team-x"},
    # not in the agent's reach, another environment, and no owner (a finding)
    "other/d": {"keyshift-issuer": "generated", "environment": "dev", "sensitivity": "low"},
}


@pytest.fixture
def world(sandbox: SandboxState, tmp_path: Path) -> Any:
    tag = uuid.uuid4().hex[:8]
    vault = vault_client(sandbox)
    mount = f"pb-{tag}"
    vault.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    for path, meta in SECRETS.items():
        vault.secrets.kv.v2.create_or_update_secret(
            path, {"value": "canary-" + pysecrets.token_urlsafe(24)}, mount_point=mount)
        vault.secrets.kv.v2.update_metadata(path, mount_point=mount, custom_metadata=meta)
    policy = f"pb-{tag}"
    vault.sys.create_or_update_policy(policy, f'path "{mount}/data/app/*" {{\n'
                                              '  capabilities = ["read"]\n}\n')
    if "approle/" not in vault.sys.list_auth_methods()["data"]:
        vault.sys.enable_auth_method("approle")
    vault.auth.approle.create_or_update_approle(f"pb-{tag}", token_policies=[policy])
    agent = f"bot-{tag}"
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(textwrap.dedent(f"""\
        version: 1
        sources:
          - {{name: v, type: openbao, sandbox: true, kv_mounts: [{mount}], auth: false,
             leases: false, issuer_tag: keyshift-issuer}}
        agents:
          - name: {agent}
            owner: team-x
            environment: prod
            identities: [{{type: vault-approle, source: v, role: pb-{tag}}}]
        policies:
          grace_period_hours: 24
          by_sensitivity:
            high: {{max_age_days: 30}}
            medium: {{max_age_days: 60}}
        schedule:
          expiry_warning: 20d
        """))
    loaded = load_inventory(inventory)
    db = tmp_path / "ks.db"
    store = Store(db)
    audit = AuditLog(store)
    summary = run_sync(loaded, store, audit, actor="pb-test")
    assert summary.status == "ok", summary.as_dict()
    w = World(tmp_path, tag, mount, agent, vault, inventory, db, store, audit, loaded)
    w.remember_values()
    yield w
    store.close()


def add_expiring(w: World, days: int, sensitivity: str | None = "low") -> str:
    """A generated KV secret whose row says it expires in ``days`` (KV itself keeps no expiry,
    so the row is written as a declared credential's would be)."""
    path = "exp/e"
    w.vault.secrets.kv.v2.create_or_update_secret(
        path, {"value": "canary-" + pysecrets.token_urlsafe(24)}, mount_point=w.mount)
    w.vault.secrets.kv.v2.update_metadata(path, mount_point=w.mount,
                                          custom_metadata={"keyshift-issuer": "generated"})
    now = datetime.now(UTC)
    w.store.bulk_insert_credentials([Credential(
        id=w.cid(path), source="v", kind="kv", native_id=f"{w.mount}/{path}", name=path,
        created_at=now, expires_at=now + timedelta(days=days), sensitivity=sensitivity,
        tags={"keyshift-issuer": "generated"},
    )])
    w.values.append(w.value(path))
    return w.cid(path)


def user_playbook(w: World, text: str, name: str = "mine") -> Any:
    folder = w.tmp / "playbooks"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(textwrap.dedent(text))
    return get_playbook(name, w.tmp)


def statuses(result: Any) -> dict[str | None, str]:
    return {s.credential_id: s.status for s in result.steps}


# --- selection ----------------------------------------------------------------------------------


def test_selection_by_each_kind(world: World) -> None:
    w = world
    now = datetime.now(UTC)

    def ids(pb: Any, params: dict | None = None, at: datetime = now) -> list[str | None]:
        return [s.credential_id for s in select(pb, params or {}, store=w.store,
                                                loaded=w.loaded, now=at)]

    app = [w.cid(p) for p in ("app/a", "app/b", "app/c", "app/manual")]
    # the agent's reach, as sync found it through its role's policy; most sensitive first
    agent = ids(get_playbook("rotate-agent"), {"agent": w.agent})
    assert sorted(agent) == sorted(app)
    assert agent[0] in (w.cid("app/a"), w.cid("app/manual"))
    assert agent[-1] == w.cid("app/c")
    with pytest.raises(NotFoundError, match="no agent"):
        ids(get_playbook("rotate-agent"), {"agent": "nobody-here"})
    with pytest.raises(UsageError, match="needs --agent"):
        ids(get_playbook("rotate-agent"))
    # a filter, with its parameter filled in
    assert ids(get_playbook("rotate-environment"), {"environment": "dev"}) == [w.cid("other/d")]
    with pytest.raises(UsageError, match="one word"):
        ids(get_playbook("rotate-environment"), {"environment": "dev kind:kv"})
    # one credential by a short reference
    assert ids(get_playbook("rotate-one"), {"credential": f"{w.mount}/app/b"}) == [w.cid("app/b")]
    # a finding's rule: other/d has no owner
    findings = [f for f in w.store.findings() if f["credential_id"] == w.cid("other/d")]
    rule = next(f["rule"] for f in findings if "owner" in f["rule"])
    by_finding = loads_playbook(f"selection: {{finding: {rule}}}\n", "f.yaml", default_name="f")
    assert ids(by_finding) == [w.cid("other/d")]
    with pytest.raises(NotFoundError, match="no finding rule"):
        ids(loads_playbook("selection: {finding: hygiene.nope}\n", "f.yaml", default_name="f"))
    # due: nothing is due today; 40 days on, only the high one is past its maximum age
    due = get_playbook("rotate-due")
    assert ids(due) == []
    assert ids(due, at=now + LATER) == [w.cid("app/a"), w.cid("app/manual")]
    assert ids(due, {"sensitivity": "medium"}, at=now + LATER) == []
    assert ids(due, {"sensitivity": "medium"}, at=now + timedelta(days=70)) == [w.cid("app/b")]
    with pytest.raises(UsageError, match="not one of high, medium, low"):
        ids(due, {"sensitivity": "urgent"})
    # expiring: the inventory's schedule.expiry_warning (20d) is the default threshold
    expiring = add_expiring(w, days=18)
    assert ids(due) == [expiring]
    assert ids(due, {"expiring_within": "7d"}) == []
    # the ls grammar, negations included; gone rows are never selected
    mine = loads_playbook("selection: {filter: 'env:prod !name:app/manual'}\n", "m.yaml",
                          default_name="m")
    assert ids(mine) == [w.cid("app/a"), w.cid("app/b"), w.cid("app/c")]


# --- running --------------------------------------------------------------------------------------


def test_rotate_due_reaches_a_credential_with_no_sensitivity_as_unclassified(
    world: World,
) -> None:
    """Due (it expires in 3 days) but with no sensitivity: no high/medium/low run takes it,
    so `--sensitivity unclassified` (the schedule's rotate-due:unclassified job) does."""
    w = world
    expiring = add_expiring(w, days=3, sensitivity=None)
    pb = get_playbook("rotate-due")
    now = datetime.now(UTC)

    def chosen(sensitivity: str) -> list[str | None]:
        return [s.credential_id for s in select(pb, {"sensitivity": sensitivity},
                                                store=w.store, loaded=w.loaded, now=now)]

    assert expiring in chosen("unclassified")
    assert all(w.store.get_credential(c).sensitivity is None for c in chosen("unclassified"))
    assert expiring not in chosen("high,medium,low")
    assert expiring in chosen("high,unclassified")
    with pytest.raises(UsageError, match="unclassified"):
        chosen("urgent")


def test_rotate_due_rotates_exactly_the_due_ones_and_records_the_run(world: World) -> None:
    w = world
    expiring = add_expiring(w, days=18)
    before = {p: w.version(p) for p in ("app/a", "app/b", "app/c", "app/manual", "other/d")}
    events: list[Any] = []
    result = w.run("rotate-due", now=datetime.now(UTC) + LATER, on_event=events.append)
    # 40 days on: app/a and app/manual are overdue; exp/e expires within 20 days of now+40d
    # (it is past its expiry by then); the person-rotated one is reported, not guessed
    assert statuses(result) == {
        w.cid("app/a"): "done", w.cid("app/manual"): "manual", expiring: "done"}
    manual = next(s for s in result.steps if s.status == "manual")
    assert "needs a person" in (manual.detail or "") and manual.rotation_run_id is None
    assert result.status == "partial" and result.counts == {"done": 2, "manual": 1}
    after = {p: w.version(p) for p in before}
    assert after == {**before, "app/a": before["app/a"] + 1}
    assert w.version("exp/e") == 2
    # the run, its steps, the rotations it started and its audit entries
    row = w.store.get_playbook_run(result.run_id)
    assert row["playbook"] == "rotate-due" and row["status"] == "partial"
    assert row["dry_run"] is False and row["actor"] == "pb-test"
    steps = w.store.playbook_steps(result.run_id)
    assert [(s["credential_id"], s["status"]) for s in steps] == [
        (s.credential_id, s.status) for s in result.steps]
    rotated = {s.rotation_run_id for s in result.steps if s.status == "done"}
    assert set(w.store.rotations_of_playbook_run(result.run_id)) == rotated
    assert all(w.store.get_rotation_run(r)["status"] == "awaiting-revoke" for r in rotated)
    logged = [e for e in w.audit.entries() if e.action.startswith("playbook.")]
    assert [e.action for e in logged] == ["playbook.start", "playbook.finish"]
    assert logged[0].detail["run_id"] == result.run_id and logged[0].actor == "pb-test"
    assert logged[1].detail["status"] == "partial"
    assert w.audit.verify().ok
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "finish" and kinds.count("step") == 3
    assert events[0].total == 3 and "progress" in kinds


def test_rotate_agent_rotates_what_it_can_and_reports_the_manual_one(world: World) -> None:
    w = world
    old = {p: w.value(p) for p in ("app/a", "app/b", "app/c", "app/manual", "other/d")}
    result = w.run("rotate-agent", {"agent": w.agent}, engine=w.engine())
    assert statuses(result) == {
        w.cid("app/a"): "done", w.cid("app/b"): "done", w.cid("app/c"): "done",
        w.cid("app/manual"): "manual"}
    for path in ("app/a", "app/b", "app/c"):
        assert w.value(path) != old[path]
        w.values.append(w.value(path))
    assert w.value("app/manual") == old["app/manual"], "never a random value for it"
    assert w.value("other/d") == old["other/d"], "outside the agent's reach"
    assert result.status == "partial"


def test_failure_policy_stop_and_continue_with_a_rotation_that_really_fails(
    world: World,
) -> None:
    w = world
    text = """\
        selection: {{filter: "env:prod !name:app/manual"}}
        on_failure: {policy}
        grace: 0
        """
    # app/b's secret is deleted at the server after sync listed it: its rotation fails
    w.vault.secrets.kv.v2.delete_metadata_and_all_versions("app/b", mount_point=w.mount)
    stopper = user_playbook(w, text.format(policy="stop"), "stopper")
    first = w.run(stopper)
    assert statuses(first) == {w.cid("app/a"): "done", w.cid("app/b"): "failed",
                               w.cid("app/c"): "skipped"}
    failed = first.steps[1]
    assert failed.error and "\n" not in failed.error and "app/b" in failed.error
    assert "on_failure: stop" in (first.steps[2].detail or "")
    assert w.version("app/a") == 2 and w.version("app/c") == 1
    assert first.status == "partial"
    assert w.store.get_rotation_run(first.steps[0].rotation_run_id)["status"] == "completed"

    goer = user_playbook(w, text.format(policy="continue"), "goer")
    second = w.run(goer)
    assert statuses(second) == {w.cid("app/a"): "done", w.cid("app/b"): "failed",
                                w.cid("app/c"): "done"}
    assert w.version("app/a") == 3 and w.version("app/c") == 2
    assert second.status == "partial"
    # nothing but one failure: failed
    only_b = loads_playbook(f"selection: {{credential: {w.cid('app/b')}}}\n", "b.yaml",
                            default_name="b")
    assert w.run(only_b).status == "failed"


def test_a_dry_run_changes_nothing(world: World) -> None:
    w = world
    before = {p: w.version(p) for p in ("app/a", "app/b", "app/c", "app/manual")}
    result = w.run("rotate-agent", {"agent": w.agent}, dry_run=True)
    assert result.status == "dry-run"
    assert statuses(result)[w.cid("app/manual")] == "manual"
    planned = [s for s in result.steps if s.credential_id != w.cid("app/manual")]
    assert all(s.status == "skipped" and "dry run: would rotate" in (s.detail or "")
               for s in planned), result.steps
    assert {p: w.version(p) for p in before} == before
    assert w.store.rotation_runs(limit=10) == []
    assert w.store.get_playbook_run(result.run_id)["dry_run"] is True
    # over a read-only store: plans, records nothing; a real run is refused
    reader = Store(w.db, read_only=True)
    try:
        dry = run_playbook(get_playbook("rotate-agent"), {"agent": w.agent}, store=reader,
                           audit=AuditLog(reader), loaded=w.loaded, actor="t", dry_run=True)
        assert dry.status == "dry-run" and reader.get_playbook_run(dry.run_id) is None
        with pytest.raises(ReadOnlyError):
            run_playbook(get_playbook("rotate-agent"), {"agent": w.agent}, store=reader,
                         audit=AuditLog(reader), loaded=w.loaded, actor="t")
    finally:
        reader.close()
    assert {p: w.version(p) for p in before} == before


def test_the_stop_event_lets_the_step_in_flight_finish_and_starts_no_other(
    world: World,
) -> None:
    w = world
    stop = threading.Event()

    def on_event(event: Any) -> None:
        if event.kind == "step-start":
            stop.set()  # while the first rotation runs

    pb = loads_playbook('selection: {filter: "env:prod !name:app/manual"}\ngrace: 0\n',
                        "s.yaml", default_name="s")
    result = w.run(pb, on_event=on_event, stop=stop)
    assert [s.status for s in result.steps] == ["done", "skipped", "skipped"]
    assert all(s.detail == "stopped" for s in result.steps[1:])
    assert result.status == "stopped"
    assert (w.version("app/a"), w.version("app/b"), w.version("app/c")) == (2, 1, 1)
    assert w.store.get_playbook_run(result.run_id)["status"] == "stopped"


def test_a_credential_another_process_rotates_is_claimed_elsewhere(world: World) -> None:
    w = world
    # another process (alive: this one's parent stands in for it) holds app/a's claim
    holder = Owner(process.me().host, os.getppid(), process.start_time(os.getppid()))
    other = w.store.claim_run(subject=w.cid("app/a"), credential_id=w.cid("app/a"),
                              rotator="generated", plan={}, actor="other", owner=holder)
    pb = loads_playbook('selection: {filter: "env:prod !name:app/manual"}\ngrace: 0\n'
                        "concurrency: 3\n", "c.yaml", default_name="c")
    result = w.run(pb)
    assert statuses(result) == {w.cid("app/a"): "claimed-elsewhere", w.cid("app/b"): "done",
                                w.cid("app/c"): "done"}
    assert result.steps[0].rotation_run_id == other and result.steps[0].error is None
    assert result.status == "completed"
    assert w.version("app/a") == 1


def test_what_was_confirmed_runs_and_what_was_rotated_since_is_not_rotated_again(
    world: World,
) -> None:
    """Two schedulers, or a scheduler and a console: one chose app/a and app/b; before it
    ran, another run rotated app/a. Rotating app/a again would rotate it twice. And what
    runs is the list that was confirmed, not a fresh selection (app/c is left alone)."""
    w = world
    pb = loads_playbook('selection: {filter: "env:prod !name:app/manual"}\ngrace: 0\n',
                        "t.yaml", default_name="t")
    at = datetime.now(UTC)
    chosen = select(pb, {}, store=w.store, loaded=w.loaded, now=at)
    assert [s.credential_id for s in chosen] == [w.cid("app/a"), w.cid("app/b"), w.cid("app/c")]
    confirmed = chosen[:2]
    other = w.engine().rotate(w.cid("app/a"), actor="another-scheduler",
                              grace=timedelta(0))  # after the choice, before the run
    assert (w.version("app/a"), w.version("app/b")) == (2, 1)
    result = w.run(pb, selected=confirmed, selected_at=at)
    assert statuses(result) == {w.cid("app/a"): "skipped", w.cid("app/b"): "done"}
    skipped = result.steps[0]
    assert skipped.rotation_run_id == other.run_id and "was rotated by run" in skipped.detail
    assert (w.version("app/a"), w.version("app/b"), w.version("app/c")) == (2, 2, 1)
    # the engine refuses inside its claim, whoever calls it
    with pytest.raises(RotatedMeanwhile):
        w.engine().rotate(w.cid("app/b"), actor="late", grace=timedelta(0),
                          not_rotated_since=at)
    assert w.version("app/b") == 2


def test_finish_due_revokes_after_the_grace_and_links_nothing_twice(world: World) -> None:
    w = world
    rotated = w.run("rotate-agent", {"agent": w.agent})
    runs = [s.rotation_run_id for s in rotated.steps if s.status == "done"]
    assert len(runs) == 3
    finish = get_playbook("finish-due")
    now = datetime.now(UTC)
    assert select(finish, {}, store=w.store, loaded=w.loaded, now=now) == []
    later = now + timedelta(hours=25)
    chosen = select(finish, {}, store=w.store, loaded=w.loaded, now=later)
    assert sorted(s.rotation_run_id for s in chosen) == sorted(runs)
    assert all(s.action == "finish" for s in chosen)
    result = w.run(finish, engine=w.engine(clock=lambda: later), now=later)
    assert [s.status for s in result.steps] == ["done"] * 3, result.steps
    assert all(w.store.get_rotation_run(r)["status"] == "completed" for r in runs)
    # the rotations still belong to the playbook run that started them
    assert sorted(w.store.rotations_of_playbook_run(rotated.run_id)) == sorted(runs)


# --- users' playbooks --------------------------------------------------------------------------


def test_a_bad_user_playbook_names_file_line_column_and_field(tmp_path: Path) -> None:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    bad = folder / "weekly.yaml"
    bad.write_text("description: weekly\nselection:\n  agent: bot\nconcurrency: lots\n")
    with pytest.raises(ConfigError) as err:
        load_playbooks(tmp_path)
    assert err.value.one_line() == (
        f"{bad}:4:14: concurrency: expected a whole number, got a string")
    bad.write_text("selection:\n  agnet: bot\n")
    with pytest.raises(ConfigError) as err:
        load_playbooks(tmp_path)
    assert err.value.one_line().startswith(f"{bad}:2:3: selection.agnet: unknown field 'agnet'")
    assert "did you mean 'agent'" in err.value.one_line()
    bad.write_text("name: rotate-due\nselection: {due: {}}\n")
    with pytest.raises(ConfigError, match="built-in playbook's name") as err:
        load_playbooks(tmp_path)
    assert err.value.one_line().startswith(f"{bad}:1:7: name: ")
    bad.write_text("selection: {agent: '{who}'}\n")
    with pytest.raises(ConfigError, match=r"uses \{who\}"):
        load_playbooks(tmp_path)
    bad.write_text("selection: {agent: x, due: {}}\n")
    with pytest.raises(ConfigError, match="exactly one of"):
        load_playbooks(tmp_path)
    bad.write_text(textwrap.dedent("""\
        description: every prod agent's keys, then tell the team
        params: {team: {help: the owner}}
        selection: {filter: "env:prod owner:{team}"}
        order: oldest
        concurrency: 2
        grace: 2h
        on_failure: continue
        manual_steps: [{text: tell the team, when: after}]
        """))
    books = load_playbooks(tmp_path)
    mine = books["weekly"]
    assert mine.source == str(bad) and not mine.builtin
    assert mine.grace == timedelta(hours=2) and mine.manual_steps[0].when == "after"
    assert set(books) >= {"rotate-one", "rotate-due", "rotate-agent", "rotate-environment",
                          "finish-due", "weekly"}
    with pytest.raises(NotFoundError) as missing:
        get_playbook("weekl", tmp_path)
    assert "did you mean weekly?" in missing.value.one_line()


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_json_lines_exit_codes_and_no_value_anywhere(world: World, tmp_path: Path) -> None:
    w = world
    home = tmp_path / "home"
    (home / "playbooks").mkdir(parents=True)
    (home / "playbooks" / "prod.yaml").write_text(
        'selection: {filter: "env:prod !name:app/manual"}\non_failure: continue\ngrace: 0\n'
        "manual_steps: [{text: tell team-x}]\n")

    listed = w.cli("playbook", "ls", "--format", "json", home=home)
    assert listed.returncode == 0, listed.stderr
    assert [p["name"] for p in json.loads(listed.stdout)][-1] == "prod"
    shown = w.cli("playbook", "show", "rotate-agent", "--agent", w.agent, "--format", "json",
                  home=home)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["concurrency"] == 4 and data["on_failure"] == "continue"
    assert len(data["selected"]) == 4
    text = w.cli("playbook", "show", "prod", home=home)
    assert "manual steps  1. before: tell team-x" in text.stdout
    assert "would select  3" in text.stdout

    # no terminal and no --yes: refused before anything happens
    declined = w.cli("playbook", "run", "prod", home=home)
    assert declined.returncode == 1 and "--yes" in declined.stderr
    assert w.version("app/a") == 1
    refused = w.cli("--read-only", "playbook", "run", "prod", "--yes", home=home)
    assert refused.returncode == 4 and "read-only" in refused.stderr
    unknown = w.cli("playbook", "run", "nope", "--yes", home=home)
    assert unknown.returncode == 3 and "rotate-agent" in unknown.stderr
    missing = w.cli("playbook", "run", "rotate-agent", "--yes", home=home)
    assert missing.returncode == 2 and "--agent" in missing.stderr

    # a dry run: JSON lines, nothing changed
    dry = w.cli("playbook", "run", "prod", "--dry-run", home=home)
    assert dry.returncode == 0, dry.stderr
    lines = [json.loads(line) for line in dry.stdout.splitlines()]
    assert lines[-1]["kind"] == "finish" and lines[-1]["status"] == "dry-run"
    assert w.version("app/a") == 1

    # one real failure under continue: exit 1, the rest done, the manual step reported
    w.vault.secrets.kv.v2.delete_metadata_and_all_versions("app/b", mount_point=w.mount)
    ran = w.cli("playbook", "run", "prod", "--yes", home=home)
    assert ran.returncode == 1, (ran.stdout, ran.stderr)
    err = ran.stderr.strip().splitlines()
    assert len(err) == 1 and "1 of 4 steps of playbook prod failed" in err[0], ran.stderr
    events = [json.loads(line) for line in ran.stdout.splitlines()]
    assert events[0]["kind"] == "start" and events[0]["total"] == 4
    done = {e["position"]: e for e in events if e["kind"] == "step"}
    assert done[1]["action"] == "manual" and done[1]["status"] == "manual"
    assert {done[p]["credential_id"]: done[p]["status"] for p in (2, 3, 4)} == {
        w.cid("app/a"): "done", w.cid("app/b"): "failed", w.cid("app/c"): "done"}
    assert all(set(e) >= {"kind", "run_id", "playbook", "total"} for e in events)
    assert events[-1] == {**events[-1], "kind": "finish", "status": "partial",
                          "counts": {"done": 2, "failed": 1, "manual": 1}}
    assert [e["kind"] for e in events].count("step-start") == 4

    # rotate-one on a clean credential: exit 0
    one = w.cli("playbook", "run", "rotate-one", "--credential", f"{w.mount}/app/c", "--yes",
                "--format", "json", home=home)
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout.splitlines()[-1])["status"] == "completed"

    # canary: no value, old or new, in any output, the store or the log
    w.remember_values()
    outputs = "".join(p.stdout + p.stderr for p in (listed, shown, text, declined, refused,
                                                      unknown, missing, dry, ran, one))
    db_bytes = b"".join(p.read_bytes() for p in w.tmp.glob("ks.db*"))
    logs = b"".join(p.read_bytes() for p in home.glob("*.log"))
    assert len(set(w.values)) >= 7
    for value in set(w.values):
        assert value not in outputs
        assert value.encode() not in db_bytes and value.encode() not in logs


def test_on_a_terminal_it_asks_shows_progress_and_a_person_confirms_the_manual_step(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_cli_rotate import _drive_pty

    w = world
    home = tmp_path / "home"
    (home / "playbooks").mkdir(parents=True)
    (home / "playbooks" / "prod.yaml").write_text(
        'selection: {filter: "env:prod !name:app/manual"}\ngrace: 0\n'
        "manual_steps: [{text: tell team-x, when: after}]\n")
    monkeypatch.setenv("KEYSHIFT_HOME", str(home))
    seen = _drive_pty(
        [KEYSHIFT, "--inventory", str(w.inventory), "--db", str(w.db), "playbook", "run",
         "prod"],
        [("Run playbook prod?", "y"), ("Done?", "y")],
    )
    assert "<exit 0>" in seen, seen
    assert "playbook prod will rotate 3:" in seen and w.cid("app/b") in seen
    assert "tell team-x" in seen
    assert "completed (4 done)" in seen, seen
    assert not any(line.startswith("{") for line in seen.splitlines()), "no JSON lines"
    assert (w.version("app/a"), w.version("app/b"), w.version("app/c")) == (2, 2, 2)
    w.remember_values()
    for value in set(w.values):
        assert value not in seen
