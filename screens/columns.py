"""The column chooser (`o`): every column of the credential table, the ones on screen ticked.
Apply shows exactly the ticked ones (a narrow terminal then scrolls sideways); "Fit" goes
back to choosing by priority, as many as the width holds."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, SelectionList, Static

from screens.format import COLUMNS


class ColumnChooser(ModalScreen[frozenset[str] | None]):
    """Dismisses with the chosen column keys, an empty set for "fit by priority", or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="columns.cancel"),
        Binding("a", "apply", "Apply", id="columns.apply"),
        Binding("f", "fit", "Fit to width", id="columns.fit"),
    ]

    def __init__(self, shown: tuple[str, ...], chosen: bool) -> None:
        super().__init__()
        self.shown = shown
        self.chosen = chosen

    def compose(self) -> ComposeResult:
        with Vertical(id="columns-dialog"):
            yield Static(Text("Columns", style="bold"))
            yield Static(
                Text("space ticks; a applies; f fits by priority; esc cancels", style="dim")
            )
            yield SelectionList[str](
                *[
                    (
                        f"{c.label.title():<10} {'(always)' if c.key == 'name' else ''}",
                        c.key,
                        c.key in self.shown,
                    )
                    for c in COLUMNS
                ],
                id="columns-list",
            )
            with Horizontal(id="columns-buttons"):
                yield Button("Apply (a)", id="columns-apply", variant="primary")
                yield Button("Fit (f)", id="columns-fit")
                yield Button("Cancel (esc)", id="columns-cancel")

    def on_mount(self) -> None:
        self.query_one("#columns-list", SelectionList).focus()

    def action_apply(self) -> None:
        picked = frozenset(self.query_one("#columns-list", SelectionList).selected) | {"name"}
        self.dismiss(frozenset(picked))

    def action_fit(self) -> None:
        self.dismiss(frozenset())

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#columns-apply")
    def _apply(self) -> None:
        self.action_apply()

    @on(Button.Pressed, "#columns-fit")
    def _fit(self) -> None:
        self.action_fit()

    @on(Button.Pressed, "#columns-cancel")
    def _cancel(self) -> None:
        self.action_cancel()
