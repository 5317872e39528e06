"""The command palette (ctrl+p) lists every keyshift view and action by a human name: the
views of screens.views, every binding of every view (with its key), and the app's own. An
action of another view opens that view first, then runs there."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

from screens import views
from screens.bindings import screen_bindings
from screens.widgets.header import key_label

if TYPE_CHECKING:
    from screens.app import KeyshiftApp


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[], Any]


def _keys(app: Any, binding_id: str | None, default: str) -> str:
    keys = app._keymap.get(binding_id, default) if binding_id else default
    return ", ".join(key_label(k.strip()) for k in keys.split(","))


def commands(app: KeyshiftApp) -> Iterator[Command]:
    read_only = app.read_only
    for view in views.VIEWS.values():
        yield Command(
            f"Go to {view.name}", f":{view.name} — {view.summary}", partial(app.goto, view.name)
        )
    for view in views.VIEWS.values():
        screen_class = view.screen_class()
        mutating = set(getattr(screen_class, "MUTATING", ()))
        seen: set[str] = set()
        for bound in screen_bindings(screen_class):
            binding = bound.binding
            if not binding.id or binding.id.startswith("app."):
                continue  # Textual's own (a DataTable's keys), and the app's (listed below)
            action = binding.action
            if action in seen or (read_only and action.split("(")[0] in mutating):
                continue
            if action == "back":
                continue
            seen.add(action)
            yield Command(
                f"{view.name}: {binding.description}",
                f"key {_keys(app, binding.id, binding.key)} · {binding.id}",
                partial(app.run_in_view, view.name, action),
            )
    for binding in app.BINDINGS:
        if binding.action in ("command_palette",):
            continue
        yield Command(
            binding.description,
            f"key {_keys(app, binding.id, binding.key)} · {binding.id}",
            partial(app.run_action, binding.action),
        )


class KeyshiftCommands(Provider):
    async def discover(self) -> Hits:
        for command in commands(self.app):  # type: ignore[arg-type]
            yield DiscoveryHit(command.name, command.run, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in commands(self.app):  # type: ignore[arg-type]
            score = max(matcher.match(command.name), matcher.match(command.help) * 0.8)
            if score > 0:
                yield Hit(score, matcher.highlight(command.name), command.run, help=command.help)
