"""Every key binding of the console, by scope: one place that knows which bindings are live
together (the app's, a screen's and the widgets inside it). The keymap checker refuses an
unknown id or two bindings of one scope on the same key; the palette and help read it.

A screen lists the widgets whose bindings it hosts in ``HOSTS``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from textual.binding import Binding

from screens import views


@dataclass(frozen=True)
class Bound:
    binding: Binding
    owner: type  # the class that declares it


def _own_and_inherited(cls: type) -> Iterator[Bound]:
    """``cls``'s bindings and its bases', each with the class that declares it."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        for item in klass.__dict__.get("BINDINGS", []):
            binding = item if isinstance(item, Binding) else Binding(*item)
            key = binding.id or binding.action
            if key in seen:
                continue
            seen.add(key)
            yield Bound(binding, klass)


def screen_bindings(cls: type) -> list[Bound]:
    """A screen's bindings with those of the widgets it hosts."""
    out = list(_own_and_inherited(cls))
    for widget in getattr(cls, "HOSTS", ()):
        out += list(_own_and_inherited(widget))
    return out


def other_screens() -> list[type]:
    """Screens that are not views (reached from a view) and the dialogs."""
    from screens.audit_view import EntryScreen
    from screens.bulk import BulkRotateScreen
    from screens.columns import ColumnChooser
    from screens.command_bar import CommandBar
    from screens.detail import DetailScreen
    from screens.drills import DrillRunScreen
    from screens.help import HelpScreen
    from screens.incidents import IncidentScreen, TaskPrompt
    from screens.playbooks import (
        ParamsPrompt,
        PlaybookConfirm,
        PlaybookRunScreen,
        PlaybookScreen,
    )
    from screens.prompts import ConfirmPrompt, SecretPrompt
    from screens.reach import ReachScreen
    from screens.rotate import RotateScreen
    from screens.runs import RunScreen

    return [
        DetailScreen, ReachScreen, RunScreen, RotateScreen, BulkRotateScreen, ColumnChooser,
        CommandBar, HelpScreen, ConfirmPrompt, SecretPrompt, EntryScreen,
        PlaybookScreen, PlaybookRunScreen, ParamsPrompt, PlaybookConfirm,
        IncidentScreen, TaskPrompt, DrillRunScreen,
    ]  # fmt: skip


def scopes() -> dict[str, list[Bound]]:
    """scope name -> the bindings live in it: the app's (under a modal screen only its
    priority ones, as Textual does), the command palette's key, the screen's own (with
    Textual's Screen keys) and those of the widgets it hosts."""
    from textual.app import App
    from textual.screen import ModalScreen

    from screens.app import KeyshiftApp

    app = list(_own_and_inherited(KeyshiftApp))
    app.append(Bound(Binding(App.COMMAND_PALETTE_BINDING, "command_palette", priority=True), App))
    priority = [b for b in app if b.binding.priority]
    out = {"app": app}
    for view in views.VIEWS.values():
        out[view.name] = app + screen_bindings(view.screen_class())
    for cls in other_screens():
        out[cls.__name__] = (priority if issubclass(cls, ModalScreen) else app) + screen_bindings(
            cls
        )
    return out


def known_ids() -> dict[str, Binding]:
    return {
        bound.binding.id: bound.binding
        for bindings in scopes().values()
        for bound in bindings
        if bound.binding.id
    }
