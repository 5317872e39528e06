"""Users' playbooks: one YAML file each in ``<config dir>/playbooks/`` (``*.yaml``, ``*.yml``),
read like the inventory (console/yamlsafe.py: positions, no aliases bombs, no duplicate keys)
and checked against console/playbooks/model.py, so a mistake reads
``file:line:col: field.path: message (hint: ...)``.

``name:`` may be left out: the file's stem is the name. A name a built-in has is refused, and so
is one two files share.
"""

from __future__ import annotations

from pathlib import Path

from console import paths, yamlsafe
from console.config import _problem, raise_problems, validate_document
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
    pb = validate_document(doc, display, Playbook, what="playbook", default_name=default_name)
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
    raise_problems(problems)
    return pb.placed(display)


