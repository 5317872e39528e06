"""Rotate one credential: show the engine's plan, ask, then follow the steps live.

The plan and the run both happen in thread workers (they talk to providers through the
engine); the modal only renders what the engine reports through its progress callback. A
provider key's checklist asks the person through ``TuiInteraction`` (screens/prompts.py):
the instructions appear here, the new key goes into a password field that is never shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from console.errors import KeyshiftError
from console.redaction import redact_active
from screens.format import when
from screens.prompts import TuiInteraction
from screens.theme import state_style, status_style

if TYPE_CHECKING:
    from screens.app import KeyshiftApp


class RotateScreen(ModalScreen[Any]):
    """Dismisses with the engine's RunResult, or None when cancelled or refused."""

    BINDINGS = [
        Binding("y", "confirm", "Rotate", id="rotate.confirm"),
        Binding("escape,n", "cancel", "Cancel", id="rotate.cancel"),
    ]

    def __init__(self, cred_id: str, name: str) -> None:
        super().__init__(id="rotate")
        self.cred_id = cred_id
        self.cred_name = name
        self.plan: Any = None
        self.state = "planning"  # planning | ready | refused | running | finished | failed
        self.result: Any = None
        self.step_lines: dict[str, tuple[str, str]] = {}
        self.notes: list[str] = []
        self.outcome: Text | None = None

    @property
    def ks(self) -> KeyshiftApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with Vertical(id="rotate-dialog"):
            yield Static(Text(f"Rotate {self.cred_name}", style="bold"), id="rotate-title")
            with VerticalScroll(id="rotate-body"):
                yield Static("reading the plan …", id="rotate-plan")
                yield Static(id="rotate-steps")
            with Horizontal(id="rotate-buttons"):
                yield Button("Rotate (y)", id="rotate-go", variant="error", disabled=True)
                yield Button("Cancel (esc)", id="rotate-cancel")

    def on_mount(self) -> None:
        # no Rotate button until there is a plan that can run: nothing to press by mistake
        self.query_one("#rotate-go", Button).display = False
        self.query_one("#rotate-cancel", Button).focus()
        self._plan_worker()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "confirm":
            return self.state == "ready"
        return True

    # --- plan ----------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="rotate-plan")
    def _plan_worker(self) -> None:
        try:
            plan = self.ks.engine().plan(self.cred_id)
        except KeyshiftError as exc:
            self.app.call_from_thread(self._failed, exc.one_line())
        except Exception as exc:
            self.app.call_from_thread(self._failed, redact_active(f"{type(exc).__name__}: {exc}"))
        else:
            self.app.call_from_thread(self._show_plan, plan)

    def _show_plan(self, plan: Any) -> None:
        if self not in self.app.screen_stack:
            return  # closed while the plan was read
        self.plan = plan
        text = Text()
        text.append("issuer     ", style="bold")
        text.append(plan.issuer)
        if plan.manual:
            text.append(
                "  (a person mints and revokes it: keyshift asks you)",
                style=state_style(self.app, "warning"),
            )
        text.append("\n")
        text.append("declared   ", style="bold")
        text.append(f"{plan.origin}\n", style="dim")
        for number, target in enumerate(plan.targets, 1):
            text.append("targets    " if number == 1 else "           ", style="bold")
            text.append(f"{number}. {target['type']}: {target['where']}\n")
        text.append("downtime   ", style="bold")
        meaning = "done" if plan.downtime == "none" else "warning"
        text.append(f"{plan.downtime}\n", style=state_style(self.app, meaning))
        text.append("grace      ", style="bold")
        text.append(f"{plan.grace_seconds / 3600:g} h before the old value is revoked\n")
        if plan.steps:
            text.append("steps\n", style="bold")
        for number, step in enumerate(plan.steps, 1):
            text.append(f"  {number}. {step['step']}: ", style="bold")
            text.append(f"{step['does']}\n")
        for warning in plan.warnings:
            text.append(f"warning    {warning}\n", style=state_style(self.app, "warning"))
        if plan.refused:
            text.append(f"\ncannot rotate: {plan.refused}\n", style=state_style(self.app, "failed"))
        self.query_one("#rotate-plan", Static).update(text)
        if plan.refused:
            self.state = "refused"
            self._closeable()
            return
        self.state = "ready"
        go = self.query_one("#rotate-go", Button)
        go.display = True
        go.disabled = False
        go.focus()
        self.refresh_bindings()

    # --- run -----------------------------------------------------------------------------

    def action_confirm(self) -> None:
        if self.state != "ready":
            return
        self.state = "running"
        self.refresh_bindings()
        self.query_one("#rotate-go", Button).disabled = True
        self.query_one("#rotate-cancel", Button).disabled = True
        self._render_steps()
        self.ks.run_uninterruptible("rotate-run", self._rotate_worker)

    def _rotate_worker(self) -> None:
        def progress(step: str, status: str, message: str) -> None:
            self.app.call_from_thread(self._step, step, status, message)

        person = TuiInteraction(self.app, self._note)
        try:
            result = self.ks.engine().rotate(
                self.cred_id, actor=self.ks.actor, progress=progress, interaction=person
            )
        except KeyshiftError as exc:
            self.app.call_from_thread(self._failed, exc.one_line())
        except Exception as exc:
            self.app.call_from_thread(self._failed, redact_active(f"{type(exc).__name__}: {exc}"))
        else:
            self.app.call_from_thread(self._finished, result)

    def _note(self, text: str) -> None:
        self.notes.append(text)
        self._render_steps()

    def _step(self, step: str, status: str, message: str) -> None:
        self.step_lines[step] = (status, message)  # in the order the engine runs them
        self._render_steps()

    def _render_steps(self) -> None:
        text = Text()
        for note in self.notes:
            text.append(f"{note}\n", style=state_style(self.app, "accent"))
        for step, (status, message) in self.step_lines.items():
            text.append(f"  {step:<18}", style="bold")
            text.append(f"{status:<10}", style=status_style(self.app, status))
            if message:
                text.append(message, style="dim")
            text.append("\n")
        if self.outcome is not None:
            text.append_text(self.outcome)
        self.query_one("#rotate-steps", Static).update(text)
        # the newest step (and the outcome) in view; the plan scrolls up out of the way
        self.call_after_refresh(self.query_one("#rotate-body").scroll_end, animate=False)

    def _finished(self, result: Any) -> None:
        self.state = "finished"
        self.result = result
        status = str(getattr(result, "status", "done"))
        line = Text("\nrotation ")
        line.append(status, style=status_style(self.app, status))
        if getattr(result, "version", None):
            line.append(f"  new version {result.version}")
        revoke_after = getattr(result, "revoke_after", None)
        if revoke_after is not None and status == "awaiting-revoke":
            line.append(
                f"\nthe old value stays valid until {when(revoke_after, self.ks.now())}",
                style="dim",
            )
        if getattr(result, "error", None):
            line.append(f"\n{result.error}", style=state_style(self.app, "error"))
        line.append("\n(esc closes)", style="dim")
        self.outcome = line
        self._render_steps()
        self._closeable()
        ok = getattr(result, "ok", True)
        self.notify(
            f"rotated {self.cred_name}: {status}", severity="information" if ok else "warning"
        )

    def _failed(self, message: str) -> None:
        self.state = "failed"
        self.outcome = Text(f"\n{message}", style=state_style(self.app, "failed"))
        self._render_steps()
        self._closeable()
        self.notify(message, severity="error")

    def _closeable(self) -> None:
        self.refresh_bindings()
        go = self.query_one("#rotate-go", Button)
        go.disabled = True
        go.display = False  # nothing left to start from this dialog
        cancel = self.query_one("#rotate-cancel", Button)
        cancel.disabled = False
        cancel.label = "Close (esc)"
        cancel.focus()

    def action_cancel(self) -> None:
        if self.state == "running":
            self.notify("the rotation is running; it cannot be abandoned half-way")
            return
        self.dismiss(self.result)

    @on(Button.Pressed, "#rotate-go")
    def _go(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#rotate-cancel")
    def _cancel(self) -> None:
        self.action_cancel()
