"""The console's `:playbooks` with Pilot: the list (built-ins, the user's files, a bad file,
the filter, the palette, read-only), one playbook's selection against select(), and runs
against the real sandbox (test_playbooks' world: a KV mount, an AppRole agent, a fresh store
synced by the real sync): a run to the end with its manual step confirmed, a stop mid-run, a
dry run under read-only; snapshots of the list in both themes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_playbooks import World, world  # noqa: F401  (world: the sandbox fixture)
from test_tui import FROZEN, SIZE, make_app, notes, screen_text, settle, sync_test, type_filter

from console.audit import AuditLog
from console.playbooks import BUILTIN_NAMES, get_playbook, select
from console.store import Store
from screens.app import KeyshiftApp
from screens.playbooks import (
    ParamsPrompt,
    PlaybookConfirm,
    PlaybookRunScreen,
    PlaybookScreen,
    PlaybooksScreen,
)
from screens.prompts import ConfirmPrompt
from screens.theme import state_style

PROD = 'selection: {filter: "env:prod !name:app/manual"}\ngrace: 0\n'
GROUPS = ("playbook-read", "playbook-dry-run", "rotate-run")


@pytest.fixture(autouse=True)
def _home(keyshift_home: Path) -> Path:
    return keyshift_home


def write_playbook(home: Path, name: str, text: str) -> None:
    folder = home / "playbooks"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(text)


async def until(pilot: Any, done: Callable[[], bool], what: str, tries: int = 1200) -> None:
    """Wait (bounded) for ``done``; the screen's reads and the run happen in threads."""
    for _ in range(tries):
        if done():
            await settle(pilot)
            return
        await pilot.pause(0.05)
    raise AssertionError(f"never happened: {what}\n{screen_text(pilot.app)}")


async def settled(pilot: Any) -> None:
    """settle, and this view's own reads."""
    await settle(pilot)
    await until(pilot, lambda: not any(
        w.is_running and w.group == "playbook-read" for w in pilot.app.workers), "reads")


def live_app(w: World, **kw: Any) -> KeyshiftApp:
    return make_app(w.store, w.loaded, engine_factory=w.engine, now=lambda: datetime.now(UTC),
                    **kw)


async def open_playbook(pilot: Any, name: str, key: str = "enter") -> None:
    """`:playbooks`, the filter down to ``name``, then ``key`` on it."""
    await pilot.press("colon", *"playbooks", "enter")
    await settled(pilot)
    assert isinstance(pilot.app.screen, PlaybooksScreen)
    await type_filter(pilot, f"name:{name}")
    assert [r["name"] for r in pilot.app.screen.shown] == [name]
    await pilot.press("enter")  # leave the box
    await pilot.press(key)
    await settled(pilot)


def step_rows(screen: PlaybookRunScreen) -> list[tuple[str, str | None, str, str]]:
    return [(r["action"], r["credential_id"], r["status"], r["detail"])
            for _p, r in sorted(screen.steps.items())]


# --- the list ---------------------------------------------------------------------------------


@sync_test
async def test_the_list_shows_builtins_and_the_users_own_and_filters(
    tmp_path: Path, keyshift_home: Path
) -> None:
    write_playbook(keyshift_home, "weekly", (
        "description: prod keys, weekly\nselection: {filter: 'env:prod'}\nconcurrency: 2\n"
        "on_failure: continue\nmanual_steps: [{text: tell the team, when: after}]\n"))
    store = Store(tmp_path / "k.db")
    app = make_app(store, None)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("colon", *"pb", "enter")  # the alias
        await settled(pilot)
        screen = app.screen
        assert isinstance(screen, PlaybooksScreen)
        assert [r["name"] for r in screen.rows] == [*BUILTIN_NAMES, "weekly"]
        rows = {r["name"]: r for r in screen.rows}
        agent = get_playbook("rotate-agent")
        assert rows["rotate-agent"] | {"description": ""} == {
            "name": "rotate-agent", "origin": "built-in", "selects": "agent: {agent}",
            "kind": "agent", "action": "rotate", "params": "agent", "concurrency": "4",
            "on_failure": "continue", "manual": "0", "description": ""}
        assert rows["rotate-agent"]["description"] == agent.description
        assert rows["rotate-due"]["params"] == "[sensitivity] [expiring_within]"
        assert rows["finish-due"]["action"] == "finish"
        assert rows["weekly"]["origin"] == "weekly.yaml" and rows["weekly"]["manual"] == "1"
        text = screen_text(app)
        assert "weekly.yaml" in text and "agent: {agent}" in text and "6 playbooks" in text
        await type_filter(pilot, "origin:built-in on_failure:stop")
        assert [r["name"] for r in screen.shown] == ["rotate-one"]
        await pilot.press("escape")
        await type_filter(pilot, "action:finish")
        assert [r["name"] for r in screen.shown] == ["finish-due"]
        await pilot.press("escape")
        # a bad file: named, with its line and column, and the built-ins still listed
        write_playbook(keyshift_home, "broken", "selection: {agnet: x}\n")
        await pilot.press("ctrl+l")
        await settled(pilot)
        assert [r["name"] for r in screen.rows] == list(BUILTIN_NAMES)
        status = screen_text(app).splitlines()[-1]
        assert "broken.yaml:1:" in status and "agnet" in status, status


@sync_test
async def test_palette_and_help_list_the_playbook_keys(tmp_path: Path) -> None:
    from screens.palette import commands

    store = Store(tmp_path / "k.db")
    app = make_app(store, None)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        found = {c.name: c for c in commands(app)}
        for name in ("Go to playbooks", "playbooks: Open", "playbooks: Run",
                     "playbooks: Dry run"):
            assert name in found, name
        assert "key x · playbooks.run" in found["playbooks: Run"].help
        await pilot.press("colon", *"playbooks", "enter")
        await settled(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        text = screen_text(app)
        for ident in ("playbooks.run", "playbooks.dry-run", "list.filter"):
            assert ident in text, ident


@sync_test
async def test_read_only_strips_running_and_says_so(tmp_path: Path) -> None:
    from screens.palette import commands

    store = Store(tmp_path / "k.db")
    app = make_app(store, None, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        names = {c.name for c in commands(app)}
        assert "playbooks: Run" not in names and "playbooks: Dry run" in names
        await pilot.press("colon", *"playbooks", "enter")
        await settled(pilot)
        text = screen_text(app)
        header = text.splitlines()[1]
        assert "Dry run" in header and " Run " not in header, header
        assert "read-only: running is off" in text.splitlines()[-1]
        await pilot.press("x")
        await settled(pilot)
        assert isinstance(app.screen, PlaybooksScreen)  # the key is gone: nothing opened
        await pilot.press("down", "down", "down", "down")  # finish-due: needs no parameter
        await pilot.press("enter")
        await settled(pilot)
        assert isinstance(app.screen, PlaybookScreen) and app.screen.pb.name == "finish-due"
        assert "read-only: running is off" in screen_text(app)
        await pilot.press("x")
        await settled(pilot)
        assert isinstance(app.screen, PlaybookScreen)
        assert app.screen.selected == []  # what it would finish now: nothing
    assert store.playbook_runs() == []


@sync_test
async def test_environments_to_pick_from_are_the_stores(tmp_path: Path) -> None:
    from tui_support import synthetic

    store = Store(tmp_path / "k.db")
    store.bulk_insert_credentials([synthetic(i) for i in range(40)])
    app = make_app(store, None)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_playbook(pilot, "rotate-environment")
        await until(pilot, lambda: isinstance(app.screen, ParamsPrompt), "the parameters")
        field = app.screen.query_one("#param-environment")
        options = [v for _label, v in field._options][1:]  # type: ignore[attr-defined]
        assert options == ["dev", "prod", "staging"] == store.environments()
        field.value = "staging"  # type: ignore[attr-defined]
        await pilot.click("#params-ok")
        await settled(pilot)
        screen = app.screen
        assert isinstance(screen, PlaybookScreen)
        expected = select(get_playbook("rotate-environment"), {"environment": "staging"},
                          store=store, loaded=None, now=FROZEN)
        assert expected and [s.credential_id for s in screen.selected or []] == [
            s.credential_id for s in expected]
        assert f"would rotate {len(expected)} now" in screen_text(app)


@sync_test
async def test_a_run_that_cannot_start_says_why_in_one_line(
    tmp_path: Path, keyshift_home: Path
) -> None:
    write_playbook(keyshift_home, "checklist",
                   "selection: {runs: awaiting-revoke-due}\n"
                   "manual_steps: [{text: read the runbook}]\n")
    store = Store(tmp_path / "k.db")
    app = make_app(store, None)  # the inventory did not load
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_playbook(pilot, "checklist", key="x")
        await until(pilot, lambda: isinstance(app.screen, PlaybookConfirm), "the confirmation")
        assert "read the runbook" in screen_text(app)
        await pilot.press("y")
        await until(pilot, lambda: getattr(app.screen, "state", "") == "failed", "the refusal")
        await app.workers.wait_for_complete()
        await settle(pilot)
        text = screen_text(app)
        summary = text.rstrip().splitlines()[-1]
        assert "not run: " in summary and "rotate needs the inventory file" in summary
        assert any("needs the inventory file" in m for m in notes(app))
        assert "Traceback" not in text
        await pilot.press("escape")  # nothing runs: back is allowed
        await settled(pilot)
        assert isinstance(app.screen, PlaybookScreen)
    assert store.playbook_runs() == []


# --- against the sandbox ------------------------------------------------------------------------


@sync_test
async def test_opening_rotate_agent_asks_for_the_agent_and_shows_what_select_returns(
    world: World,  # noqa: F811
) -> None:
    w = world
    app = live_app(w)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_playbook(pilot, "rotate-agent")
        await until(pilot, lambda: isinstance(app.screen, ParamsPrompt), "the parameters")
        prompt = app.screen
        field = prompt.query_one("#param-agent")
        options = [value for _label, value in field._options]  # type: ignore[attr-defined]
        assert w.agent in options  # picked from the agents keyshift knows, not typed
        await pilot.press("enter")  # open the list
        await pilot.pause()
        for _ in range(options.index(w.agent)):  # the blank line is the first
            await pilot.press("down")
        await pilot.press("enter")  # pick it: focus moves on to OK
        await pilot.pause()
        await pilot.pause()
        assert field.value == w.agent  # type: ignore[attr-defined]
        assert app.focused is prompt.query_one("#params-ok")
        await pilot.press("enter")
        await settled(pilot)
        screen = app.screen
        assert isinstance(screen, PlaybookScreen) and screen.params == {"agent": w.agent}
        expected = select(get_playbook("rotate-agent"), {"agent": w.agent}, store=w.store,
                          loaded=w.loaded, now=datetime.now(UTC))
        assert len(expected) == 4
        assert [(s.position, s.credential_id, s.reason) for s in screen.selected or []] == [
            (s.position, s.credential_id, s.reason) for s in expected]
        text = screen_text(app)
        assert "would rotate 4 now" in text and f"agent = {w.agent}" in text
        for s in expected:
            assert s.credential_id in text and (s.reason or "") in text
        # p again, the agent cleared: a required parameter is refused in the prompt
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, ParamsPrompt), "the prompt")
        app.screen.query_one("#param-agent").clear()  # type: ignore[attr-defined]
        await pilot.click("#params-ok")
        await pilot.pause()
        assert isinstance(app.screen, ParamsPrompt)
        assert "needs --agent" in screen_text(app)
        await pilot.press("escape")
        await settled(pilot)
        assert app.screen.params == {"agent": w.agent}  # cancelled: unchanged
    assert w.store.rotation_runs(limit=10) == []


@sync_test
async def test_a_run_shows_each_step_done_and_moves_the_server_versions(
    world: World, keyshift_home: Path  # noqa: F811
) -> None:
    w = world
    write_playbook(keyshift_home, "prod",
                   PROD + "manual_steps: [{text: tell team-x, when: after}]\n")
    before = {p: w.version(p) for p in ("app/a", "app/b", "app/c", "app/manual", "other/d")}
    app = live_app(w)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_playbook(pilot, "prod", key="x")
        await until(pilot, lambda: isinstance(app.screen, PlaybookConfirm), "the confirmation")
        text = screen_text(app)
        assert "Run playbook prod: rotate 3" in text and "tell team-x" in text
        for path in ("app/a", "app/b", "app/c"):
            assert w.cid(path) in text
        assert w.cid("app/manual") not in text
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, ConfirmPrompt), "the manual step")
        assert "tell team-x" in screen_text(app)
        run = app.screen_stack[-2]
        assert isinstance(run, PlaybookRunScreen)
        # the rotations ran before the step after them asked
        assert [r[2] for r in step_rows(run)] == ["done", "done", "done", "running"]
        await pilot.press("y")
        await until(pilot, lambda: run.result is not None, "the end of the run")
        await app.workers.wait_for_complete()
        await settle(pilot)
        assert app.screen is run
        rows = step_rows(run)
        assert [(a, c, s) for a, c, s, _d in rows] == [
            ("rotate", w.cid("app/a"), "done"), ("rotate", w.cid("app/b"), "done"),
            ("rotate", w.cid("app/c"), "done"), ("manual", None, "done")]
        for position in ("1", "4"):  # the state's colour in the theme in force, and its word
            cell = run.table.get_cell(position, "status")
            assert cell.plain == "done" and cell.style == state_style(app, "done")
        bar = run.query_one("#pbrun-bar")
        assert (bar.total, bar.progress) == (4, 4)  # type: ignore[attr-defined]
        text = screen_text(app)
        assert f"run {run.run_id[:12]}: completed (4 done)" in text  # type: ignore[index]
        assert text.count(" done ") >= 4
        assert any("completed (4 done)" in m for m in notes(app))
        await pilot.press("s")  # nothing left to stop
        assert not run.stop_event.is_set()
        await pilot.press("escape")
        await settled(pilot)
        assert isinstance(app.screen, PlaybookScreen)
    after = {p: w.version(p) for p in before}
    assert after == {**before, "app/a": before["app/a"] + 1, "app/b": before["app/b"] + 1,
                     "app/c": before["app/c"] + 1}
    row = w.store.get_playbook_run(run.run_id)
    assert row["status"] == "completed" and row["actor"] == "tester"
    rotated = {s.rotation_run_id for s in run.result.steps if s.rotation_run_id}  # type: ignore[union-attr]
    assert set(w.store.rotations_of_playbook_run(run.run_id)) == rotated and len(rotated) == 3
    w.remember_values()
    for value in set(w.values):
        assert value not in text


@sync_test
async def test_stop_mid_run_finishes_the_step_in_flight_and_starts_no_other(
    world: World, keyshift_home: Path  # noqa: F811
) -> None:
    w = world
    write_playbook(keyshift_home, "careful",
                   PROD + "concurrency: 1\nmanual_steps: [{text: freeze deploys}]\n")
    app = live_app(w)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_playbook(pilot, "careful", key="x")
        await until(pilot, lambda: isinstance(app.screen, PlaybookConfirm), "the confirmation")
        await pilot.press("y")
        # the manual step before the rotations is in flight: it waits for the person
        await until(pilot, lambda: isinstance(app.screen, ConfirmPrompt), "the manual step")
        run = app.screen_stack[-2]
        assert isinstance(run, PlaybookRunScreen)
        assert "playbook-run.stop" in {b.binding.id for b in run.active_bindings.values()}
        await app.run_action("stop", run)  # its key, s, while the prompt has the keyboard
        assert run.stop_event.is_set() and run.state == "stopping"
        await pilot.press("y")  # the step in flight finishes
        await until(pilot, lambda: run.result is not None, "the end of the run")
        await app.workers.wait_for_complete()
        await settle(pilot)
        assert [(a, s, d) for a, _c, s, d in step_rows(run)] == [
            ("manual", "done", "confirmed: freeze deploys"),
            ("rotate", "skipped", "stopped"), ("rotate", "skipped", "stopped"),
            ("rotate", "skipped", "stopped")]
        assert run.result.status == "stopped"  # type: ignore[union-attr]
        assert ": stopped (1 done, 3 skipped)" in screen_text(app)
        assert "playbook-run.stop" not in {
            b.binding.id for b in run.active_bindings.values() if b.enabled}
    assert (w.version("app/a"), w.version("app/b"), w.version("app/c")) == (1, 1, 1)
    assert w.store.get_playbook_run(run.run_id)["status"] == "stopped"
    assert w.store.rotation_runs(limit=10) == []


@sync_test
async def test_a_dry_run_under_read_only_plans_and_changes_nothing(
    world: World, keyshift_home: Path  # noqa: F811
) -> None:
    w = world
    write_playbook(keyshift_home, "prod",
                   PROD + "manual_steps: [{text: tell team-x, when: after}]\n")
    before = {p: w.version(p) for p in ("app/a", "app/b", "app/c", "app/manual")}
    audit_before = len(list(w.audit.entries()))
    app = live_app(w, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_playbook(pilot, "prod", key="x")  # stripped: nothing opens
        assert isinstance(app.screen, PlaybooksScreen)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, PlaybookRunScreen), "the dry run")
        run = app.screen
        await until(pilot, lambda: run.result is not None, "the end of the dry run")
        await app.workers.wait_for_complete()
        await settle(pilot)
        rows = step_rows(run)
        assert [(c, s) for _a, c, s, _d in rows] == [
            (w.cid("app/a"), "skipped"), (w.cid("app/b"), "skipped"),
            (w.cid("app/c"), "skipped"), (None, "skipped")]
        assert all(d.startswith("dry run: would rotate, issuer generated") for *_x, d in rows[:3])
        assert rows[3][3] == "dry run: a person would confirm: tell team-x"
        text = screen_text(app)
        assert "DRY RUN" in text and ": dry-run (4 skipped)" in text
        await pilot.press("enter")  # a dry run started no rotation to open
        await pilot.pause()
        assert app.screen is run and any("started no rotation" in m for m in notes(app))
    assert {p: w.version(p) for p in before} == before
    assert w.store.rotation_runs(limit=10) == []
    # recorded nowhere, as the CLI's dry run over its read-only store
    assert w.store.get_playbook_run(run.run_id) is None  # type: ignore[arg-type]
    assert w.store.playbook_runs() == []
    assert len(list(w.audit.entries())) == audit_before


# --- snapshots ----------------------------------------------------------------------------------


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_snapshot_playbooks_list(snap_compare, tmp_path: Path, theme: str) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "k.db")
    app = KeyshiftApp(store, None, AuditLog(store), actor="tester", theme=theme,
                      start="playbooks")

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await settled(pilot)
        await settle(pilot)

    assert snap_compare(app, terminal_size=(140, 20), run_before=run_before)
