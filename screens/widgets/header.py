"""The top bar (k9s style). Line one: where you are (breadcrumbs from the screen stack), a
READ-ONLY badge, and the screen's note (the audit chain's state). Line two: the keys of this
screen as they are bound now (a remapped key shows remapped; read-only keys are gone)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from screens.theme import state_style

KEY_NAMES = {
    "question_mark": "?",
    "slash": "/",
    "colon": ":",
    "escape": "esc",
    "enter": "⏎",
    "space": "space",
    "comma": ",",
    "full_stop": ".",
}


def key_label(key: str) -> str:
    return KEY_NAMES.get(key, key)


def breadcrumbs(app) -> list[str]:  # type: ignore[no-untyped-def]
    return [crumb for s in app.screen_stack if (crumb := getattr(s, "crumb", ""))]


class HeaderBar(Static):
    DEFAULT_CSS = """
    HeaderBar { height: 2; background: $panel; color: $foreground; }
    """

    def __init__(self) -> None:
        super().__init__(id="header")

    def on_mount(self) -> None:
        # the keys on offer change with focus (an Input takes the letter keys while it has it)
        self.screen.bindings_updated_signal.subscribe(self, lambda _screen: self.update_hints())
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.update_hints())
        self.call_after_refresh(self.update_hints)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)
        self.app.theme_changed_signal.unsubscribe(self)

    def on_resize(self) -> None:
        self.update_hints()

    def update_hints(self) -> None:
        width = max(self.size.width, 20)
        top = Text(no_wrap=True, overflow="ellipsis")
        top.append(" keyshift ", style="bold reverse")
        right = Text(no_wrap=True)
        note = getattr(self.screen, "header_note", "")
        if note:
            meaning = "failed" if note.startswith("chain BROKEN") else "ok"
            right.append(f" {note} ", style=state_style(self.app, meaning))
        if getattr(self.app, "read_only", False):
            right.append(" READ-ONLY ", style="bold reverse")
        crumbs = breadcrumbs(self.app)
        trail = Text(no_wrap=True)
        for number, crumb in enumerate(crumbs):
            trail.append(" › " if number else " ", style="dim")  # noqa: RUF001
            trail.append(crumb, style="bold" if number == len(crumbs) - 1 else "")
        room = width - top.cell_len - right.cell_len
        if trail.cell_len > room > 2:
            # the newest crumbs matter most: cut from the left
            trail = Text("…", style="dim") + trail[trail.cell_len - room + 1 :]
        top.append_text(trail)
        top.truncate(max(width - right.cell_len, 10), overflow="ellipsis")
        top.pad_right(width - top.cell_len - right.cell_len)
        top.append_text(right)

        keys = Text(no_wrap=True, overflow="ellipsis")
        seen: set[str] = set()
        screen_keys = self.screen._bindings.key_to_bindings
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if not binding.id and not binding.show:
                # a widget's own key (the table's enter) shadows the screen's: show the
                # screen's meaning, which is what the key does there
                own = [b for b in screen_keys.get(key, []) if b.id and b.show]
                if own:
                    binding = own[0]
            if not binding.show or not active.enabled or binding.action in seen:
                continue
            seen.add(binding.action)
            keys.append(f" {binding.key_display or key_label(key)}", style="bold")
            keys.append(f" {binding.description} ", style="dim")
        keys.truncate(width, overflow="ellipsis")
        top.append("\n")
        top.append_text(keys)
        self.update(top, layout=False)
