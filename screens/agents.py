"""`:agents`: each agent with its owner, environment and identities, how many credentials it
can reach and how many of those it has been seen using. Enter opens its reach as a tree.

The rows come from console.reach, as `keyshift agent ls` does.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from console.reach import agents
from console.vocabulary import NONE, UNKNOWN
from screens.listview import ListScreen, Row, styled


class AgentsScreen(ListScreen):
    view_name = "agents"
    NOUN = "agents"
    NOUN_ONE = "agent"
    COLUMNS: ClassVar[list[tuple[str, str]]] = [
        ("name", "AGENT"),
        ("owner", "OWNER"),
        ("environment", "ENV"),
        ("reach", "CAN REACH"),
        ("used", "USED"),
        ("unused", "UNUSED GRANTS"),
        ("identities", "IDENTITIES"),  # the long one last: the counts stay on screen
    ]
    FIELDS = ("name", "owner", "environment", "identities", "note")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Reach", id="agents.open"),
    ]

    def read_rows(self) -> list[Row]:
        return [
            {
                "name": a.name,
                "owner": a.owner,
                "environment": a.environment,
                "identities": ", ".join(a.identities),
                "reach": a.reach,
                "used": a.used,
                "unused": a.unused,
                "note": "" if a.in_inventory else "not in the inventory",
            }
            for a in agents(self.ks.store, self.ks.loaded)
        ]

    def cells(self, row: Row) -> list[Text | str]:
        app = self.app
        owner = (
            styled(row["owner"], app, "")
            if row["owner"]
            else styled(UNKNOWN if row["note"] else NONE, app, "muted")
        )
        identities = row["identities"] or styled(row["note"] or "-", app, "warning")
        unused = row["unused"]
        return [
            Text(row["name"], style="bold"),
            owner,
            row["environment"] or styled(UNKNOWN, app, "muted"),
            str(row["reach"]),
            styled(str(row["used"]), app, "used" if row["used"] else "muted"),
            styled(str(unused), app, "warning" if unused else "muted"),
            identities,
        ]

    def key_of(self, row: Row) -> str:
        return str(row["name"])

    def action_open(self) -> None:
        row = self.current
        if row is not None:
            self.open_row(row)

    def open_row(self, row: Row) -> None:
        from screens.reach import ReachScreen

        self.app.push_screen(ReachScreen(agent=row["name"]))
