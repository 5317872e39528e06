"""The inventory: one row per credential, a `/` filter over the query language, sort keys,
sync and rotate. The table reads the store a page at a time (widgets/credential_table.py)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Input, Static

from console.errors import KeyshiftError, ReadOnlyError
from console.query import Query, parse
from console.redaction import redact_active
from screens.widgets.credential_table import CredentialTable, Window
from screens.widgets.header import HeaderBar

if TYPE_CHECKING:
    from screens.app import KeyshiftApp

# How long a burst of keystrokes is gathered into one query. The first key of a burst is
# applied at once (leading edge), so typing at a person's pace never waits on this.
FILTER_SETTLE = 0.04
# How often a sync's per-item progress reaches the screen: more often only costs repaints.
PROGRESS_EVERY = 0.1


class InventoryScreen(Screen):
    BINDINGS = [
        Binding("slash", "filter", "Filter", id="inventory.filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="inventory.clear-filter"),
        Binding("s", "sync", "Sync", id="inventory.sync"),
        Binding("r", "rotate", "Rotate", id="inventory.rotate"),
        Binding("N", "sort('name')", "Sort name", show=False, id="inventory.sort-name"),
        Binding("E", "sort('expires')", "Sort expiry", show=False, id="inventory.sort-expires"),
        Binding("U", "sort('used')", "Sort last use", show=False, id="inventory.sort-used"),
        Binding("O", "sort('owner')", "Sort owner", show=False, id="inventory.sort-owner"),
    ]
    MUTATING = ("sync", "rotate")

    def __init__(self) -> None:
        super().__init__(id="inventory")
        self.sort = "name"
        self.descending = False
        self.filter_text = ""
        self.filter_error: str | None = None
        self._settle_timer: Timer | None = None
        self._filter_dirty = False
        self._syncing = False
        self._sync_lines: dict[str, str] = {}

    @property
    def ks(self) -> KeyshiftApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield HeaderBar("inventory")
        yield Input(
            placeholder="filter: words, field:value, !term  (enter keeps it, esc clears)",
            id="filter",
        )
        yield CredentialTable(self.ks.store, self.ks.now, id="credentials")
        yield Static(id="empty")
        yield Static(id="sync-status")
        yield Static(id="status")

    def on_mount(self) -> None:
        self._show(self._query())
        self.table.focus()

    @property
    def table(self) -> CredentialTable:
        return self.query_one("#credentials", CredentialTable)

    # --- query ---------------------------------------------------------------------------

    def _query(self, text: str | None = None) -> Query:
        return parse(
            self.filter_text if text is None else text,
            sort=self.sort,
            descending=self.descending,
        )

    def _show(self, query: Query) -> None:
        try:
            self.table.show(query)
        except KeyshiftError as exc:
            self.notify(exc.one_line(), severity="error")
        self._update_status(self.table.window())

    def on_credential_table_window_changed(self, message: CredentialTable.WindowChanged) -> None:
        self._update_status(message.window)

    def _update_status(self, window: Window) -> None:
        empty = self.query_one("#empty", Static)
        store_empty = window.total == 0 and not self.filter_text
        empty.display = store_empty
        self.table.display = not store_empty
        if store_empty:
            how = (
                "run `keyshift sync` (without --read-only) to fill it"
                if self.ks.read_only
                else "press s to sync the inventory's sources (or run `keyshift sync`)"
            )
            empty.update(f"The store holds no credentials yet: {how}.")
        line = Text()
        if window.total:
            line.append(f" {window.offset + 1:,}-{window.offset + window.rows:,}", style="bold")
            if window.counting:
                shown = "… (counting)"
            elif window.exact:
                shown = f"{window.total:,}"
            else:
                shown = f"{window.total - 1:,}+"
            line.append(f" of {shown}")
        else:
            line.append(" no match" if self.filter_text else " empty")
        arrow = "↓" if self.descending else "↑"
        line.append(f"   sort {self.sort} {arrow}", style="dim")
        if self.filter_text:
            line.append("   filter ", style="dim")
            line.append(self.filter_text, style="bold")
        if self.filter_error:
            line.append(f"   {self.filter_error}", style="red")
        self.query_one("#status", Static).update(line)

    # --- filter --------------------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        # focus now, not via Widget.focus() (a queued callback): keys typed right after `/`
        # are already queued and must land in the box, not in the table
        self.set_focus(box)

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.value:
            box.value = ""  # Input.Changed applies the empty filter
        elif self.filter_text:
            self._apply_filter("")
        box.display = False
        self.table.focus()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self) -> None:
        self.query_one("#filter", Input).display = False
        self.table.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self._settle_timer is None:
            self._apply_filter(event.value)
            self._settle_timer = self.set_timer(FILTER_SETTLE, self._filter_settled)
        else:
            self._filter_dirty = True

    def _filter_settled(self) -> None:
        self._settle_timer = None
        if self._filter_dirty:
            self._filter_dirty = False
            self._apply_filter(self.query_one("#filter", Input).value)
            self._settle_timer = self.set_timer(FILTER_SETTLE, self._filter_settled)

    def _apply_filter(self, text: str) -> None:
        try:
            query = self._query(text)
        except KeyshiftError as exc:
            # half-typed (``owner:``): keep showing the last good result and say why
            self.filter_error = exc.one_line()
            self._update_status(self.table.window())
            return
        self.filter_text = text
        self.filter_error = None
        self._show(query)

    def action_sort(self, column: str) -> None:
        if self.sort == column:
            self.descending = not self.descending
        else:
            self.sort, self.descending = column, False
        self._show(self._query())

    # --- detail --------------------------------------------------------------------------

    def action_open(self) -> None:
        cred = self.table.current
        if cred is None:
            return
        from screens.detail import DetailScreen

        self.app.push_screen(DetailScreen(cred.id), lambda _=None: self.table.reload())

    @on(CredentialTable.Selected, "#credentials")
    def _row_selected(self) -> None:
        self.action_open()

    # --- rotate --------------------------------------------------------------------------

    def action_rotate(self) -> None:
        if self._refuse_if_read_only("rotate"):
            return
        cred = self.table.current
        if cred is None:
            return
        from screens.rotate import RotateScreen

        self.app.push_screen(RotateScreen(cred.id, cred.name), lambda _=None: self.table.reload())

    def _refuse_if_read_only(self, action: str) -> bool:
        if self.ks.read_only:
            self.notify(ReadOnlyError(action).one_line(), severity="warning")
            return True
        return False

    # --- sync ----------------------------------------------------------------------------

    def action_sync(self) -> None:
        if self._refuse_if_read_only("sync"):
            return
        if self._syncing:
            self.notify("a sync is already running")
            return
        self._syncing = True
        self._sync_lines = {}
        box = self.query_one("#sync-status", Static)
        box.display = True
        box.update(Text(" sync: starting …", style="bold"))
        self._sync_worker()

    @work(thread=True, exclusive=True, group="sync")
    def _sync_worker(self) -> None:
        counts: dict[str, int] = {}
        last_post = 0.0

        def progress(source: str, phase: str, message: str) -> None:
            nonlocal last_post
            if phase == "item":
                counts[source] = counts.get(source, 0) + 1
                now = time.monotonic()
                if now - last_post < PROGRESS_EVERY:
                    return
                last_post = now
                text = f"reading … {counts[source]} items"
            elif phase == "start":
                counts[source] = 0
                text = "reading …"
            elif phase == "done":
                text = f"done: {message}"
            else:
                text = f"FAILED: {message}"
            self.app.call_from_thread(self._sync_progress, source, phase, text)

        try:
            summary = self.ks.sync(progress)
        except KeyshiftError as exc:
            self.app.call_from_thread(self._sync_failed, exc.one_line())
        except Exception as exc:  # a bug must not kill the TUI; say what, never a traceback
            message = redact_active(f"{type(exc).__name__}: {exc}")
            self.app.call_from_thread(self._sync_failed, message)
        else:
            self.app.call_from_thread(self._sync_finished, summary)

    def _sync_progress(self, source: str, phase: str, text: str) -> None:
        self._sync_lines[source] = text
        line = Text(" sync ", style="bold reverse")
        for name, state in self._sync_lines.items():
            style = "red" if state.startswith("FAILED") else ""
            style = "green" if state.startswith("done") else style
            line.append(f"  {name}: ", style="bold")
            line.append(state, style=style)
        self.query_one("#sync-status", Static).update(line)

    def _sync_finished(self, summary) -> None:  # type: ignore[no-untyped-def]
        self._syncing = False
        self.table.reload()
        severity = "information" if summary.status == "ok" else "warning"
        self.notify(
            f"sync {summary.status}: new {summary.total('new')}, changed "
            f"{summary.total('changed')}, gone {summary.total('gone')}, "
            f"stale {summary.total('stale')}, errors {summary.error_count}",
            severity=severity,
        )

    def _sync_failed(self, message: str) -> None:
        self._syncing = False
        self.query_one("#sync-status", Static).update(Text(f" sync failed: {message}", "red"))
        self.notify(message, severity="error")
        self.table.reload()
