"""`?`: the keys of the screen underneath, read from its live bindings (so a remapped key
shows as remapped), with each binding's id for `App.set_keymap`."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from console.vocabulary import LEGEND
from screens.widgets.header import key_label

FILTER_HELP = (
    "filter: words match name, location, owner, agents, tags, kind, source, env, scope;\n"
    "field:value exact (owner:none, env:prod, kind:api-key, agent:support-bot, tag:team=x),\n"
    "field~value substring, * wildcard, !term inverts; expires:<14d, used:unknown, age:>90d.\n"
    + LEGEND
)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,question_mark,q", "close", "Close", id="help.close"),
    ]

    def __init__(self, under: Screen) -> None:
        super().__init__(id="help")
        self.under = under

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog"):
            yield Static(self._table(), id="help-keys")
            yield Static(Text(FILTER_HELP, style="dim"), id="help-filter")

    def _table(self) -> Table:
        read_only = getattr(self.app, "read_only", False)
        hidden = set(getattr(self.under, "MUTATING", ())) if read_only else set()
        table = Table(title="keys", box=None, header_style="bold dim", title_style="bold")
        table.add_column("KEY", style="bold", no_wrap=True)
        table.add_column("ACTION")
        table.add_column("ID", style="dim")
        rows: dict[str, list[str]] = {}
        for key, active in self.under.active_bindings.items():
            binding: Binding = active.binding
            if binding.action.split("(")[0] in hidden:
                continue
            # keyshift's bindings all have ids; of Textual's own, only the palette is news
            if not binding.id and binding.action != "command_palette":
                continue
            # one row per action, every key that triggers it
            ident = binding.id or binding.action
            label = binding.key_display or key_label(key)
            if ident in rows:
                rows[ident][0] += f", {label}"
                continue
            rows[ident] = [label, binding.description or binding.action, ident]
        for label, description, ident in rows.values():
            table.add_row(label, description, ident)
        if read_only:
            table.caption = "read-only: sync and rotate are refused"
        return table

    def action_close(self) -> None:
        self.dismiss()
