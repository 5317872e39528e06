"""The schedule's logic under a travelling clock: when jobs are due (intervals, missed runs
coalesced, maintenance windows across midnight and in other time zones), the schedule kept
across a restart (a new Scheduler over the same store), one owner per job, revoke-after-grace
across a restart, failure loops, `schedule status` and `--read-only`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import time_machine
from rotation_support import build

from console.alerts import Alerter
from console.audit import AuditLog
from console.config import load_inventory
from console.inventory import MaintenanceWindow, Schedule
from console.model import Credential, credential_id
from console.process import Owner, me
from console.schedule import Scheduler, in_window, job_specs, next_due, next_opening
from console.store import Store

KEYSHIFT = str(Path(sys.executable).parent / "keyshift")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def _window(**kw: Any) -> MaintenanceWindow:
    return MaintenanceWindow.model_validate(kw)


# --- due computation (pure) -----------------------------------------------------------------


def test_interval_never_run_and_missed_runs_coalesce() -> None:
    day = timedelta(days=1)
    assert next_due(None, day, T0).at == T0, "a job that never ran is due at once"
    assert next_due(T0, day, T0 + timedelta(hours=3)).at == T0 + day
    # down for ten days: due once, now; not ten times, not at the first missed tick
    late = T0 + timedelta(days=10, hours=5)
    due = next_due(T0, day, late)
    assert due.at == late and due.interval_due == T0 + day
    # once it ran at `late`, the next is a full interval after that run
    assert next_due(late, day, late + timedelta(minutes=1)).at == late + day


def test_window_across_midnight() -> None:
    windows = [_window(days=["fri"], start="22:00", end="04:00")]
    fri = datetime(2026, 3, 6, tzinfo=UTC)
    assert not in_window(windows, fri + timedelta(hours=21, minutes=59))
    assert in_window(windows, fri + timedelta(hours=22))
    assert in_window(windows, fri + timedelta(days=1, hours=3, minutes=59)), "Saturday 03:59"
    assert not in_window(windows, fri + timedelta(days=1, hours=4))
    # due on Saturday 05:00 (outside): waits for the next Friday 22:00, a week less 7 h on
    due = next_due(None, timedelta(days=7), fri + timedelta(days=1, hours=5), windows)
    assert due.waits_for_window and due.at == fri + timedelta(days=7, hours=22)
    # due inside: runs at once
    inside = fri + timedelta(days=1, hours=1)
    assert next_due(None, timedelta(days=7), inside, windows) == next_due(
        None, timedelta(days=7), inside, windows
    )
    assert not next_due(None, timedelta(days=7), inside, windows).waits_for_window
    # a job run any time ignores the windows
    assert next_due(None, timedelta(days=7), fri, ()).at == fri


def test_window_in_another_time_zone_follows_its_daylight_saving() -> None:
    ny = [_window(days=["sun"], start="01:00", end="03:00", timezone="America/New_York")]
    # winter (EST, UTC-5): 06:00-08:00 UTC; summer (EDT, UTC-4): 05:00-07:00 UTC
    winter_sun = datetime(2026, 1, 11, tzinfo=UTC)
    summer_sun = datetime(2026, 7, 12, tzinfo=UTC)
    assert next_opening(ny, winter_sun) == winter_sun + timedelta(hours=6)
    assert next_opening(ny, summer_sun) == summer_sun + timedelta(hours=5)
    assert in_window(ny, winter_sun + timedelta(hours=7, minutes=59))
    assert not in_window(ny, winter_sun + timedelta(hours=8))
    # Tokyo, Monday 02:00-03:00 local is Sunday 17:00-18:00 UTC
    tokyo = [_window(days=["mon"], start="02:00", end="03:00", timezone="Asia/Tokyo")]
    assert in_window(tokyo, datetime(2026, 3, 1, 17, 30, tzinfo=UTC))
    assert not in_window(tokyo, datetime(2026, 3, 2, 2, 30, tzinfo=UTC))


# --- the runner over a real store -----------------------------------------------------------


def _plain_inventory(tmp: Path, schedule: str = "") -> Path:
    path = tmp / "inventory.yaml"
    path.write_text(
        "version: 1\nsources:\n  - {name: declared, type: declared}\n" + schedule
    )
    return path


def _scheduler(tmp: Path, names: set[str], **kw: Any) -> tuple[Scheduler, Store]:
    loaded = load_inventory(tmp / "inventory.yaml")
    store = Store(tmp / "ks.db")
    specs = [s for s in job_specs(loaded.inventory.schedule) if s.name in names]
    return Scheduler(store, loaded, AuditLog(store), actor="schedule-test", specs=specs,
                     **kw), store


def _audit_count(store: Store, action: str) -> int:
    return sum(1 for e in AuditLog(store).entries() if e.action == action)


def test_restart_keeps_the_schedule_and_missed_runs_run_once(
    tmp_path: Path, keyshift_home: Path
) -> None:
    _plain_inventory(tmp_path, "schedule: {findings_refresh_every: 1d, expiry_check_every: 6h}\n")
    names = {"findings-refresh", "expiry-check"}
    with time_machine.travel(T0, tick=False) as clock:
        sched, store = _scheduler(tmp_path, names)
        assert sorted(n for n, _ in sched.run_due()) == sorted(names)
        assert _audit_count(store, "findings.refresh") == 1
        clock.shift(timedelta(hours=1))
        assert sched.run_due() == [], "nothing is due an hour later"
        store.close()

        # a restart: a new scheduler over the same store knows what ran and when
        clock.shift(timedelta(hours=4, minutes=30))
        sched, store = _scheduler(tmp_path, names)
        assert sched.run_due() == []
        clock.shift(timedelta(minutes=31))  # 6h01 after T0: only the 6-hourly job
        assert [n for n, _ in sched.run_due()] == ["expiry-check"]
        store.close()

        # down for 9 days: each job runs once when it comes back, then waits a full interval
        clock.shift(timedelta(days=9))
        sched, store = _scheduler(tmp_path, names)
        assert sorted(n for n, _ in sched.run_due()) == sorted(names)
        assert sched.run_due() == []
        assert _audit_count(store, "findings.refresh") == 2, "coalesced: one run, not nine"
        row = store.schedule_job("findings-refresh")
        assert row is not None and row["last_status"] == "ok" and row["owner_pid"] is None
        assert row["next_due"], "the next time is recorded for `schedule status`"
        refresh = next(s for s in sched.specs if s.name == "findings-refresh")
        assert sched.state(refresh).next_run == datetime.now(UTC) + timedelta(days=1)
        store.close()


def test_a_live_owner_keeps_its_job_and_a_dead_ones_is_taken_over(
    tmp_path: Path, keyshift_home: Path
) -> None:
    _plain_inventory(tmp_path)
    sched, store = _scheduler(tmp_path, {"audit-verify"})
    spec = sched.specs[0]
    # another live process claimed it (this test's parent: alive, and not us)
    parent = Owner(me().host, os.getppid(), None)
    assert store.claim_schedule_job(spec.name, None, parent, datetime.now(UTC))
    assert sched.state(spec).state == "running"
    claimed = store.schedule_job(spec.name)
    assert sched.run_job(spec) is None, "a job another live process holds is left alone"
    assert store.schedule_job(spec.name) == claimed

    # its owner dies: a pid that has exited
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    store.close()
    store = Store(tmp_path / "ks.db")
    row = store.schedule_job(spec.name)
    assert row is not None
    dead = Owner(me().host, gone.pid, "no-such-start")
    assert store.claim_schedule_job(spec.name, row, dead, datetime.now(UTC))
    sched, store2 = _scheduler(tmp_path, {"audit-verify"})
    assert sched.state(spec).state == "interrupted"
    outcome = sched.run_job(spec)
    assert outcome is not None and outcome.status == "ok"
    row = store2.schedule_job(spec.name)
    assert row is not None and row["owner_pid"] is None and row["last_status"] == "ok"
    # a stale claim (what a loser read) does not win
    assert not store2.claim_schedule_job(spec.name, {"last_started": "2000-01-01"}, me(),
                                         datetime.now(UTC))
    store.close()
    store2.close()


def test_rotations_wait_for_the_window_checks_do_not(tmp_path: Path, keyshift_home: Path) -> None:
    _plain_inventory(
        tmp_path,
        textwrap.dedent(
            """\
            schedule:
              maintenance_windows:
                - {days: [sat], start: "23:00", end: "01:00", timezone: Europe/Berlin}
            """
        ),
    )
    names = {"audit-verify", "finish-due"}
    # Monday 09:00 UTC: no window open; Saturday 23:00 Berlin (winter) is 22:00 UTC
    with time_machine.travel(T0, tick=False) as clock:
        sched, store = _scheduler(tmp_path, names)
        assert [n for n, _ in sched.run_due()] == ["audit-verify"]
        finish = next(s for s in sched.specs if s.name == "finish-due")
        state = sched.state(finish)
        assert state.waits_for_window and state.state == "waiting-window"
        assert state.next_run == datetime(2026, 3, 7, 22, 0, tzinfo=UTC)
        status = _status_json(tmp_path)
        job = next(j for j in status["jobs"] if j["job"] == "finish-due")
        assert job["waits_for_window"] is True and job["state"] == "waiting-window"
        clock.move_to(datetime(2026, 3, 7, 23, 30, tzinfo=UTC))  # Sunday 00:30 Berlin
        assert [n for n, _ in sched.run_due()] == ["audit-verify", "finish-due"]
        store.close()


def _status_json(tmp: Path, *extra: str) -> dict:
    proc = subprocess.run(
        [KEYSHIFT, "--inventory", str(tmp / "inventory.yaml"), "--db", str(tmp / "ks.db"),
         *extra, "schedule", "status", "--format", "json"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_status_json_fields_and_read_only(tmp_path: Path, keyshift_home: Path) -> None:
    _plain_inventory(tmp_path)
    sched, store = _scheduler(tmp_path, {"audit-verify", "expiry-check"})
    sched.run_due()
    store.close()
    before = (tmp_path / "ks.db").stat().st_mtime_ns
    status = _status_json(tmp_path, "--read-only")
    assert (tmp_path / "ks.db").stat().st_mtime_ns == before, "status reads only"
    assert set(status) == {"now", "maintenance_windows", "jobs", "held_credentials"}
    jobs = {j["job"]: j for j in status["jobs"]}
    assert set(jobs) == {"sync", "findings-refresh", "expiry-check", "audit-verify",
                         "finish-due", "rotate-due:high", "rotate-due:medium",
                         "rotate-due:low", "rotate-due:unclassified"}
    for job in jobs.values():
        assert set(job) == {"job", "every_seconds", "windowed", "state", "next_run",
                            "waits_for_window", "last_started", "last_finished",
                            "last_status", "last_error", "failures_in_row", "owner"}
    verify = jobs["audit-verify"]
    assert verify["last_status"] == "ok" and verify["failures_in_row"] == 0
    assert verify["every_seconds"] == 86400 and verify["owner"] is None
    assert datetime.fromisoformat(verify["next_run"]) - datetime.fromisoformat(
        verify["last_started"]) == timedelta(days=1)
    assert jobs["sync"]["last_started"] is None and jobs["sync"]["state"] == "due"
    assert jobs["rotate-due:high"]["every_seconds"] == 7 * 86400
    assert jobs["rotate-due:low"]["every_seconds"] == 91 * 86400

    refused = subprocess.run(
        [KEYSHIFT, "--inventory", str(tmp_path / "inventory.yaml"), "--db",
         str(tmp_path / "ks.db"), "--read-only", "schedule", "run", "--once"],
        capture_output=True, text=True, timeout=60,
    )
    assert refused.returncode == 4, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "read-only" in lines[0] and "schedule run" in lines[0]


class _StopOnFirstAcquire:
    """The scheduler's lock, but the first time a job takes it, SIGTERM's ``request_stop``
    runs just before: the moment between a job seeing no stop and registering its event."""

    def __init__(self, sched: Scheduler) -> None:
        self.sched, self.inner, self.fired = sched, sched._active_lock, False

    def __enter__(self) -> None:
        if not self.fired:
            self.fired = True
            self.sched.request_stop()
        self.inner.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.inner.__exit__(*exc)


def test_a_stop_just_before_a_job_registers_still_reaches_it(
    tmp_path: Path, keyshift_home: Path
) -> None:
    from console.schedule.jobs import JobOutcome, JobSpec

    _plain_inventory(tmp_path)
    seen: list[bool] = []

    def job(ctx: Any) -> JobOutcome:
        seen.append(ctx.stop.is_set())
        return JobOutcome("stopped" if ctx.stop.is_set() else "ok")

    spec = JobSpec("probe", timedelta(days=1), False, job)
    loaded = load_inventory(tmp_path / "inventory.yaml")
    store = Store(tmp_path / "ks.db")
    sched = Scheduler(store, loaded, AuditLog(store), actor="schedule-test", specs=[spec])
    sched._active_lock = _StopOnFirstAcquire(sched)  # type: ignore[assignment]
    outcome = sched.run_job(spec)
    assert seen == [True], "the job's own stop event was set by the stop that came first"
    assert outcome is not None and outcome.status == "stopped"
    assert sched._active == set()
    store.close()


def _keyshift(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KEYSHIFT, "--inventory", str(tmp / "inventory.yaml"), "--db", str(tmp / "ks.db"),
         *args],
        capture_output=True, text=True, timeout=60,
        env=dict(os.environ, KEYSHIFT_ACTOR="schedule-test"),
    )


def test_a_job_held_on_another_host_is_named_and_released_by_a_person(
    tmp_path: Path, keyshift_home: Path
) -> None:
    _plain_inventory(tmp_path)
    sched, store = _scheduler(tmp_path, {"audit-verify", "expiry-check"})
    assert [n for n, _ in sched.run_due()] == ["expiry-check", "audit-verify"]
    # a container's run, SIGKILLed; the container came back under a new hostname
    gone = Owner("job-host-7f3a", 4242, "boot:123")
    row = store.schedule_job("audit-verify")
    assert store.claim_schedule_job("audit-verify", row, gone, datetime.now(UTC))
    # and a live process here holds another job
    parent = Owner(me().host, os.getppid(), None)
    row = store.schedule_job("expiry-check")
    assert store.claim_schedule_job("expiry-check", row, parent, datetime.now(UTC))
    held = store.schedule_job("audit-verify")
    store.close()

    jobs = {j["job"]: j for j in _status_json(tmp_path)["jobs"]}
    assert jobs["audit-verify"]["state"] == "running"
    assert jobs["audit-verify"]["owner"]["alive"] is None, "nothing here can tell"
    assert jobs["expiry-check"]["owner"]["alive"] is True
    text = _keyshift(tmp_path, "schedule", "status")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    about = [ln for ln in lines if "another host" in ln]
    assert len(about) == 1, text.stdout
    assert "job-host-7f3a" in about[0] and "4242" in about[0]
    assert "cannot check" in about[0]
    assert "keyshift schedule release --job audit-verify" in about[0]

    refused = _keyshift(tmp_path, "--read-only", "schedule", "release", "--job", "audit-verify")
    assert refused.returncode == 4, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "read-only" in refused.stderr
    busy = _keyshift(tmp_path, "schedule", "release", "--job", "expiry-check")
    assert busy.returncode == 2 and "still running" in busy.stderr, busy.stderr
    unknown = _keyshift(tmp_path, "schedule", "release", "--job", "audit-verfy")
    assert unknown.returncode == 2 and "audit-verify" in unknown.stderr, unknown.stderr
    both = _keyshift(tmp_path, "schedule", "release", "some-cred", "--job", "audit-verify")
    assert both.returncode == 2, both.stderr
    store = Store(tmp_path / "ks.db")
    assert store.schedule_job("audit-verify") == held, "no refusal changed the row"
    assert _audit_count(store, "schedule.release-job") == 0
    store.close()

    done = _keyshift(tmp_path, "schedule", "release", "--job", "audit-verify")
    assert done.returncode == 0, done.stderr
    assert "pid 4242 on job-host-7f3a" in done.stdout
    store = Store(tmp_path / "ks.db")
    row = store.schedule_job("audit-verify")
    assert row is not None and row["owner_pid"] is None and row["owner_host"] is None
    assert row["last_status"] == "released" and "job-host-7f3a" in row["last_error"]
    entries = [e for e in AuditLog(store).entries() if e.action == "schedule.release-job"]
    assert len(entries) == 1 and entries[0].target == "audit-verify"
    assert entries[0].actor == "schedule-test"
    assert entries[0].detail == {"host": "job-host-7f3a", "pid": 4242, "started": "boot:123"}
    assert AuditLog(store).verify().ok
    store.close()
    jobs = {j["job"]: j for j in _status_json(tmp_path)["jobs"]}
    assert jobs["audit-verify"]["state"] == "due", "its cut run is due again at once"
    again = _keyshift(tmp_path, "schedule", "release", "--job", "audit-verify")
    assert again.returncode == 3 and "no process holds" in again.stderr, again.stderr
    sched, store = _scheduler(tmp_path, {"audit-verify"})
    assert [(n, o.status) for n, o in sched.run_due()] == [("audit-verify", "ok")]
    store.close()


def test_schedule_defaults_and_cadence_per_sensitivity() -> None:
    specs = {s.name: s for s in job_specs(Schedule.model_validate({"rotate_due": {"high": "1d"}}))}
    assert specs["rotate-due:high"].every == timedelta(days=1)
    assert specs["rotate-due:medium"].every == timedelta(days=30)
    assert specs["rotate-due:low"].every == timedelta(days=91)
    assert specs["rotate-due:unclassified"].every == timedelta(days=7)
    assert specs["rotate-due:unclassified"].windowed
    assert specs["finish-due"].windowed and specs["rotate-due:high"].windowed
    assert not any(specs[n].windowed for n in ("sync", "audit-verify", "expiry-check",
                                               "findings-refresh"))


# --- against the sandbox --------------------------------------------------------------------


def test_revoke_after_grace_across_a_restart(
    sandbox: Any, tmp_path: Path, keyshift_home: Path
) -> None:
    s = build("generated-kv2", tmp_path, sandbox)
    env = s.env()
    old = s.current()
    result = env.engine().rotate(s.cred.id, actor="schedule-test", grace=timedelta(hours=2))
    assert result.status == "awaiting-revoke"
    env.close()

    names = {"finish-due"}
    sched, store = _scheduler(tmp_path, names)
    assert [n for n, _ in sched.run_due()] == ["finish-due"], "runs, finds nothing due yet"
    assert store.get_rotation_run(result.run_id)["status"] == "awaiting-revoke"
    store.close()

    # the process is restarted three hours later: the grace is over
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=3), tick=True):
        sched, store = _scheduler(tmp_path, names)
        ran = sched.run_due()
        assert [n for n, o in ran] == ["finish-due"] and ran[0][1].status == "ok", ran
        assert store.get_rotation_run(result.run_id)["status"] == "completed"
        assert s.refused(old), "the old value is revoked"
        assert s.consumer()
        store.close()


def _failing_inventory(s: Any, tmp: Path, *, extra: str = "") -> Credential:
    """A rotation declared over a KV path that does not exist: its plan is refused."""
    missing = f"rot/missing-{uuid.uuid4().hex[:8]}"
    s.write_inventory(
        f"""\
        policies:
          grace_period_hours: 0
          by_sensitivity:
            high: {{max_age_days: 30}}
        rotations:
          - name: broken-{s.tag}
            issuer: {{type: generated, generator: {{length: 32, alphabet: urlsafe}}}}
            targets:
              - {{type: vault-kv, source: vault-sandbox, path: secret/{missing}, key: value}}
        {extra}"""
    )
    # write_inventory puts policies first; the second policies block replaces it
    text = (tmp / "inventory.yaml").read_text().replace(
        "policies:\n  grace_period_hours: 24\n", "", 1)
    (tmp / "inventory.yaml").write_text(text)
    return Credential(
        id=credential_id("vault-sandbox", "kv", f"secret/{missing}"),
        source="vault-sandbox", kind="kv", native_id=f"secret/{missing}", name=missing,
        sensitivity="high", created_at=datetime.now(UTC) - timedelta(days=90),
    )


def test_failure_loop_alerts_once_and_holds_until_a_person_acts(
    sandbox: Any, tmp_path: Path, keyshift_home: Path
) -> None:
    s = build("generated-kv2", tmp_path, sandbox)
    cred = _failing_inventory(s, tmp_path, extra="schedule: {failure_loop: 2}\n")
    loaded = load_inventory(tmp_path / "inventory.yaml")
    store = Store(tmp_path / "ks.db")
    store.bulk_insert_credentials([cred])
    alerter = Alerter(loaded.inventory.alerts, store)
    names = {"rotate-due:high"}
    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        for _attempt in range(3):
            sched, _ = _scheduler(tmp_path, names, alerter=alerter)
            ran = sched.run_due()
            assert [n for n, _ in ran] == ["rotate-due:high"]
            clock.shift(timedelta(days=8))
        alerts = [a for a in store.alerts(limit=100)]
        failed = [a for a in alerts if a["event"] == "rotation-failed"]
        loops = [a for a in alerts if a["event"] == "failure-loop"]
        assert len(failed) == 2, "one per failed run; the third run was held, not tried"
        assert len(loops) == 1 and loops[0]["subject"] == cred.id
        assert loops[0]["body"]["failures_in_row"] == 2
        assert failed[0]["body"]["credential"] == cred.id
        assert failed[0]["body"]["step"] == "plan" and failed[0]["body"]["error"]
        holds = store.credential_holds(2)
        assert [h["credential_id"] for h in holds] == [cred.id]
        assert holds[0]["failures_in_row"] == 2, "a held credential's refusal is not counted"
        status = _status_json(tmp_path)
        assert [h["credential"] for h in status["held_credentials"]] == [cred.id]

        # a person acts: released, the next run tries it again (and it fails again: one more)
        assert store.release_credential_hold(cred.id)
        assert store.credential_holds(2) == []
        sched, _ = _scheduler(tmp_path, names, alerter=alerter)
        sched.run_due()
        failed = [a for a in store.alerts(limit=100) if a["event"] == "rotation-failed"]
        assert len(failed) == 3
        assert store.credential_holds(1)[0]["failures_in_row"] == 1
    store.close()


def test_a_broken_user_playbook_does_not_stop_scheduled_rotations(
    sandbox: Any, tmp_path: Path, keyshift_home: Path
) -> None:
    from console.errors import ConfigError
    from console.playbooks import load_playbooks

    s = build("generated-kv2", tmp_path, sandbox)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(inventory.read_text().replace(
        "policies:\n  grace_period_hours: 24\n",
        "policies:\n  grace_period_hours: 24\n  by_sensitivity:\n    high: {max_age_days: 30}\n",
        1,
    ))
    assert s.cred is not None
    cred = s.cred.model_copy(
        update={"sensitivity": "high", "created_at": datetime.now(UTC) - timedelta(days=90)}
    )
    # a person's half-written playbook in the config dir: everything that reads the user's
    # playbooks refuses it
    (keyshift_home / "playbooks").mkdir()
    (keyshift_home / "playbooks" / "mine.yaml").write_text("name: mine\nselection: [unclosed\n")
    try:
        load_playbooks()
    except ConfigError:
        pass
    else:
        raise AssertionError("the broken playbook file was read without an error")
    old = s.current()
    store = Store(tmp_path / "ks.db")
    store.bulk_insert_credentials([cred])
    store.close()

    sched, store = _scheduler(tmp_path, {"rotate-due:high"})
    ran = sched.run_due()
    assert [(n, o.status) for n, o in ran] == [("rotate-due:high", "ok")], ran
    assert s.current()["value"] != old["value"], "the due credential was rotated"
    runs = [r for r in store.rotation_runs(limit=100) if r["credential_id"] == cred.id]
    assert [r["status"] for r in runs] == ["awaiting-revoke"]
    store.close()


def test_a_failed_resume_is_alerted_counted_and_fails_the_job(
    sandbox: Any, tmp_path: Path, keyshift_home: Path
) -> None:
    s = build("generated-kv2", tmp_path, sandbox)
    cred = _failing_inventory(s, tmp_path)
    loaded = load_inventory(tmp_path / "inventory.yaml")
    store = Store(tmp_path / "ks.db")
    store.bulk_insert_credentials([cred])
    # a run a process on this host left when it was killed, which cannot be carried on
    dead = Owner(me().host, 999_999, "boot:1")
    stuck = store.claim_run(subject=cred.id, credential_id=cred.id, rotator="generated",
                            plan={}, actor="schedule-test", owner=dead)
    alerter = Alerter(loaded.inventory.alerts, store)
    sched, _ = _scheduler(tmp_path, {"finish-due"}, alerter=alerter)
    ran = sched.run_due()
    assert len(ran) == 1, ran
    name, outcome = ran[0]
    assert name == "finish-due" and outcome.status == "failed", outcome
    assert outcome.error and "resumed" in outcome.error
    assert outcome.detail["resume_failed"] == [stuck]
    failed = [a for a in store.alerts(limit=100) if a["event"] == "rotation-failed"]
    assert len(failed) == 1 and failed[0]["subject"] == cred.id
    assert failed[0]["body"]["run_id"] == stuck
    assert "planned with another declaration" in failed[0]["body"]["error"]
    assert store.credential_holds(1)[0]["credential_id"] == cred.id, "one in its streak"
    row = store.schedule_job("finish-due")
    assert row is not None and row["last_status"] == "failed" and row["failures_in_row"] == 1
    store.close()
