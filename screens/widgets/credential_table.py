"""The inventory table: a virtual list over the store's result set, fetched a page at a time.

The widget's height in rows is the count of the query; the rows themselves are read from the
store in pages of ``page_size`` only when a line of them is painted, and at most ``max_pages``
pages are held. A new query paints from its first page at once: when that page is full, the
count (capped, see COUNT_CAP) runs in a thread worker and the scrollbar and status line catch
up when it lands, so a keystroke costs one LIMIT/OFFSET page whatever the inventory's size.

Why not Textual's DataTable (holding a window of rows) or a textual-fastdatatable backend:
both render every cell through Rich on each repaint, measured at ~150 ms for one screen of
11 columns on this project's machines. Here each row is one Rich Text made once per fetch and
kept as a Strip, so a repaint is a crop and a style per visible line.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events, work
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer

from console.errors import KeyshiftError
from console.model import Credential
from screens.format import COLUMNS, row_values

if TYPE_CHECKING:
    from console.query import Query
    from console.store import Store

# Counting stops here: an exact count of a broad match over a million rows is a full scan,
# and the status line only needs "10,000+". The exact count is taken when the cursor or the
# scrollbar gets near the end.
COUNT_CAP = 10_000
# The count starts once the query has been left alone this long (typing paused).
COUNT_AFTER = 0.12
CELL_PADDING = 1
ROW_WIDTH = sum(width + 2 * CELL_PADDING for _key, _label, width in COLUMNS)


@dataclass(frozen=True)
class Window:
    offset: int  # first row on screen (0-based)
    rows: int  # rows on screen
    total: int
    exact: bool = True
    counting: bool = False


_STYLES: dict[str, Style] = {}


def _style(name: str) -> Style:
    style = _STYLES.get(name)
    if style is None:
        style = _STYLES[name] = Style.parse(name) if name else Style()
    return style


def _fit(text: str, width: int) -> str:
    """``text`` in exactly ``width`` cells: padded, or cut with an ellipsis."""
    text = text.replace("\n", " ").replace("\r", " ")
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    return set_cell_size(text, width)


# Columns that take a share of a terminal wider than ROW_WIDTH, and how wide each may grow:
# names, agents and scope are what a person reads; the rest are short codes.
_GROWTH = {"name": 36, "agents": 30, "scope": 30, "owner": 8, "source": 6, "kind": 4}


_NAME_FIRST = 20


def fit_widths(available: int) -> tuple[int, ...]:
    """Column widths for a view ``available`` cells wide: the base widths, plus what is left
    over shared among the growable columns (a narrower view scrolls sideways)."""
    widths = [width for _key, _label, width in COLUMNS]
    spare = available - ROW_WIDTH
    room = {i: _GROWTH[key] for i, (key, _l, _w) in enumerate(COLUMNS) if key in _GROWTH}
    # the name first: it is what a row is read by
    name = next(i for i, (key, _l, _w) in enumerate(COLUMNS) if key == "name")
    first = min(max(spare, 0), _NAME_FIRST)
    widths[name] += first
    room[name] -= first
    spare -= first
    while spare > 0 and room:
        share = max(spare // len(room), 1)
        for i in list(room):
            grant = min(share, room[i], spare)
            widths[i] += grant
            room[i] -= grant
            spare -= grant
            if room[i] == 0:
                del room[i]
            if spare == 0:
                break
    return tuple(widths)


BASE_WIDTHS = fit_widths(0)


def row_width(widths: tuple[int, ...]) -> int:
    return sum(width + 2 * CELL_PADDING for width in widths)


def _cells(values: list[tuple[str, str]], widths: tuple[int, ...]) -> list[tuple[str, Style]]:
    """One row as (text, style) runs: each cell cut or padded to its column, with padding."""
    pad = " " * CELL_PADDING
    return [
        (f"{pad}{_fit(text, width)}{pad}", _style(style))
        for width, (text, style) in zip(widths, values, strict=True)
    ]


def _strip(
    runs: list[tuple[str, Style]], base: Style, over: Style | None, x: int, width: int, full: int
) -> Strip:
    """The line as painted: one Strip, styled and cut to the view, built in one pass.
    ``full`` is the row's own width (all columns)."""
    if over is None:
        segments = [Segment(text, base + style) for text, style in runs]
    else:
        segments = [Segment(text, base + style + over) for text, style in runs]
    if x + width > full:
        segments.append(Segment(" " * (x + width - full), base))
    strip = Strip(segments, max(full, x + width))
    return strip.crop(x, x + width) if x else strip


def _header(widths: tuple[int, ...]) -> list[tuple[str, Style]]:
    return _cells([(label, "") for _key, label, _width in COLUMNS], widths)


class CredentialTable(ScrollView, can_focus=True):
    """Every credential of a query, one line each; the cursor moves over the whole result."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select", "Detail", id="inventory.open"),
        Binding("up", "cursor_up", "Up", show=False, id="table.up"),
        Binding("down", "cursor_down", "Down", show=False, id="table.down"),
        Binding("pageup", "page_up", "Page up", show=False, id="table.page-up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="table.page-down"),
        Binding("home,ctrl+home,g", "first", "First", show=False, id="table.first"),
        Binding("end,ctrl+end,G", "last", "Last", show=False, id="table.last"),
        Binding("left", "scroll_left", "Left", show=False, id="table.left"),
        Binding("right", "scroll_right", "Right", show=False, id="table.right"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "credential-table--header",
        "credential-table--cursor",
        "credential-table--odd",
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
    """

    page_size = 60
    max_pages = 8

    cursor: reactive[int] = reactive(0, always_update=True, init=False)

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
        """The rows on screen, or the result set, changed."""

        def __init__(self, table: CredentialTable, window: Window) -> None:
            super().__init__()
            self.table = table
            self.window = window

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
        self.query_: Query | None = None
        self.total = 0
        self.exact = True
        self.counting = False
        self._generation = 0  # bumped per query: a count that lands late is dropped
        self._count_timer: Timer | None = None
        self._count_lock = threading.Lock()
        self._pages: OrderedDict[int, list[Credential]] = OrderedDict()
        self._strips: OrderedDict[int, list[tuple[str, Style]]] = OrderedDict()
        self._clock: datetime | None = None
        self._last_window: Window | None = None
        self._paint_styles = (Style(), Style(), Style(), Style())
        self._widths = BASE_WIDTHS  # refitted to the view on resize
        self._row_width = ROW_WIDTH
        self._header = _header(BASE_WIDTHS)

    # --- the result set -----------------------------------------------------------------

    def show(self, query: Query, *, keep_position: bool = False) -> None:
        """Show ``query`` from its first row (or near the cursor, for a reload)."""
        self.query_ = query
        self._generation += 1
        self._pages.clear()
        self._strips.clear()
        self._clock = self.now()
        first = self._page(0)
        if len(first) < self.page_size:
            self.total, self.exact, self.counting = len(first), True, False
        else:
            # more than a page: paint now, and count in a worker (the status line says so)
            # once typing pauses: a count in flight competes with painting for the GIL (the
            # store's query planner calls back into Python while it runs)
            self.total, self.exact, self.counting = self.page_size, False, True
            if self._count_timer is not None:
                self._count_timer.stop()
            self._count_timer = self.set_timer(
                COUNT_AFTER, partial(self._count, self._generation, query)
            )
        target = 0
        if keep_position:
            self._grow_to(self.cursor)
            target = min(self.cursor, max(self.total - 1, 0))
        self.virtual_size = Size(self._row_width, self.total + 1)  # + the header line
        if not keep_position:
            self.scroll_to(x=0, y=0, animate=False, immediate=True)
        self.cursor = target
        self.refresh()
        self._post_window()

    def _store_count(self, query: Query | None, cap: int | None = COUNT_CAP + 1) -> int | None:
        """The store's count, or None (with a notice) when the store fails: a busy or broken
        store must cost the status line its number, not the app its life."""
        try:
            return self.store.count_credentials(query, cap=cap)
        except KeyshiftError as exc:
            try:  # from the count worker
                self.app.call_from_thread(self._count_failed, exc.one_line())
            except RuntimeError:  # already on the app's thread (a key handler)
                self._count_failed(exc.one_line())
            return None

    def _count_failed(self, message: str) -> None:
        self.counting = False
        self.notify(message, severity="error")
        self._post_window()

    @work(thread=True, group="count")
    def _count(self, generation: int, query: Query) -> None:
        # one count at a time; one whose query was replaced while it waited never runs
        with self._count_lock:
            if generation != self._generation:
                return
            total = self._store_count(query)
        if total is not None:
            self.app.call_from_thread(self._counted, generation, total)

    def _counted(self, generation: int, total: int) -> None:
        if generation != self._generation:
            return
        self.counting = False
        self.exact = total <= COUNT_CAP
        self.total = max(total, self.total)
        self.virtual_size = Size(self._row_width, self.total + 1)
        self.refresh()
        self._post_window()

    def _page(self, number: int) -> list[Credential]:
        page = self._pages.get(number)
        if page is None:
            assert self.query_ is not None
            page = self.store.page_credentials(
                self.query_, offset=number * self.page_size, limit=self.page_size
            )
            self._pages[number] = page
            while len(self._pages) > self.max_pages:
                self._pages.popitem(last=False)
        else:
            self._pages.move_to_end(number)
        return page

    def _grow_to(self, index: int) -> None:
        """While the count is out, reach ``index`` by reading the one page that holds it."""
        if not self.counting or index < self.total or self.query_ is None:
            return
        number = index // self.page_size
        page = self._page(number)
        if len(page) == self.page_size:
            self.total = (number + 1) * self.page_size
        elif page:  # the last page: the count is known now
            self.total = number * self.page_size + len(page)
            self.counting, self.exact = False, True
            self._generation += 1  # drop the count in flight
        else:  # past the end: count now
            with self._count_lock:
                total = self._store_count(self.query_)
            if total is not None:
                self._counted(self._generation, total)
            self._generation += 1
            return
        self.virtual_size = Size(self._row_width, self.total + 1)

    def reload(self) -> None:
        """Re-read the store (after a sync or a rotation), keeping the cursor's place."""
        if self.query_ is not None:
            self.show(self.query_, keep_position=True)

    def row(self, index: int) -> Credential | None:
        """The ``index``-th credential of the result (fetching its page if need be)."""
        if self.query_ is None or not 0 <= index < self.total:
            return None
        number = index // self.page_size
        try:
            page = self._page(number)
        except KeyshiftError as exc:  # painting must not crash the app (e.g. a busy store)
            self.notify(exc.one_line(), severity="error")
            return None
        position = index - number * self.page_size
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

    def visible(self) -> list[Credential]:
        """The credentials on screen, top to bottom."""
        first = int(self.scroll_offset.y)
        rows = [self.row(i) for i in range(first, min(first + self.body_height, self.total))]
        return [r for r in rows if r is not None]

    def _ensure_exact(self, index: int) -> None:
        """Count exactly once the cursor or the view gets near the capped end."""
        if self.counting:
            self._grow_to(index)
            return
        if self.exact or self.query_ is None or index < self.total - 2 * self.body_height:
            return
        total = self._store_count(self.query_, cap=None)
        if total is None:
            return
        self.total = total
        self.exact = True
        self.virtual_size = Size(self._row_width, self.total + 1)
        self._post_window()

    # --- painting -----------------------------------------------------------------------

    def _row_runs(self, index: int) -> list[tuple[str, Style]] | None:
        runs = self._strips.get(index)
        if runs is None:
            cred = self.row(index)
            if cred is None:
                return None
            runs = _cells(row_values(cred, self._clock or self.now()), self._widths)
            self._strips[index] = runs
            while len(self._strips) > self.page_size * self.max_pages:
                self._strips.popitem(last=False)
        return runs

    def render_lines(self, crop):  # type: ignore[no-untyped-def]
        # the styles are the same for every line of one paint: resolve them once
        base = self.rich_style
        self._paint_styles = (
            base,
            base + self.get_component_rich_style("credential-table--header"),
            base + self.get_component_rich_style("credential-table--odd"),
            self.get_component_rich_style("credential-table--cursor"),
        )
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base, header, odd, cursor = self._paint_styles
        if y == 0:
            return _strip(self._header, header, None, scroll_x, width, self._row_width)
        index = scroll_y + y - 1
        runs = self._row_runs(index) if index < self.total else None
        if runs is None:
            return Strip.blank(width, base)
        if index == self.cursor:
            return _strip(runs, base, cursor, scroll_x, width, self._row_width)
        return _strip(runs, odd if index % 2 else base, None, scroll_x, width, self._row_width)

    # --- cursor and scrolling -----------------------------------------------------------

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, self.total - 1)) if self.total else 0

    def watch_cursor(self, old: int, new: int) -> None:
        self._ensure_exact(new)
        top = int(self.scroll_offset.y)
        if new < top:
            self.scroll_to(y=new, animate=False, immediate=True)
        elif new >= top + self.body_height:
            self.scroll_to(y=new - self.body_height + 1, animate=False, immediate=True)
        self.refresh()
        self._post_window()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self._ensure_exact(int(new) + self.body_height)
        self._post_window()

    def window(self) -> Window:
        top = int(self.scroll_offset.y)
        rows = max(min(self.body_height, self.total - top), 0)
        return Window(top, rows, self.total, self.exact, self.counting)

    def _post_window(self) -> None:
        window = self.window()
        if window != self._last_window:
            self._last_window = window
            self.post_message(self.WindowChanged(self, window))

    def on_resize(self) -> None:
        widths = fit_widths(self.scrollable_content_region.width)
        if widths != self._widths:
            self._widths, self._row_width = widths, row_width(widths)
            self._header = _header(widths)
            self._strips.clear()  # cached rows were cut to the old widths
            self.virtual_size = Size(self._row_width, self.total + 1)
            self.refresh()
        self._post_window()

    def action_cursor_up(self) -> None:
        self.cursor -= 1

    def action_cursor_down(self) -> None:
        self._ensure_exact(self.cursor + 1)
        self.cursor += 1

    def action_page_up(self) -> None:
        self.cursor -= self.body_height

    def action_page_down(self) -> None:
        self._ensure_exact(self.cursor + self.body_height)
        self.cursor += self.body_height

    def action_first(self) -> None:
        self.cursor = 0

    def action_last(self) -> None:
        if self.counting:  # going to the end needs the count now
            with self._count_lock:
                total = self._store_count(self.query_)
            if total is not None:
                self._counted(self._generation, total)
        self._ensure_exact(self.total)
        self.cursor = self.total - 1

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
