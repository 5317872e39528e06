"""`:agents`: each agent with its owner, environment and identities, how many credentials it
can reach and how many of those it has been seen using. Enter opens its reach as a tree.

Agents come from the inventory and from the grants sync found: an agent that holds grants
but is not in the inventory is listed too, marked so, never dropped.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from console.vocabulary import NONE, UNKNOWN
from screens.listview import ListScreen, Row, styled


def identity_text(identity: Any) -> str:
    kind = identity.type
    detail = (
        getattr(identity, "role", None)
        or getattr(identity, "name", None)
        or getattr(identity, "service", None)
        or getattr(identity, "path", None)
        or ""
    )
    return f"{kind}:{detail}" if detail else kind


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
        reach = {r["agent"]: r for r in self.ks.store.agent_reach()}
        rows: list[Row] = []
        loaded = self.ks.loaded
        declared = loaded.inventory.agents if loaded is not None else []
        for agent in declared:
            counts = reach.pop(agent.name, None) or {"reach": 0, "used": 0}
            rows.append(
                {
                    "name": agent.name,
                    "owner": agent.owner,
                    "environment": agent.environment,
                    "identities": ", ".join(identity_text(i) for i in agent.identities),
                    "reach": counts["reach"],
                    "used": counts["used"],
                    "unused": counts["reach"] - counts["used"],
                    "note": "",
                }
            )
        for name, counts in reach.items():  # found by sync, absent from the inventory
            rows.append(
                {
                    "name": name,
                    "owner": None,
                    "environment": None,
                    "identities": "",
                    "reach": counts["reach"],
                    "used": counts["used"],
                    "unused": counts["reach"] - counts["used"],
                    "note": "not in the inventory",
                }
            )
        return sorted(rows, key=lambda r: r["name"].lower())

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
