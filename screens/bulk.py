"""Rotate the marked credentials: one confirmation that lists every one of them with its plan
(or why it cannot be rotated), then one rotation after another, each row following its run.

A credential whose plan is refused is listed and skipped, never silently dropped; one that
fails rolls back on its own (the engine's rule) and the rest carry on.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from console.errors import KeyshiftError
from console.redaction import redact_active
from screens.prompts import TuiInteraction
from screens.theme import state_style, status_style


class BulkRotateScreen(ModalScreen[bool]):
    """Dismisses True once it has run (the marks are spent), False when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Rotate all", id="bulk.confirm"),
        Binding("escape,n", "cancel", "Cancel", id="bulk.cancel"),
    ]

    def __init__(self, marked: dict[str, str]) -> None:
        super().__init__(id="bulk")
        self.marked = marked
        self.plans: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.outcome: dict[str, tuple[str, str]] = {}  # id -> (status, message)
        self.state = "planning"  # planning | ready | running | finished

    def compose(self) -> ComposeResult:
        with Vertical(id="rotate-dialog"):
            yield Static(
                Text(f"Rotate {len(self.marked)} marked credentials", style="bold"),
                id="rotate-title",
            )
            with VerticalScroll(id="rotate-body"):
                yield Static(id="bulk-list")
            with Horizontal(id="rotate-buttons"):
                yield Button("Rotate (y)", id="bulk-go", variant="error", disabled=True)
                yield Button("Cancel (esc)", id="bulk-cancel")

    def on_mount(self) -> None:
        self.query_one("#bulk-cancel", Button).focus()
        self._draw()
        self._plan_all()

    @property
    def rotatable(self) -> list[str]:
        return [
            cid
            for cid in self.marked
            if cid in self.plans and not self.plans[cid].refused and cid not in self.errors
        ]

    @work(thread=True, exclusive=True, group="rotate-plan")
    def _plan_all(self) -> None:
        try:
            engine = self.app.engine()  # type: ignore[attr-defined]
        except KeyshiftError as exc:  # no inventory, read-only: every row says why
            for cid in self.marked:
                self.app.call_from_thread(self._planned, cid, None, exc.one_line())
            self.app.call_from_thread(self._all_planned)
            return
        for cid in self.marked:
            try:
                plan = engine.plan(cid)
            except KeyshiftError as exc:
                self.app.call_from_thread(self._planned, cid, None, exc.one_line())
            except Exception as exc:
                message = redact_active(f"{type(exc).__name__}: {exc}")
                self.app.call_from_thread(self._planned, cid, None, message)
            else:
                self.app.call_from_thread(self._planned, cid, plan, None)
        self.app.call_from_thread(self._all_planned)

    def _planned(self, cid: str, plan: Any, error: str | None) -> None:
        if self not in self.app.screen_stack:
            return  # closed while the plans were read
        if plan is not None:
            self.plans[cid] = plan
        if error:
            self.errors[cid] = error
        self._draw()

    def _all_planned(self) -> None:
        if self not in self.app.screen_stack:
            return
        self.state = "ready"
        go = self.query_one("#bulk-go", Button)
        count = len(self.rotatable)
        go.label = f"Rotate {count} (y)"
        go.disabled = count == 0
        if count:
            go.focus()
        self._draw()

    def _draw(self) -> None:
        table = Table(box=None, header_style="bold dim", pad_edge=False, expand=True)
        table.add_column("CREDENTIAL", no_wrap=True, ratio=2)
        table.add_column("HOW", ratio=3)
        table.add_column("STATE", ratio=2)
        app = self.app
        for cid, name in self.marked.items():
            plan = self.plans.get(cid)
            if cid in self.errors:
                how = Text(self.errors[cid], style=state_style(app, "error"))
            elif plan is None:
                how = Text("reading the plan …", style=state_style(app, "muted"))
            elif plan.refused:
                how = Text(f"skipped: {plan.refused}", style=state_style(app, "warning"))
            else:
                targets = ", ".join(t["type"] for t in plan.targets) or "-"
                how = Text(f"{plan.issuer} → {targets}; downtime {plan.downtime}")
                if plan.manual:
                    how.append("  (asks you)", style=state_style(app, "warning"))
            status, message = self.outcome.get(cid, ("", ""))
            state = Text(status, style=status_style(app, status) if status else "")
            if message:
                state.append(f" {message}", style="dim")
            table.add_row(Text(name, style="bold"), how, state)
        self.query_one("#bulk-list", Static).update(table)

    def action_confirm(self) -> None:
        if self.state != "ready" or not self.rotatable:
            return
        self.state = "running"
        self.query_one("#bulk-go", Button).disabled = True
        self.query_one("#bulk-cancel", Button).disabled = True
        ids = self.rotatable
        self.app.run_uninterruptible("rotate-run", lambda: self._run_all(ids))  # type: ignore[attr-defined]

    def _run_all(self, ids: list[str]) -> None:
        app: Any = self.app
        engine = app.engine()
        for cid in ids:

            def progress(step: str, status: str, message: str, cid: str = cid) -> None:
                app.call_from_thread(self._progress, cid, f"{step} {status}", "")

            person = TuiInteraction(app, lambda text: app.notify(text, timeout=15))
            try:
                result = engine.rotate(cid, actor=app.actor, progress=progress, interaction=person)
            except KeyshiftError as exc:
                app.call_from_thread(self._progress, cid, "failed", exc.one_line())
            except Exception as exc:
                message = redact_active(f"{type(exc).__name__}: {exc}")
                app.call_from_thread(self._progress, cid, "failed", message)
            else:
                app.call_from_thread(self._progress, cid, result.status, result.error or "")
        app.call_from_thread(self._finished)

    def _progress(self, cid: str, status: str, message: str) -> None:
        self.outcome[cid] = (status, message)
        self._draw()

    def _finished(self) -> None:
        self.state = "finished"
        go = self.query_one("#bulk-go", Button)
        go.display = False
        cancel = self.query_one("#bulk-cancel", Button)
        cancel.disabled = False
        cancel.label = "Close (esc)"
        cancel.focus()
        failed = [c for c, (s, _m) in self.outcome.items() if s in ("failed", "rollback-failed")]
        self.notify(
            f"rotated {len(self.outcome) - len(failed)} of {len(self.outcome)}"
            + (f"; {len(failed)} failed" if failed else ""),
            severity="warning" if failed else "information",
        )

    def action_cancel(self) -> None:
        if self.state == "running":
            self.notify("the rotations are running; they cannot be abandoned half-way")
            return
        self.dismiss(self.state == "finished")

    @on(Button.Pressed, "#bulk-go")
    def _go(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#bulk-cancel")
    def _cancel(self) -> None:
        self.action_cancel()
