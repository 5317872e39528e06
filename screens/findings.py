"""`:findings`: what breaks policy, as the last sync found it, most severe first. The header
counts the open ones by severity; `/` filters (rule:scope.*, severity:high, status:accepted);
enter jumps to the credential (or the agent's reach); `a` accepts one until a date, with a
reason (audited; not under --read-only). The rows are console.findings' records, as
`keyshift findings` prints them."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from console.findings import RULES, SEVERITIES, SEVERITY_RANK
from console.findings.records import FIELDS, as_json
from screens.format import FINDING_MEANING, ago
from screens.listview import ListScreen, Row, styled

STATUS_MEANING = {"open": "", "accepted": "inactive", "resolved": "done"}


class FindingsScreen(ListScreen):
    view_name = "findings"
    NOUN = "findings"
    NOUN_ONE = "finding"
    COLUMNS: ClassVar[list[tuple[str, str]]] = [
        ("severity", "SEVERITY"),
        ("rule", "RULE"),
        ("status", "STATUS"),
        ("subject", "SUBJECT"),
        ("seen", "LAST SEEN"),
        ("title", "FINDING"),  # the long one last
    ]
    FIELDS = FIELDS
    MUTATING: ClassVar[tuple[str, ...]] = ("accept",)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open subject", id="findings.open"),
        Binding("a", "accept", "Accept", id="findings.accept"),
    ]

    def read_rows(self) -> list[Row]:
        now: datetime = self.ks.now()
        rows = [as_json(r, now) for r in self.ks.store.findings()]
        names = self.ks.store.credential_labels([r["credential"] for r in rows if r["credential"]])
        for r in rows:
            label = names.get(r["credential"] or "", {}).get("name")
            r["subject"] = label or r["credential"] or (f"agent {r['agent']}" if r["agent"]
                                                         else "-")
            r["credential_text"] = r["credential"] or ""
        rows.sort(key=lambda r: (-SEVERITY_RANK.get(r["severity"], -1), r["rule"],
                                 r["subject"], r["id"]))
        return rows

    def predicate(self, text: str):  # type: ignore[no-untyped-def]
        from console.listfilter import list_filter

        keep = list_filter(text, FIELDS)
        return lambda row: keep({**row, "credential": row["credential_text"]})

    def cells(self, row: Row) -> list[Text | str]:
        now: datetime = self.ks.now()
        app = self.app
        seen = datetime.fromisoformat(row["last_seen"]) if row["last_seen"] else None
        return [
            styled(row["severity"], app, FINDING_MEANING.get(row["severity"], "")),
            row["rule"],
            styled(row["status"], app, STATUS_MEANING.get(row["status"], "")),
            Text(row["subject"], style="bold"),
            ago(seen, now) if seen else "-",
            row["title"],
        ]

    def key_of(self, row: Row) -> str:
        return str(row["id"])

    def status_extra(self) -> Text | None:
        open_rows = [r for r in self.rows if r["status"] == "open"]
        parts = [(sev, sum(1 for r in open_rows if r["severity"] == sev)) for sev in SEVERITIES]
        text = Text("open: ")
        shown = [(sev, n) for sev, n in parts if n]
        for i, (sev, n) in enumerate(shown):
            if i:
                text.append(" · ")
            text.append(f"{sev} {n}", style=styled(sev, self.app,
                                                   FINDING_MEANING.get(sev, "")).style)
        if not shown:
            text.append("none", style="dim")
        return text

    def action_open(self) -> None:
        row = self.current
        if row is not None:
            self.open_row(row)

    def open_row(self, row: Row) -> None:
        if row["credential"]:
            from screens.detail import DetailScreen

            self.app.push_screen(DetailScreen(row["credential"]))
        elif row["agent"]:
            from screens.reach import ReachScreen

            self.app.push_screen(ReachScreen(agent=row["agent"]))
        else:
            rule = RULES.get(row["rule"])
            self.notify(rule.rationale if rule else row["title"])

    def action_accept(self) -> None:
        row = self.current
        if row is None:
            return
        if row["status"] == "resolved":
            self.notify(f"{row['id']} is resolved: nothing to accept", severity="warning")
            return

        def answered(answer: tuple[str, str] | None) -> None:
            if answer is not None:
                self.ks.run_uninterruptible("finding-accept", lambda: self._accept(row, *answer))

        self.app.push_screen(AcceptPrompt(row), answered)

    def _accept(self, row: Row, until: str, reason: str) -> None:
        from console.findings.accept import accept

        try:
            found, when = accept(self.ks.store, self.ks.audit, self.ks.actor, row["id"], until,
                                 reason, now=self.ks.now())
        except Exception as exc:
            self.fail_from_thread(exc)
            return
        self.app.call_from_thread(self._accepted, found["id"], when)

    def _accepted(self, finding_id: str, when: datetime) -> None:
        self.notify(f"{finding_id} accepted until {when.date().isoformat()}")
        if self.alive:
            self.reload()


class AcceptPrompt(ModalScreen[tuple[str, str] | None]):
    """Until when, and why: dismisses with both, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="accept.cancel")]
    # centred like the other prompts (keyshift.tcss)

    def __init__(self, row: Row) -> None:
        super().__init__(id="accept-prompt")
        self.row = row

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-dialog"):
            yield Static(Text(f"Accept {self.row['id']}: {self.row['title']}", style="bold"),
                         id="prompt-label")
            yield Input(id="accept-until", placeholder="until (YYYY-MM-DD, UTC)")
            yield Input(id="accept-reason", placeholder="why the risk is accepted")
            with Horizontal(id="prompt-buttons"):
                yield Button("Accept (enter)", id="accept-ok", variant="primary")
                yield Button("Cancel (esc)", id="accept-cancel")

    def on_mount(self) -> None:
        self.query_one("#accept-until", Input).focus()

    @on(Input.Submitted, "#accept-until")
    def _next(self) -> None:
        self.query_one("#accept-reason", Input).focus()

    @on(Input.Submitted, "#accept-reason")
    @on(Button.Pressed, "#accept-ok")
    def _submit(self) -> None:
        until = self.query_one("#accept-until", Input).value
        reason = self.query_one("#accept-reason", Input).value
        self.dismiss((until, reason))

    @on(Button.Pressed, "#accept-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
