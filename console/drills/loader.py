"""Scenarios: the built-ins shipped as YAML in this package (``scenarios/*.yaml``) and users'
in ``<config dir>/drills/*.yaml``, read like the inventory (console/yamlsafe.py) and checked
against console/drills/model.py and the four vocabularies, so a mistake reads
``file:line:col: field.path: message (hint: ...)``. ``name:`` defaults to the file's stem; a
user file may not take a built-in's name.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from console import paths, yamlsafe
from console.config import _problem, raise_problems, validate_document
from console.drills import (
    aws_words,  # noqa: F401 - registers the AWS words
    vault_words,  # noqa: F401 - registers the Vault words
)
from console.drills.checks import CHECKS
from console.drills.injections import INJECTIONS
from console.drills.model import INCIDENT_STEPS, Scenario
from console.drills.responders import RESPONDERS
from console.drills.vocab import Vocabulary
from console.drills.world import PARTS
from console.errors import ConfigError, NotFoundError
from console.yamlsafe import Path_

BUILTIN_DIR = Path(__file__).parent / "scenarios"
MAX_FILES = 500


def user_dir(config_dir: Path | None = None) -> Path:
    return (config_dir if config_dir is not None else paths.config_dir()) / "drills"


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml"))[:MAX_FILES]


def builtin_scenarios() -> dict[str, Scenario]:
    return {s.name: s for s in (load_file(f, source="built-in") for f in _files(BUILTIN_DIR))}


def user_scenarios(config_dir: Path | None = None) -> dict[str, Scenario]:
    builtins = set(builtin_scenarios())
    found: dict[str, Scenario] = {}
    for file in _files(user_dir(config_dir)):
        sc = load_file(file, source=str(file), reserved=builtins)
        if sc.name in found:
            raise ConfigError(f"two drill scenarios are named {sc.name!r}", file=str(file),
                              line=1, column=1, field="name",
                              hint=f"the other is {found[sc.name].source}; rename one")
        found[sc.name] = sc
    return found


def all_scenarios(config_dir: Path | None = None) -> dict[str, Scenario]:
    return {**builtin_scenarios(), **user_scenarios(config_dir)}


def get_scenario(name: str, config_dir: Path | None = None) -> Scenario:
    builtins = builtin_scenarios()
    if name in builtins:
        return builtins[name]
    users = user_scenarios(config_dir)
    if name in users:
        return users[name]
    known = sorted({*builtins, *users})
    close = difflib.get_close_matches(name, known, n=1)
    raise NotFoundError(f"no drill scenario {name!r}",
                        hint=f"did you mean {close[0]!r}?" if close
                        else "list them with: keyshift drill ls")


def load_file(file: Path, *, source: str, reserved: set[str] | None = None) -> Scenario:
    display = str(file)
    return loads_scenario(yamlsafe.read_text(file, display), display, source=source,
                          default_name=file.stem, reserved=reserved or set())


def loads_scenario(text: str, display: str, *, source: str = "built-in",
                   default_name: str | None = None, reserved: set[str] | None = None) -> Scenario:

    doc = yamlsafe.parse(text, display)
    if not isinstance(doc.data, dict):
        line, column = doc.values.get((), (1, 1))
        raise ConfigError("a drill scenario is a mapping (name:, world:, inject:, respond:, "
                          "checks:)", file=display, line=line, column=column,
                          hint="see `keyshift drill show provider-key-leaked`")
    sc: Scenario = validate_document(doc, display, Scenario, what="drill scenario",
                                     default_name=default_name)
    raise_problems(_meaning_problems(sc, doc, display, reserved or set()))
    return sc.model_copy(update={"source": source})


def _meaning_problems(sc: Scenario, doc: yamlsafe.Document, display: str,
                      reserved: set[str]) -> list[ConfigError]:
    """Words from the vocabularies, their options, and names that must exist in the world."""
    problems: list[ConfigError] = []

    def add(where: Path_, message: str, hint: str | None = None) -> None:
        pos = doc.values.get(where) or doc.keys.get(where) or doc.values.get(where[:-1])
        problems.append(_problem(display, pos or (1, 1), where, message, hint))

    def word(vocab: Vocabulary, name: str, where: Path_, options: dict[str, Any]) -> None:
        if name not in vocab:
            close = difflib.get_close_matches(name, vocab.names(), n=1)
            add(where, f"unknown {vocab.what} {name!r}",
                f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(vocab.names()))
            return
        allowed = vocab.get(name).options
        for key in options:
            if key not in allowed:
                add((*where[:-1], "options", key), f"{vocab.what} {name!r} takes no option "
                    f"{key!r}", "its options: " + (", ".join(sorted(allowed)) or "none"))

    agents = {a.name for a in sc.world.agents}
    creds = set(sc.credential_names())
    owners = {a.owner for a in sc.world.agents} | {p.owner for p in sc.world.parts if p.owner}
    # an owner the response hands things to (reassign-owner's ``to``) may be named afterwards
    owners |= {str(a.options["to"]) for acts in sc.respond.steps.values() for a in acts
               if "to" in a.options}

    def refs(step: Any, where: Path_) -> None:
        if step.agent is not None and step.agent not in agents:
            add((*where, "agent"), f"no agent {step.agent!r} in world.agents",
                "agents: " + (", ".join(sorted(agents)) or "none"))
        if step.credential is not None and step.credential not in creds:
            add((*where, "credential"), f"no credential {step.credential!r} in world.parts",
                "credentials: " + ", ".join(sorted(creds)))
        if step.owner is not None and step.owner not in owners:
            add((*where, "owner"), f"nobody in the world is owned by {step.owner!r}",
                "owners: " + ", ".join(sorted(owners)))

    if sc.name in reserved:
        add(("name",), f"{sc.name!r} is a built-in drill's name; a drill of yours may not "
            "shadow it", f"name it something else, e.g. my-{sc.name}")
    seen: set[str] = set()
    for n, part in enumerate(sc.world.parts):
        word(PARTS, part.part, ("world", "parts", n, "part"), part.options)
        if part.agent is not None and part.agent not in agents:
            add(("world", "parts", n, "agent"), f"no agent {part.agent!r} in world.agents",
                "agents: " + (", ".join(sorted(agents)) or "none"))
        if part.name in seen:
            add(("world", "parts", n, "name"), f"two world parts are named {part.name!r}")
        seen.add(part.name)
    for n, inj in enumerate(sc.inject):
        word(INJECTIONS, inj.step, ("inject", n, "step"), inj.options)
        refs(inj, ("inject", n))
    for step, actions in sc.respond.steps.items():
        if step not in INCIDENT_STEPS:
            add(("respond", "steps", step), f"unknown incident step {step!r}",
                "steps: " + ", ".join(INCIDENT_STEPS))
        for n, act in enumerate(actions):
            word(RESPONDERS, act.action, ("respond", "steps", step, n, "action"), act.options)
            refs(act, ("respond", "steps", step, n))
    for n, act in enumerate(sc.respond.detect):
        word(RESPONDERS, act.action, ("respond", "detect", n, "action"), act.options)
        refs(act, ("respond", "detect", n))
    for n, step in enumerate(sc.respond.automated):
        if step not in INCIDENT_STEPS:
            add(("respond", "automated", n), f"unknown incident step {step!r}",
                "steps: " + ", ".join(INCIDENT_STEPS))
    for n, name in enumerate(sc.respond.probes):
        if name not in creds:
            add(("respond", "probes", n), f"no credential {name!r} in world.parts",
                "credentials: " + ", ".join(sorted(creds)))
    inc = sc.respond.incident
    given = [k for k in ("agent", "credential", "owner") if getattr(inc, k)]
    if len(given) != 1:
        add(("respond", "incident"), "the incident names exactly one of agent, credential "
            "or owner", "e.g. incident: {credential: llm-key}")
    refs(inc, ("respond", "incident"))
    for n, chk in enumerate(sc.checks):
        word(CHECKS, chk.check, ("checks", n, "check"), chk.options)
        refs(chk, ("checks", n))
    return problems


def skippable(sc: Scenario) -> list[str]:
    """What ``--skip`` may name for this scenario: its incident steps, its actions' words and
    the responder's sub-steps (``revoke``)."""
    from console.drills.responders import SUB_STEPS

    actions = {a.action for acts in sc.respond.steps.values() for a in acts}
    return sorted({*INCIDENT_STEPS, *actions, *SUB_STEPS})
