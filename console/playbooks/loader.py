"""Users' playbooks: one YAML file each in ``<config dir>/playbooks/`` (``*.yaml``, ``*.yml``),
read like the inventory (console/yamlsafe.py: positions, no aliases bombs, no duplicate keys)
and checked against console/playbooks/model.py, so a mistake reads
``file:line:col: field.path: message (hint: ...)``.

``name:`` may be left out: the file's stem is the name. A name a built-in has is refused, and so
is one two files share.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from console import paths, yamlsafe
from console.config import InventoryError, _problem, _schema_problems, _secret_problems
from console.errors import ConfigError
from console.playbooks.builtins import BUILTIN_NAMES
from console.playbooks.model import Playbook
from console.yamlsafe import Path_

MAX_FILES = 500


def playbook_dir(config_dir: Path | None = None) -> Path:
    return (config_dir if config_dir is not None else paths.config_dir()) / "playbooks"


def load_user_playbooks(config_dir: Path | None = None) -> dict[str, Playbook]:
    """Every user playbook, by name; the first file with a problem raises its ConfigError
    (an InventoryError carrying every problem of that file)."""
    folder = playbook_dir(config_dir)
    if not folder.is_dir():
        return {}
    files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml"))[:MAX_FILES]
    found: dict[str, Playbook] = {}
    for file in files:
        pb = load_playbook_file(file)
        if pb.name in found:
            raise ConfigError(
                f"two playbooks are named {pb.name!r}",
                file=str(file),
                line=1,
                column=1,
                field="name",
                hint=f"the other is {found[pb.name].source}; rename one",
            )
        found[pb.name] = pb
    return found


def load_playbook_file(file: Path) -> Playbook:
    display = str(file)
    return loads_playbook(yamlsafe.read_text(file, display), display, default_name=file.stem)


def loads_playbook(text: str, display: str, *, default_name: str | None = None) -> Playbook:
    doc = yamlsafe.parse(text, display)
    if not isinstance(doc.data, dict):
        line, column = doc.values.get((), (1, 1))
        raise ConfigError(
            "a playbook is a mapping (name:, selection:, ...)"
            + (", and this file is empty" if doc.data is None else ""),
            file=display,
            line=line,
            column=column,
            hint="see `keyshift playbook show rotate-agent` for the fields",
        )
    _raise(_secret_problems(doc, display))
    data: dict[str, Any] = dict(doc.data)
    if "name" not in data and default_name is not None:
        data["name"] = default_name
    pb: Playbook | None = None
    try:
        pb = Playbook.model_validate(data)
    except ValidationError as exc:
        problems = [_rehint(p, doc, Playbook) for p in _schema_problems(doc, exc, display)]
        _raise(problems or [ConfigError("invalid playbook", file=display, line=1, column=1)])
    assert pb is not None
    problems = []
    if pb.name in BUILTIN_NAMES:
        where: Path_ = ("name",)
        problems.append(_problem(
            display, doc.values.get(where, (1, 1)), where,
            f"{pb.name!r} is a built-in playbook's name; a playbook of yours may not shadow it",
            f"name it something else, e.g. my-{pb.name}",
        ))
    for kind, name in pb.undeclared_params():
        where = ("selection", kind)
        problems.append(_problem(
            display, doc.values.get(where), where,
            f"uses {{{name}}}, which is not one of the playbook's params",
            f"declare it: params: {{{name}: {{help: ...}}}}",
        ))
    _raise(problems)
    return pb.placed(display)


def _raise(problems: list[ConfigError]) -> None:
    if problems:
        problems.sort(key=lambda p: (p.line or 0, p.column or 0))
        raise InventoryError(problems)


def _rehint(problem: ConfigError, doc: yamlsafe.Document, root: type[BaseModel]) -> ConfigError:
    """config's schema messages suggest the inventory's fields for an unknown key; a
    playbook's come from its own model."""
    if not problem.message.startswith("unknown field") or not problem.field:
        return problem
    key = problem.message.split("'")[1] if "'" in problem.message else ""
    parent = _fields_at(root, doc.data, _parent_path(problem.field))
    close = difflib.get_close_matches(key, parent, n=1)
    problem.hint = (
        f"did you mean '{close[0]}'?" if close
        else ("allowed here: " + ", ".join(parent) if parent else None)
    )
    return problem


def _parent_path(field: str) -> list[str]:
    # "selection.agnet" -> ["selection"]; list indexes ("manual_steps[0].txt") keep their name
    parts = [p.split("[")[0] for p in field.split(".")]
    return parts[:-1]


def _fields_at(root: type[BaseModel], data: Any, path: list[str]) -> list[str]:
    import typing

    tp: Any = root
    for part in path:
        info = tp.model_fields.get(part) if isinstance(tp, type) else None
        if info is None:
            return []
        tp = info.annotation
        for arg in (*typing.get_args(tp), tp):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                tp = arg
                break
            inner = [a for a in typing.get_args(arg) if isinstance(a, type)
                     and issubclass(a, BaseModel)]
            if inner:
                tp = inner[0]
                break
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []
