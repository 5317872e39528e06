"""Playbooks: named procedures that select credentials and rotate them (or finish their
revokes) through the rotation engine, with manual steps a person confirms.

The API the CLI, the console and the scheduler call::

    load_playbooks(config_dir=None) -> {name: Playbook}     built-ins, then the user's YAML
    get_playbook(name, config_dir=None) -> Playbook          NotFoundError naming the known ones
    select(pb, params, *, store, loaded, now) -> [Selected]  what it would touch, in order
    run_playbook(pb, params, *, store, audit, loaded, actor, engine=None, dry_run=False,
                 interaction=None, now=None, on_event=None, stop=None) -> PlaybookResult

Modules: ``model`` (the schema and the results), ``builtins``, ``loader`` (the user's YAML
with file:line:col errors), ``selection``, ``runner``.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from console.errors import NotFoundError
from console.playbooks.builtins import BUILTIN_NAMES, builtins
from console.playbooks.loader import load_user_playbooks, loads_playbook, playbook_dir
from console.playbooks.model import (
    Playbook,
    PlaybookEvent,
    PlaybookResult,
    Selected,
    StepResult,
)
from console.playbooks.runner import needs_person, run_playbook
from console.playbooks.selection import resolve_params, select


def load_playbooks(config_dir: Path | None = None) -> dict[str, Playbook]:
    """The built-ins, then the user's playbooks (a ConfigError for a bad file, or a name that
    shadows a built-in)."""
    return {**builtins(), **load_user_playbooks(config_dir)}


def get_playbook(name: str, config_dir: Path | None = None) -> Playbook:
    known = load_playbooks(config_dir)
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, list(known), n=3)
    raise NotFoundError(
        f"no playbook {name!r}",
        hint=(f"did you mean {', '.join(close)}? " if close else "")
        + f"known: {', '.join(sorted(known))}",
    )


__all__ = [
    "BUILTIN_NAMES",
    "Playbook",
    "PlaybookEvent",
    "PlaybookResult",
    "Selected",
    "StepResult",
    "get_playbook",
    "load_playbooks",
    "loads_playbook",
    "needs_person",
    "playbook_dir",
    "resolve_params",
    "run_playbook",
    "select",
]
