"""`:creds`, the first view: one row per credential, a `/` filter over the query language,
sort keys, marks and the actions on them. The table reads the store a page at a time in a
reader thread (widgets/credential_table.py); this screen never runs SQL itself."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.timer import Timer
from textual.widgets import Input, Static

from console.errors import KeyshiftError
from console.query import Query, parse
from screens.base import KeyshiftScreen
from screens.theme import state_style
from screens.widgets.credential_table import CredentialTable, Window
from screens.widgets.filter_input import FilterInput
from screens.widgets.header import HeaderBar

# How long a burst of keystrokes is gathered into one query. The first key of a burst is
# applied at once (leading edge), so typing at a person's pace never waits on this.
FILTER_SETTLE = 0.04
STATUS_SETTLE = 0.002
# How often a sync's per-item progress reaches the screen: more often only costs repaints.
PROGRESS_EVERY = 0.1
# How long the sync line stays after the sync ended (the notification keeps the summary).
SYNC_LINE_KEEP = 4.0

SORTS = {"name": "name", "expires": "expiry", "used": "last use", "owner": "owner"}


class CredsScreen(KeyshiftScreen):
    view_name = "creds"
    BINDINGS: ClassVar[list[BindingType]] = [
        # priority, as `:` is: see KeyshiftScreen.check_action
        Binding("slash", "filter", "Filter", id="creds.filter", priority=True),
        Binding("s", "sync", "Sync", id="creds.sync"),
        Binding("r", "rotate", "Rotate", id="creds.rotate"),
        Binding("c", "copy_id", "Copy id", id="creds.copy-id"),
        Binding("o", "columns", "Columns", id="creds.columns"),
        Binding("H", "holders", "Holders", show=False, id="creds.holders"),
        Binding("N", "sort('name')", "Sort by name", show=False, id="creds.sort-name"),
        Binding("E", "sort('expires')", "Sort by expiry", show=False, id="creds.sort-expires"),
        Binding("U", "sort('used')", "Sort by last use", show=False, id="creds.sort-used"),
        Binding("O", "sort('owner')", "Sort by owner", show=False, id="creds.sort-owner"),
    ]
    MUTATING = ("rotate",)
    HOSTS = (CredentialTable,)

    def __init__(self, filter_text: str = "") -> None:
        super().__init__()
        self.sort = "name"
        self.descending = False
        self.filter_text = filter_text  # the filter the rows on screen answer
        self.typed = filter_text  # what the box holds (may not parse yet)
        self.filter_error: str | None = None
        self._settle_timer: Timer | None = None
        self._filter_dirty = False
        self._syncing = False
        self._sync_lines: dict[str, str] = {}
        self._sync_hide: Timer | None = None

    def compose(self) -> ComposeResult:
        yield HeaderBar()
        yield FilterInput(
            placeholder="filter: words, field:value, !term  (enter keeps it, esc clears)",
            id="filter",
        )
        yield CredentialTable(self.ks.store, self.ks.now, id="credentials")
        yield Static(id="empty")
        yield Static(id="sync-status")
        yield Static(id="status")

    def on_mount(self) -> None:
        start, self.filter_text = self.filter_text, ""
        self._show(self._query())
        if start:  # through the box, so a bad one (`:creds owner:`) is said, not raised
            self.set_filter(start)
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

    def _show(self, query: Query, *, typed: bool = False) -> None:
        self.table.show(query, hold_paint=typed)
        self._update_status(self.table.window())

    def on_credential_table_window_changed(self, message: CredentialTable.WindowChanged) -> None:
        self._update_status(message.window)

    def on_credential_table_failed(self, message: CredentialTable.Failed) -> None:
        self.notify(message.message, severity="error", timeout=8)

    def _update_status(self, window: Window) -> None:
        empty = self.query_one("#empty", Static)
        store_empty = (
            window.total == 0
            and not self.filter_text
            and not window.loading
            and self.table.pending is None
        )
        empty.display = store_empty
        self.table.display = not store_empty
        if store_empty:
            how = "press s to sync the inventory's sources (or run `keyshift sync`)"
            empty.update(f"The store holds no credentials yet: {how}.")
        line = Text()
        if window.loading:
            line.append(" reading …", style="dim")
        elif window.total:
            if window.from_end:
                line.append(" the last rows", style="bold")
            else:
                last = window.offset + window.rows
                line.append(f" {window.offset + 1:,}-{last:,}", style="bold")
            if window.counting:
                shown = f"{window.total:,}+ (counting)" if window.from_end else "… (counting)"
            elif window.exact:
                shown = f"{window.total:,}"
            else:
                shown = f"{window.total - 1:,}+"
            line.append(f" of {shown}")
        else:
            line.append(" no match" if self.filter_text else " empty")
        arrow = "↓" if self.descending else "↑"
        line.append(f"   sort {SORTS.get(self.sort, self.sort)} {arrow}", style="dim")
        if window.marked:
            line.append(f"   {window.marked} marked", style=state_style(self.app, "marked"))
        if self.filter_text:
            line.append("   filter ", style="dim")
            line.append(self.filter_text, style="bold")
        if self.filter_error:
            error = state_style(self.app, "error")
            line.append("   ")
            line.append(self.typed, style=error + state_style(self.app, "accent"))
            line.append(f" not applied: {self.filter_error}", style=error)
        hidden = self.table.columns_layout.hidden
        if hidden and not self.table.chosen:
            line.append(f"   +{len(hidden)} columns (o)", style="dim")
        self.query_one("#status", Static).update(line, layout=False)

    # --- filter --------------------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        # focus now, not via Widget.focus() (a queued callback): keys typed right after `/`
        # are already queued and must land in the box, not in the table
        self.set_focus(box)

    def set_filter(self, text: str) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.value = text  # Input.Changed applies it

    def action_back(self) -> None:
        """esc: out of the filter box, then clear the filter, then the marks, then back."""
        box = self.query_one("#filter", Input)
        if box.value or self.filter_text or self.filter_error:
            box.value = ""  # Input.Changed applies the empty filter
            if self.filter_text:
                self._apply_filter("")
            box.display = False
            self.table.focus()
        elif box.has_focus:
            box.display = False
            self.table.focus()
        elif self.table.marked:
            self.table.clear_marks()
        else:
            super().action_back()

    def filter_cleared(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""  # Input.Changed applies the empty filter
        if self.filter_text:
            self._apply_filter("")
        box.display = False

    @on(Input.Submitted, "#filter")
    def filter_submitted(self) -> None:
        """Done filtering (enter, see KeyshiftScreen.action_filter_done): a filter that does
        not parse keeps the box, to be fixed."""
        box = self.query_one("#filter", Input)
        if self._filter_dirty or box.value != self.typed:
            # typed within the settle time, or its Input.Changed still on the way: the
            # filter is what the box holds now
            self._filter_dirty = False
            self._apply_filter(box.value)
        if self.filter_error:
            self.notify(f"filter not applied: {self.filter_error}", severity="warning")
            self.set_focus(box)
            box.call_later(box.action_end)  # to be fixed where it ends, not replaced by
            # the next key (the box selects all it holds when it gets focus)
            return
        box.display = bool(box.value)
        self.table.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.typed = event.value
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
        self.typed = text
        try:
            query = self._query(text)
        except KeyshiftError as exc:
            # half-typed (``owner:``): keep showing the last good result and say why
            self.filter_error = exc.one_line()
            # the status line's repaint reaches the screen a moment after the typed
            # character's: hold the paint for it, or the echo paints alone and Textual's frame
            # pacing holds the status line back for up to two frames
            self.table.hold_paint(STATUS_SETTLE)
            self._update_status(self.table.window())
            return
        self.filter_text = text
        self.filter_error = None
        self._show(query, typed=True)

    def action_sort(self, column: str) -> None:
        if self.sort == column:
            self.descending = not self.descending
        else:
            self.sort, self.descending = column, False
        self._show(self._query())

    # --- rows ----------------------------------------------------------------------------

    def action_open(self) -> None:
        cred = self.table.current
        if cred is None:
            return
        from screens.detail import DetailScreen

        self.app.push_screen(DetailScreen(cred.id))

    @on(CredentialTable.Selected, "#credentials")
    def _row_selected(self) -> None:
        self.action_open()

    def on_screen_resume(self) -> None:
        # back from a detail, a rotation or another view: the rows may have changed
        if self.table.result is not None:
            self.table.reload()

    def action_copy_id(self) -> None:
        cred = self.table.current
        if cred is None:
            return
        self.app.copy_to_clipboard(cred.id)
        self.notify(f"copied {cred.id}")

    def action_holders(self) -> None:
        cred = self.table.current
        if cred is None:
            return
        from screens.reach import ReachScreen

        self.app.push_screen(ReachScreen(credential=cred.id))

    def action_columns(self) -> None:
        from screens.columns import ColumnChooser

        table = self.table

        def chosen(keys: frozenset[str] | None) -> None:
            if keys is not None:
                table.choose_columns(keys or None)
                self._update_status(table.window())

        self.app.push_screen(
            ColumnChooser(table.columns_layout.keys, table.chosen is not None), chosen
        )

    # --- rotate --------------------------------------------------------------------------

    def action_rotate(self) -> None:
        """The marked rows when any are marked (one confirmation lists them all); otherwise
        the row under the cursor."""
        table = self.table
        if table.marked:
            from screens.bulk import BulkRotateScreen

            marked = dict(table.marked)

            def done(result: Any) -> None:
                if result:
                    table.clear_marks()

            self.app.push_screen(BulkRotateScreen(marked), done)
            return
        cred = table.current
        if cred is None:
            return
        from screens.rotate import RotateScreen

        self.app.push_screen(RotateScreen(cred.id, cred.name))

    # --- sync ----------------------------------------------------------------------------

    def action_sync(self) -> None:
        if self._syncing or any(w.group == "sync" and w.is_running for w in self.app.workers):
            self.notify("a sync is already running")
            return
        self._syncing = True
        self._sync_lines = {}
        if self._sync_hide is not None:
            self._sync_hide.stop()
        box = self.query_one("#sync-status", Static)
        box.display = True
        box.update(Text(" sync: starting …", style="bold"))
        self.ks.run_uninterruptible("sync", self._sync_worker)

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
                text = f"{counts[source]} items …"
            elif phase == "start":
                counts[source] = 0
                text = "reading …"
            elif phase == "done":
                text = "done"
            else:
                text = "FAILED"
            self.app.call_from_thread(self._sync_progress, source, text)

        try:
            summary = self.ks.sync(progress)
        except Exception as exc:
            self.fail_from_thread(exc)
            self.app.call_from_thread(self._sync_ended, None)
        else:
            self.app.call_from_thread(self._sync_ended, summary)

    def _sync_progress(self, source: str, text: str) -> None:
        if not self.alive:
            return  # the sync runs on (the app owns it); this screen was closed
        self._sync_lines[source] = text
        line = Text(" sync ", style="bold reverse", no_wrap=True, overflow="ellipsis")
        for name, state in self._sync_lines.items():
            meaning = "failed" if state == "FAILED" else "done" if state == "done" else ""
            line.append(f"  {name} ", style="bold")
            line.append(state, style=state_style(self.app, meaning))
        self.query_one("#sync-status", Static).update(line, layout=False)

    def _sync_ended(self, summary: Any) -> None:
        self._syncing = False
        if self.alive:
            self.table.reload()
            self._sync_hide = self.set_timer(SYNC_LINE_KEEP, self._hide_sync_line)
        if summary is not None:
            severity = "information" if summary.status == "ok" else "warning"
            self.app.notify(
                f"sync {summary.status}: new {summary.total('new')}, changed "
                f"{summary.total('changed')}, gone {summary.total('gone')}, "
                f"stale {summary.total('stale')}, errors {summary.error_count}"
                + ("  (details: :sources)" if summary.error_count else ""),
                severity=severity,
                timeout=8,
            )

    def _hide_sync_line(self) -> None:
        self.query_one("#sync-status", Static).display = False
