"""`?`: the keys of the screen underneath, read from its live bindings (so a remapped key
shows remapped and read-only keys are gone), each with what it does and its id for the
keymap file; the views `:` opens; the filter grammar and the words the console uses."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from console.vocabulary import LEGEND
from screens import views
from screens.keymap import default_path
from screens.widgets.header import key_label

FILTER_HELP = (
    "filter (/): words match name, location, owner, agents, tags, kind, source, env, scope;\n"
    "field:value exact (owner:none, env:prod, kind:api-key, agent:support-bot, tag:team=x),\n"
    "field~value substring, * wildcard, !term inverts; expires:<14d, used:never, used:unknown, "
    "age:>90d."
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
            yield Static(self._keys(), id="help-keys")
            yield Static(self._views(), id="help-views")
            yield Static(Text(f"{FILTER_HELP}\n{LEGEND}", style="dim"), id="help-filter")

    def _keys(self) -> Table:
        table = Table(title="keys", box=None, header_style="bold dim", title_style="bold")
        table.add_column("KEY", style="bold", no_wrap=True)
        table.add_column("DOES")
        table.add_column("ID (keymap)", style="dim")
        rows: dict[str, list[str]] = {}
        for key, active in self.under.active_bindings.items():
            binding: Binding = active.binding
            # keyshift's bindings all have ids; of Textual's own, only the palette is news
            if not binding.id and binding.action != "command_palette":
                continue
            ident = binding.id or "(textual) command palette"
            label = key_label(key)
            if ident in rows:  # one row per action, every key that triggers it
                rows[ident][0] += f", {label}"
                continue
            rows[ident] = [label, binding.description or binding.action, ident]
        for label, description, ident in rows.values():
            table.add_row(label, description, ident)
        caption = f"remap keys in {default_path()} (id: key)"
        if getattr(self.app, "read_only", False):
            caption = (
                "read-only: rotate, resume, roll back, finish, playbook runs, incident "
                "changes and drill runs are off (dry runs, sync and exports still work)\n"
                + caption
            )
        table.caption = caption
        return table

    def _views(self) -> Group:
        table = Table(title="views (:name)", box=None, header_style="bold dim", title_style="bold")
        table.add_column("VIEW", style="bold", no_wrap=True)
        table.add_column("ALIASES", style="dim")
        table.add_column("SHOWS")
        for view in views.VIEWS.values():
            table.add_row(f":{view.name}", ", ".join(view.aliases), view.summary)
        return Group(Text(""), table, Text(""))

    def action_close(self) -> None:
        self.dismiss()
