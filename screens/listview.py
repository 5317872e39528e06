"""A view over a list that fits in memory (agents, runs, sources, audit entries): rows read by
a thread worker, a `/` filter, a status line, enter to open a row.

Each view says what its rows are (``read_rows``, run off the UI thread), how a row looks
(``cells``) and what enter does (``open_row``). Filtering runs over the rows in memory with
the list grammar (console/listfilter.py) unless the view filters at the source (audit).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.timer import Timer
from textual.widgets import DataTable, Input, Static

from console.errors import KeyshiftError
from console.listfilter import list_filter
from screens.base import KeyshiftScreen
from screens.theme import state_style
from screens.widgets.filter_input import FilterInput
from screens.widgets.header import HeaderBar

Row = dict[str, Any]


class ListScreen(KeyshiftScreen):
    HOSTS = (DataTable,)  # its own keys (arrows, enter) are live on these screens
    BINDINGS: ClassVar[list[BindingType]] = [
        # priority, as `:` is: see KeyshiftScreen.check_action
        Binding("slash", "filter", "Filter", id="list.filter", priority=True),
        Binding("ctrl+l", "reload", "Reload", show=False, id="list.reload"),
    ]
    COLUMNS: ClassVar[list[tuple[str, str]]] = []  # (field, label)
    FIELDS: ClassVar[tuple[str, ...]] = ()  # what `field:value` may name
    NOUN: ClassVar[str] = "rows"
    NOUN_ONE: ClassVar[str] = "row"
    REFRESH_EVERY: ClassVar[float | None] = None  # seconds, for a live view
    FILTER_PLACEHOLDER = "filter: words, field:value, field~part, !word  (enter keeps, esc clears)"

    def __init__(self, filter_text: str = "") -> None:
        super().__init__()
        self.rows: list[Row] = []
        self.shown: list[Row] = []
        self.filter_text = filter_text
        self.filter_error: str | None = None
        self.loaded = False
        self._timer: Timer | None = None

    # --- what a view provides ------------------------------------------------------------

    def read_rows(self) -> list[Row]:
        """The rows, read in a thread (never on the UI thread)."""
        raise NotImplementedError

    def cells(self, row: Row) -> list[Text | str]:
        return [
            str(row.get(field) if row.get(field) is not None else "-") for field, _ in self.COLUMNS
        ]

    def key_of(self, row: Row) -> str:
        return str(row.get("id") or row.get("name"))

    def open_row(self, row: Row) -> None:
        """Enter on a row."""

    def predicate(self, text: str) -> Callable[[Mapping[str, Any]], bool]:
        return list_filter(text, self.FIELDS)

    # --- layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield HeaderBar()
        yield FilterInput(placeholder=self.FILTER_PLACEHOLDER, id="filter")
        table: DataTable = DataTable(id="list", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static(id="detail-line")
        yield Static(id="status")

    def on_mount(self) -> None:
        table = self.query_one("#list", DataTable)
        for field, label in self.COLUMNS:
            table.add_column(label, key=field)
        table.focus()
        box = self.query_one("#filter", Input)
        if self.filter_text:
            box.value = self.filter_text
            box.display = True
        self.reload()
        if self.REFRESH_EVERY:
            self._timer = self.set_interval(self.REFRESH_EVERY, self.reload)

    def on_screen_suspend(self) -> None:
        if self._timer is not None:
            self._timer.pause()

    def on_screen_resume(self) -> None:
        if self._timer is not None:
            self._timer.resume()
        if self.loaded:
            self.reload()

    @property
    def table(self) -> DataTable:
        return self.query_one("#list", DataTable)

    # --- loading -------------------------------------------------------------------------

    def action_reload(self) -> None:
        self.reload()

    def reload(self) -> None:
        self._load(self.filter_text)

    def read_rows_for(self, asked: str) -> list[Row]:
        """The rows for the filter ``asked`` (a view that filters at the source uses it)."""
        return self.read_rows()

    def answers(self, asked: str) -> bool:
        """Whether rows read for ``asked`` still answer what the screen shows."""
        return True

    @work(thread=True, exclusive=True, group="list-load")
    def _load(self, asked: str) -> None:
        # exclusive cancels an older load's bookkeeping, not its thread: its answer says
        # which filter it read, and _loaded drops it when a newer one was asked since
        try:
            rows = self.read_rows_for(asked)
        except Exception as exc:  # a bug must not kill the console; say what, no traceback
            self.fail_from_thread(exc)
            return
        self.app.call_from_thread(self._loaded, rows, asked)

    def _loaded(self, rows: list[Row], asked: str) -> None:
        if not self.alive or not self.answers(asked):
            return
        self.rows = rows
        self.loaded = True
        self.apply_filter()

    def apply_filter(self) -> None:
        try:
            keep = self.predicate(self.filter_text)
        except KeyshiftError as exc:
            self.filter_error = exc.one_line()
            self._status()
            return
        self.filter_error = None
        shown = [r for r in self.rows if keep(r)]
        if shown == self.shown and self.table.row_count == len(shown):
            self._status()  # nothing changed: the cursor and the scroll stay as they are
            return
        key = self.current_key()  # the row under the cursor, found again in the new rows
        self.shown = shown
        self._fill(key)

    def current_key(self) -> str | None:
        current = self.current
        return self.key_of(current) if current else None

    def _fill(self, key: str | None = None) -> None:
        """Show ``self.shown``, the cursor on the row of ``key`` (default: the one under
        it now), the view scrolled where it was."""
        table = self.table
        key = key if key is not None else self.current_key()
        scroll = table.scroll_offset
        rows = [self.cells(row) for row in self.shown]
        _size_columns(table, rows)
        table.clear()
        for row, cells in zip(self.shown, rows, strict=True):
            table.add_row(*cells, key=self.key_of(row))
        table.scroll_to(scroll.x, scroll.y, animate=False, immediate=True)
        for index, row in enumerate(self.shown):
            if key is not None and self.key_of(row) == key:
                table.move_cursor(row=index, animate=False)
                break
        self._status()

    def _status(self) -> None:
        line = Text()
        if not self.loaded:
            line.append(" reading …", style="dim")
        else:
            line.append(f" {len(self.shown):,}", style="bold")
            if len(self.shown) != len(self.rows):
                line.append(f" of {len(self.rows):,}")
            line.append(f" {self.NOUN if len(self.shown) != 1 else self.NOUN_ONE}")
        if self.filter_text:
            line.append("   filter ", style="dim")
            line.append(self.filter_text, style="bold")
        if self.filter_error:
            line.append("   not applied: ", style=state_style(self.app, "error"))
            line.append(self.filter_error, style=state_style(self.app, "error"))
        extra = self.status_extra()
        if extra:
            line.append("   ")
            line.append_text(extra)
        self.query_one("#status", Static).update(line, layout=False)

    def status_extra(self) -> Text | None:
        return None

    @property
    def current(self) -> Row | None:
        table = self.table
        if not self.shown or table.cursor_row < 0 or table.cursor_row >= len(self.shown):
            return None
        return self.shown[table.cursor_row]

    # --- filter --------------------------------------------------------------------------

    def set_filter(self, text: str) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.value = text  # Input.Changed applies it

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        self.set_focus(box)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        if self.loaded:
            self.apply_filter()

    def filter_cleared(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""  # Input.Changed applies the empty filter
        box.display = False

    @on(Input.Submitted, "#filter")
    def filter_submitted(self) -> None:
        """Done filtering (see KeyshiftScreen.action_filter_done)."""
        box = self.query_one("#filter", Input)
        if box.value != self.filter_text:  # its Input.Changed still on the way
            self.filter_text = box.value
            if self.loaded:
                self.apply_filter()
        if self.filter_error:
            self.notify(self.filter_error, severity="warning")
            self.set_focus(box)
            box.call_later(box.action_end)  # to be fixed where it ends, not replaced by
            # the next key (the box selects all it holds when it gets focus)
            return
        self.query_one("#filter", Input).display = bool(self.filter_text)
        self.table.focus()

    def action_back(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_focus or self.filter_text:
            box.value = ""
            box.display = False
            self.table.focus()
            return
        super().action_back()

    @on(DataTable.RowSelected, "#list")
    def _selected(self, event: DataTable.RowSelected) -> None:
        row = self.current
        if row is not None:
            self.open_row(row)


def _size_columns(table: DataTable, rows: list[list[Text | str]]) -> None:
    """Each column as wide as its widest cell, set before the rows are added. DataTable would
    measure them on its next idle, but it caches cells rendered before then at the old width:
    under load a frame comes first and the columns stay cut."""
    for index, column in enumerate(table.ordered_columns):
        width = column.label.cell_len
        for cells in rows:
            cell = cells[index]
            text = cell if isinstance(cell, Text) else Text(str(cell))
            width = max(width, *(Text(line).cell_len for line in text.plain.split("\n")))
        column.width = width
        column.auto_width = False


def styled(text: str, app: Any, meaning: str) -> Text:
    return Text(text, style=state_style(app, meaning))
