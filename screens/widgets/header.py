"""The top bar (k9s style): where we are, a READ-ONLY badge, and the keys of this screen."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


def key_label(key: str) -> str:
    return {"question_mark": "?", "slash": "/", "escape": "esc", "enter": "⏎"}.get(key, key)


class HeaderBar(Static):
    DEFAULT_CSS = """
    HeaderBar { height: 1; background: $panel; color: $foreground; }
    """

    def __init__(self, title: str) -> None:
        super().__init__(id="header")
        self.title_text = title

    def on_mount(self) -> None:
        # the keys on offer change with focus (an Input takes the letter keys while it has it)
        self.screen.bindings_updated_signal.subscribe(self, lambda _screen: self.update_hints())
        self.call_after_refresh(self.update_hints)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def update_hints(self) -> None:
        line = Text()
        line.append(" keyshift ", style="bold reverse")
        line.append(f" {self.title_text} ")
        if getattr(self.app, "read_only", False):
            line.append(" READ-ONLY ", style="bold black on yellow")
            line.append(" ")
        seen: set[str] = set()
        # read-only: the keys that would change something are not advertised (they refuse)
        hidden = (
            set(getattr(self.screen, "MUTATING", ()))
            if getattr(self.app, "read_only", False)
            else set()
        )
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            action = binding.action.split("(")[0]
            if not binding.show or not active.enabled or binding.action in seen:
                continue
            if action in hidden:
                continue
            seen.add(binding.action)
            line.append(f"  {binding.key_display or key_label(key)}", style="bold")
            line.append(f" {binding.description}", style="dim")
        self.update(line)
