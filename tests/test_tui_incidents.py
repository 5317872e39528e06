"""The console's `:incidents` with Pilot, against a real store and console.incidents: the list
(progress, the drill marker, the filter), one incident's checklist by phase, a task finished
with a note and evidence (in the store and the audit log), a bad evidence reference refused in
one line, read-only stripping every change, a task finished by another Store connection showing
up without a key pressed (and no SQL on the UI thread), the clock, close and export; one
incident over the sandbox (test_playbooks' world) with no value on screen; snapshots of the
list and the checklist in both themes."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_playbooks import World, world  # noqa: F401  (world: the sandbox fixture)
from test_tui import SIZE, make_app, notes, screen_text, settle, sync_test, type_filter
from tui_support import FROZEN, grants_for, synthetic

from console import incidents
from console.audit import AuditLog
from console.store import Store
from screens.app import KeyshiftApp
from screens.incidents import IncidentScreen, IncidentsScreen, TaskPrompt, clock
from screens.prompts import ConfirmPrompt
from screens.theme import state_style

GROUPS = ("incident-read", "list-load", "incident-task", "incident-export")
MUTATING_IDS = {"incident.start", "incident.done", "incident.skip", "incident.run",
                "incident.close"}


@pytest.fixture(autouse=True)
def _home(keyshift_home: Path) -> Path:
    return keyshift_home


@pytest.fixture
def ids(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Incident ids in the order they are opened (the randomness under them made fixed, so a
    snapshot names the same incidents every run)."""
    drawn = iter(["A1B2C3", "D4E5F6", "0A0B0C", "1D1E1F"])
    # only console.incidents' name for the module: nothing else draws from this
    monkeypatch.setattr(incidents, "secrets",
                        SimpleNamespace(token_hex=lambda _n: next(drawn).lower()))
    yield ["INC-A1B2C3", "INC-D4E5F6"]


@pytest.fixture
def store(tmp_path: Path, ids: list[str]) -> Iterator[Store]:
    """Synthetic credentials, some with grants (so an agent has a reach), and two incidents:
    agent-0 compromised (task 1 done with a note and evidence, task 2 started) and a leaked
    credential with nothing done."""
    s = Store(tmp_path / "keyshift.db")
    creds = [synthetic(i) for i in range(30)]
    held = [c for c in creds if c.source == "vault-prod" and c.agents][:6]
    sync_id = s.begin_sync(["vault-prod"], "test")
    s.apply_source(sync_id, "vault-prod", held, [g for c in held for g in grants_for(c)],
                   [], [], True)
    s.bulk_insert_credentials([c for c in creds if c not in held])
    audit = AuditLog(s)
    first = incidents.open_incident(s, audit, None, actor="alice", agent="agent-0",
                                    now=FROZEN - timedelta(minutes=75))
    incidents.update_task(s, audit, first["id"], 1, "done", actor="alice",
                          note="declared in #ops", evidence=["audit:1"],
                          now=FROZEN - timedelta(minutes=70))
    incidents.update_task(s, audit, first["id"], 2, "start", actor="alice",
                          now=FROZEN - timedelta(minutes=60))
    incidents.open_incident(s, audit, None, actor="bob", credential=held[1].name,
                            now=FROZEN - timedelta(hours=3))
    yield s
    s.close()


async def until(pilot: Any, done: Callable[[], bool], what: str, tries: int = 400) -> None:
    for _ in range(tries):
        if done():
            await settle(pilot)
            return
        await pilot.pause(0.05)
    raise AssertionError(f"never happened: {what}\n{screen_text(pilot.app)}")


async def settled(pilot: Any) -> None:
    await settle(pilot)
    await until(pilot, lambda: not any(
        w.is_running and w.group in GROUPS for w in pilot.app.workers), "reads")


async def open_incident_view(pilot: Any, incident_id: str) -> IncidentScreen:
    """`:inc`, the filter down to one incident, enter on it."""
    await pilot.press("colon", *"inc", "enter")
    await settled(pilot)
    assert isinstance(pilot.app.screen, IncidentsScreen)
    await type_filter(pilot, f"id:{incident_id}")
    assert [r["id"] for r in pilot.app.screen.shown] == [incident_id]
    await pilot.press("enter")  # leave the box
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(pilot.app.screen, IncidentScreen)
                and pilot.app.screen.incident is not None, "the incident")
    return pilot.app.screen


def move_to(screen: IncidentScreen, position: int) -> None:
    screen.table.move_cursor(row=position - 1, animate=False)


def position_of(store: Store, incident_id: str, step: str) -> int:
    """A step's position in the incident's checklist (the template decides the order)."""
    return next(t["position"] for t in incidents.load(store, incident_id)["tasks"]
                if t["step"] == step)


def header_keys(app: KeyshiftApp) -> str:
    return screen_text(app).splitlines()[1]


# --- the list and one incident ------------------------------------------------------------------


@sync_test
async def test_the_list_shows_progress_and_opens_the_checklist_by_phase(
    store: Store, ids: list[str]
) -> None:
    agent_inc, cred_inc = ids
    n = len(incidents.load(store, agent_inc)["tasks"])
    m = len(incidents.load(store, cred_inc)["tasks"])
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("colon", *"incidents", "enter")
        await settled(pilot)
        screen = app.screen
        assert isinstance(screen, IncidentsScreen)
        rows = {r["id"]: r for r in screen.rows}
        assert [r["id"] for r in screen.rows] == [agent_inc, cred_inc]  # newest first
        assert (rows[agent_inc]["finished"], rows[agent_inc]["tasks"]) == (1, n)
        assert (rows[cred_inc]["finished"], rows[cred_inc]["drill"]) == (0, "no")
        text = screen_text(app)
        assert f"1/{n}" in text and f"0/{m}" in text and "2 incidents" in text
        assert "Compromised agent agent-0" in text and "leaked-credential" in text
        await type_filter(pilot, "kind:leaked-credential")
        assert [r["id"] for r in screen.shown] == [cred_inc]
        await pilot.press("escape")  # clears the filter
        await settled(pilot)
        assert len(screen.shown) == 2
        assert screen.current["id"] == cred_inc  # the cursor stayed on the row it was on
        await pilot.press("up", "enter")  # the compromised agent
        await until(pilot, lambda: isinstance(app.screen, IncidentScreen)
                    and app.screen.incident is not None, "the incident")
        inc = app.screen
        assert isinstance(inc, IncidentScreen) and inc.incident_id == agent_inc
        text = screen_text(app)
        lines = text.splitlines()
        assert f"incidents › incident {agent_inc}" in lines[0]  # noqa: RUF001
        # the clock: open since 75 minutes on the app's clock; the progress; the scope
        assert "open for 1h 15m 00s" in text and f"1/{n} tasks finished" in text
        assert "agent agent-0: 4 credential(s) in reach" in text
        # phases each named once, on their first task; every task's CSF id
        for phase in ("DETECT", "RESPOND", "RECOVER"):
            assert sum(phase in line for line in lines) == 1, phase
        for csf in ("DE.AE-08", "RS.MA-03", "RS.MI-01", "RS.AN-03", "RS.MI-02", "ID.IM-03"):
            assert csf in text, csf
        first = inc.table.get_row("1")
        assert [str(c) for c in first[5:]] == ["done", "alice", "10:50:00", "10:50:00",
                                              "declared in #ops · audit:1"]
        assert inc.table.get_cell("1", "status").style == state_style(app, "done")
        assert inc.table.get_cell("2", "status").style == state_style(app, "running")
        # the task under the cursor, whole: the command keyshift suggests for eradicate
        move_to(inc, position_of(store, agent_inc, "eradicate"))
        await settle(pilot)
        panel = screen_text(app)
        assert "keyshift playbook run rotate-agent --agent agent-0" in panel
        move_to(inc, position_of(store, agent_inc, "review"))
        await settle(pilot)
        assert "CloudTrail" in screen_text(app)  # what keyshift cannot show, said so
        await pilot.press("escape")
        await settled(pilot)
        assert isinstance(app.screen, IncidentsScreen)


@sync_test
async def test_a_task_done_with_a_note_and_evidence_lands_in_the_store(
    store: Store, ids: list[str]
) -> None:
    agent_inc, _ = ids
    audit_before = len(list(AuditLog(store).entries()))
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_incident_view(pilot, agent_inc)
        contain = position_of(store, agent_inc, "contain")
        move_to(screen, contain)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, TaskPrompt), "the prompt")
        assert f"Finish task {contain} of {agent_inc}" in screen_text(app)
        await pilot.press(*"revoked at the issuer", "enter", *"audit:2", "enter")
        await until(pilot, lambda: screen.incident is not None
                    and screen.incident["tasks"][contain - 1]["status"] == "done",
                    "the task done")
        await settled(pilot)
        assert app.screen is screen
        assert [str(c) for c in screen.table.get_row(str(contain))[5:7]] == ["done", "tester"]
        assert "revoked at the issuer · audit:2" in screen_text(app)
        assert any(m == f"{agent_inc} task {contain}: done" for m in notes(app))
        # a reference to nothing: one line, the task unchanged
        move_to(screen, contain + 1)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, TaskPrompt), "the prompt")
        await pilot.press("enter", *"audit:99999", "enter")
        await until(pilot, lambda: any("audit:99999" in m for m in notes(app)), "the refusal")
        await settled(pilot)
        refusal = next(m for m in notes(app) if "audit:99999" in m)
        assert "no audit entry 99999" in refusal and "\n" not in refusal
        assert "Traceback" not in screen_text(app)
    task = store.incident_tasks(agent_inc)[contain - 1]
    assert (task["status"], task["actor"], task["note"]) == ("done", "tester",
                                                             "revoked at the issuer")
    assert task["evidence"] == [{"kind": "audit", "ref": "2"}]
    assert incidents.load(store, agent_inc)["tasks"][contain - 1]["done_at"] == (
        "2026-11-20T12:00:00.000000Z")  # the app's clock
    assert store.incident_tasks(agent_inc)[contain]["status"] == "todo"
    entries = list(AuditLog(store).entries())
    assert len(entries) == audit_before + 1
    assert (entries[-1].action, entries[-1].target, entries[-1].actor) == (
        "incident.task", agent_inc, "tester")


@sync_test
async def test_read_only_strips_every_change_and_keeps_export(
    store: Store, ids: list[str]
) -> None:
    from screens.palette import commands

    agent_inc, _ = ids
    app = make_app(store, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_incident_view(pilot, agent_inc)
        header = header_keys(app)
        assert "Export" in header and "Start" not in header and "Done" not in header
        assert "Run automated" not in header and "Close" not in header
        live = {b.binding.id for b in screen.active_bindings.values()
                if screen.check_action(b.binding.action, ())}
        assert live & MUTATING_IDS == set() and "incident.export" in live
        assert "read-only: task changes, runs and close are off" in screen_text(app)
        system = {c.title for c in app.get_system_commands(screen)}
        assert "Export" in system and not {"Start", "Done", "Skip", "Close"} & system
        for key in ("s", "d", "x", "r", "C"):
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is screen, key  # no prompt opened
        await pilot.press("question_mark")
        await pilot.pause()
        help_text = screen_text(app)
        assert "incident.export" in help_text
        assert "incident changes" in " ".join(help_text.split())  # the caption says so
        assert not any(ident in help_text for ident in MUTATING_IDS)
        names = {c.name for c in commands(app)}
        assert "incidents: Export" in names and "Go to incidents" in names
    assert [t["status"] for t in store.incident_tasks(agent_inc)][:3] == ["done", "doing",
                                                                          "todo"]


@sync_test
async def test_a_task_finished_elsewhere_shows_up_live_and_the_ui_thread_runs_no_sql(
    store: Store, ids: list[str]
) -> None:
    agent_inc, _ = ids
    statements: list[str] = []
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_incident_view(pilot, agent_inc)
        assert str(screen.table.get_cell("5", "status")) == "todo"
        store._conn().set_trace_callback(statements.append)  # the UI thread's connection
        other = Store(store.path)  # as `keyshift incident task` from another terminal
        try:
            incidents.update_task(other, AuditLog(other), agent_inc, 5, "done",
                                  actor="carol", note="checked by hand",
                                  now=FROZEN - timedelta(minutes=5))
        finally:
            other.close()
        await until(pilot, lambda: str(screen.table.get_cell("5", "status")) == "done",
                    "the task done elsewhere")
        text = screen_text(app)
        n = len(screen.incident["tasks"])  # type: ignore[index]
        assert "carol" in text and "checked by hand" in text and f"2/{n} tasks finished" in text
        store._conn().set_trace_callback(None)
    assert statements == []


@sync_test
async def test_the_clock_runs_from_the_apps_clock_and_stops_at_close(
    store: Store, ids: list[str]
) -> None:
    agent_inc, _ = ids
    now = [FROZEN]
    app = make_app(store, now=lambda: now[0])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_incident_view(pilot, agent_inc)
        assert "open for 1h 15m 00s" in screen_text(app)
        now[0] = FROZEN + timedelta(minutes=2, seconds=5)
        await until(pilot, lambda: "open for 1h 17m 05s" in screen_text(app), "the tick")
        # close with open tasks: a note, then the confirmation that they become skipped
        await pilot.press("C")
        await until(pilot, lambda: isinstance(app.screen, TaskPrompt), "the note")
        await pilot.press(*"drill over", "enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmPrompt), "the confirmation")
        n = len(screen.incident["tasks"])  # type: ignore[index]
        still = ", ".join(str(p) for p in range(2, n + 1))  # task 1 done; 2 doing; the rest todo
        assert f"{n - 1} task(s) still open ({still})" in screen_text(app)
        await pilot.press("y")
        await until(pilot, lambda: screen.incident is not None
                    and screen.incident["status"] == "closed", "the close")
        now[0] = FROZEN + timedelta(hours=5)
        await pilot.pause(1.2)
        await settled(pilot)
        text = screen_text(app)
        assert "closed after 1h 17m 05s" in text, text
        # a closed incident no longer changes: its keys are off
        assert "Start" not in header_keys(app) and "Export" in header_keys(app)
        await pilot.press("d")
        await pilot.pause()
        assert app.screen is screen
    inc = incidents.load(store, agent_inc)
    assert inc["status"] == "closed" and inc["close_note"] == "drill over"
    assert [t["status"] for t in inc["tasks"]][1:] == ["skipped"] * (len(inc["tasks"]) - 1)


@sync_test
async def test_export_writes_markdown_into_the_data_dir_privately(
    store: Store, ids: list[str], keyshift_home: Path
) -> None:
    agent_inc, _ = ids
    app = make_app(store, read_only=True)  # export reads only
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("colon", *"inc", "enter")
        await settled(pilot)
        await pilot.press("e")  # from the list, on the first (newest) incident
        await until(pilot, lambda: any("exported to" in m for m in notes(app)), "the export")
    path = keyshift_home / "exports" / f"{agent_inc}.md"
    assert any(str(path) in m for m in notes(app))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert text.startswith(f"# {agent_inc}: Compromised agent agent-0")
    anchor = AuditLog(store).anchor()
    assert f"keyshift audit verify --anchor {anchor.text}" in text
    assert "note: declared in #ops" in text


def test_the_clock_reads_minutes_hours_and_days() -> None:
    at = "2026-11-20T10:00:00.000000Z"
    assert clock(at, None, datetime(2026, 11, 20, 10, 0, 7, tzinfo=UTC)) == "0m 07s"
    assert clock(at, "2026-11-20T12:03:04.000000Z", FROZEN) == "2h 03m 04s"
    assert clock(at, None, datetime(2026, 11, 22, 11, 0, 0, tzinfo=UTC)) == "2d 1h 00m 00s"
    assert clock(at, None, datetime(2026, 11, 20, 9, 0, tzinfo=UTC)) == "0m 00s"  # never < 0


# --- against the sandbox ------------------------------------------------------------------------


@sync_test
async def test_an_incident_over_the_sandbox_shows_its_reach_and_no_value(
    world: World,  # noqa: F811
) -> None:
    w = world
    inc = incidents.open_incident(w.store, w.audit, w.loaded, actor="inc-test", agent=w.agent)
    app = make_app(w.store, w.loaded, now=lambda: datetime.now(UTC))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_incident_view(pilot, inc["id"])
        texts = [screen_text(app)]
        assert f"agent {w.agent}: 4 credential(s) in reach" in texts[0]
        for position in range(1, 11):
            move_to(screen, position)
            await settle(pilot)
            texts.append(screen_text(app))
        assert any(f"rotate-agent --agent {w.agent}" in t for t in texts)
    w.remember_values()
    assert w.values
    for value in set(w.values):
        assert all(value not in t for t in texts)


@sync_test
async def test_r_runs_the_automated_tasks_live_against_the_sandbox(
    world: World,  # noqa: F811
) -> None:
    from console.incidents.runner import plan

    w = world
    w.remember_values()
    inc = incidents.open_incident(w.store, w.audit, w.loaded, actor="inc-test", agent=w.agent)
    planned = [(t["position"], t["step"]) for t in plan(inc)]
    steps = [step for _p, step in planned]
    assert {"contain", "review", "eradicate", "verify"} <= set(steps), steps
    app = make_app(w.store, w.loaded, engine_factory=w.engine,
                   now=lambda: datetime.now(UTC))
    seen: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_incident_view(pilot, inc["id"])
        assert f"{len(planned)} automated task(s) open" in screen_text(app)
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmPrompt), "the confirmation")
        text = screen_text(app)
        assert f"Run the {len(planned)} automated task(s) of {inc['id']} now?" in text
        for position, step in planned:
            assert f"{position}. {step} (" in text, step
        await pilot.press("y")
        finished = lambda: any("automated tasks" in m for m in notes(app))  # noqa: E731
        for _ in range(6000):  # a short run may be over before a frame is looked at
            seen.append(screen_text(app))
            if finished():
                break
            await pilot.pause(0.01)
        await app.workers.wait_for_complete()
        await pilot.pause(1.2)  # one more poll
        await settled(pilot)
        final = screen_text(app)
        seen.append(final)
        assert any("automated tasks" in m for m in notes(app)), notes(app)
        after = incidents.load(w.store, inc["id"])
        statuses = {t["step"]: t["status"] for t in after["tasks"]}
        shown = {t["step"]: str(screen.table.get_cell(str(t["position"]), "status"))
                 for t in after["tasks"]}
        # a task not done failed or waits for a person (its note's first word says which)
        outcome = {t["step"]: t["status"] if t["status"] != "doing"
                   else (t["note"] or "").split(":", 1)[0] for t in after["tasks"]}
        for _position, step in planned:
            assert statuses[step] in ("done", "doing"), (step, statuses[step])
            assert outcome[step] in ("done", "failed", "waiting"), (step, outcome[step])
            assert shown[step] == outcome[step], step
        assert statuses["declare"] == "todo" and shown["declare"] == "todo"  # manual: untouched
        # the line below followed the runner's events, each task started then finished
        starts = [e for e in screen.run_events if e.startswith("running task")
                  and e.endswith("…")]
        ends = [e for e in screen.run_events if not e.startswith("running")]
        assert starts == [f"running task {p} ({s}) …" for p, s in planned], screen.run_events
        assert ends == [f"task {p} ({s}): {outcome[s]}" for p, s in planned], screen.run_events
        eradicate = next(t for t in after["tasks"] if t["step"] == "eradicate")
        runs = [e["ref"] for e in eradicate["evidence"] if e["kind"] == "run"]
        assert runs and eradicate["actor"] == "tester"
        move_to(screen, eradicate["position"])
        await settle(pilot)
        assert f"run:{runs[0]}" in screen_text(app)  # the evidence, whole, in the panel
        assert plan(after) == [t for t in plan(after) if t["status"] == "doing"]
    w.remember_values()
    for value in set(w.values):
        assert all(value not in t for t in seen)


# --- snapshots ----------------------------------------------------------------------------------


def _snap_app(store: Store, theme: str) -> KeyshiftApp:
    return KeyshiftApp(store, None, AuditLog(store), actor="tester", theme=theme,
                       now=lambda: FROZEN, start="incidents")


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_snapshot_incidents_list(snap_compare, store: Store, theme: str) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await settled(pilot)

    assert snap_compare(_snap_app(store, theme), terminal_size=(140, 16), run_before=run_before)


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_snapshot_incident_checklist(snap_compare, store: Store, theme: str) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await settled(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: getattr(pilot.app.screen, "incident", None) is not None,
                    "the incident")
        await settled(pilot)

    assert snap_compare(_snap_app(store, theme), terminal_size=(150, 28), run_before=run_before)


# --- :drills ------------------------------------------------------------------------------------


async def drill_settled(pilot: Any) -> None:
    await settle(pilot)
    await until(pilot, lambda: not any(
        w.is_running and w.group in ("list-load", "drill-read", "drill-open")
        for w in pilot.app.workers), "drill reads")


async def open_drills(pilot: Any, scenario: str) -> Any:
    """`:dr`, the cursor on ``scenario`` (filtered), the table focused."""
    from screens.drills import DrillsScreen

    await pilot.press("colon", *"dr", "enter")
    await drill_settled(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, DrillsScreen)
    await type_filter(pilot, f"name:{scenario}")
    assert [r["name"] for r in screen.shown] == [scenario]
    await pilot.press("enter")  # leave the box
    return screen


@sync_test
async def test_drills_lists_scenarios_and_read_only_strips_running(
    tmp_path: Path, keyshift_home: Path
) -> None:
    from console.drills.loader import builtin_scenarios
    from screens.drills import DrillsScreen
    from screens.palette import commands

    folder = keyshift_home / "drills"
    folder.mkdir()
    (folder / "broken.yaml").write_text("name: broken\ntitel: x\n")
    store = Store(tmp_path / "k.db")
    app = make_app(store, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("colon", *"drills", "enter")
        await drill_settled(pilot)
        screen = app.screen
        assert isinstance(screen, DrillsScreen)
        assert [r["name"] for r in screen.rows] == list(builtin_scenarios())
        assert all(r["last_score"] is None and r["runs"] == 0 for r in screen.rows)
        status = screen_text(app).splitlines()[-1]
        assert "broken.yaml:" in status and "read-only: running and verifying" in status
        header = header_keys(app)
        assert "Report" in header and "Run --auto" not in header and "Verify" not in header
        names = {c.name for c in commands(app)}
        assert "drills: Report" in names and "drills: Run --auto" not in names
        await pilot.press("r")
        await pilot.pause()
        assert app.screen is screen  # stripped: no confirmation
    assert store.drill_runs() == []


@sync_test
async def test_a_drill_runs_auto_from_the_console_and_its_scores_show(
    sandbox: Any, tmp_path: Path,
) -> None:
    from console import drills
    from screens.drills import DrillRunScreen, DrillsScreen

    store = Store(tmp_path / "main.db")
    audit = AuditLog(store)
    # a response that never revokes: the attacker's copy still works, the drill says so
    bad = drills.run_drill(store, audit, drills.get_scenario("provider-key-leaked"),
                           actor="drill-test", skip=["revoke"])
    assert bad["status"] == "failed"
    app = make_app(store, now=lambda: datetime.now(UTC))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_drills(pilot, "provider-key-leaked")
        assert isinstance(screen, DrillsScreen)
        assert [r["id"] for r in screen.runs] == [bad["id"]]
        assert "stolen-refused(llm-key)" in screen_text(app)
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmPrompt), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: len(screen.runs) == 2
                    and screen.runs[0]["status"] not in ("running",)
                    and any("drill DRL-" in m for m in notes(app)), "the run", tries=2400)
        await drill_settled(pilot)
        good = store.drill_runs("provider-key-leaked")[0]
        assert good["status"] == "passed" and good["id"] != bad["id"]
        assert any(f"drill {good['id']} (provider-key-leaked): passed" in m for m in notes(app))
        row = next(r for r in screen.rows if r["name"] == "provider-key-leaked")
        assert row["last_score"] == good["score"] and row["runs"] == 2
        text = screen_text(app)
        assert f"{good['score']:g} (passed)" in text
        # enter on the failed run: its ratings, the failed check and the plan
        await pilot.press("tab")
        runs = screen.query_one("#runs")
        assert app.focused is runs
        runs.move_cursor(row=1, animate=False)  # type: ignore[attr-defined]
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DrillRunScreen)
                    and app.screen.run is not None, "the run's scores")
        text = screen_text(app)
        lines = {line.split("  ")[0].strip(): line for line in text.splitlines()}
        assert f"{bad['score']:g} / 100" in lines["score"], (bad["score"], lines["score"])
        assert lines["still valid"].split()[-1] == "llm-key"
        assert "FAILED" in text and "stolen-refused" in text and "improvement plan" in text
        for cap, r in bad["detail"]["scores"]["ratings"].items():
            assert cap in text and r["rating"] in text
        await pilot.press("e")
        await until(pilot, lambda: any("report written to" in m for m in notes(app)),
                    "the report")
    report = Path(os.environ["KEYSHIFT_HOME"]) / "exports" / f"{bad['id']}.md"
    assert stat.S_IMODE(os.stat(report).st_mode) == 0o600
    assert "## What went wrong" in report.read_text()


@sync_test
async def test_a_drill_with_a_person_opens_its_incident_over_the_drill_store(
    sandbox: Any, tmp_path: Path,
) -> None:
    store = Store(tmp_path / "main.db")
    app = make_app(store, now=lambda: datetime.now(UTC))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await open_drills(pilot, "provider-key-leaked")
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, ConfirmPrompt), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, IncidentScreen)
                    and app.screen.incident is not None, "the drill's incident", tries=2400)
        inc = app.screen
        assert isinstance(inc, IncidentScreen)
        (run,) = store.drill_runs()
        assert run["status"] == "awaiting-response"
        assert inc.incident_id == run["detail"]["incident"]
        assert inc.store.path == Path(run["detail"]["drill_db"])
        assert f"(drill {run['id']})" in screen_text(app).splitlines()[0]
        assert store.incidents() == []  # the user's store has no incident: the drill's has
        move_to(inc, 1)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, TaskPrompt), "the prompt")
        await pilot.press(*"saw the alert", "enter", "enter")
        await until(pilot, lambda: inc.incident is not None
                    and inc.incident["tasks"][0]["status"] == "done", "task 1 done")
        assert inc.store.incident_tasks(inc.incident_id)[0]["note"] == "saw the alert"
        await pilot.press("escape")
        await drill_settled(pilot)
        assert app.screen is screen
        assert "waits for you" in screen_text(app)
        await pilot.press("tab", "v")
        await until(pilot, lambda: isinstance(app.screen, ConfirmPrompt), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: store.drill_runs()[0]["status"] != "awaiting-response"
                    and any("drill DRL-" in m for m in notes(app)), "the verify", tries=2400)
        await drill_settled(pilot)
    done = store.drill_runs()[0]
    # a person who only declared it: the stolen key still works, and the drill says so
    assert done["status"] == "failed"
    assert {c["check"]: c["ok"] for c in done["detail"]["checks"]}["stolen-refused"] is False
    assert done["detail"]["scores"]["checklist"]["done"] >= 1
