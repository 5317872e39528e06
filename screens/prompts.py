"""Questions a rotation asks a person: a value pasted without echo, and yes / no.

The engine runs in a thread worker; ``TuiInteraction`` is the ``rotators.base.Interaction`` it
talks to. Each question pushes a modal on the UI thread and the worker waits for the answer.
A pasted value goes from the password Input straight to the worker: it is never rendered,
logged or kept by the screen once answered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

if TYPE_CHECKING:
    from textual.app import App


class SecretPrompt(ModalScreen[str | None]):
    """Dismisses with what was typed or pasted (None when cancelled)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, prompt: str, notes: str = "") -> None:
        super().__init__(id="secret-prompt")
        self.prompt = prompt
        self.notes = notes

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-dialog"):
            if self.notes:
                yield Static(Text(self.notes), id="prompt-notes")
            yield Static(Text(self.prompt, style="bold"), id="prompt-label")
            yield Input(password=True, id="prompt-input", placeholder="paste it here")
            with Horizontal(id="prompt-buttons"):
                yield Button("OK (enter)", id="prompt-ok", variant="primary")
                yield Button("Cancel (esc)", id="prompt-cancel")

    def on_mount(self) -> None:
        self.query_one("#prompt-input", Input).focus()

    @on(Input.Submitted, "#prompt-input")
    @on(Button.Pressed, "#prompt-ok")
    def _submit(self) -> None:
        field = self.query_one("#prompt-input", Input)
        value = field.value
        field.value = ""  # the widget keeps nothing once answered
        self.dismiss(value or None)

    @on(Button.Pressed, "#prompt-cancel")
    def action_cancel(self) -> None:
        self.query_one("#prompt-input", Input).value = ""
        self.dismiss(None)


class ConfirmPrompt(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="prompt.yes"),
        Binding("n,escape", "answer(False)", "No", id="prompt.no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__(id="confirm-prompt")
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-dialog"):
            yield Static(Text(self.question, style="bold"), id="prompt-label")
            with Horizontal(id="prompt-buttons"):
                yield Button("Yes (y)", id="prompt-yes", variant="primary")
                yield Button("No (n)", id="prompt-no")

    def on_mount(self) -> None:
        self.query_one("#prompt-no", Button).focus()

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    @on(Button.Pressed, "#prompt-yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#prompt-no")
    def _no(self) -> None:
        self.dismiss(False)


class TuiInteraction:
    """rotators.base.Interaction for a worker thread: each question waits for the modal."""

    def __init__(self, app: App, note: Callable[[str], None]) -> None:
        self.app = app
        self._note = note
        self._notes: list[str] = []

    def _ask(self, screen: ModalScreen) -> Any:
        done = threading.Event()
        answer: list[Any] = [None]

        def got(value: Any) -> None:
            answer[0] = value
            done.set()

        self.app.call_from_thread(self.app.push_screen, screen, got)
        while not done.wait(0.25):
            if not self.app.is_running:
                return None  # the app went away: no answer is a "no"
        return answer[0]

    def show(self, text: str) -> None:
        self._notes.append(text)
        self.app.call_from_thread(self._note, text)

    def ask_secret(self, prompt: str) -> str | None:
        notes, self._notes = "\n".join(self._notes), []
        return self._ask(SecretPrompt(prompt, notes))

    def confirm(self, prompt: str) -> bool:
        return bool(self._ask(ConfirmPrompt(prompt)))
