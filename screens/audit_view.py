"""`:audit`: the audit chain, newest first, searched with the filter of `keyshift audit ls`
(actor:, action:, target:, since:, until:, free words, ! to invert). The header says what
`keyshift audit verify` says: the chain is whole, or the first entry that is not."""

from __future__ import annotations

import json
from typing import ClassVar

from rich.syntax import Syntax
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from console.audit import AuditLog
from console.audit_query import parse_audit_filter
from console.errors import KeyshiftError
from screens.listview import ListScreen, Row

AUDIT_LIMIT = 1000


class AuditScreen(ListScreen):
    view_name = "audit"
    NOUN = "entries"
    NOUN_ONE = "entry"
    COLUMNS: ClassVar[list[tuple[str, str]]] = [
        ("seq", "SEQ"),
        ("at", "AT (UTC)"),
        ("actor", "ACTOR"),
        ("action", "ACTION"),
        ("target", "TARGET"),
        ("detail", "DETAIL"),
    ]
    FILTER_PLACEHOLDER = (
        "filter: actor:NAME action:rotation.* target:TEXT since:2h until:2026-12-01 words "
        "!word  (enter keeps, esc clears)"
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Entry", id="audit.open"),
        Binding("v", "verify", "Verify chain", id="audit.verify"),
    ]

    _searched: str | None = None

    def on_show(self) -> None:
        # (ListScreen.on_mount runs too: Textual calls each class's handler)
        if not self.header_note:
            self.action_verify()

    def read_rows_for(self, asked: str) -> list[Row]:
        log = AuditLog(self.ks.store)
        entries = log.search(asked, limit=AUDIT_LIMIT)
        return [
            {
                "seq": e.seq,
                "at": f"{e.at:%Y-%m-%d %H:%M:%S}",
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "detail": json.dumps(e.detail, sort_keys=True, separators=(",", ":")),
                "hash": e.hash,
            }
            for e in entries
        ]

    def apply_filter(self) -> None:
        """The search runs in SQL: a new filter reads again; a bad one is said at once."""
        try:
            parse_audit_filter(self.filter_text)
        except KeyshiftError as exc:
            self.filter_error = exc.one_line()
            self._status()
            return
        self.filter_error = None
        if self.filter_text != self._searched:
            self.reload()
        else:
            key = self.current_key()
            self.shown = self.rows
            self._fill(key)

    def reload(self) -> None:
        self._searched = self.filter_text
        super().reload()

    def answers(self, asked: str) -> bool:
        return asked == self._searched  # an older search that finished late is dropped

    def cells(self, row: Row) -> list[Text | str]:
        detail = row["detail"]
        return [
            Text(str(row["seq"]), style="dim"),
            row["at"],
            row["actor"],
            Text(row["action"], style="bold"),
            row["target"],
            detail if len(detail) <= 80 else detail[:79] + "…",
        ]

    def key_of(self, row: Row) -> str:
        return str(row["seq"])

    def status_extra(self) -> Text | None:
        if len(self.rows) >= AUDIT_LIMIT:
            return Text(f"the newest {AUDIT_LIMIT:,} matches: narrow the filter", style="dim")
        return None

    def action_open(self) -> None:
        row = self.current
        if row is not None:
            self.open_row(row)

    def open_row(self, row: Row) -> None:
        self.app.push_screen(EntryScreen(row))

    def action_verify(self) -> None:
        self.set_header_note("chain: verifying …")
        self._verify()

    @work(thread=True, exclusive=True, group="audit-verify")
    def _verify(self) -> None:
        try:
            result = AuditLog(self.ks.store).verify()
        except Exception as exc:
            self.fail_from_thread(exc)
            return
        if result.ok:
            note = f"chain OK · {result.count:,} entries"
        else:
            note = f"chain BROKEN: {result.message}"
        self.app.call_from_thread(self.set_header_note, note)


class EntryScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "close", "Close", id="entry.close")]

    def __init__(self, row: Row) -> None:
        super().__init__()
        self.row = row

    def compose(self) -> ComposeResult:
        row = self.row
        head = Text()
        head.append(f"#{row['seq']}  {row['at']} UTC\n", style="bold")
        head.append(f"{row['actor']}  {row['action']}  {row['target']}\n")
        head.append(f"hash {row['hash']}\n", style="dim")
        detail = json.dumps(json.loads(row["detail"]), indent=2, sort_keys=True)
        with VerticalScroll(id="entry-dialog"):
            yield Static(head)
            yield Static(Syntax(detail, "json", word_wrap=True, theme="ansi_dark"))

    def action_close(self) -> None:
        self.dismiss()
