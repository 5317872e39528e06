"""`:` — the command bar (k9s): type a view's name or alias (`creds`, `agents`, `runs`,
`audit`, `sources`, and what later views register), with completion; enter opens it. A
filter may follow the name (`:creds owner:none`, `:audit actor:alice`)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from screens import views


class ViewSuggester(Suggester):
    """Completes the first word to a view name (tab or → accepts)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=False)

    async def get_suggestion(self, value: str) -> str | None:
        if " " in value.strip():
            return None
        for view in views.complete(value):
            for word in view.words():
                if word.startswith(value.strip().lower()) and value.strip():
                    return word
        return None


class CommandBar(ModalScreen[tuple[str, str] | None]):
    """Dismisses with (view name, filter) or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="command.cancel"),
        Binding("down", "next", "Next", show=False, id="command.next"),
        Binding("up", "previous", "Previous", show=False, id="command.previous"),
        Binding("tab", "complete", "Complete", show=False, id="command.complete"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="command-dialog"):
            yield Input(
                placeholder="view: creds, agents, runs, audit, sources",
                suggester=ViewSuggester(),
                id="command-input",
            )
            yield OptionList(id="command-options")
            yield Static(id="command-error")

    def on_mount(self) -> None:
        self._fill("")
        self.query_one("#command-input", Input).focus()

    def on_key(self, event: events.Key) -> None:
        """Keys typed before the box had focus (a fast `:audit⏎` arrives in one burst) reach
        the screen instead: they belong in the box, in order."""
        box = self.query_one("#command-input", Input)
        if box.has_focus:
            return
        if event.key == "enter":
            event.stop()
            box.focus()
            box.post_message(Input.Submitted(box, box.value))
        elif event.key == "backspace":
            event.stop()
            box.value = box.value[:-1]
        elif event.is_printable and event.character:
            event.stop()
            box.insert_text_at_cursor(event.character)

    def _fill(self, value: str) -> None:
        options = self.query_one("#command-options", OptionList)
        options.clear_options()
        word = value.split(" ", 1)[0]
        for view in views.complete(word):
            label = Text()
            label.append(f":{view.name}", style="bold")
            if view.aliases:
                label.append(f"  ({', '.join(view.aliases)})", style="dim")
            label.append(f"  {view.summary}")
            options.add_option(Option(label, id=view.name))
        if options.option_count:
            options.highlighted = 0

    @on(Input.Changed, "#command-input")
    def _changed(self, event: Input.Changed) -> None:
        self.query_one("#command-error", Static).update("")
        self._fill(event.value.lstrip(":"))

    @on(Input.Submitted, "#command-input")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip().lstrip(":")
        word, _, rest = text.partition(" ")
        view = views.find(word) if word else None
        if view is None:
            options = self.query_one("#command-options", OptionList)
            if options.highlighted is not None and options.option_count and word:
                option = options.get_option_at_index(options.highlighted)
                view = views.VIEWS.get(option.id or "")
        if view is None:
            known = ", ".join(f":{v}" for v in views.VIEWS)
            self.query_one("#command-error", Static).update(
                Text(f"no view {word!r}: {known}", style="bold")
            )
            return
        self.dismiss((view.name, rest.strip()))

    @on(OptionList.OptionSelected, "#command-options")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        rest = self.query_one("#command-input", Input).value.strip().partition(" ")[2]
        self.dismiss((event.option.id or "", rest.strip()))

    def action_next(self) -> None:
        self.query_one("#command-options", OptionList).action_cursor_down()

    def action_previous(self) -> None:
        self.query_one("#command-options", OptionList).action_cursor_up()

    def action_complete(self) -> None:
        box = self.query_one("#command-input", Input)
        options = self.query_one("#command-options", OptionList)
        if options.highlighted is not None and options.option_count:
            name = options.get_option_at_index(options.highlighted).id or ""
            rest = box.value.partition(" ")[2]
            box.value = f"{name} {rest}".rstrip() if rest else name
            box.cursor_position = len(box.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
