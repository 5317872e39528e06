"""The console's views, by name: what `:creds`, `:agents`, `:runs`, `:audit` and `:sources`
open, their aliases, and the screen class behind each.

This is the one place that knows which views exist. The command bar completes from it, the
palette lists it, the keymap checker reads every view's bindings from it. A later view (a
findings list, playbooks) registers itself here the same way, with ``register``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textual.screen import Screen


@dataclass(frozen=True)
class View:
    name: str
    aliases: tuple[str, ...]
    summary: str  # one line for the command bar and the palette
    screen: str  # "module:Class", imported when first opened

    def screen_class(self) -> type[Screen]:
        module, _, name = self.screen.partition(":")
        return getattr(importlib.import_module(module), name)

    def words(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


VIEWS: dict[str, View] = {}


def register(view: View) -> None:
    taken = {word: v.name for v in VIEWS.values() for word in v.words() if v.name != view.name}
    for word in view.words():
        if word in taken:
            raise ValueError(f"view word {word!r} of {view.name} is taken by {taken[word]}")
    VIEWS[view.name] = view


def find(word: str) -> View | None:
    """The view a command names: its name or an alias (case ignored)."""
    word = word.strip().lower().lstrip(":")
    for view in VIEWS.values():
        if word in view.words():
            return view
    return None


def complete(prefix: str) -> list[View]:
    """Views whose name or alias starts with ``prefix``, names first."""
    prefix = prefix.strip().lower().lstrip(":")
    exact = [v for v in VIEWS.values() if v.name.startswith(prefix)]
    by_alias = [
        v for v in VIEWS.values() if v not in exact and any(a.startswith(prefix) for a in v.aliases)
    ]
    return exact + by_alias


for _view in (
    View(
        "creds",
        ("credentials", "cred", "c", "inventory", "inv"),
        "every credential: filter, sort, mark, rotate",
        "screens.creds:CredsScreen",
    ),
    View(
        "agents",
        ("agent", "a", "ag"),
        "each agent: owner, identities, what it can reach and what it used",
        "screens.agents:AgentsScreen",
    ),
    View(
        "runs",
        ("run", "rotations", "r"),
        "every rotation run and its steps, live: resume, roll back, finish",
        "screens.runs:RunsScreen",
    ),
    View(
        "audit",
        ("log", "au"),
        "the audit chain: search by actor, action, target and time",
        "screens.audit_view:AuditScreen",
    ),
    View(
        "findings",
        ("finding", "fi", "f", "policy"),
        "what breaks policy, most severe first: filter, open the subject, accept",
        "screens.findings:FindingsScreen",
    ),
    View(
        "sources",
        ("source", "src", "s"),
        "each source: last sync, state, error and counts; sync one",
        "screens.sources:SourcesScreen",
    ),
    View(
        "playbooks",
        ("playbook", "pb"),
        "named procedures: what each would rotate now; run one with live progress",
        "screens.playbooks:PlaybooksScreen",
    ),
    View(
        "incidents",
        ("incident", "inc"),
        "incident checklists by phase, live, with the clock and the evidence; work the tasks",
        "screens.incidents:IncidentsScreen",
    ),
    View(
        "drills",
        ("drill", "dr"),
        "rehearsed incidents: scenarios, last scores and ratings, runs; run one --auto or "
        "with you",
        "screens.drills:DrillsScreen",
    ),
):
    register(_view)
