"""The Textual TUI against a real store: paging, filter, sort, detail, sync, read-only, no
secret on screen; rotation against the sandbox's OpenBao; snapshots with a frozen clock."""

from __future__ import annotations

import asyncio
import functools
import secrets as pysecrets
from pathlib import Path

import pytest
from tui_support import FROZEN, grants_for, screen_text, synthetic

from console.audit import AuditLog
from console.model import Credential
from console.query import parse
from console.store import Store
from screens.app import KeyshiftApp
from screens.creds import CredsScreen
from screens.detail import DetailScreen
from screens.format import COLUMN_KEYS, COLUMNS
from screens.help import HelpScreen
from screens.widgets.credential_table import CredentialTable


def sync_test(fn):  # type: ignore[no-untyped-def]
    """Run an async test in its own event loop (the suite has no async pytest plugin)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


SIZE = (160, 45)
N = 300
MARKER = "zzmarkerzz"


@pytest.fixture(autouse=True)
def _home(keyshift_home: Path) -> Path:
    return keyshift_home  # every test gets its own KEYSHIFT_HOME (tests/conftest.py)


@pytest.fixture
def creds() -> list[Credential]:
    out = [synthetic(i) for i in range(N)]
    out[10] = synthetic(10, marker=MARKER)
    return out


@pytest.fixture
def store(tmp_path: Path, creds: list[Credential]) -> Store:
    s = Store(tmp_path / "keyshift.db")
    # most rows in bulk; a few through a real source apply, so they carry grants with chains
    with_grants = [c for c in creds if c.source == "vault-prod" and c.agents][:20]
    ids = {c.id for c in with_grants}
    sync_id = s.begin_sync(["vault-prod"], "test")
    s.apply_source(
        sync_id,
        "vault-prod",
        with_grants,
        [g for c in with_grants for g in grants_for(c)],
        [],
        [],
        True,
    )
    s.bulk_insert_credentials([c for c in creds if c.id not in ids])
    yield s
    s.close()


def make_app(store: Store, loaded=None, *, read_only: bool = False, **kw) -> KeyshiftApp:  # type: ignore[no-untyped-def]
    kw.setdefault("now", lambda: FROZEN)
    return KeyshiftApp(store, loaded, AuditLog(store), read_only=read_only, actor="tester", **kw)


def table(app: KeyshiftApp) -> CredentialTable:
    return app.screen.query_one(CredentialTable)


def notes(app: KeyshiftApp) -> list[str]:
    return [n.message for n in app._notifications]


def window_names(app: KeyshiftApp) -> list[str]:
    """The names of the credentials on screen, top to bottom."""
    return [c.name for c in table(app).visible_rows()]


async def all_rows(pilot) -> list[Credential]:  # type: ignore[no-untyped-def]
    """Every row of the result, read through the table (its pages come from its reader)."""
    t = table(pilot.app)
    rows = []
    for i in range(t.total):
        for _ in range(500):
            row = t.row(i)
            if row is not None:
                break
            await pilot.pause(0.01)
        assert row is not None, f"row {i} never arrived"
        rows.append(row)
    return rows


async def all_names(pilot) -> list[str]:  # type: ignore[no-untyped-def]
    return [c.name for c in await all_rows(pilot)]


def expected(creds: list[Credential], text: str) -> list[str]:
    """The reference answer: console.query's Python semantics over the fixture's records."""
    q = parse(text)
    return sorted((c.name for c in creds if q.matches(c, FROZEN)), key=str.lower)


READ_GROUPS = ("list-load", "reach", "detail-read", "run-read", "audit-verify", "rotate-plan")


async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
    """Let the pages, the count and the screens' reads land and the screen repaint. Bounded."""
    await pilot.pause()
    app = pilot.app
    for _ in range(500):
        busy = any(t.busy for t in app.screen.query(CredentialTable))
        busy = busy or any(w.is_running and w.group in READ_GROUPS for w in app.workers)
        if not busy:
            break
        await pilot.pause(0.02)
    await pilot.pause()


def send_burst(app: KeyshiftApp, keys: list[tuple[str, str | None]]) -> None:
    """Keys posted as the terminal driver posts them, all at once (a fast typist, tmux):
    nothing is processed between two keys. ``keys``: (key name, character)."""
    from textual import events

    for key, char in keys:
        app._driver.send_message(events.Key(key, char))  # type: ignore[union-attr]


async def type_filter(pilot, text: str) -> None:  # type: ignore[no-untyped-def]
    """Open the filter box (if closed) and type ``text`` after what it holds."""
    if not pilot.app.screen.query_one("#filter").has_focus:
        await pilot.press("slash")
    await pilot.press(*text)
    await pilot.pause(0.1)  # let a burst's trailing query run
    await settle(pilot)


class Held:
    """Holds a table's count reader busy (a real job that waits), so a test sees the screen
    before the count lands."""

    def __init__(self, t: CredentialTable) -> None:
        import threading

        self.release = threading.Event()
        t.counts.submit(lambda: self.release.wait(30), lambda _r, _e: None, priority=-1)

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()


# --- inventory ---------------------------------------------------------------------------


def test_columns_give_way_by_priority_and_grow_on_a_wide_terminal() -> None:
    from screens.widgets.credential_table import plan_columns

    narrow = plan_columns(100)
    # at 100 columns the name, agents, owner, expiry and status stay
    assert {"name", "agents", "owner", "expires", "status"} <= set(narrow.keys)
    assert narrow.width <= 100 and narrow.hidden  # the rest wait in the column chooser
    assert narrow.keys == tuple(k for k in COLUMN_KEYS if k in narrow.keys)  # display order
    wide = plan_columns(200)
    assert wide.keys == tuple(COLUMN_KEYS) and not wide.hidden and wide.width == 200
    base = plan_columns(len(COLUMNS) * 40)
    assert base.width < len(COLUMNS) * 40  # each column has a ceiling
    assert plan_columns(60).keys == ("name",) or plan_columns(60).width <= 60
    chosen = plan_columns(80, frozenset({"scope", "kind"}))
    assert chosen.keys == ("name", "kind", "scope")  # a choice is kept whatever the width


@sync_test
async def test_a_long_name_shows_whole_on_a_wide_terminal(store: Store) -> None:
    long_name = "agents/support-bot/a-rather-long-secret-name-x"
    store.bulk_insert_credentials(
        [synthetic(0).model_copy(update={"id": "x:kv:long", "name": long_name})]
    )
    async with make_app(store).run_test(size=(100, 20)) as pilot:
        await settle(pilot)
        await type_filter(pilot, "rather-long")
        assert long_name not in screen_text(pilot.app)  # cut, with an ellipsis
        assert long_name[:20] in screen_text(pilot.app) and "…" in screen_text(pilot.app)
        pilot.app.screen.query_one(CredentialTable).focus()
        await pilot.resize_terminal(200, 20)
        await settle(pilot)
        assert long_name in screen_text(pilot.app)


@sync_test
async def test_a_cut_cell_shows_whole_in_a_tooltip(store: Store) -> None:
    long_name = "agents/support-bot/a-rather-long-secret-name-to-cut"
    store.bulk_insert_credentials(
        [synthetic(0).model_copy(update={"id": "x:kv:long", "name": long_name})]
    )
    async with make_app(store).run_test(size=(100, 20)) as pilot:
        await type_filter(pilot, "rather-long")
        await pilot.press("enter")
        t = table(pilot.app)
        await pilot.hover(t, offset=(5, 1))  # the name cell of the first row
        await pilot.pause()
        assert t.tooltip == long_name
        await pilot.hover(t, offset=(5, 0))  # the header: no tooltip
        await pilot.pause()
        assert t.tooltip is None


@sync_test
async def test_inventory_pages_from_the_store_and_moves_over_all(store: Store, creds) -> None:
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        t = table(app)
        assert t.total == N and t.exact
        names = sorted((c.name for c in creds), key=str.lower)
        shown = window_names(app)
        assert shown == names[: len(shown)] and len(shown) > 30
        # only the pages painted were read: never every row
        assert t.loaded_rows <= 2 * t.page_size < N
        text = screen_text(app)
        assert f"1-{len(shown)} of {N}" in text
        assert shown[-1] in text
        for _ in range(t.page_size + 5):
            await pilot.press("down")
        await settle(pilot)
        assert t.cursor == t.page_size + 5
        assert t.current is not None and t.current.name == names[t.page_size + 5]
        assert names[t.page_size + 5] in screen_text(app)  # scrolled into view
        await pilot.press("end")
        await settle(pilot)
        assert t.current is not None and t.current.name == names[-1]
        assert names[-1] in screen_text(app)
        assert t.loaded_rows <= t.page_size * t.max_pages
        await pilot.press("pageup")
        await settle(pilot)
        assert t.cursor == N - 1 - t.body_height
        await pilot.press("home")
        await settle(pilot)
        assert t.cursor == 0 and t.current.name == names[0]
        # the rows read a page at a time agree with the store's whole answer
        assert await all_names(pilot) == names


@sync_test
async def test_first_page_paints_before_the_count_lands(store: Store, creds) -> None:
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        t = table(app)
        names = sorted((c.name for c in creds), key=str.lower)
        with Held(t):  # the count cannot run: the screen must not wait for it
            await pilot.press("N")  # a new query (descending)
            await pilot.pause(0.2)
            # the first page, and the next one read ahead: a lower bound, not a count
            assert t.counting and t.total in (t.page_size, 2 * t.page_size) and not t.exact
            assert "(counting)" in screen_text(app)
            assert window_names(app)[0] == names[-1]
            for _ in range(3):  # moving on reads the pages it needs, one at a time
                await pilot.press("pagedown")
                await pilot.pause(0.1)
            assert t.counting and t.total > t.page_size
            assert t.current is not None
            assert t.current.name == names[::-1][3 * t.body_height]
        await settle(pilot)
        assert not t.counting and t.total == N and t.exact
        assert f"of {N}" in screen_text(app)
        # a reload (after sync or rotate) keeps the cursor's place
        place = t.cursor
        t.reload()
        await settle(pilot)
        assert t.cursor == place and t.current.name == names[::-1][place]


def painted_lines(t: CredentialTable) -> list[tuple[str, bool]]:
    """Each body line as the table's paint cache holds it (the lines not repainted since a
    change keep what they had): its text, and whether it has the cursor's background."""
    from textual.geometry import Region

    cursor = t.get_component_rich_style("credential-table--cursor").bgcolor
    region = t.scrollable_content_region
    strips = t.render_lines(Region(0, 0, region.width, t.body_height + 1))
    out = []
    for strip in strips[1:]:
        text = "".join(seg.text for seg in strip)
        out.append((text, any(seg.style and seg.style.bgcolor == cursor for seg in strip)))
    return out


@sync_test
async def test_lines_kept_between_filters_and_cursor_moves_are_still_right(
    store: Store, creds
) -> None:
    """Typing repaints only the lines whose row changed and a cursor move only the two lines
    it touches: what stays painted must still be each row's line, and only one line has the
    cursor."""
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        t = table(app)
        for text in ("svc-00", "svc-000", "svc-0001", "svc-000", "svc-00", "svc-0"):
            box = app.screen.query_one("#filter")
            if not box.has_focus:
                await pilot.press("slash")
            box.value = text
            await pilot.pause(0.1)
            await settle(pilot)
            lines = painted_lines(t)
            names = window_names(app)
            assert names == expected(creds, text)[: len(names)], text
            for (line, _), name in zip(lines, names, strict=False):
                assert name[:20] in line, (text, line, name)
            assert [has for _, has in lines[: len(names)]] == [
                i == t.cursor - int(t.scroll_offset.y) for i in range(len(names))
            ], text
            for line, _ in lines[len(names):]:
                assert not line.strip(), (text, line)  # no row left over from a longer list
        t.focus()
        for keys in (("down",), ("down", "down"), ("up",)):
            await pilot.press(*keys)
            await settle(pilot)
            flags = [has for _, has in painted_lines(t)]
            assert flags.count(True) == 1 and flags.index(True) == t.cursor, keys


@sync_test
async def test_a_new_clock_repaints_the_rows_that_stay(store: Store) -> None:
    """A reload (after a sync) reads the time afresh: rows that did not change still get
    their relative times ("2d ago") and expiry colours against the new clock."""
    from datetime import timedelta

    clock = [FROZEN]
    app = make_app(store, now=lambda: clock[0])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        t = table(app)
        clock[0] = FROZEN + timedelta(days=400)
        t.reload()
        await settle(pilot)
        for (line, _), cred in zip(painted_lines(t), t.visible_rows(), strict=False):
            want = "".join(text for text, _ in t._row_runs(cred))
            assert line.rstrip() == want[: len(line)].rstrip(), cred.name


@sync_test
async def test_a_filter_read_that_hangs_holds_the_paint_one_frame_at_most(store: Store) -> None:
    """While a typed filter's first page is read the screen's repaint is held, so the typed
    character and its rows paint together; a read that does not come back must not freeze
    the screen: the character shows after HOLD_PAINT and the old rows stay."""
    import threading

    from screens.widgets.credential_table import HOLD_PAINT

    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash")  # the box opens: fewer rows fit
        await settle(pilot)
        t = table(app)
        before = window_names(app)
        release = threading.Event()
        t.pages.submit(lambda: release.wait(30), lambda _r, _e: None, priority=-1)
        try:
            await pilot.press("z")
            await pilot.pause(HOLD_PAINT * 4)
            assert not app._batch_count  # the hold ended on its own
            assert t.pending is not None  # the read is still out
            box = [line for line in screen_text(app).splitlines()[:5] if line.startswith("▊")]
            assert box[1].split()[1] == "z", box  # the box's text line, as painted
            assert window_names(app) == before
        finally:
            release.set()
        await settle(pilot)
        assert t.pending is None and t.result.query.text == "z"


@sync_test
async def test_last_row_is_read_from_the_end_before_the_count(store: Store, creds) -> None:
    """G on an uncounted result reads the reversed query's first page (no OFFSET walk to the
    end): the last rows show at once, placed from the end, and shift into their place when
    the count lands."""
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        t = table(app)
        names = sorted((c.name for c in creds), key=str.lower)
        with Held(t):
            await pilot.press("N", "N")  # a new query: uncounted while the count is held
            await pilot.pause(0.2)
            assert not t.exact
            await pilot.press("G")
            await pilot.pause(0.2)
            assert t.result.from_end
            assert t.current is not None and t.current.name == names[-1]
            assert window_names(app)[-1] == names[-1]
            assert "the last rows" in screen_text(app)
            await pilot.press("up")
            assert t.current.name == names[-2]
            # a detail and back reloads the rows: still counted from the end, same row
            await pilot.press("enter")
            await pilot.pause(0.2)
            await pilot.press("escape")
            await pilot.pause(0.3)
            assert t.current is not None and t.current.name == names[-2]
        await settle(pilot)
        assert t.exact and t.total == N
        assert t.cursor == N - 2 and t.current.name == names[-2]  # same row, its true index
        await pilot.press("g")
        await settle(pilot)
        assert t.cursor == 0 and t.current.name == names[0]


@sync_test
async def test_the_ui_thread_runs_no_sql(store: Store, creds) -> None:
    """Every read happens on a reader or worker thread: the connection of the thread the
    app runs on sees no statement while a person types, sorts, jumps and changes views."""
    statements: list[str] = []
    store._conn().set_trace_callback(statements.append)  # this (the UI) thread's connection
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await type_filter(pilot, "alpha")
        await pilot.press("escape")
        for key in ("E", "E", "G", "g", "pagedown", "U", "end"):
            await pilot.press(key)
            await pilot.pause(0.05)
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        for view in ("agents", "runs", "audit", "sources", "creds"):
            await pilot.press("colon", *view, "enter")
            await settle(pilot)
        assert "sort" in screen_text(app)
    store._conn().set_trace_callback(None)
    assert statements == []


@sync_test
async def test_rows_carry_relative_times_and_theme_colours(store: Store) -> None:
    from screens.theme import state_style

    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await type_filter(pilot, "svc-00000")
        t = table(app)
        assert [c.name for c in t.visible_rows()][:2] == ["svc-000000-alpha", "svc-000001-bravo"]
        text = screen_text(app)
        # synthetic(1): expired 9 days less an hour ago; no evidence of use
        assert "expired 8d ago" in text
        assert "unknown" in text
        for theme in ("light", "dark"):
            app.action_toggle_theme()
            await pilot.pause()
            # the second row (not the cursor's) as painted: its segments carry the marks
            t.refresh()
            styles = [seg.style for seg in t.render_line(2)._segments if seg.text.strip()]
            colours = {s.color for s in styles if s and s.color}
            assert state_style(app, "expired").color in colours, theme


@sync_test
async def test_filter_narrows_inverts_and_clears(store: Store, creds) -> None:
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await type_filter(pilot, "zulu")
        want = expected(creds, "zulu")
        assert 0 < len(want) < N
        assert await all_names(pilot) == want
        await pilot.press("enter")
        assert "filter zulu" in screen_text(app)
        await type_filter(pilot, "")
        await pilot.press("slash", *("backspace",) * 4, "!", *"zulu")
        await pilot.pause(0.1)
        await settle(pilot)
        assert await all_names(pilot) == expected(creds, "!zulu")
        await pilot.press("escape")  # out of the box, the filter cleared
        await settle(pilot)
        assert table(app).total == N and "filter" not in screen_text(app).splitlines()[-1]


@sync_test
async def test_a_filter_typed_in_one_burst_lands_whole_in_the_box(store: Store, creds) -> None:
    """`/zulu` sent at once, as a fast typist or tmux does: the keys after `/` reach the box
    (none is handed to the table before the box has focus), and a `/` typed in the box is
    text, not the filter key again."""
    from textual.widgets import Input

    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        send_burst(app, [("slash", "/"), *((c, c) for c in "zulu")])
        await pilot.pause(0.1)
        await settle(pilot)
        box = app.screen.query_one("#filter", Input)
        assert box.value == "zulu" and box.has_focus
        assert await all_names(pilot) == expected(creds, "zulu")
        send_burst(app, [("slash", "/"), ("x", "x")])
        await pilot.pause(0.1)
        await settle(pilot)
        assert box.value == "zulu/x"
        # enter ends the filter at once: the key right behind it is the table's (E sorts by
        # expiry), not one more letter in the box
        send_burst(app, [("y", "y"), ("enter", None), ("E", "E")])
        await pilot.pause(0.1)
        await settle(pilot)
        assert box.value == "zulu/xy" and not box.has_focus
        assert app.screen.sort == "expires"
        assert sorted(await all_names(pilot)) == sorted(expected(creds, "zulu/xy"))
        # esc likewise: the box is emptied and closed after the keys before it, and the key
        # behind it is the table's (E again: expiry, descending)
        send_burst(app, [("slash", "/"), ("q", "q"), ("escape", None), ("E", "E")])
        await pilot.pause(0.1)
        await settle(pilot)
        assert box.value == "" and not box.display and not box.has_focus
        assert app.screen.descending and table(app).total == N


@sync_test
async def test_enter_right_behind_a_burst_judges_what_the_box_holds(store: Store) -> None:
    """`/owner:⏎` in one burst: enter is judged on what the box holds once the keys before
    it are in (a filter that does not parse: said, and the box taken back), not on what the
    screen had seen of them; and `x⏎` fixing it is applied, with no warning."""
    from textual.widgets import Input

    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        send_burst(app, [("slash", "/"), *((c, c) for c in "owner:"), ("enter", None)])
        await pilot.pause(0.1)
        await settle(pilot)
        box = app.screen.query_one("#filter", Input)
        assert box.value == "owner:" and box.has_focus
        assert any("not applied" in m for m in notes(app))
        app._notifications.clear()
        send_burst(app, [("x", "x"), ("enter", None)])
        await pilot.pause(0.1)
        await settle(pilot)
        assert not box.has_focus and not any("not applied" in m for m in notes(app))
        assert "filter owner:x" in screen_text(app).splitlines()[-1]


@sync_test
async def test_a_bad_filter_keeps_the_last_good_one_and_says_why(store: Store, creds) -> None:
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await type_filter(pilot, "zulu name:")
        status = screen_text(app).splitlines()[-1]
        # what was typed, that it was not applied and why; the rows answer the last good text
        assert "zulu name: not applied: name: needs a value" in status
        assert "filter zulu name " in status
        assert await all_names(pilot) == expected(creds, "zulu name")
        await pilot.press("enter")  # refused: the box stays open and says why
        assert any("not applied" in m for m in notes(app))
        assert app.screen.query_one("#filter").has_focus
        await pilot.press("escape")
        await settle(pilot)
        status = screen_text(app).splitlines()[-1]
        assert "not applied" not in status and "zulu" not in status
        assert table(app).total == N


@sync_test
async def test_sort_keys_toggle_and_the_label_follows(store: Store, creds) -> None:
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        names = sorted((c.name for c in creds), key=str.lower)
        await pilot.press("N")  # already by name: toggles to descending
        await settle(pilot)
        assert await all_names(pilot) == names[::-1]
        assert "sort name ↓" in screen_text(app) and "NAME ↓" in screen_text(app)
        await pilot.press("N")
        await settle(pilot)
        assert await all_names(pilot) == names
        await pilot.press("E")
        await settle(pilot)  # by expiry: no expiry first, then soonest
        assert "sort expiry ↑" in screen_text(app) and "EXPIRES ↑" in screen_text(app)
        rows = await all_rows(pilot)
        dated = [c.expires_at for c in rows if c.expires_at]
        assert rows[0].expires_at is None and dated == sorted(dated)
        await pilot.press("E")
        await settle(pilot)
        assert "sort expiry ↓" in screen_text(app)
        assert [c.id for c in await all_rows(pilot)] == [c.id for c in rows][::-1]
        await pilot.press("U")
        await settle(pilot)
        rows = await all_rows(pilot)
        used = [c.last_used_at for c in rows if c.last_used_at]
        assert rows[0].last_used_at is None and used == sorted(used)
        assert "sort last use ↑" in screen_text(app)


@sync_test
async def test_detail_shows_metadata_agents_chain_and_back(store: Store, creds) -> None:
    granted = next(c for c in creds if c.source == "vault-prod" and c.agents)
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await type_filter(pilot, f"name:{granted.name}")
        await pilot.press("enter")  # closes the filter box
        await pilot.press("enter")  # opens the detail
        await settle(pilot)
        assert isinstance(app.screen, DetailScreen)
        text = screen_text(app)
        assert f"creds › credential {granted.name}" in text  # breadcrumbs  # noqa: RUF001
        assert granted.id in text
        assert granted.agents[0] in text
        assert "policy:agents-read" in text and f"rule:{granted.location}" in text
        assert "never rotated by keyshift" in text
        assert granted.fingerprint[:12] in text
        assert granted.fingerprint not in text  # shown truncated
        await pilot.press("c")
        assert app.clipboard == granted.id
        await pilot.press("escape")
        assert isinstance(app.screen, CredsScreen)


@sync_test
async def test_help_lists_what_each_key_does_its_id_and_the_views(store: Store) -> None:
    app = make_app(store, keymap={"creds.sync": "ctrl+y"})
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for ident, does in (
            ("creds.filter", "Filter"),
            ("creds.rotate", "Rotate"),
            ("creds.sort-expires", "Sort by expiry"),
            ("app.command", "Command"),
            ("app.quit", "Quit"),
        ):
            line = next(li for li in text.splitlines() if ident in li)
            assert does in line, line
        sync_line = next(li for li in text.splitlines() if "creds.sync" in li)
        assert "ctrl+y" in sync_line  # the key in force, remapped
        app.screen.query_one("#help-dialog").scroll_end(animate=False)
        await pilot.pause()
        text = screen_text(app)
        for view in (":creds", ":agents", ":runs", ":audit", ":sources"):
            assert view in text
        assert "used unknown" in text or "last use unknown" in text  # the legend
        await pilot.press("escape")
        assert isinstance(app.screen, CredsScreen)


@sync_test
async def test_every_binding_has_an_id_and_a_description() -> None:
    from screens.bindings import scopes

    for scope, bound in scopes().items():
        for item in bound:
            binding = item.binding
            if item.owner.__module__.startswith("textual."):
                continue  # Textual's own widgets (DataTable, Tree, Input)
            assert binding.id, f"{scope}: {item.owner.__name__} {binding.key} has no id"
            assert binding.description, f"{binding.id} has no description"


@sync_test
async def test_empty_store_says_how_to_fill_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "empty.db")
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "press s to sync" in screen_text(app)
    store.close()


# --- sync and secrets -------------------------------------------------------------------


def _declared_inventory(tmp_path: Path, canary: str) -> Path:
    (tmp_path / "support.env").write_text(f"OPENAI_API_KEY={canary}\nOTHER=1\n")
    inv = tmp_path / "inventory.yaml"
    inv.write_text(
        f"""version: 1
agents:
  - name: support-bot
    owner: team-support
    environment: prod
sources:
  - name: declared
    type: declared
credentials:
  - name: openai-support-{MARKER}
    source: declared
    kind: api-key
    provider: openai
    owner: team-support
    environment: prod
    agents: [support-bot]
    delivered_to:
      - type: env-file
        path: support.env
        var: OPENAI_API_KEY
  - name: stripe-billing
    source: declared
    kind: payment-key
    provider: stripe
    environment: prod
    agents: [support-bot]
"""
    )
    return inv


@sync_test
async def test_sync_adds_rows_and_no_secret_reaches_the_screen(store: Store, tmp_path) -> None:
    from console.config import load_inventory

    canary = "sk-CANARY" + pysecrets.token_hex(16)
    loaded = load_inventory(_declared_inventory(tmp_path, canary))
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("s")
        await settle(pilot)
        await app.workers.wait_for_complete()  # the sync, which settle does not wait for
        await settle(pilot)
        t = table(app)
        assert t.total == N + 2
        texts = [screen_text(app)]
        assert "declared done" in texts[0]
        await type_filter(pilot, f"openai-support-{MARKER}")
        assert window_names(app) == [f"openai-support-{MARKER}"]
        cred = t.current
        assert cred is not None and cred.fingerprint  # the value was read, fingerprinted
        texts.append(screen_text(app))
        await pilot.press("enter", "enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        texts.append(screen_text(app))
        assert "support-bot" in texts[-1] and "declared in inventory" in texts[-1]
        await pilot.press("question_mark")
        texts.append(screen_text(app))
        svg = app.export_screenshot()
    # the marker in the name is on screen (the export works), the value never is
    assert MARKER in texts[1] and MARKER in texts[2]
    for text in (*texts, svg):
        assert canary not in text
        assert canary[9:] not in text
    audit = AuditLog(store).tail(5)
    assert any(e.action == "sync" and e.actor == "tester" for e in audit)


@sync_test
async def test_read_only_strips_rotate_and_still_syncs(store: Store, tmp_path) -> None:
    from console.config import load_inventory
    from screens.palette import commands

    loaded = load_inventory(_declared_inventory(tmp_path, "sk-x" + pysecrets.token_hex(8)))
    app = make_app(store, loaded, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        text = screen_text(app)
        header = "\n".join(text.splitlines()[:2])
        assert "READ-ONLY" in header
        assert "Rotate" not in header and "Sync" in header  # sync only reads providers
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, CredsScreen)  # no rotate dialog: the key is gone
        await pilot.press("s")
        await settle(pilot)
        await app.workers.wait_for_complete()
        await settle(pilot)
        assert table(app).total == N + 2  # synced
        names = {c.name for c in commands(app)}
        assert "creds: Sync" in names and "creds: Rotate" not in names
        assert not any(n.startswith("runs: Resume") or n.startswith("runs: Roll") for n in names)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, DetailScreen)
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        await pilot.press("question_mark")
        help_text = screen_text(app)
        assert "detail.holders" in help_text  # the detail screen's keys are listed...
        assert "detail.rotate" not in help_text  # ...but not the one that changes things
        assert "read-only" in help_text
    assert any(e.action == "sync" for e in AuditLog(store).tail(20))


@sync_test
async def test_quit_key(store: Store) -> None:
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


# --- rotation against the sandbox's OpenBao ------------------------------------------------

ROTATE_INVENTORY = """\
version: 1
sources:
  - {name: vault-sandbox, type: openbao, sandbox: true, issuer_tag: keyshift-issuer}
  - {name: declared, type: declared}
policies:
  grace_period_hours: 24
providers:
  - {name: openai, sandbox: true, verify: {url: "https://api.openai.com/v1/models"}}
credentials:
  - name: openai-tui
    source: declared
    kind: api-key
    provider: openai
    environment: prod
    delivered_to:
      - {type: env-file, path: agent/.env, var: OPENAI_API_KEY}
"""


@pytest.fixture
def kv_secret(sandbox, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A KV v2 secret of this test's own in the sandbox, a store row for it, and a loaded
    inventory naming the sandbox source. Yields (store, loaded, vault, path, cred, value)."""
    import uuid

    from console.config import load_inventory
    from console.sandbox import vault_client

    vault = vault_client(sandbox)
    path = f"tui-tests/{uuid.uuid4().hex[:12]}"
    value = "canary-" + pysecrets.token_urlsafe(24)
    vault.secrets.kv.v2.create_or_update_secret(path, {"value": value}, mount_point="secret")
    # what it holds, declared the way a sync reads it: a shared secret keyshift may generate
    vault.secrets.kv.v2.update_metadata(
        path, mount_point="secret", custom_metadata={"keyshift-issuer": "generated"}
    )
    native = f"secret/{path}"
    cred = Credential(
        id=f"vault-sandbox:kv:{native}",
        source="vault-sandbox",
        kind="kv",
        native_id=native,
        name=f"rot-{path.split('/')[1]}",
        location=native,
        version="1",
        owner="team-support",
        tags={"keyshift-issuer": "generated"},
    )
    store = Store(tmp_path / "rotate.db")
    store.bulk_insert_credentials([cred, *(synthetic(i) for i in range(40))])
    inv = tmp_path / "rotate.yaml"
    inv.write_text(ROTATE_INVENTORY)
    yield store, load_inventory(inv), vault, path, cred, value
    store.close()


def _kv(vault, path: str) -> dict:  # type: ignore[no-untyped-def]
    return vault.secrets.kv.v2.read_secret_version(
        path, mount_point="secret", raise_on_deleted_version=True
    )["data"]


async def _open_rotate(pilot, app: KeyshiftApp, name: str):  # type: ignore[no-untyped-def]
    from screens.rotate import RotateScreen

    await type_filter(pilot, f"name:{name}")
    await pilot.press("enter")  # close the filter box
    assert table(app).current is not None and table(app).current.name == name
    await pilot.press("r")
    await pilot.pause()
    assert isinstance(app.screen, RotateScreen)
    await app.workers.wait_for_complete()  # the plan
    await pilot.pause()
    return app.screen


@sync_test
async def test_rotate_confirmed_changes_the_value_in_vault(kv_secret) -> None:
    store, loaded, vault, path, cred, old = kv_secret
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await _open_rotate(pilot, app, cred.name)
        text = screen_text(app)
        assert "issuer     generated" in text and "vault-kv: vault-sandbox" in text
        assert "1. issue:" in text and "2. deliver:" in text and "3. verify:" in text
        assert "downtime   none" in text
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        text = screen_text(app)
        for step in ("identify", "issue", "deliver:0", "verify", "promote:0"):
            assert dialog.step_lines[step][0] == "done", dialog.step_lines
        assert "Rotate (y)" not in text  # nothing left to start from a finished dialog
        assert "awaiting-revoke" in text  # the old value stays valid for the grace period
        new = _kv(vault, path)
        assert new["metadata"]["version"] == 2
        new_value = new["data"]["value"]
        assert new_value != old
        assert old not in text and new_value not in text
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, CredsScreen)
        await pilot.press("enter")
        await pilot.pause()
        text = screen_text(app)
        assert "rotation history (1)" in text and "awaiting-revoke" in text
        assert old not in text and new_value not in text
    runs = store.rotation_runs(credential_id=cred.id)
    assert len(runs) == 1 and runs[0]["actor"] == "tester"


@sync_test
async def test_marked_rows_rotate_together_after_one_confirmation(kv_secret) -> None:
    """Two KV secrets and one credential nobody declared how to rotate are marked; the one
    confirmation lists all three (the third as skipped, with why); y rotates the two."""
    store, loaded, vault, path, cred, _old = kv_secret
    second_path = f"{path}-b"
    vault.secrets.kv.v2.create_or_update_secret(
        second_path, {"value": "canary-" + pysecrets.token_urlsafe(24)}, mount_point="secret"
    )
    vault.secrets.kv.v2.update_metadata(
        second_path, mount_point="secret", custom_metadata={"keyshift-issuer": "generated"}
    )
    second = cred.model_copy(update={
        "id": f"vault-sandbox:kv:secret/{second_path}", "native_id": f"secret/{second_path}",
        "location": f"secret/{second_path}", "name": f"{cred.name}-b",
    })
    store.bulk_insert_credentials([second])
    unknown = synthetic(2)  # an IAM key of a source the inventory does not name
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        await type_filter(pilot, f"name:{cred.name}*")
        await pilot.press("enter")
        await pilot.press("space", "space")
        await type_filter(pilot, "")
        await pilot.press(*("backspace",) * 20)
        await type_filter(pilot, f"name:{unknown.name}")
        await pilot.press("enter", "space")
        assert len(table(app).marked) == 3
        await pilot.press("r")
        for _ in range(100):
            await pilot.pause(0.05)
            if app.screen.state == "ready":
                break
        text = screen_text(app)
        assert "Rotate 3 marked credentials" in text
        assert cred.name in text and second.name in text and unknown.name in text
        assert "skipped:" in text and "Rotate 2 (y)" in text
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        text = screen_text(app)
        assert text.count("awaiting-revoke") == 2
        assert any("rotated 2 of 2" in m for m in notes(app))
        await pilot.press("escape")
        await settle(pilot)
        assert not table(app).marked  # spent
    assert _kv(vault, path)["metadata"]["version"] == 2
    assert _kv(vault, second_path)["metadata"]["version"] == 2
    assert store.rotation_runs(credential_id=unknown.id) == []


@sync_test
async def test_a_refused_plan_never_offers_rotate(kv_secret) -> None:
    from screens.rotate import RotateScreen

    store, loaded, _vault, _path, _cred, _old = kv_secret
    unknown = synthetic(2)
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        await type_filter(pilot, f"name:{unknown.name}")
        await pilot.press("enter", "r")
        await pilot.pause()
        assert isinstance(app.screen, RotateScreen)
        seen = [screen_text(app)]  # while the plan is read: nothing to press
        await app.workers.wait_for_complete()
        await pilot.pause()
        seen.append(screen_text(app))
        assert "cannot rotate" in seen[-1]
        await pilot.press("y")
        await pilot.pause()
        assert app.screen.state == "refused"
        for text in seen:
            assert "Rotate (y)" not in text
    assert store.rotation_runs(credential_id=unknown.id) == []


@sync_test
async def test_the_sync_line_goes_once_the_sync_is_over(
    store: Store, tmp_path, monkeypatch
) -> None:
    from console.config import load_inventory
    from screens import creds as creds_mod

    # Shown, then gone: polled, so a loaded machine that is slow to paint cannot miss the line
    # (a fixed pause once did, in CI). The keep is long enough for a 0.05 s poll to see it.
    monkeypatch.setattr(creds_mod, "SYNC_LINE_KEEP", 2.0)
    loaded = load_inventory(_declared_inventory(tmp_path, "sk-x" + pysecrets.token_hex(8)))
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("s")
        shown = gone = False
        for _ in range(600):
            text = screen_text(app)
            shown = shown or "declared done" in text
            gone = shown and "declared done" not in text
            if gone:
                break
            await pilot.pause(0.05)
        assert shown, "the sync line never showed the source's result"
        assert gone, "the sync line stayed after the sync was over"
        assert not any(w.is_running for w in app.workers)
        assert any("sync ok" in m for m in notes(app))  # the summary stays as a notification


@sync_test
async def test_rotate_cancelled_changes_nothing(kv_secret) -> None:
    store, loaded, vault, path, cred, old = kv_secret
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        await _open_rotate(pilot, app, cred.name)
        assert "downtime   none" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, CredsScreen)
    current = _kv(vault, path)
    assert current["metadata"]["version"] == 1 and current["data"]["value"] == old
    assert store.rotation_runs(credential_id=cred.id) == []


def _standin(path: str, **body):  # type: ignore[no-untyped-def]
    """The provider stand-in's console: what a person does on the provider's website."""
    import requests

    from console.sandbox import provider_base

    session = requests.Session()
    session.trust_env = False
    got = session.post(f"{provider_base('openai')}/console/{path}", json=body, timeout=10)
    got.raise_for_status()
    return got.json()


def _standin_accepts(key: str) -> bool:
    import requests

    from console.sandbox import provider_base

    session = requests.Session()
    session.trust_env = False
    got = session.get(
        f"{provider_base('openai')}/v1/models", headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    return got.status_code == 200


@sync_test
async def test_a_provider_key_rotates_through_the_checklist_with_a_hidden_prompt(
    kv_secret, tmp_path: Path
) -> None:
    """A person mints the new key at the provider, pastes it into a password field; keyshift
    delivers it, the provider's hook accepts it, and the key is on no screen and in no file of
    keyshift's."""
    from textual.widgets import Input

    from screens.prompts import SecretPrompt

    store, loaded, _vault, _path, _cred, _old = kv_secret
    old_key = _standin("keys", name="old")["key"]
    env_file = tmp_path / "agent" / ".env"
    env_file.parent.mkdir()
    env_file.write_text(f"OTHER=1\nOPENAI_API_KEY={old_key}\n")
    env_file.chmod(0o640)
    row = Credential(
        id="declared:api-key:openai-tui", source="declared", kind="api-key",
        native_id="openai-tui", name="openai-tui", environment="prod",
    )
    store.bulk_insert_credentials([row])
    seen: list[str] = []
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await _open_rotate(pilot, app, "openai-tui")
        seen.append(screen_text(app))
        assert "a person mints" in seen[-1] and "/openai/console" in seen[-1]
        new_key = _standin("keys", name="new")["key"]  # minted at the provider's console
        await pilot.press("y")
        for _ in range(100):
            await pilot.pause(0.05)
            if isinstance(app.screen, SecretPrompt):
                break
        assert isinstance(app.screen, SecretPrompt)
        seen.append(screen_text(app))
        assert "Mint a new key for openai-tui" in seen[-1]
        field = app.screen.query_one(Input)
        assert field.password
        for ch in new_key:
            await pilot.press(ch if ch != "-" else "minus")
        seen.append(screen_text(app))
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        seen.append(screen_text(app))
        assert dialog.step_lines["verify"][0] == "done", dialog.step_lines
        assert "awaiting-revoke" in seen[-1]
    assert f"OPENAI_API_KEY={new_key}" in env_file.read_text()
    assert "OTHER=1" in env_file.read_text() and env_file.stat().st_mode & 0o777 == 0o640
    assert _standin_accepts(new_key) and _standin_accepts(old_key)  # old one: until revoke
    for text in seen:
        assert new_key not in text and old_key not in text
    for part in ("rotate.db", "rotate.db-wal"):
        path = tmp_path / part
        if path.exists():
            data = path.read_bytes()
            assert new_key.encode() not in data and old_key.encode() not in data
    run = store.rotation_runs(credential_id=row.id)[0]
    assert run["status"] == "awaiting-revoke" and run["rotator"] == "provider"


# --- snapshots (frozen clock) --------------------------------------------------------------


@pytest.fixture
def frozen():  # type: ignore[no-untyped-def]
    """Frozen clock; list it before ``store`` so the store's bookkeeping times are frozen too."""
    import time_machine

    with time_machine.travel(FROZEN, tick=False) as traveller:
        yield traveller


def _snap_app(store: Store, **kw) -> KeyshiftApp:  # type: ignore[no-untyped-def]
    # the default clock (datetime.now), frozen by time-machine
    return KeyshiftApp(store, None, AuditLog(store), actor="tester", **kw)


def _settled(*keys: str):  # type: ignore[no-untyped-def]
    """A run_before for snap_compare: press keys, then let the count worker land."""

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.pause()
        if keys:
            await pilot.press(*keys)
            await pilot.pause(0.1)
        await settle(pilot)

    return run_before


def test_snapshot_inventory(frozen, store: Store, snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(_snap_app(store), terminal_size=SIZE, run_before=_settled())


def test_snapshot_inventory_filtered(frozen, store: Store, snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(
        _snap_app(store),
        terminal_size=SIZE,
        run_before=_settled("slash", *"owner:none", "enter", "E"),
    )


def test_snapshot_read_only(frozen, store: Store, snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(_snap_app(store, read_only=True), terminal_size=SIZE, run_before=_settled())


def test_snapshot_detail(frozen, store: Store, creds, snap_compare) -> None:  # type: ignore[no-untyped-def]
    granted = next(c for c in creds if c.source == "vault-prod" and c.agents)
    assert snap_compare(
        _snap_app(store),
        terminal_size=SIZE,
        run_before=_settled("slash", *f"name:{granted.name}", "enter", "enter"),
    )


# --- quitting while work runs ------------------------------------------------------------


@sync_test
async def test_quit_waits_for_a_running_rotation(kv_secret) -> None:
    """A rotation stopped half-way would leave a pending version nobody verifies: `q` and
    ctrl+q are refused until it has finished, then quit works."""
    import threading

    from rotators import registry
    from rotators.base import Pending, Plan

    store, loaded, _vault, _path, cred, _old = kv_secret
    release = threading.Event()

    class SlowCreate:  # a third-party rotator (keyshift's first protocol) whose provider is slow
        name = "test-slow-create"
        kinds = ("kv",)
        manual = False

        def __init__(self, context):  # type: ignore[no-untyped-def]
            self.context = context

        def plan(self, cred):  # type: ignore[no-untyped-def]
            return Plan(rotator=self.name, summary="slow", steps=["create: slowly"],
                        zero_downtime=True)

        def create(self, cred, run_id):  # type: ignore[no-untyped-def]
            release.wait(30)
            return Pending(version="2", previous_version="1")

        def verify(self, cred, pending):  # type: ignore[no-untyped-def]
            return None

        def promote(self, cred, pending):  # type: ignore[no-untyped-def]
            return None

        def revoke(self, cred, previous_version):  # type: ignore[no-untyped-def]
            return None

        def rollback(self, cred, pending):  # type: ignore[no-untyped-def]
            return None

    registry.register(SlowCreate)
    store.bulk_insert_credentials(
        [cred.model_copy(update={"id": cred.id + "-slow", "rotator": "test-slow-create"})]
    )
    try:
        app = make_app(store, loaded)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("/")
            for key in cred.name:
                await pilot.press(key)
            await pilot.press("enter")
            await settle(pilot)
            slow = [c for c in table(app).visible_rows() if c.rotator == "test-slow-create"]
            assert slow, "the slow credential is listed"
            while table(app).current.rotator != "test-slow-create":
                await pilot.press("down")
            await pilot.press("r")
            for _ in range(100):
                await pilot.pause(0.05)
                if "test-slow-create" in screen_text(app):
                    break
            await pilot.press("y")
            await pilot.pause(0.2)
            assert app.busy_with() == "a rotation"
            await pilot.press("ctrl+q")
            await pilot.press("q")
            await pilot.pause(0.2)
            assert app.is_running
            assert any("a rotation is running" in m for m in notes(app))
            release.set()
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert app.busy_with() is None
            runs = store.rotation_runs(credential_id=cred.id + "-slow")
            assert runs and runs[0]["status"] == "awaiting-revoke"
            await pilot.press("escape")
            await pilot.press("q")
            await pilot.pause()
        assert not app.is_running
    finally:
        release.set()
        registry.unregister("test-slow-create")


LAST_USE_INVENTORY = """\
version: 1
sources:
  - {name: v, type: openbao, sandbox: true}
agents:
  - name: support-bot
    environment: prod
    identities: [{type: vault-approle, source: v, role: support-bot}]
"""


@sync_test
async def test_last_use_says_never_unknown_or_who(tmp_path: Path) -> None:
    """LAST USED: a time; `never` where the audit log covers the secret's whole life and
    shows no use; `unknown` where it does not cover it. The detail names the caller of the
    latest use and the agent that runs as it, and the evidence behind a `never`."""
    from datetime import timedelta

    from console.config import loads_inventory
    from console.model import ReadPosition, UsageEvent

    loaded = loads_inventory(LAST_USE_INVENTORY, file="inventory.yaml", base_dir=tmp_path)
    since = FROZEN - timedelta(days=30)

    def kv(name: str, days: int, **kw) -> Credential:  # type: ignore[no-untyped-def]
        return Credential(id=f"v:kv:secret/{name}", source="v", kind="kv",
                          native_id=f"secret/{name}", name=name,
                          created_at=FROZEN - timedelta(days=days), **kw)

    read = kv("read-one", 10, last_used_at=FROZEN - timedelta(days=2),
              last_used_evidence="vault:audit")
    rows = [read, kv("idle-one", 10), kv("older-than-the-log", 90)]
    store = Store(tmp_path / "keyshift.db")
    sync = store.begin_sync(["v"], "test")
    store.apply_source(
        sync, "v", rows, [],
        [UsageEvent(credential_id=read.id, at=FROZEN - timedelta(days=2),
                    identity="approle:support-bot", operation="read", evidence="vault:audit")],
        [], True,
        [ReadPosition(log="/var/log/audit.log", inode=1, offset=10, head="h",
                      covers_since=since)],
    )
    store.finish_sync(sync, "ok", {})
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        lines = {line.split()[0]: line for line in screen_text(app).splitlines()
                 if line.split() and line.split()[0] in {c.name for c in rows}}
        assert "2d ago" in lines["read-one"]
        # EXPIRES says never for all three (no expiry); LAST USED for the idle one only
        assert lines["idle-one"].count(" never ") == 2 and "unknown" not in lines["idle-one"]
        assert lines["older-than-the-log"].count(" never ") == 1
        assert " unknown " in lines["older-than-the-log"]
        await type_filter(pilot, "used:never")
        assert await all_names(pilot) == ["idle-one"]
        await pilot.press("enter", "enter")  # out of the box, into the detail
        await settle(pilot)
        assert "never  (vault:audit covers its whole life)" in screen_text(app)
        await pilot.press("escape", "escape")
        await settle(pilot)
        await type_filter(pilot, "name:read-one")
        await pilot.press("enter", "enter")
        await settle(pilot)
        text = screen_text(app)
        assert isinstance(app.screen, DetailScreen)
        assert "last used by  approle:support-bot  (agent support-bot)  read" in text
    store.close()
