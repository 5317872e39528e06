"""The console's frame and views with Pilot: the `:` command bar, breadcrumbs and esc, the
palette, marks and copy, the column chooser, the keymap (and a bad one), agents and their
reach, holders, runs (live, and a crashed run rolled back from the TUI), the audit search
and the chain's state, sources and syncing one, the themes' contrast; snapshots of every view
in the light and the dark theme."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from test_tui import (
    FROZEN,
    SIZE,
    grants_for,
    make_app,
    notes,
    screen_text,
    send_burst,
    settle,
    sync_test,
    synthetic,
    table,
    type_filter,
)
from textual.widgets import Input

from console.audit import AuditLog
from console.config import load_inventory
from console.errors import ConfigError
from console.process import me
from console.store import Store
from screens.agents import AgentsScreen
from screens.audit_view import AuditScreen
from screens.creds import CredsScreen
from screens.detail import DetailScreen
from screens.reach import ReachScreen
from screens.runs import RunScreen, RunsScreen
from screens.sources import SourcesScreen

KEYSHIFT = str(Path(sys.executable).parent / "keyshift")
N = 120

WORLD_INVENTORY = """\
version: 1
agents:
  - name: agent-0
    owner: team-a
    environment: prod
    identities:
      - {type: vault-approle, source: vault-prod, role: agent-0-role}
  - name: agent-1
    owner: team-b
    environment: staging
    identities:
      - {type: vault-approle, source: vault-prod, role: agent-1-role}
      - {type: workspace, path: ws/agent-1}
  - name: idle-agent
    environment: dev
sources:
  - {name: declared, type: declared}
  - name: vault-prod
    type: openbao
    address: "http://127.0.0.1:9"
    token: "keyring:keyshift-test/none"
credentials:
  - name: world-declared-key
    source: declared
    kind: api-key
    provider: openai
    owner: team-a
    environment: prod
    agents: [agent-0]
"""


@pytest.fixture(autouse=True)
def _home(keyshift_home: Path) -> Path:
    return keyshift_home


@pytest.fixture
def world(tmp_path: Path):  # type: ignore[no-untyped-def]
    yield from build_world(tmp_path)


def build_world(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A store with credentials (some granted through recorded chains), two rotation runs
    and a few audit entries, and an inventory naming three agents and one source."""
    creds = [synthetic(i) for i in range(N)]
    store = Store(tmp_path / "world.db")
    granted = [c for c in creds if c.source == "vault-prod" and c.agents]
    sync = store.begin_sync(["vault-prod"], "tester")
    store.apply_source(
        sync, "vault-prod", granted, [g for c in granted for g in grants_for(c)], [], [], True
    )
    store.finish_sync(sync, "ok", {"source": "vault-prod"})
    ids = {c.id for c in granted}
    store.bulk_insert_credentials([c for c in creds if c.id not in ids])
    inv = tmp_path / "inventory.yaml"
    inv.write_text(WORLD_INVENTORY)
    audit = AuditLog(store)
    audit.append("alice", "rotation.start", granted[0].id, {"run": "r1"})
    audit.append("bob", "sync.source", "vault-prod", {"new": len(granted)})
    audit.append("alice", "secret.set", "keyring:x", {"note": "hello"})
    # runs through the store's own journal API: one promoted and waiting, one failed
    done_run = store.claim_run(
        subject=granted[0].id, credential_id=granted[0].id, rotator="generated",
        plan={"grace_seconds": 3600}, actor="alice", owner=me(),
    )
    for step in ("identify", "issue", "deliver:0", "verify", "promote:0"):
        store.finish_step(store.start_step(done_run, step), "done")
    store.set_run_status(
        done_run, "awaiting-revoke", owner_pid=None, revoke_after=FROZEN + timedelta(hours=1)
    )
    bad_run = store.claim_run(
        subject=granted[1].id, credential_id=granted[1].id, rotator="generated", plan={},
        actor="bob", owner=me(),
    )
    store.finish_step(store.start_step(bad_run, "identify"), "done")
    store.finish_step(store.start_step(bad_run, "issue"), "failed", error="issuer said no")
    store.set_run_status(bad_run, "rolled-back", error="issue failed: issuer said no",
                         owner_pid=None)
    yield store, load_inventory(inv), granted, (done_run, bad_run)
    store.close()


# --- the frame ----------------------------------------------------------------------------


@sync_test
async def test_command_bar_keeps_keys_typed_before_it_had_focus(world) -> None:
    """`:audit⏎` sent in one burst, as a fast typist or tmux does: every key lands in order,
    none goes to the view beneath."""
    store, loaded, _granted, _runs = world
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        send_burst(app, [("colon", ":"), *((c, c) for c in "audit"), ("enter", None)])
        for _ in range(100):
            await pilot.pause(0.02)
            if isinstance(app.screen, AuditScreen):
                break
        assert isinstance(app.screen, AuditScreen)


@sync_test
async def test_a_list_views_filter_keeps_keys_typed_in_one_burst(world) -> None:
    """`/owner:team-a` sent at once in the agents view: every key after `/` lands in the
    filter box, none in the list beneath."""
    store, loaded, _granted, _runs = world
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("colon", *"agents", "enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, AgentsScreen)
        send_burst(app, [("slash", "/"), *((c, c) for c in "owner:team-a")])
        await pilot.pause(0.1)
        await settle(pilot)
        assert screen.query_one("#filter", Input).value == "owner:team-a"
        assert [r["name"] for r in screen.shown] == ["agent-0"]


@sync_test
async def test_command_bar_completes_aliases_and_esc_walks_back(world) -> None:
    store, loaded, _granted, _runs = world
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("colon", "a", "g")
        await pilot.pause()
        bar = screen_text(app)
        assert ":agents" in bar and "each agent" in bar  # the completion list
        await pilot.press("tab", "enter")
        await settle(pilot)
        assert isinstance(app.screen, AgentsScreen)
        assert "creds › agents" in screen_text(app)  # noqa: RUF001
        for word, screen in (("r", RunsScreen), ("log", AuditScreen), ("src", SourcesScreen),
                             ("credentials", CredsScreen)):
            await pilot.press("colon", *word, "enter")
            await settle(pilot)
            assert isinstance(app.screen, screen), word
        # :creds went back to the first view: one of each view on the stack, never two
        assert [type(s) for s in app.screen_stack[1:]] == [CredsScreen]
        await pilot.press("colon", *"nope", "enter")
        await pilot.pause()
        assert "no view 'nope'" in screen_text(app)
        await pilot.press("escape")
        await pilot.press("colon", *"audit actor:alice", "enter")  # a view and its filter
        await settle(pilot)
        assert isinstance(app.screen, AuditScreen)
        assert {r["actor"] for r in app.screen.shown} == {"alice"}
        await pilot.press("escape", "escape")  # clears the filter, then back to creds
        await settle(pilot)
        assert isinstance(app.screen, CredsScreen)
        await pilot.press("escape")  # the first view has nowhere to go back to
        assert isinstance(app.screen, CredsScreen) and app.is_running


async def _palette_pick(pilot, text: str) -> None:  # type: ignore[no-untyped-def]
    """Search the palette for ``text`` and run the first hit once the search has found one:
    the palette searches in the background, so a fixed pause can press enter too early."""
    from textual.command import CommandList

    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*text)
    for _ in range(400):
        found = pilot.app.screen.query(CommandList)
        if found and found.first().option_count and found.first().highlighted is not None:
            prompt = str(found.first().get_option_at_index(found.first().highlighted).prompt)
            if text.split()[-1].lower() in prompt.lower():
                break
        await pilot.pause(0.02)
    await pilot.press("enter")


@sync_test
async def test_palette_lists_every_view_and_action_by_name(world) -> None:
    from screens.palette import commands

    store, loaded, _granted, _runs = world
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        found = {c.name: c for c in commands(app)}
        for name in ("Go to creds", "Go to agents", "Go to runs", "Go to audit",
                     "Go to sources", "creds: Rotate", "creds: Sync", "creds: Mark",
                     "creds: Sort by expiry", "runs: Roll back", "runs: Resume",
                     "sources: Sync source", "audit: Verify chain", "Quit", "Command"):
            assert name in found, name
        assert "key E · creds.sort-expires" in found["creds: Sort by expiry"].help
        # running an action of another view opens that view and runs it there
        await pilot.press("colon", *"audit", "enter")
        await settle(pilot)
        await _palette_pick(pilot, "sort by expiry")
        await settle(pilot)
        assert isinstance(app.screen, CredsScreen)
        assert "sort expiry ↑" in screen_text(app)
        # and one of a widget the view hosts (the table's mark)
        await _palette_pick(pilot, "creds: mark")
        await settle(pilot)
        assert len(table(app).marked) == 1


@sync_test
async def test_marks_copy_and_column_chooser(world) -> None:
    store, loaded, _granted, _runs = world
    app = make_app(store, loaded)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        t = table(app)
        first, second = t.row(0), t.row(1)
        await pilot.press("space", "space")
        assert list(t.marked) == [first.id, second.id] and t.cursor == 2
        text = screen_text(app)
        assert "2 marked" in text and "●" in text
        await pilot.press("up", "space")  # unmark the second
        assert list(t.marked) == [first.id]
        await pilot.press("c")
        assert app.clipboard == t.current.id
        assert any(f"copied {t.current.id}" in m for m in notes(app))
        # at 100 columns the five that matter stay; the chooser shows the rest
        assert {"name", "agents", "owner", "expires", "status"} <= set(t.columns_layout.keys)
        assert "KIND" not in screen_text(app)
        await pilot.press("o")
        await pilot.pause()
        await pilot.press("down", "down", "down", "space", "a")  # tick KIND, apply
        await settle(pilot)
        assert "kind" in t.columns_layout.keys and "KIND" in screen_text(app)
        await pilot.press("o", "f")  # back to fitting by priority
        await settle(pilot)
        assert "kind" not in t.columns_layout.keys
        await pilot.press("escape")  # esc with marks and no filter: clears the marks
        assert not t.marked


@sync_test
async def test_bulk_rotate_without_an_inventory_says_why_per_row(world) -> None:
    store, _loaded, _granted, _runs = world
    app = make_app(store, None)  # the inventory did not load: browsing still works
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("space", "space", "r")
        for _ in range(100):
            await pilot.pause(0.05)
            if getattr(app.screen, "state", "") == "ready":
                break
        text = screen_text(app)
        assert text.count("rotate needs the") == 2 and "Rotate 0" in text, text
        await pilot.press("y")  # nothing to run
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, CredsScreen) and app.is_running


@sync_test
async def test_a_view_opened_with_a_bad_filter_says_so(world) -> None:
    store, loaded, _granted, _runs = world
    app = make_app(store, loaded, start="agents")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("colon", *"creds owner:", "enter")
        await settle(pilot)
        assert isinstance(app.screen, CredsScreen)
        status = screen_text(app).splitlines()[-1]
        assert "owner: not applied" in status and table(app).total == N


# --- keymap -------------------------------------------------------------------------------


def test_keymap_remaps_by_id_and_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    from screens.keymap import load_keymap

    good = tmp_path / "keymap.yaml"
    good.write_text(
        "creds.rotate: ctrl+r\napp.quit: [q, ctrl+x]\ncreds.sort-name: '#'\n"
        "creds.sort-owner: 'ctrl+?'\nprompt.yes: q\n"
    )
    assert load_keymap(good) == {
        "creds.rotate": "ctrl+r",
        "app.quit": "q,ctrl+x",
        "creds.sort-name": "number_sign",
        "creds.sort-owner": "ctrl+question_mark",
        "prompt.yes": "q",  # a dialog takes q from the app's quit: no clash
    }
    cases = [
        ("creds.rotat: r\n", 1, 1, "unknown binding id 'creds.rotat'", "creds.rotate"),
        ("creds.rotate: ctrl+rr\n", 1, 15, "not a key name", "keys look like"),
        ("creds.rotate: crtl+r\n", 1, 15, "not a modifier", "keys look like"),
        ("# mine\ncreds.rotate: s\n", 2, 1, "'s' is already creds.sync on the creds screen",
         "no other binding"),
        ("creds.filter: ctrl+p\n", 1, 1, "already Textual's command_palette", "no other"),
        ("list.reload: up\n", 1, 1, "already Textual's cursor_up", "no other binding"),
        ("app.quit: ctrl+c\n", 1, 1, "already Textual's", "no other binding"),
        ("creds.rotate: shift+a\n", 1, 15, "write 'A', not 'shift+a'", "keys look like"),
        ("creds.rotate: ''\n", 1, 15, "needs a key", "e.g."),
        ("- r\n", 1, 1, "maps binding ids to keys", "e.g."),
    ]
    for text, line, column, message, hint in cases:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_keymap(bad)
        one = err.value.one_line()
        assert f"{bad}:{line}:{column}" in one and message in one and hint in one, one
    with pytest.raises(ConfigError, match="no keymap file"):
        load_keymap(tmp_path / "missing.yaml")


@sync_test
async def test_a_remapped_key_works_and_the_old_one_is_free(world) -> None:
    store, loaded, _granted, _runs = world
    app = make_app(store, loaded, keymap={"creds.sort-expires": "x", "app.command": "ctrl+k"})
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        assert "sort expiry ↑" in screen_text(app)
        await pilot.press("E")  # unbound now
        await settle(pilot)
        assert "sort expiry ↑" in screen_text(app)
        await pilot.press("ctrl+k", *"runs", "enter")
        await settle(pilot)
        assert isinstance(app.screen, RunsScreen)


def test_tui_refuses_a_bad_keymap_in_one_line(tmp_path: Path, keyshift_home: Path) -> None:
    (keyshift_home / "keymap.yaml").write_text("creds.rotate: s\n")
    inv = tmp_path / "inventory.yaml"
    inv.write_text(WORLD_INVENTORY)
    proc = subprocess.run(
        [KEYSHIFT, "--inventory", str(inv), "--db", str(tmp_path / "k.db"), "tui"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "keymap.yaml:1:1" in lines[0] and "creds.sync" in lines[0]
    assert "Traceback" not in proc.stderr


# --- agents and reach ----------------------------------------------------------------------


@sync_test
async def test_agents_list_reach_and_the_tree_both_ways(world) -> None:
    store, loaded, granted, _runs = world
    app = make_app(store, loaded)
    reach = {r["agent"]: r for r in store.agent_reach()}
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("colon", *"agents", "enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, AgentsScreen)
        rows = {r["name"]: r for r in screen.rows}
        assert rows["agent-0"]["owner"] == "team-a" and rows["agent-0"]["environment"] == "prod"
        assert rows["agent-0"]["reach"] == reach["agent-0"]["reach"]
        assert rows["agent-0"]["used"] == reach["agent-0"]["used"]
        assert "vault-approle:agent-0-role" in rows["agent-0"]["identities"]
        assert rows["idle-agent"]["reach"] == 0  # declared, holds nothing: listed anyway
        assert rows["agent-3"]["note"] == "not in the inventory"  # found by sync: listed too
        await type_filter(pilot, "owner:team-a")
        assert [r["name"] for r in screen.shown] == ["agent-0"]
        await pilot.press("enter")  # leave the box
        await pilot.press("enter")  # open agent-0's reach
        await settle(pilot)
        assert isinstance(app.screen, ReachScreen)
        text = screen_text(app)
        mine = [c for c in granted if "agent-0" in c.agents]  # granted through chains
        assert "approle:agent-0-role" in text and "policy:agents-read" in text
        assert f"rule:{mine[0].location}" in text and mine[0].name in text
        assert "✓ used" in text and "unused" in text
        grants = store.grants_for_agent("agent-0")
        used = sum(g.used for g in grants)
        assert f"{len(grants)} credentials reachable through {len(grants)} grants" in text
        assert f"{used} used, {len(grants) - used} unused" in text
        # down to the first credential leaf, then open it
        tree = app.screen.query_one("#reach")
        leaf = next(n for n in _walk(tree.root) if n.data == mine[0].id)
        tree.move_cursor(leaf)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, DetailScreen) and app.screen.cred_id == mine[0].id
        assert "agents › agent agent-0 › credential" in screen_text(app)  # noqa: RUF001
        await pilot.press("H")  # every holder of this credential
        await settle(pilot)
        assert isinstance(app.screen, ReachScreen)
        text = screen_text(app)
        assert "agent:agent-0" in text and "1 agents hold 1 grants" in text
        for _ in range(3):
            await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, AgentsScreen)


def _walk(node):  # type: ignore[no-untyped-def]
    yield node
    for child in node.children:
        yield from _walk(child)


# --- runs ---------------------------------------------------------------------------------


@sync_test
async def test_runs_list_and_steps(world) -> None:
    store, loaded, _granted, (done_run, bad_run) = world
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("colon", *"runs", "enter")
        await settle(pilot)
        screen = app.screen
        assert [r["id"] for r in screen.rows] == [bad_run, done_run]  # newest first
        text = screen_text(app)
        assert "awaiting-revoke" in text and "rolled-back" in text
        assert "issue failed: issuer said no" in text
        assert "1 active (live)" in text
        await type_filter(pilot, "status:rolled-back")
        assert [r["id"] for r in screen.shown] == [bad_run]
        await pilot.press("enter", "enter")
        await settle(pilot)
        assert isinstance(app.screen, RunScreen)
        text = screen_text(app)
        assert f"run {bad_run[:12]}" in text and "issuer said no" in text
        assert "identify" in text and "failed" in text
        await pilot.press("b")  # roll back: refused for a run that already rolled back
        await pilot.pause()
        assert any("only a run stopped before promote" in m for m in notes(app))


@sync_test
async def test_runs_refresh_live(world) -> None:
    store, loaded, granted, (done_run, _bad) = world
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("colon", *"runs", "enter")
        await settle(pilot)
        assert len(app.screen.rows) == 2
        store.set_run_status(done_run, "completed")  # another process finishes it
        fresh = store.claim_run(
            subject=granted[5].id, credential_id=granted[5].id, rotator="generated", plan={},
            actor="carol", owner=me(),
        )
        store.start_step(fresh, "issue")
        for _ in range(60):
            await pilot.pause(0.1)
            if len(app.screen.rows) == 3:
                break
        await settle(pilot)
        text = screen_text(app)
        assert len(app.screen.rows) == 3 and "carol" in text and "issue started" in text
        assert "completed" in text


def test_a_crashed_run_is_rolled_back_from_the_tui(sandbox, tmp_path: Path) -> None:
    """A rotation SIGKILLed after delivering its new value (before promote) leaves a running
    run; from :runs, b and y roll it back: the old value is current again."""
    import asyncio

    from rotation_support import build
    from test_rotation_crash import _points, _rotate_in_child

    from console.rotation import CRASH_ENV

    points = _points("generated-kv2", tmp_path, sandbox)
    point = next(p for p in points if p == "deliver:0")  # its done is journaled
    s = build("generated-kv2", tmp_path / "crash", sandbox)
    old = s.current()
    status = _rotate_in_child(s, {CRASH_ENV: point})
    assert os.WIFSIGNALED(status), "the child was killed at the crash point"
    assert s.current()["value"] != old["value"]  # the new value was delivered
    env = s.env()

    async def drive() -> None:
        app = make_app(env.store, env.loaded, engine_factory=env.engine)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("colon", *"runs", "enter")
            await settle(pilot)
            row = app.screen.current
            assert row is not None and row["status"] == "running"
            await pilot.press("b")
            await pilot.pause()
            assert "Roll back run" in screen_text(app)
            await pilot.press("y")
            await app.workers.wait_for_complete()
            await settle(pilot)
            assert any("rolled-back" in m for m in notes(app))
            assert "rolled-back" in screen_text(app)

    asyncio.run(drive())
    assert s.current() == old
    run = env.store.rotation_runs(credential_id=s.cred.id)[0]
    assert run["status"] == "rolled-back"
    actions = [e.action for e in env.audit.tail(10)]
    assert "rotation.rollback" in actions
    env.close()


# --- audit and sources ---------------------------------------------------------------------


@sync_test
async def test_audit_search_and_the_chain_state(world) -> None:
    import sqlite3

    store, loaded, _granted, _runs = world
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("colon", *"audit", "enter")
        await settle(pilot)
        screen = app.screen
        total = len(screen.rows)
        assert total == 3 and "chain OK · 3 entries" in screen_text(app)
        await type_filter(pilot, "actor:alice")
        assert {r["actor"] for r in screen.shown} == {"alice"} and len(screen.shown) == 2
        await type_filter(pilot, " action:secret.*")
        assert [r["action"] for r in screen.shown] == ["secret.set"]
        await type_filter(pilot, " since:")
        assert "not applied" in screen_text(app) and "since: needs a value" in screen_text(app)
        await pilot.press("escape")
        await settle(pilot)
        assert len(screen.shown) == total
        await pilot.press("enter")  # the newest entry in full
        await pilot.pause()
        assert "hash " in screen_text(app)
        await pilot.press("escape")
        with sqlite3.connect(store.path) as db:
            db.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
        await pilot.press("v")
        await settle(pilot)
        assert "chain BROKEN" in screen_text(app) and "seq 2" in screen_text(app)


@sync_test
async def test_sources_show_state_and_sync_one(world) -> None:
    store, loaded, _granted, _runs = world
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("colon", *"sources", "enter")
        await settle(pilot)
        rows = {r["name"]: r for r in app.screen.rows}
        assert rows["declared"]["state"] == "never synced"
        assert rows["vault-prod"]["state"] == "ok" and rows["vault-prod"]["present"] > 0
        assert rows["vault-prod"]["type"] == "openbao"
        assert rows["aws-main"]["type"] == "not in the inventory"  # known only from the store
        assert app.screen.current["name"] == "declared"
        await pilot.press("s")
        for _ in range(100):
            await pilot.pause(0.1)
            if not app.busy_with():
                break
        await settle(pilot)
        rows = {r["name"]: r for r in app.screen.rows}
        assert rows["declared"]["state"] == "ok" and rows["declared"]["present"] == 1
        assert any("sync ok" in m for m in notes(app))
    assert store.get_credential("declared:api-key:world-declared-key") is not None


# --- themes ---------------------------------------------------------------------------------


def _luminance(colour) -> float:  # type: ignore[no-untyped-def]
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = colour.rgb
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


@sync_test
async def test_both_themes_keep_every_state_readable(world) -> None:
    """Each state colour against the theme's surface and background: WCAG AA (4.5:1)."""
    from screens.theme import MEANINGS, theme_color

    store, loaded, _granted, _runs = world
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        for theme in ("keyshift-dark", "keyshift-light"):
            app.theme = theme
            await pilot.pause()
            for ground in ("surface", "background"):
                back = _luminance(theme_color(app, ground))
                for meaning, (variable, _style) in MEANINGS.items():
                    if meaning in ("gone", "inactive", "muted", "unused"):
                        continue  # deliberately quiet; their words say what they are
                    fore = _luminance(theme_color(app, variable))
                    ratio = (max(fore, back) + 0.05) / (min(fore, back) + 0.05)
                    assert ratio >= 4.5, (theme, ground, meaning, round(ratio, 2))
        await pilot.press("ctrl+t")
        assert app.theme == "keyshift-dark"


# --- snapshots: every view, light and dark ---------------------------------------------------


@pytest.fixture
def frozen():  # type: ignore[no-untyped-def]
    import time_machine

    with time_machine.travel(FROZEN, tick=False) as traveller:
        yield traveller


@pytest.fixture
def snap_world(frozen, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The world with fixed run ids (a snapshot shows the first twelve characters)."""
    import itertools

    from console.store import runs as runs_mod

    counter = itertools.count(1)
    monkeypatch.setattr(runs_mod.uuid, "uuid4", lambda: uuid.UUID(int=next(counter) << 64))
    yield from build_world(tmp_path)


VIEW_KEYS = {
    "creds": (),
    "agents": ("colon", *"agents", "enter"),
    "reach": ("colon", *"agents", "enter", "enter"),
    "runs": ("colon", *"runs", "enter"),
    "run": ("colon", *"runs", "enter", "enter"),
    "audit": ("colon", *"audit", "enter"),
    "sources": ("colon", *"sources", "enter"),
    "command": ("colon", "a"),
    "help": ("question_mark",),
    "columns": ("o",),
}


@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize("view", list(VIEW_KEYS))
def test_snapshot_views(snap_world, snap_compare, view: str, theme: str) -> None:  # type: ignore[no-untyped-def]
    from screens.app import KeyshiftApp

    store, loaded, _granted, _runs = snap_world
    app = KeyshiftApp(store, loaded, AuditLog(store), actor="tester", theme=theme)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        for key in VIEW_KEYS[view]:
            await pilot.press(key)
            await settle(pilot)
        await settle(pilot)

    assert snap_compare(app, terminal_size=(120, 32), run_before=run_before)



# --- findings -------------------------------------------------------------------------------


@sync_test
async def test_findings_view_counts_filters_opens_and_accepts(world) -> None:
    from console import findings
    from screens.findings import AcceptPrompt, FindingsScreen

    store, loaded, granted, _runs = world
    findings.refresh(store, loaded, AuditLog(store), "tester", now=FROZEN)
    expected = {r["id"]: r for r in store.findings()}
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("colon", *"findings", "enter")
        await settle(pilot)
        assert isinstance(app.screen, FindingsScreen)
        assert {r["id"] for r in app.screen.rows} == set(expected)
        severities = [r["severity"] for r in app.screen.rows]
        ranks = [findings.SEVERITY_RANK[s] for s in severities]
        assert ranks == sorted(ranks, reverse=True)  # most severe first
        text = screen_text(app)
        opened = sum(1 for r in expected.values() if r["severity"] == "medium")
        assert f"medium {opened}" in text
        # the failed run of the world is a finding on its credential; enter opens it
        app.screen.set_filter("rule:hygiene.rotation-failed")
        await settle(pilot)
        (row,) = app.screen.shown
        assert row["credential"] == granted[1].id
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, DetailScreen)
        await pilot.press("escape")
        await settle(pilot)
        # accept it for a month, with a reason
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, AcceptPrompt)
        await pilot.press(*"2026-12-31", "enter", *"fix scheduled", "enter")
        for _ in range(100):
            await pilot.pause(0.05)
            if store.get_finding(row["id"])["status"] == "accepted":
                break
        await settle(pilot)
    found = store.get_finding(row["id"])
    assert found["status"] == "accepted" and found["accepted_reason"] == "fix scheduled"
    # the credentials view marks a row with its most severe open finding, and drops an
    # accepted one
    marked = {c.id: c.finding for c in store.all_credentials() if c.finding}
    want: dict[str, str] = {}
    for r in store.findings():
        if r["status"] == "open" and r["credential_id"]:
            have = want.get(r["credential_id"])
            if have is None or findings.SEVERITY_RANK[r["severity"]] > findings.SEVERITY_RANK[have]:
                want[r["credential_id"]] = r["severity"]
    assert marked == want and marked
    assert found["accepted_by"] == "tester"
    assert [r["target"] for r in store.audit_rows() if r["action"] == "finding.accept"] == [
        row["id"]
    ]


@sync_test
async def test_findings_accept_is_gone_under_read_only(world) -> None:
    from console import findings
    from screens.findings import FindingsScreen

    store, loaded, _granted, _runs = world
    findings.refresh(store, loaded, AuditLog(store), "tester", now=FROZEN)
    app = make_app(store, loaded, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("colon", *"findings", "enter")
        await settle(pilot)
        assert isinstance(app.screen, FindingsScreen)
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, FindingsScreen)  # no prompt: the key is stripped
    assert all(r["status"] == "open" for r in store.findings())
