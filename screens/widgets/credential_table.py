"""The inventory table: a virtual list over the store's result set, read a page at a time by
a reader thread, so the UI thread never runs SQL, counts or waits on the store.

The widget's height in rows is the (known part of the) count of the query. A row that is not
in the page cache paints as a placeholder and asks the reader for its page; when the page
lands the line repaints. A new query keeps the old rows on screen until its first page lands,
so typing never blanks the table. The count runs on a second reader, capped (COUNT_CAP) once
typing pauses, exact only when the cursor nears the end.

Both ends are cheap: rows near the top are read in the query's order, rows near the bottom
in the reversed order (``G`` reads the last page as the first page of the reversed query,
never with a large OFFSET). Before the count is known, ``G`` shows the last rows anchored to
the end; the indices shift into place when the count lands.

Why not Textual's DataTable (holding a window of rows) or a textual-fastdatatable backend:
both render every cell through Rich on each repaint. Here each row is a list of (text, style)
runs made once per fetch, so a repaint is a crop and a style per visible line.
"""

from __future__ import annotations

import contextlib
import gc
from collections import OrderedDict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.dom import NoScreen
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer

from console.errors import KeyshiftError, ReadCancelled
from console.model import Credential
from screens.format import COLUMNS, row_values
from screens.theme import state_style
from screens.widgets.reader import Reader

if TYPE_CHECKING:
    from console.query import Query
    from console.store import Store

# Counting stops here: an exact count of a broad match over a million rows is a full scan,
# and the status line only needs "10,000+". The exact count is taken when the cursor or the
# scrollbar gets near the end.
COUNT_CAP = 10_000
# The capped count starts once the query has been left alone this long (typing paused).
COUNT_AFTER = 0.025
# How long a typed filter may hold the screen's repaint while its first page is read (one
# frame at 60 Hz): the typed character and the rows it selects paint in one frame. Painting
# the echo alone costs a frame, and Textual's frame pacing then holds the rows back for up
# to two more frame intervals.
HOLD_PAINT = 0.016
# After-paint work (a read-ahead, the table's height, the collector) runs after the next
# paint, or after this long at the latest.
AFTER_PAINT_BACKSTOP = 0.1
# Relative times ("5m ago") are written against one clock per query; a new clock, which
# re-formats every row, is taken when the last one is this old (or on a reload).
CLOCK_KEEP = timedelta(seconds=30)
CELL_PADDING = 1
GUTTER = 2  # the mark column: "● " for a marked row
MARK = "●"
NAME_FIRST = 20  # spare cells the name takes before the other columns grow
_INDEX = {c.key: i for i, c in enumerate(COLUMNS)}


@dataclass(frozen=True)
class Layout:
    """The columns on screen and their widths (in COLUMNS order)."""

    keys: tuple[str, ...]
    widths: tuple[int, ...]
    hidden: tuple[str, ...]

    @property
    def width(self) -> int:
        return GUTTER + sum(w + 2 * CELL_PADDING for w in self.widths)


def plan_columns(available: int, chosen: frozenset[str] | None = None) -> Layout:
    """The columns for a view ``available`` cells wide. Without a choice, columns join by
    priority while they fit (the name always); spare cells go to the name first, then to
    the growable columns up to their ceilings. A chosen set is shown whatever the width (a
    narrower view scrolls sideways)."""
    if chosen:
        keep = set(chosen) | {"name"}
    else:
        keep, used = set(), GUTTER
        for col in sorted(COLUMNS, key=lambda c: c.priority):
            need = col.width + 2 * CELL_PADDING
            if col.key != "name" and used + need > available:
                break
            keep.add(col.key)
            used += need
    cols = [c for c in COLUMNS if c.key in keep]
    widths = [c.width for c in cols]
    room = {i: c.grow for i, c in enumerate(cols) if c.grow}
    spare = available - Layout((), tuple(widths), ()).width
    name = next(i for i, c in enumerate(cols) if c.key == "name")
    first = min(max(spare, 0), NAME_FIRST, room.get(name, 0))
    widths[name] += first
    room[name] -= first
    spare -= first
    while spare > 0 and any(room.values()):
        share = max(spare // len([r for r in room.values() if r]), 1)
        for i in list(room):
            grant = min(share, room[i], spare)
            widths[i] += grant
            room[i] -= grant
            spare -= grant
            if spare == 0:
                break
    hidden = tuple(c.key for c in COLUMNS if c.key not in keep)
    return Layout(tuple(c.key for c in cols), tuple(widths), hidden)


@dataclass(frozen=True)
class Window:
    offset: int  # first row on screen (0-based)
    rows: int  # rows on screen
    total: int
    exact: bool = True
    counting: bool = False
    from_end: bool = False  # the rows are placed from the end; the count is not known yet
    loading: bool = False  # the query's first page has not landed yet
    marked: int = 0


def _fit(text: str, width: int) -> str:
    """``text`` in exactly ``width`` cells: padded, or cut with an ellipsis."""
    text = text.replace("\n", " ").replace("\r", " ")
    if text.isascii() and text.isprintable():  # one cell per character: no width tables
        return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    return set_cell_size(text, width)


@dataclass(frozen=True)
class _Cells:
    """A page's cell texts, made on the reader's thread for one layout and clock."""

    layout: Layout
    clock: datetime
    texts: list[list[tuple[str, str]]]


def _cells(cred: Credential, now: datetime, layout: Layout) -> list[tuple[str, str]]:
    """Each shown column's text, fitted and padded, and its meaning (see screens.theme)."""
    values = row_values(cred, now)
    pad = " " * CELL_PADDING
    out = []
    for key, width in zip(layout.keys, layout.widths, strict=True):
        text, meaning = values[_INDEX[key]]
        out.append((f"{pad}{_fit(text, width)}{pad}", meaning))
    return out


def _merged(runs: list[tuple[str, Style]]) -> list[tuple[str, Style]]:
    """Neighbouring runs of one style as one: most cells share the row's style, and every
    segment costs on each paint of the line."""
    out: list[tuple[str, Style]] = []
    for text, style in runs:
        if out and out[-1][1] == style:
            out[-1] = (out[-1][0] + text, style)
        else:
            out.append((text, style))
    return out


def _strip(runs: list[tuple[str, Style]], base: Style, x: int, width: int, full: int) -> Strip:
    """The line as painted: one Strip, styled and cut to the view, built in one pass."""
    segments = [Segment(text, base + style) for text, style in runs]
    if x + width > full:
        segments.append(Segment(" " * (x + width - full), base))
    strip = Strip(segments, max(full, x + width))
    return strip.crop(x, x + width) if x else strip


@dataclass
class _Result:
    """One query's rows as far as they are known."""

    query: Query
    generation: int
    total: int = 0
    exact: bool = False
    counting: bool = False
    from_end: bool = False  # tail mode: index i is the (total-1-i)-th row from the end
    first_landed: bool = False


class CredentialTable(ScrollView, can_focus=True):
    """Every credential of a query, one line each; the cursor moves over the whole result."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select", "Open", id="table.open"),
        Binding("space", "toggle_mark", "Mark", id="table.mark"),
        Binding("up,k", "cursor_up", "Up", show=False, id="table.up"),
        Binding("down,j", "cursor_down", "Down", show=False, id="table.down"),
        Binding("pageup,ctrl+b", "page_up", "Page up", show=False, id="table.page-up"),
        Binding("pagedown,ctrl+f", "page_down", "Page down", show=False, id="table.page-down"),
        Binding("home,ctrl+home,g", "first", "First row", show=False, id="table.first"),
        Binding("end,ctrl+end,G", "last", "Last row", show=False, id="table.last"),
        Binding("left,h", "scroll_left", "Scroll left", show=False, id="table.left"),
        Binding("right,l", "scroll_right", "Scroll right", show=False, id="table.right"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "credential-table--header",
        "credential-table--cursor",
        "credential-table--odd",
        "credential-table--placeholder",
    }

    DEFAULT_CSS = """
    CredentialTable {
        height: 1fr;
        background: $surface;
        color: $foreground;
    }
    CredentialTable > .credential-table--header {
        text-style: bold;
        background: $panel;
    }
    CredentialTable > .credential-table--cursor {
        background: $block-cursor-blurred-background;
    }
    CredentialTable:focus > .credential-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
    }
    CredentialTable > .credential-table--odd {
        background: $surface-lighten-1 30%;
    }
    CredentialTable > .credential-table--placeholder {
        color: $text-disabled;
    }
    """

    page_size = 60
    max_pages = 12

    # watch_cursor repaints the lines the cursor left and reached, not the whole table
    cursor: reactive[int] = reactive(0, always_update=True, init=False, repaint=False)

    class Selected(Message):
        """Enter (or a double click) on a credential."""

        def __init__(self, table: CredentialTable, credential: Credential) -> None:
            super().__init__()
            self.table = table
            self.credential = credential

        @property
        def control(self) -> CredentialTable:
            return self.table

    class WindowChanged(Message):
        """The rows on screen, the result set or the marks changed."""

        def __init__(self, table: CredentialTable, window: Window) -> None:
            super().__init__()
            self.table = table
            self.window = window

    class Failed(Message):
        """A read failed (a busy or broken store): the screen says what happened."""

        def __init__(self, table: CredentialTable, message: str) -> None:
            super().__init__()
            self.table = table
            self.message = message

    class PageLoaded(Message, bubble=False):
        """From a reader thread (internal)."""

        def __init__(
            self,
            generation: int,
            key: tuple[str, int],
            rows: list[Credential],
            cells: _Cells | None = None,
        ) -> None:
            super().__init__()
            self.generation, self.key, self.rows, self.cells = generation, key, rows, cells

    class Counted(Message, bubble=False):
        """From a reader thread (internal)."""

        def __init__(self, generation: int, total: int, exact: bool) -> None:
            super().__init__()
            self.generation, self.total, self.exact = generation, total, exact

    class ReadFailed(Message, bubble=False):
        """From a reader thread (internal)."""

        def __init__(self, generation: int, key: Any, message: str) -> None:
            super().__init__()
            self.generation, self.key, self.message = generation, key, message

    def __init__(
        self,
        store: Store,
        now: Callable[[], datetime],
        *,
        page_size: int | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.store = store
        self.now = now
        if page_size:
            self.page_size = page_size
        self.pages = Reader("pages")
        self.counts = Reader("counts")
        self.result: _Result | None = None  # what is on screen
        self.pending: _Result | None = None  # a query asked for, its first page not landed
        self._generation = 0  # bumped per query
        self._floor = 0  # the oldest query whose reads are still wanted
        self._keep_from_end: int | None = None
        self._keep_cursor: int | None = None
        self._pages: OrderedDict[tuple[str, int], list[Credential]] = OrderedDict()
        self._pending_pages: dict[
            tuple[str, int], tuple[list[Credential], _Cells | None]
        ] = {}
        # id -> (the credential, (layout, clock), its cells' texts), made by the reader
        self._made_cells: dict[str, tuple[Credential, tuple[Layout, datetime], list]] = {}
        self._inflight: set[tuple[int, str, int]] = set()
        self._count_inflight: set[tuple[int, bool]] = set()
        # id -> (the credential the runs were made from, its runs at self._runs_clock)
        self._runs: dict[str, tuple[Credential, list[tuple[str, Style]]]] = {}
        self._runs_clock: datetime | None = None
        self._count_timer: Timer | None = None
        self._clock: datetime | None = None
        self._last_window: Window | None = None
        self._paint: tuple[Style, Style, Style, Style, Style] = (Style(),) * 5
        self.chosen: frozenset[str] | None = None
        self.columns_layout = plan_columns(0)
        self.marked: dict[str, str] = {}  # id -> name, in the order marked
        self._hold: ExitStack | None = None
        self._gc_paused = False
        self._unmounted = False
        self._laid_out_while_held = False
        self._painted_clock: datetime | None = None
        self._resize_after_paint = False
        self._resize_queued = False
        self._hold_timer: Timer | None = None

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._recolour())

    def on_unmount(self) -> None:
        self._unmounted = True
        self._release_paint()
        self._resume_gc()  # the paint the collector waits for may never come now
        self.app.theme_changed_signal.unsubscribe(self)
        self.pages.close()
        self.counts.close()

    def _recolour(self) -> None:
        self._runs.clear()  # rows were styled with the old theme's colours
        self.refresh()

    # --- what the screen asks ------------------------------------------------------------

    @property
    def query_(self) -> Query | None:
        return self.result.query if self.result else None

    @property
    def total(self) -> int:
        return self.result.total if self.result else 0

    @property
    def exact(self) -> bool:
        return self.result.exact if self.result else True

    @property
    def counting(self) -> bool:
        return bool(self.result and self.result.counting)

    @property
    def busy(self) -> bool:
        """Reads still out for what is on screen (tests and the bench wait on this)."""
        return bool(self.pending or self._inflight or self.counting or self._missing_on_screen())

    def show(self, query: Query, *, keep_position: bool = False, hold_paint: bool = False) -> None:
        """Show ``query``: its first page is read at once, and replaces the rows on screen
        when it lands (a reload lands at the cursor's place). ``hold_paint``: the screen's
        repaint waits for that page, HOLD_PAINT at most."""
        if hold_paint:
            self.hold_paint(HOLD_PAINT)
        old = self.result
        self._generation += 1
        self._floor = self._generation  # reads for older queries are no longer wanted
        # the readers drop those unanswered: forget them
        self._inflight.clear()
        self._count_inflight.clear()
        pending = self.pending = _Result(query, self._generation)
        self._pending_pages = {}
        self._keep_cursor = None
        self._keep_from_end = None
        now = self.now()
        if keep_position or self._clock is None or abs(now - self._clock) >= CLOCK_KEEP:
            self._clock = now
        self._request(pending, ("head", 0), urgent=True)
        if keep_position and old is not None:
            if old.from_end or (old.exact and old.total > self.page_size
                                and self.cursor >= old.total // 2):
                # near the end: keep the place counted from the end, read from the end
                back = max(old.total - 1 - self.cursor, 0)
                self._keep_from_end = back
                pending.from_end, pending.total = True, old.total
                self._request(pending, ("tail", back // self.page_size), urgent=True)
            else:
                self._keep_cursor = self.cursor
                self._request(pending, ("head", self.cursor // self.page_size), urgent=True)
        self._post_window()

    def reload(self) -> None:
        """Re-read the store (after a sync or a rotation), keeping the cursor's place; a
        query still on its way is the one re-read."""
        target = self.pending or self.result
        if target is not None:
            self.show(target.query, keep_position=self.result is not None)

    def row(self, index: int) -> Credential | None:
        """The ``index``-th credential of the result when its page is here; otherwise None,
        and its page is asked for."""
        result = self.result
        if result is None or not 0 <= index < result.total:
            return None
        key, position = self._locate(result, index)
        page = self._pages.get(key)
        if page is None:
            other = self._other_key(result, index)
            page = self._pages.get(other[0]) if other else None
            if page is None:
                self._request(result, key, urgent=True)
                return None
            key, position = other  # type: ignore[misc]
        self._pages.move_to_end(key)
        return page[position] if position < len(page) else None

    @property
    def current(self) -> Credential | None:
        return self.row(self.cursor)

    @property
    def loaded_rows(self) -> int:
        """How many credentials the widget holds right now (never the whole result)."""
        return sum(len(p) for p in self._pages.values())

    @property
    def body_height(self) -> int:
        return max(self.scrollable_content_region.height - 1, 1)

    def visible_rows(self) -> list[Credential]:
        """The credentials on screen, top to bottom (those whose pages have landed)."""
        first = int(self.scroll_offset.y)
        rows = [self.row(i) for i in range(first, min(first + self.body_height, self.total))]
        return [r for r in rows if r is not None]

    def window(self) -> Window:
        top = int(self.scroll_offset.y)
        rows = max(min(self.body_height, self.total - top), 0)
        result = self.result
        return Window(
            top,
            rows,
            self.total,
            self.exact,
            self.counting,
            bool(result and result.from_end and not result.exact),
            self.pending is not None and result is None,
            len(self.marked),
        )

    # --- columns -------------------------------------------------------------------------

    def choose_columns(self, chosen: frozenset[str] | None) -> None:
        """Show exactly these columns (None: by priority, as many as fit)."""
        self.chosen = chosen or None
        self._relayout(force=True)

    def _relayout(self, force: bool = False) -> None:
        layout = plan_columns(self.scrollable_content_region.width, self.chosen)
        if layout != self.columns_layout or force:
            self.columns_layout = layout
            self._runs.clear()
            self._resize_virtual()
            self.refresh()

    def cell_text(self, cred: Credential, key: str) -> str:
        return row_values(cred, self._clock or self.now())[_INDEX[key]][0]

    # --- reading -------------------------------------------------------------------------

    def _locate(self, result: _Result, index: int) -> tuple[tuple[str, int], int]:
        """Where row ``index`` lives: (direction, page number) and its place in the page.
        Rows in the lower half of an exactly counted result, and every row of a result
        placed from its end, are read in reversed order: no read needs a large OFFSET."""
        if result.from_end and not result.exact:
            offset = result.total - 1 - index
            return ("tail", offset // self.page_size), offset % self.page_size
        if result.exact and index >= result.total // 2 and result.total > self.page_size:
            offset = result.total - 1 - index
            return ("tail", offset // self.page_size), offset % self.page_size
        return ("head", index // self.page_size), index % self.page_size

    def _other_key(self, result: _Result, index: int) -> tuple[tuple[str, int], int] | None:
        """Row ``index`` read the other way, when the count makes both ways agree."""
        if not result.exact:
            return None
        key, _ = self._locate(result, index)
        if key[0] == "tail":
            return ("head", index // self.page_size), index % self.page_size
        offset = result.total - 1 - index
        return ("tail", offset // self.page_size), offset % self.page_size

    def _request(self, result: _Result, key: tuple[str, int], urgent: bool) -> None:
        if result.generation < self._floor:
            return  # a newer query is on its way: its rows replace these
        token = (result.generation, *key)
        if token in self._inflight:
            return
        self._inflight.add(token)
        if urgent or not self.is_mounted:
            self._submit_read(result, key, urgent)
        else:
            # a read-ahead waits for the paint: beside it, building its rows would compete
            # with the paint for the interpreter
            self._after_paint(lambda: self._submit_read(result, key, urgent))

    def _after_paint(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once, after the next paint; a timer stands behind it, as an
        after-refresh callback is lost when its screen goes before it is idle."""
        done = False

        def once() -> None:
            nonlocal done
            if not done:
                done = True
                callback()

        if not self.call_after_refresh(once):
            once()
        else:
            self.set_timer(AFTER_PAINT_BACKSTOP, once)

    def _submit_read(self, result: _Result, key: tuple[str, int], urgent: bool) -> None:
        if result.generation < self._floor:
            return
        direction, number = key
        query = result.query
        if direction == "tail":
            query = replace(query, descending=not query.descending)
        offset, limit, generation = number * self.page_size, self.page_size, result.generation
        layout, clock = self.columns_layout, self._clock or self.now()

        def read() -> tuple[list[Credential], _Cells]:
            rows = self.store.page_credentials(query, offset=offset, limit=limit)
            # the lines' texts are made here, beside the UI thread, for the layout and the
            # clock in force when asked; the UI thread only styles them
            return rows, _Cells(layout, clock, [_cells(c, clock, layout) for c in rows])

        def deliver(read: Any, error: BaseException | None) -> None:
            if error is None:
                rows, cells = read
                self.post_message(self.PageLoaded(generation, key, rows, cells))
            else:
                self.post_message(self.ReadFailed(generation, key, _describe(error)))

        self.pages.submit(
            read, deliver, priority=0 if urgent else 1, wanted=lambda: self._wanted(generation)
        )

    def _wanted(self, generation: int) -> bool:
        # read from the reader's thread: a plain int comparison, no lock needed
        return generation >= self._floor

    def _request_count(self, result: _Result, exact: bool) -> None:
        if result.generation < self._floor:
            return
        token = (result.generation, exact)
        if token in self._count_inflight:
            return
        self._count_inflight.add(token)
        result.counting = True
        query, generation = result.query, result.generation

        def count() -> int:
            with self.store.cancellable(lambda: not self._wanted(generation)):
                return self.store.count_credentials(query, cap=None if exact else COUNT_CAP + 1)

        def deliver(total: Any, error: BaseException | None) -> None:
            if error is None:
                done = exact or total <= COUNT_CAP
                self.post_message(self.Counted(generation, total, done))
            else:
                self.post_message(self.ReadFailed(generation, token, _describe(error)))

        self.counts.submit(
            count, deliver, priority=1 if exact else 0, wanted=lambda: self._wanted(generation)
        )
        self._post_window()

    def on_credential_table_page_loaded(self, message: PageLoaded) -> None:
        message.stop()
        self._inflight.discard((message.generation, *message.key))
        pending = self.pending
        if pending is not None and message.generation == pending.generation:
            self._pending_pages[message.key] = (message.rows, message.cells)
            if message.key == ("head", 0):
                self._swap_in(pending)
            return
        result = self.result
        if result is None or message.generation != result.generation:
            return
        before, top = self._lines(), self.scroll_offset.y
        self._keep_page(result, message.key, message.rows, message.cells)
        self._refresh_since(before, top)
        self._post_window()

    def _swap_in(self, result: _Result) -> None:
        """The new query's first page landed: it replaces what was on screen."""
        keep = self._keep_cursor
        before, top = self._lines(), self.scroll_offset.y
        self.pending, self.result = None, result
        self._pages = OrderedDict()
        if self._count_timer is not None:
            self._count_timer.stop()
        pages, self._pending_pages = self._pending_pages, {}
        back, self._keep_from_end = self._keep_from_end, None
        if back is not None:
            self._resize_virtual()
        # From the top, the new rows paint before the table's height follows them: a new
        # height lays out the whole screen (a few milliseconds), which can wait a frame
        self._resize_after_paint = back is None and keep is None
        try:
            for key in sorted(pages, key=lambda k: k != ("head", 0)):
                self._keep_page(result, key, *pages[key])
        finally:
            self._resize_after_paint = False
        if back is not None:
            self.cursor = max(result.total - 1 - back, 0)
            if not result.exact:
                self._request_count(result, exact=True)
        elif keep is None:
            self.scroll_to(x=0, y=0, animate=False, immediate=True)
            self.cursor = 0
        else:
            self.cursor = min(keep, max(result.total - 1, 0))
        if not result.exact:
            # more than a page: count once typing pauses (a count in flight competes with
            # painting for the CPU)
            result.counting = True
            generation = result.generation
            self._count_timer = self.set_timer(COUNT_AFTER, lambda: self._count_now(generation))
        self._refresh_since(before, top, header=True)
        self._post_window()
        self._release_paint()

    def _lines(self) -> list[object]:
        """What each line on screen shows, below the header: a credential, None for a row
        whose page is on the way, or "" for a blank line. No read is asked for."""
        result = self.result
        total = result.total if result else 0
        top = int(self.scroll_offset.y)
        lines: list[object] = []
        for index in range(top, top + self.body_height):
            if result is None or index >= total:
                lines.append("")
                continue
            key, position = self._locate(result, index)
            page = self._pages.get(key)
            if page is None:
                other = self._other_key(result, index)
                if other is not None:
                    page = self._pages.get(other[0])
                    position = other[1]
            lines.append(page[position] if page is not None and position < len(page) else None)
        return lines

    def _refresh_since(self, before: list[object], top: float, header: bool = False) -> None:
        """Repaint what changed since the screen showed ``before`` from row ``top``: the
        lines whose row differs (typing a filter often keeps most rows on screen: those are
        not rendered again) and the ``header``, or everything after a scroll."""
        if self.scroll_offset.y != top or self._clock != self._painted_clock:
            # a scroll moves every line; a new clock rewrites every relative time
            self._painted_clock = self._clock
            self.refresh()
            return
        width = self.scrollable_content_region.width
        if header:
            self.refresh(Region(0, 0, width, 1))
        after = self._lines()
        for y, (old, new) in enumerate(zip(before, after, strict=True), start=1):
            if old is None or new is None or not (old is new or old == new):
                self.refresh(Region(0, y, width, 1))

    def _refresh_rows(self, *indices: int) -> None:
        top = int(self.scroll_offset.y)
        width = self.scrollable_content_region.width
        for index in indices:
            y = index - top + 1
            if 1 <= y <= self.body_height:
                self.refresh(Region(0, y, width, 1))

    def hold_paint(self, seconds: float) -> None:
        """Hold the screen's repaint for ``seconds`` at most, or until the first page of
        the query being read lands."""
        if self._hold is not None or not self.is_mounted or self._unmounted:
            return  # the first deadline stands: a fast typist still sees the echo in time
        hold = ExitStack()
        hold.enter_context(self.app.batch_update())
        if gc.isenabled() or self._gc_paused:
            # nor does the collector run until the frame is out: a full collection in the
            # middle of a keystroke costs a few milliseconds (seen: 3-4 ms)
            gc.disable()
            self._gc_paused = True
            hold.callback(lambda: self._after_paint(self._resume_gc))
        # a screen layout while the paint is held is composed and then dropped (Textual
        # does not write it out): repaint the screen whole once the hold ends
        self._laid_out_while_held = False
        self.screen.screen_layout_refresh_signal.subscribe(self, self._layout_while_held)
        hold.callback(self._unsubscribe_layout)
        self._hold = hold
        self._hold_timer = self.set_timer(seconds, self._release_paint)

    def _layout_while_held(self, _screen: object) -> None:
        self._laid_out_while_held = True

    def _unsubscribe_layout(self) -> None:
        with contextlib.suppress(NoScreen):
            self.screen.screen_layout_refresh_signal.unsubscribe(self)

    def _resume_gc(self) -> None:
        if self._gc_paused:
            self._gc_paused = False
            gc.enable()

    def _release_paint(self) -> None:
        hold, self._hold = self._hold, None
        if hold is None:
            return
        if self._hold_timer is not None:
            self._hold_timer.stop()
            self._hold_timer = None
        hold.close()
        if self._unmounted:
            return
        if self._laid_out_while_held:
            self.screen.refresh()
        # the screen may have gone idle while held: it resumes painting on its next idle
        self.screen.check_idle()

    def _keep_page(
        self,
        result: _Result,
        key: tuple[str, int],
        rows: list[Credential],
        cells: _Cells | None = None,
    ) -> None:
        if cells is not None:
            made = (cells.layout, cells.clock)
            for cred, texts in zip(rows, cells.texts, strict=True):
                self._made_cells[cred.id] = (cred, made, texts)
            while len(self._made_cells) > self.page_size * self.max_pages:
                self._made_cells.pop(next(iter(self._made_cells)))
        self._pages[key] = rows
        while len(self._pages) > self.max_pages:
            self._pages.popitem(last=False)
        self._learn(result, key, len(rows))

    def _learn(self, result: _Result, key: tuple[str, int], size: int) -> None:
        """What a page tells about the count: a short page ends the result; a full one is a
        lower bound."""
        _direction, number = key
        known = number * self.page_size + size
        if size < self.page_size and (size or number == 0):
            self._set_total(result, known, exact=True)
        elif known > result.total:
            self._set_total(result, known, exact=result.exact)

    def _count_now(self, generation: int) -> None:
        result = self.result
        if result is not None and result.generation == generation and not result.exact:
            result.counting = False
            self._request_count(result, exact=False)

    def _set_total(self, result: _Result, total: int, *, exact: bool) -> None:
        shift = total - result.total if result.from_end and not result.exact else 0
        result.total = total
        result.exact = exact or result.exact
        if result.exact:
            result.counting = False
        self._resize_virtual()
        if shift:
            # rows placed from the end keep their place on screen: every index shifts
            self.scroll_to(y=self.scroll_offset.y + shift, animate=False, immediate=True)
            self.cursor = self.cursor + shift

    def on_credential_table_counted(self, message: Counted) -> None:
        message.stop()
        self._count_inflight.discard((message.generation, message.exact))
        result = self.result
        if result is None or message.generation != result.generation:
            return
        before, top = self._lines(), self.scroll_offset.y
        if result.exact:  # a short page already said
            result.counting = False
        else:
            result.counting = False
            if message.exact or message.total > result.total:
                self._set_total(result, message.total, exact=message.exact)
        self._refresh_since(before, top)
        self._post_window()

    def on_credential_table_read_failed(self, message: ReadFailed) -> None:
        message.stop()
        if (
            isinstance(message.key, tuple)
            and len(message.key) == 2
            and isinstance(message.key[0], str)
        ):
            self._inflight.discard((message.generation, *message.key))
        else:
            self._count_inflight.discard(message.key)
        if message.generation < self._floor:
            return  # cancelled or replaced: nobody waits for it
        if self.pending is not None and self.pending.generation == message.generation:
            self.pending = None
            self._release_paint()
            if self.result is not None:
                # the rows on screen stay: their reads are wanted again
                self._floor = self.result.generation
        if self.result is not None:
            self.result.counting = False
        self.post_message(self.Failed(self, message.message))
        self._post_window()

    def _resize_virtual(self) -> None:
        if self._resize_after_paint:
            if not self._resize_queued:
                self._resize_queued = True
                self._after_paint(self._resize_now)
            return
        size = Size(self.columns_layout.width, self.total + 1)  # + the header line
        if size != self.virtual_size:
            # a layout (the scrollbar) without repainting every line: the lines that change
            # are repainted by whoever changed them
            self.set_reactive(CredentialTable.virtual_size, size)
            self.refresh(repaint=False, layout=True)

    def _resize_now(self) -> None:
        if self._resize_queued:
            self._resize_queued = False
            self._resize_virtual()

    def _missing_on_screen(self) -> bool:
        result = self.result
        if result is None:
            return False
        first = int(self.scroll_offset.y)
        for index in range(first, min(first + self.body_height, result.total)):
            key, _ = self._locate(result, index)
            other = self._other_key(result, index)
            if key not in self._pages and not (other and other[0] in self._pages):
                return True
        return False

    def _near_end(self, index: int) -> None:
        """The cursor or the view nears the last known row of an uncounted result: read
        ahead (head order), and take the exact count when near a capped one."""
        result = self.result
        if result is None or result.exact:
            return
        if result.from_end:
            if index < 2 * self.page_size:
                key, _ = self._locate(result, 0)
                self._request(result, (key[0], key[1] + 1), urgent=False)
            return
        if index >= result.total - self.page_size:
            self._request(result, ("head", result.total // self.page_size), urgent=False)
        if result.total > COUNT_CAP and index >= result.total - 2 * self.body_height:
            self._request_count(result, exact=True)

    # --- marks ---------------------------------------------------------------------------

    def action_toggle_mark(self) -> None:
        cred = self.current
        if cred is None:
            return
        if cred.id in self.marked:
            del self.marked[cred.id]
        else:
            self.marked[cred.id] = cred.name
        self._runs.pop(cred.id, None)
        self.cursor += 1
        self.refresh()
        self._post_window(force=True)

    def clear_marks(self) -> None:
        if self.marked:
            self.marked.clear()
            self._runs.clear()
            self.refresh()
            self._post_window(force=True)

    # --- painting ------------------------------------------------------------------------

    def _row_runs(self, cred: Credential) -> list[tuple[str, Style]]:
        if self._runs_clock != self._clock:
            self._runs.clear()
            self._runs_clock = self._clock
        made = self._runs.get(cred.id)
        if made is not None and (made[0] is cred or made[0] == cred):
            return made[1]
        clock = self._clock or self.now()
        cells = self._made_cells.pop(cred.id, None)
        if cells is None or cells[0] is not cred or cells[1] != (self.columns_layout, clock):
            cells = (cred, (self.columns_layout, clock), _cells(cred, clock, self.columns_layout))
        mark = self.marked.get(cred.id) is not None
        theme = self.app.theme
        styles: dict[str, Style] = {}

        def style(meaning: str) -> Style:
            if meaning not in styles:
                styles[meaning] = state_style(self.app, meaning, theme)
            return styles[meaning]

        runs = [(f"{MARK} " if mark else "  ", style("marked"))]
        runs += [(text, style(meaning)) for text, meaning in cells[2]]
        if mark:
            bold = Style(bold=True)
            runs = [(text, style + bold) for text, style in runs]
        runs = _merged(runs)
        self._runs[cred.id] = (cred, runs)
        while len(self._runs) > self.page_size * self.max_pages:
            self._runs.pop(next(iter(self._runs)))
        return runs

    def _header_runs(self) -> list[tuple[str, Style]]:
        query = self.query_
        pad = " " * CELL_PADDING
        runs = [("  ", Style())]
        for key, width in zip(self.columns_layout.keys, self.columns_layout.widths, strict=True):
            label = COLUMNS[_INDEX[key]].label
            if query is not None and query.sort == key:
                label += " ↓" if query.descending else " ↑"
            runs.append((f"{pad}{_fit(label, width)}{pad}", Style()))
        return runs

    def render_lines(self, crop):  # type: ignore[no-untyped-def]
        # the styles are the same for every line of one paint: resolve them once
        base = self.rich_style
        self._paint = (
            base,
            base + self.get_component_rich_style("credential-table--header"),
            base + self.get_component_rich_style("credential-table--odd"),
            base + self.get_component_rich_style("credential-table--cursor"),
            base + self.get_component_rich_style("credential-table--placeholder"),
        )
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base, header, odd, cursor, placeholder = self._paint
        full = self.columns_layout.width
        if y == 0:
            return _strip(self._header_runs(), header, scroll_x, width, full)
        index = scroll_y + y - 1
        if index >= self.total:
            return Strip.blank(width, base)
        cred = self.row(index)
        if cred is None:  # its page is on the way
            return _strip([("  ", Style()), ("  …", Style())], placeholder, scroll_x, width, full)
        runs = self._row_runs(cred)
        if index == self.cursor:
            return _strip(runs, cursor, scroll_x, width, full)
        return _strip(runs, odd if index % 2 else base, scroll_x, width, full)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        """A cell cut to its column shows whole in a tooltip."""
        offset = event.get_content_offset(self)
        tip = None
        if offset is not None and offset.y >= 1:
            cred = self.row(int(self.scroll_offset.y) + offset.y - 1)
            x = offset.x + int(self.scroll_offset.x) - GUTTER
            if cred is not None and x >= 0:
                for key, width in zip(
                    self.columns_layout.keys, self.columns_layout.widths, strict=True
                ):
                    if x < width + 2 * CELL_PADDING:
                        text = self.cell_text(cred, key)
                        tip = text if cell_len(text) > width else None
                        break
                    x -= width + 2 * CELL_PADDING
        if tip != self.tooltip:
            self.tooltip = tip

    # --- cursor and scrolling ------------------------------------------------------------

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, self.total - 1)) if self.total else 0

    def watch_cursor(self, old: int, new: int) -> None:
        self._near_end(new)
        top = int(self.scroll_offset.y)
        if not top <= new < top + self.body_height:
            self._resize_now()  # a height the paint put off: the scroll needs it now
        if new < top:
            self.scroll_to(y=new, animate=False, immediate=True)
        elif new >= top + self.body_height:
            self.scroll_to(y=new - self.body_height + 1, animate=False, immediate=True)
        if self.scroll_offset.y == top:
            self._refresh_rows(old, new)  # only the two lines the cursor left and reached
        else:
            self.refresh()
        self._post_window()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self._near_end(int(new) + self.body_height)
        if self.result is not None and self.result.from_end:
            self._near_end(int(new))
        self._post_window()

    def _post_window(self, force: bool = False) -> None:
        window = self.window()
        if window != self._last_window or force:
            self._last_window = window
            self.post_message(self.WindowChanged(self, window))

    def on_resize(self) -> None:
        self._relayout()
        self._post_window()
        # the rows that fit are known for sure only once this layout is painted (a scrollbar
        # that comes or goes changes them without another resize): say it again then, or the
        # status line may keep the previous count (seen: "1-28" over 27 rows)
        self.call_after_refresh(self._post_window)

    def watch_show_horizontal_scrollbar(self, _old: bool, _new: bool) -> None:
        self.call_after_refresh(self._post_window)

    def action_cursor_up(self) -> None:
        self.cursor -= 1

    def action_cursor_down(self) -> None:
        self.cursor += 1

    def action_page_up(self) -> None:
        self.cursor -= self.body_height

    def action_page_down(self) -> None:
        self.cursor += self.body_height

    def action_first(self) -> None:
        result = self.result
        if result is not None and result.from_end and not result.exact:
            result.from_end = False  # back to reading from the top
            self._post_window()
        self.cursor = 0
        self.scroll_to(y=0, animate=False, immediate=True)

    def action_last(self) -> None:
        """The last row, read as the first page of the reversed query. Without the count,
        the rows are placed from the end and shift into place when it lands."""
        result = self.result
        if result is None:
            return
        if not result.exact:
            result.from_end = True
            self._request(result, ("tail", 0), urgent=True)
            self._request_count(result, exact=True)
        self.cursor = result.total - 1

    def action_select(self) -> None:
        cred = self.current
        if cred is not None:
            self.post_message(self.Selected(self, cred))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return
        index = int(self.scroll_offset.y) + offset.y - 1
        if index < self.total:
            self.cursor = index
            if event.chain >= 2:
                self.action_select()


def _describe(error: BaseException) -> str:
    if isinstance(error, ReadCancelled):
        return "cancelled"
    if isinstance(error, KeyshiftError):
        return error.one_line()
    from console.redaction import redact_active

    return redact_active(f"reading the store failed: {type(error).__name__}: {error}")
