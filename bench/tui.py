"""The credentials view at scale: three tables type the same keys in the same run, over the same
credentials. keyshift's paged table (screens/widgets/credential_table.py), textual-fastdatatable
over a pyarrow table (Harlequin's table), and Textual's stock DataTable holding every row.

    .venv/bin/python bench/tui.py [--rows 100000] [--keystrokes 50] [--db PATH]
                                  [--stock-max-rows 200000] [--no-baselines]

Figures, the same for each side:

- first page: the app constructed -> its first page of rows painted;
- keystroke: a key sent through the driver -> the new filter's first rows painted;
- count: a key -> the number of matches shown and painted. The headline is over the last key
  of each typed word (where typing pauses); the same over every key is printed beside it;
- G: ``G`` on the unfiltered list (the broadest) -> the cursor on the last row, painted.

"Painted" is the end of the first compositor refresh (the screen composited and written to
the terminal) that began with the change in the widget: the bench watches every refresh of
every side the same way (``Frames``), so the figures do not depend on when the bench's own
polling ran. Textual paces refreshes (TEXTUAL_FPS), so every side's figures include waiting
for a frame.

The workload is identical for every side: one store of N synthetic credentials
(bench/store_page.py's generator), a 160x45 terminal, the same warm-up (``qz`` typed and
deleted, untimed), then the same K keystrokes (WORDS typed then deleted one character at a
time: plain substrings and ``!env:dev``), then the filter cleared (untimed) and ``G`` once.
Keys come at a typist's pace: each one once the previous one has settled (its rows and its
count shown) plus FILTER_SETTLE + 10 ms, untimed; so every key takes keyshift's leading edge,
where a burst would be coalesced into fewer queries.

keyshift: ``KeyshiftApp(store, None, AuditLog(store), freeze_heap=True)`` headless
(``run_test``), as ``keyshift tui`` runs it; ``/`` opens the filter box. Its table reads pages
and counts from the store on reader threads, so a keystroke lands when the new query's first
page has (``table.pending`` is None and ``table.result`` answers the text, or the text does not
parse and ``filter_error`` says so), and the count lands when ``table.counting`` goes false.

fastdatatable, the baseline of the RESULT lines (the better of the two): every credential is
read from the store, formatted with screens.format.row_values (the texts keyshift shows),
sorted as keyshift sorts (name ignoring ASCII case, then id) and put in one pyarrow Table
beside a search column made as the store makes search_text (console.query.search_haystacks,
joined by U+001F) and the environment lowercased, all before its clock starts (the kindest
baseline). Per keystroke the text is parsed by console.query.parse (the same language and the
same half-typed errors: the rows stay), a mask is computed with pyarrow.compute (match_substring
on the search column, equal on the environment, inverted for ``!``), the displayed columns are
filtered by it and a new DataTable(backend=ArrowBackend(...)) replaces the old one (the
library's way: its DataTable.clear() says to unmount the table and mount a new one; Harlequin
mounts a new table for each result). Its count is the filtered num_rows in a Static; ``G`` is
bound to its scroll_end action (cursor to the last row).

stock DataTable: the same formatted, sorted rows, given with add_rows at start; per keystroke
the rows are filtered in Python (the same semantics), then clear() and add_rows(). ``G`` is its
scroll_bottom. It is skipped above --stock-max-rows (200,000): it measures every row it is
given, seconds per 100,000 rows (its 100,000-row run takes about 9 minutes), so a
million-row run would take well over an hour.

Both baselines show the columns keyshift shows at this width, at its widths, render cells as
plain text (no markup parsing), and call gc.freeze() after their first refresh, as keyshift
does (freeze_heap). The sides run one after another in one process, in the order above, each
after a gc.collect(); the machine's other load is shared by all three.

Answers are checked: after every key, the names on keyshift's screen (``table.visible_rows()``) must
be each baseline's top rows in the same order, and the count must be the same where keyshift's
is exact (where it is capped, "10,000+", the baseline's must reach it); after ``G``, the last
row and the exact count must be the same. A mismatch exits 1 naming the key, with no RESULT
line.

Prints each side's figures, whether keyshift met its targets at this size, and the RESULT
lines (DESIGN.md): tui-first-page (s), tui-keystroke-p95 (ms), tui-count-p95 (ms, over the
word ends) and tui-last-row (ms), with the fastdatatable side as the baseline. At 1,000,000
rows, keep the filled store with ``--db`` (filling takes minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Paint at most 120 times a second, as `keyshift tui` does (screens/cli.py): Textual reads
# this once, at import; every side of this bench runs under it.
os.environ.setdefault("TEXTUAL_FPS", "120")

from store_page import percentile, synthetic
from textual import events, on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static

from console.audit import AuditLog
from console.errors import KeyshiftError
from console.query import Query, Term, nocase, parse, search_haystacks
from console.store import Store
from screens.app import KeyshiftApp
from screens.creds import FILTER_SETTLE, CredsScreen
from screens.format import COLUMN_KEYS, COLUMNS, row_values
from screens.widgets.credential_table import CredentialTable

SIZE = (160, 45)
# typed then deleted, one character at a time: broad prefixes, an inverted field, narrow words
WORDS = ("support", "!env:dev", "openai", "0012345", "zendesk", "pagerd", "token", "ml-")
WARMUP = ("qz",)
KEY_NAMES = {"!": "exclamation_mark", ":": "colon", "-": "minus"}
CHARS = {name: char for char, name in KEY_NAMES.items()}
PACE = FILTER_SETTLE + 0.01  # the untimed gap after a key has settled: a typist's pace
POLL = 0.0005  # how often a waiting bench looks; the GIL is free while it sleeps
STUCK = 900.0  # seconds one step may take before the bench calls it a bug, not slowness
TOP = 60  # how many top rows of a baseline are kept to compare with keyshift's screen

# keyshift's targets: (figure, at most, unit, the largest store the target is set for)
TARGETS = [
    ("first page", 0.1, "s", 1_000_000),
    ("keystroke p95", 50.0, "ms", 1_000_000),
    ("keystroke p95", 16.0, "ms", 100_000),
    ("count p95 (word ends)", 100.0, "ms", 1_000_000),
    ("G", 100.0, "ms", 1_000_000),
]


@dataclass(frozen=True)
class Key:
    text: str  # what the filter box holds after the key
    key: str  # the key sent
    word_end: bool  # the last key of a typed word: typing pauses here


def keystrokes(words: tuple[str, ...], count: int | None = None) -> list[Key]:
    """Each word typed then deleted a character at a time; ``count`` keys, cycling the words,
    or every word once."""
    keys: list[Key] = []
    previous = ""
    while count is None or len(keys) < count:
        for word in words:
            for k in [*range(1, len(word) + 1), *range(len(word) - 1, -1, -1)]:
                text = word[:k]
                if len(text) < len(previous):
                    name = "backspace"
                else:
                    name = KEY_NAMES.get(text[-1], text[-1])
                keys.append(Key(text, name, k == len(word)))
                previous = text
        if count is None:
            break
    return keys if count is None else keys[:count]


def build_store(path: Path, rows: int) -> Store:
    store = Store(path)
    have = store.count_credentials()
    if have != rows:
        if have:
            raise SystemExit(f"{path} holds {have:,} credentials, not {rows:,}: pass another --db")
        start = time.perf_counter()
        store.bulk_insert_credentials(synthetic(rows))
        store.analyze()
        print(
            f"filled the store with {rows:,} credentials in {time.perf_counter() - start:.1f} s",
            file=sys.stderr,
        )
    return store


# --- driving any app ----------------------------------------------------------------------


class Frames:
    """Every compositor refresh (the screen composited and written out) of every app in
    this process, and the conditions waited on: each waiter learns when the first refresh
    that began with its condition true ended. That is the moment the change it waits for
    was on screen, however the bench's own polling happened to be scheduled."""

    waiting: list[tuple[Callable[[], bool], asyncio.Future]] = []

    @classmethod
    def install(cls) -> None:
        original = Screen._compositor_refresh

        def compositor_refresh(screen: Screen) -> None:
            shown = [(ready, done) for ready, done in cls.waiting if not done.done() and ready()]
            original(screen)
            end = time.perf_counter()
            for _ready, done in shown:
                done.set_result(end)

        Screen._compositor_refresh = compositor_refresh  # type: ignore[method-assign]


Frames.install()


async def painted(ready: Callable[[], bool], what: str) -> float:
    """When the first screen refresh that began with ``ready()`` true ended (perf_counter).
    A refresh is a real one: while an app holds its repaint (``App.batch_update``, as
    keyshift's table does while a typed filter's first page is read) none happens."""
    done: asyncio.Future = asyncio.get_running_loop().create_future()
    entry = (ready, done)
    Frames.waiting.append(entry)
    try:
        return await asyncio.wait_for(done, STUCK)
    except TimeoutError:
        raise SystemExit(f"stuck for {STUCK:.0f} s waiting for {what} to be painted") from None
    finally:
        Frames.waiting.remove(entry)


async def settled(app: App) -> None:
    """Untimed: the app has painted what it had to (or had nothing to paint)."""
    await wait_until(lambda: not app._batch_count, "the app's repaint hold to end")
    done = asyncio.get_running_loop().create_future()
    app.call_after_refresh(lambda: done.done() or done.set_result(None))
    await done


def send_key(app: App, key: str) -> None:
    """What the terminal driver does with a key: no test-harness idle detection in the way."""
    char = None if key == "backspace" else CHARS.get(key, key)
    app._driver.send_message(events.Key(key, char))  # type: ignore[union-attr]


async def wait_until(ready: Callable[[], bool], what: str) -> None:
    deadline = time.perf_counter() + STUCK
    while not ready():
        if time.perf_counter() > deadline:
            raise SystemExit(f"stuck for {STUCK:.0f} s waiting for {what}")
        await asyncio.sleep(POLL)


@dataclass(frozen=True)
class Answer:
    """What a side shows: the names of its top rows and its count."""

    names: tuple[str, ...]
    total: int
    exact: bool = True


@dataclass
class Run:
    label: str
    first: float = math.nan  # s
    keys: list[float] = field(default_factory=list)  # ms, per key
    counts: list[float] = field(default_factory=list)  # ms, per key
    word_counts: list[float] = field(default_factory=list)  # ms, the keys that end a word
    last_row: float = math.nan  # ms
    start: Answer | None = None
    answers: list[Answer] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # the filter after each timed key
    last: Answer | None = None  # after G: the last row's name and the exact count
    notes: list[str] = field(default_factory=list)


class Side:
    """How the bench reads one app: the three are driven by the same loop."""

    label = ""
    app: App

    def landed(self, key: Key) -> bool:
        """The key's rows are in the widget (the paint is waited for after)."""
        raise NotImplementedError

    def counted(self) -> bool:
        return True

    def answer(self) -> Answer:
        raise NotImplementedError


async def type_keys(side: Side, keys: list[Key], run: Run | None) -> None:
    """Type ``keys`` at a typist's pace; with ``run``, time and record every one."""
    for key in keys:
        # both watchers are in place before the key: the first refresh that began with the
        # rows, and the first that began with the rows and their count, whenever the bench
        # itself gets to run
        rows = asyncio.ensure_future(
            painted(lambda key=key: side.landed(key), f"{side.label}: key {key.text!r}")
        )
        count = asyncio.ensure_future(
            painted(
                lambda key=key: side.landed(key) and side.counted(),
                f"{side.label}: the count of {key.text!r}",
            )
        )
        await asyncio.sleep(0)  # both registered
        t0 = time.perf_counter()
        send_key(side.app, key.key)
        t1, t2 = await asyncio.gather(rows, count)
        if run is not None:
            run.texts.append(key.text)
            run.keys.append((t1 - t0) * 1000)
            run.counts.append((t2 - t0) * 1000)
            if key.word_end:
                run.word_counts.append((t2 - t0) * 1000)
            run.answers.append(side.answer())
        await asyncio.sleep(PACE)


async def press_last(side: Side, run: Run, at_last: Callable[[], bool]) -> float:
    """``G``; returns when the last row was painted."""
    t0 = time.perf_counter()
    send_key(side.app, "G")
    shown = await painted(at_last, f"{side.label}: G")
    run.last_row = (shown - t0) * 1000
    return shown


# --- keyshift -----------------------------------------------------------------------------


class KeyshiftSide(Side):
    label = "keyshift"

    def __init__(self, app: KeyshiftApp) -> None:
        self.app = app

    @property
    def screen(self) -> CredsScreen:
        return self.app.screen  # type: ignore[return-value]

    @property
    def table(self) -> CredentialTable:
        return self.screen.table

    def first_page(self) -> bool:
        screen = self.app.screen
        return isinstance(screen, CredsScreen) and screen.table.result is not None

    def landed(self, key: Key) -> bool:
        screen, table = self.screen, self.table
        if screen.query_one("#filter", Input).value != key.text:
            return False
        if screen.filter_error is not None:
            return screen.typed == key.text  # half-typed: the last good rows stay
        result = table.result
        return table.pending is None and result is not None and result.query.text == key.text

    def counted(self) -> bool:
        return not self.table.counting

    def answer(self) -> Answer:
        table = self.table
        return Answer(tuple(c.name for c in table.visible_rows()), table.total, table.exact)

    def settled(self, text: str) -> bool:
        """``text``'s rows and count on screen. Not ``table.busy``: a superseded read that
        the reader drops leaves its token in the table's in-flight set, so busy can stay
        true for good."""
        table, result = self.table, self.table.result
        return (
            table.pending is None
            and result is not None
            and result.query.text == text
            and not table.counting
            and len(table.visible_rows()) == table.window().rows
        )

    def at_last(self) -> bool:
        table = self.table
        current = table.current
        return (
            current is not None
            and table.cursor == table.total - 1
            and len(table.visible_rows()) == table.window().rows
        )


async def keyshift_run(store: Store, keys: list[Key]) -> tuple[Run, Any]:
    run = Run("keyshift")
    gc.collect()
    start = time.perf_counter()
    app = KeyshiftApp(store, None, AuditLog(store), actor="bench", freeze_heap=True)  # as the CLI
    side = KeyshiftSide(app)
    async with app.run_test(size=SIZE) as pilot:
        run.first = await painted(side.first_page, "keyshift: the first page") - start
        run.start = side.answer()
        layout = side.table.columns_layout
        await pilot.press("slash")
        await asyncio.sleep(PACE)
        await type_keys(side, keystrokes(WARMUP), None)
        await type_keys(side, keys, run)
        await pilot.press("escape")  # the filter cleared, the table focused
        table = side.table
        await wait_until(lambda: side.settled(""), "keyshift: the cleared filter")
        await settled(app)
        await asyncio.sleep(PACE)
        t0 = time.perf_counter()
        shown = await press_last(side, run, side.at_last)
        last = table.current
        assert last is not None
        if not table.exact:  # else it was painted with the last row
            shown = await painted(lambda: table.exact, "keyshift: the exact count after G")
        run.notes.append(f"G -> exact count shown {(shown - t0) * 1000:.1f} ms")
        run.last = Answer((last.name,), table.total)
        # the table holds a window of rows, never the whole result
        assert table.loaded_rows <= table.page_size * table.max_pages
    return run, layout


# --- the baselines' data: read and formatted before their clocks start ----------------------


@dataclass
class Prepared:
    keys: list[str]  # the displayed columns (keyshift's at this width)
    labels: list[str]
    widths: list[int]
    search: list[str]  # the store's search_text of each row
    env: list[str | None]  # the environment, ASCII-lowercased
    rows: list[tuple[str, ...]]  # the displayed texts, sorted as keyshift sorts
    arrow: Any = None  # pyarrow Table: the displayed columns
    arrow_filter: Any = None  # pyarrow Table: search, env


def prepare(store: Store, layout: Any) -> Prepared:
    now = datetime.now(UTC)
    keys = list(layout.keys)
    index = [COLUMN_KEYS.index(k) for k in keys]
    labels = [COLUMNS[i].label for i in index]
    rows: list[tuple[str, ...]] = []
    search: list[str] = []
    env: list[str | None] = []
    order: list[tuple[str, str]] = []
    for cred in store.all_credentials():
        values = row_values(cred, now)
        rows.append(tuple(values[i][0] for i in index))
        search.append("\x1f".join(search_haystacks(cred)))
        env.append(nocase(cred.environment) if cred.environment else None)
        order.append((nocase(cred.name), cred.id))
    ranked = sorted(range(len(rows)), key=order.__getitem__)
    return Prepared(
        keys,
        labels,
        list(layout.widths),
        [search[i] for i in ranked],
        [env[i] for i in ranked],
        [rows[i] for i in ranked],
    )


def with_arrow(data: Prepared) -> None:
    import pyarrow as pa

    columns = {
        key: pa.array([row[i] for row in data.rows], pa.string()) for i, key in enumerate(data.keys)
    }
    data.arrow = pa.table(columns)
    data.arrow_filter = pa.table(
        {"search": pa.array(data.search, pa.string()), "env": pa.array(data.env, pa.string())}
    )


def unsupported(term: Term) -> NotImplementedError:
    return NotImplementedError(f"the baselines answer plain words and env:, not {term}")


def arrow_mask(query: Query, table: Any) -> Any:
    """The rows ``query`` keeps, by pyarrow.compute; None for all of them."""
    import pyarrow.compute as pc

    mask = None
    for term in query.terms:
        if term.op == "text":
            hit = pc.match_substring(table["search"], pattern=str(term.value))
        elif term.op == "eq" and term.field == "environment":
            hit = pc.fill_null(pc.equal(table["env"], nocase(str(term.value))), False)
        else:
            raise unsupported(term)
        if term.negate:
            hit = pc.invert(hit)
        mask = hit if mask is None else pc.and_(mask, hit)
    return mask


def python_filter(query: Query, data: Prepared) -> list[tuple[str, ...]]:
    """The rows ``query`` keeps, in plain Python."""
    tests: list[Callable[[str, str | None], bool]] = []
    for term in query.terms:
        value = str(term.value)
        if term.op == "text":
            if term.negate:
                tests.append(lambda s, e, v=value: v not in s)
            else:
                tests.append(lambda s, e, v=value: v in s)
        elif term.op == "eq" and term.field == "environment":
            v = nocase(value)
            if term.negate:
                tests.append(lambda s, e, v=v: e != v)
            else:
                tests.append(lambda s, e, v=v: e == v)
        else:
            raise unsupported(term)
    if not tests:
        return data.rows
    return [
        row
        for row, s, e in zip(data.rows, data.search, data.env, strict=True)
        if all(test(s, e) for test in tests)
    ]


# --- baseline: textual-fastdatatable over pyarrow -----------------------------------------


def fast_table_class() -> type:
    from textual_fastdatatable import DataTable as FastDataTable

    class FastTable(FastDataTable):
        BINDINGS = [Binding("G", "scroll_end", "Last row", show=False)]
        DEFAULT_CSS = "FastTable { height: 1fr; max-height: 100%; }"

    return FastTable


class FastTableApp(App):
    """The credentials in a textual-fastdatatable over pyarrow, filtered with pyarrow.compute."""

    CSS = "#status { height: 1; }"

    def __init__(self, data: Prepared) -> None:
        super().__init__()
        self.data = data
        self.table_class = fast_table_class()
        self.typed = ""
        self.applied = ""  # the filter the rows on screen answer
        self.error = False
        self.count = data.arrow.num_rows
        self.table: Any = None

    def new_table(self, rows: Any) -> Any:
        from textual_fastdatatable import ArrowBackend

        return self.table_class(
            backend=ArrowBackend(rows),
            column_labels=self.data.labels,
            column_widths=self.data.widths,
            cursor_type="row",
            zebra_stripes=True,
            render_markup=False,
        )

    def compose(self) -> ComposeResult:
        yield Input(id="filter")
        self.table = self.new_table(self.data.arrow)
        yield self.table
        yield Static(self.status(), id="status")

    def on_mount(self) -> None:
        self.table.focus()
        self.call_after_refresh(gc.freeze)

    def status(self) -> str:
        return f" {self.count:,} matches" + (f"   filter {self.applied}" if self.applied else "")

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.typed = event.value
        try:
            query = parse(event.value)
        except KeyshiftError:
            self.error = True  # half-typed: the rows stay, as in keyshift
            return
        self.error = False
        mask = arrow_mask(query, self.data.arrow_filter)
        rows = self.data.arrow if mask is None else self.data.arrow.filter(mask)
        table = self.new_table(rows)
        self.table.remove()
        self.mount(table, after=self.query_one("#filter"))
        self.table = table
        self.count = rows.num_rows
        self.applied = event.value
        self.query_one("#status", Static).update(self.status())


class FastSide(Side):
    label = "fastdatatable"

    def __init__(self, app: FastTableApp) -> None:
        self.app = app

    def widget(self) -> Any:
        return self.app.table  # type: ignore[attr-defined]

    def ready(self) -> bool:
        table = self.app.table  # type: ignore[attr-defined]
        return table is not None and table.is_mounted and not table._require_update_dimensions

    def landed(self, key: Key) -> bool:
        app: FastTableApp = self.app  # type: ignore[assignment]
        done = app.error or app.applied == key.text
        return app.typed == key.text and done and self.ready()

    def answer(self) -> Answer:
        table = self.app.table  # type: ignore[attr-defined]
        column = self.app.data.keys.index("name")  # type: ignore[attr-defined]
        names = tuple(
            table.get_cell_at(Coordinate(i, column)) for i in range(min(TOP, table.row_count))
        )
        return Answer(names, table.row_count)

    def at_last(self) -> bool:
        table = self.app.table  # type: ignore[attr-defined]
        return (
            table.cursor_row == table.row_count - 1 and table.scroll_offset.y >= table.max_scroll_y
        )

    def last_answer(self) -> Answer:
        table = self.app.table  # type: ignore[attr-defined]
        column = self.app.data.keys.index("name")  # type: ignore[attr-defined]
        return Answer((table.get_cell_at(Coordinate(table.cursor_row, column)),), table.row_count)


# --- baseline: Textual's DataTable with every row -----------------------------------------


class StockTable(DataTable):
    BINDINGS = [Binding("G", "scroll_bottom", "Last row", show=False)]
    DEFAULT_CSS = "StockTable { height: 1fr; }"


class StockTableApp(App):
    """Every credential in one DataTable, filtered in Python, cleared and refilled."""

    CSS = "#status { height: 1; }"

    def __init__(self, data: Prepared) -> None:
        super().__init__()
        self.data = data
        self.typed = ""
        self.applied = ""
        self.error = False
        self.count = len(data.rows)

    def compose(self) -> ComposeResult:
        yield Input(id="filter")
        yield StockTable(cursor_type="row", zebra_stripes=True)
        yield Static(f" {self.count:,} matches", id="status")

    def on_mount(self) -> None:
        table = self.query_one(StockTable)
        for key, label, width in zip(
            self.data.keys, self.data.labels, self.data.widths, strict=True
        ):
            table.add_column(label, width=width, key=key)
        table.add_rows(self.data.rows)
        table.focus()
        self.call_after_refresh(gc.freeze)

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.typed = event.value
        try:
            query = parse(event.value)
        except KeyshiftError:
            self.error = True
            return
        self.error = False
        rows = python_filter(query, self.data)
        table = self.query_one(StockTable)
        table.clear()
        table.add_rows(rows)
        self.count = len(rows)
        self.applied = event.value
        self.query_one("#status", Static).update(f" {self.count:,} matches   filter {event.value}")


class StockSide(Side):
    label = "DataTable"

    def __init__(self, app: StockTableApp) -> None:
        self.app = app

    @property
    def table(self) -> StockTable:
        return self.app.query_one(StockTable)

    def widget(self) -> Any:
        return self.table

    def ready(self) -> bool:
        table = self.table
        return (
            table.row_count == self.app.count  # type: ignore[attr-defined]
            and not table._require_update_dimensions
        )

    def landed(self, key: Key) -> bool:
        app: StockTableApp = self.app  # type: ignore[assignment]
        done = app.error or app.applied == key.text
        return app.typed == key.text and done and self.ready()

    def answer(self) -> Answer:
        table = self.table
        column = self.app.data.keys.index("name")  # type: ignore[attr-defined]
        names = tuple(table.get_row_at(i)[column] for i in range(min(TOP, table.row_count)))
        return Answer(names, table.row_count)

    def at_last(self) -> bool:
        table = self.table
        return (
            table.cursor_row == table.row_count - 1 and table.scroll_offset.y >= table.max_scroll_y
        )

    def last_answer(self) -> Answer:
        table = self.table
        column = self.app.data.keys.index("name")  # type: ignore[attr-defined]
        return Answer((table.get_row_at(table.cursor_row)[column],), table.row_count)


async def baseline_run(side_class: type, make_app: Callable[[], App], keys: list[Key]) -> Run:
    """The same steps as keyshift_run, for a baseline app."""
    gc.collect()
    start = time.perf_counter()
    app = make_app()
    side = side_class(app)
    run = Run(side.label)
    async with app.run_test(size=SIZE):
        run.first = await painted(side.ready, f"{side.label}: the first page") - start
        run.start = side.answer()
        box = app.query_one("#filter", Input)
        app.set_focus(box)
        await asyncio.sleep(PACE)
        await type_keys(side, keystrokes(WARMUP), None)
        await type_keys(side, keys, run)
        box.value = ""  # the filter cleared, the table focused (untimed)
        await wait_until(
            lambda: app.typed == app.applied == "" and side.ready(),  # type: ignore[attr-defined]
            f"{side.label}: the cleared filter",
        )
        app.set_focus(side.widget())
        await settled(app)
        await asyncio.sleep(PACE)
        await press_last(side, run, side.at_last)
        run.last = side.last_answer()
    run.notes.append(f"whole run {time.perf_counter() - start:.1f} s")
    return run


# --- answers ------------------------------------------------------------------------------


def disagreement(ours: Answer | None, theirs: Answer | None) -> str | None:
    """Why a baseline's answer is not keyshift's, or None when they agree."""
    if ours is None or theirs is None:
        return "no answer"
    if theirs.names[: len(ours.names)] != ours.names:
        for i, (a, b) in enumerate(zip(ours.names, theirs.names, strict=False)):
            if a != b:
                return f"row {i + 1}: keyshift shows {a!r}, the baseline {b!r}"
        return f"keyshift shows {len(ours.names)} rows, the baseline {len(theirs.names)}"
    if ours.exact and theirs.total != ours.total:
        return f"keyshift counts {ours.total:,}, the baseline {theirs.total:,}"
    if not ours.exact and theirs.total < ours.total:
        return f"keyshift counts at least {ours.total:,}, the baseline {theirs.total:,}"
    return None


def check(ours: Run, theirs: Run, keys: list[Key]) -> list[str]:
    problems = []
    steps = [("the first page", ours.start, theirs.start)]
    steps += [
        (f"key {n + 1} ({key.key}: filter {key.text!r})", a, b)
        for n, (key, a, b) in enumerate(zip(keys, ours.answers, theirs.answers, strict=True))
    ]
    steps.append(("G (the last row)", ours.last, theirs.last))
    for what, a, b in steps:
        why = disagreement(a, b)
        if why:
            problems.append(f"{theirs.label} disagrees with keyshift at {what}: {why}")
    return problems


# --- report -------------------------------------------------------------------------------


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def p95(values: list[float]) -> float:
    return percentile(values, 95) if values else math.nan


def summary(run: Run) -> str:
    return (
        f"{run.label:<14} first page {run.first:7.3f} s | keystroke p50 {p50(run.keys):7.1f}  "
        f"p95 {p95(run.keys):7.1f}  max {max(run.keys, default=math.nan):7.1f} ms | "
        f"count p50 {p50(run.word_counts):7.1f}  p95 {p95(run.word_counts):7.1f} ms "
        f"(word ends, n={len(run.word_counts)}); every key p50 {p50(run.counts):.1f}  "
        f"p95 {p95(run.counts):.1f} ms | G {run.last_row:7.1f} ms\n"
        f"{'':<14} slowest keys: "
        + ", ".join(
            f"{text!r} {ms:.1f}"
            for ms, text in sorted(zip(run.keys, run.texts, strict=True), reverse=True)[:5]
        )
    )


def figure(run: Run, name: str) -> float:
    return {
        "first page": run.first,
        "keystroke p95": p95(run.keys),
        "count p95 (word ends)": p95(run.word_counts),
        "G": run.last_row,
    }[name]


def targets(run: Run, rows: int) -> list[str]:
    lines = []
    for name, limit, unit, size in TARGETS:
        value = figure(run, name)
        if rows > size:
            verdict = "no target above this size"
        else:
            verdict = "met" if value <= limit else "MISSED"
        lines.append(
            f"  {name:<22} {value:9.3f} {unit:<2}  target <= {limit:g} {unit} "
            f"(set at {size:,} rows): {verdict}"
        )
    return lines


def result_line(name: str, ours: float, theirs: float, unit: str, digits: int) -> str:
    ratio = theirs / ours if ours > 0 and not math.isnan(theirs) else math.nan
    return (
        f"RESULT {name} keyshift={ours:.{digits}f} baseline={theirs:.{digits}f} "
        f"ratio={ratio:.1f} unit={unit}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--keystrokes", type=int, default=50)
    parser.add_argument(
        "--stock-max-rows",
        type=int,
        default=200_000,
        help="skip the stock DataTable above this many rows",
    )
    parser.add_argument("--no-baselines", action="store_true", help="keyshift alone")
    parser.add_argument("--db", type=Path, default=None, help="reuse (or keep) this store")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="keyshift-bench-tui-"))
    os.environ.setdefault("KEYSHIFT_HOME", str(tmp / "home"))
    keys = keystrokes(WORDS, args.keystrokes)
    runs: list[Run] = []
    print(
        f"{args.rows:,} credentials, {len(keys)} keystrokes, terminal {SIZE[0]}x{SIZE[1]}, "
        f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.2f} at start)",
        flush=True,
    )
    try:
        store = build_store(args.db or tmp / "bench.db", args.rows)
        ours, layout = asyncio.run(keyshift_run(store, keys))
        runs.append(ours)
        print(summary(ours), flush=True)
        if not args.no_baselines:
            start = time.perf_counter()
            data = prepare(store, layout)
            with_arrow(data)
            print(
                f"(baselines' rows read, formatted and sorted in "
                f"{time.perf_counter() - start:.1f} s, before their clocks)",
                flush=True,
            )
            runs.append(asyncio.run(baseline_run(FastSide, lambda: FastTableApp(data), keys)))
            print(summary(runs[-1]), flush=True)
            if args.rows <= args.stock_max_rows:
                runs.append(asyncio.run(baseline_run(StockSide, lambda: StockTableApp(data), keys)))
                print(summary(runs[-1]), flush=True)
            else:
                print(
                    f"DataTable      skipped: {args.rows:,} rows > --stock-max-rows "
                    f"{args.stock_max_rows:,} (it measures every row it is given: seconds "
                    "per 100,000 rows on each broad keystroke)",
                    flush=True,
                )
        store.close()
    finally:
        if args.db is None:
            for f in tmp.glob("*.db*"):
                f.unlink()
    for run in runs:
        for note in run.notes:
            print(f"  {run.label}: {note}")
    problems = [p for run in runs[1:] for p in check(ours, run, keys)]
    print(
        f"load average at the end {os.getloadavg()[0]:.2f} (other work on the machine "
        "shares its cores with every side)"
    )
    print(f"keyshift's targets at {args.rows:,} rows:")
    print("\n".join(targets(ours, args.rows)))
    if problems:  # no RESULT line from answers that disagree
        print("\n".join(problems), file=sys.stderr)
        raise SystemExit(1)
    base = next((run for run in runs if run.label == "fastdatatable"), Run("none"))
    print()
    print(result_line("tui-first-page", ours.first, base.first, "s", 3))
    print(result_line("tui-keystroke-p95", p95(ours.keys), p95(base.keys), "ms", 1))
    print(result_line("tui-count-p95", p95(ours.word_counts), p95(base.word_counts), "ms", 1))
    print(result_line("tui-last-row", ours.last_row, base.last_row, "ms", 1))


if __name__ == "__main__":
    main()
