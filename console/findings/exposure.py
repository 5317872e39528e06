"""Exposure: a secret in plain text where it should not be (the workspace scanner's hits).

A value in an env file, at a variable the inventory delivers there (a declared credential's
``delivered_to``, a rotation's env-file target), is a delivery, not a leak, whatever keyshift
can tell of the value (a Vault token or an AWS key has no fingerprint to match). Telling that
takes the variable's name from the line, so the line is read; its value is never kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from console.findings.facts import Facts
from console.findings.rules import Draft, Rule
from console.inventory import EnvFileTarget

RULES = [
    Rule("exposure.known", "exposure", "critical",
         "A credential keyshift knows is in plain text in a file it was never delivered to."),
    Rule("exposure.unknown", "exposure", "high",
         "Something that looks like a secret is in plain text in an agent's workspace."),
]

_VAR = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


def _deliveries(facts: Facts) -> set[tuple[Path, str]]:
    """(env file, variable) where the inventory delivers a value on purpose."""
    out: set[tuple[Path, str]] = set()
    if facts.loaded is None:
        return out
    loaded = facts.loaded
    targets = [t for c in loaded.inventory.credentials for t in c.delivered_to]
    targets += [t for r in loaded.inventory.rotations for t in r.targets]
    for target in targets:
        if isinstance(target, EnvFileTarget):
            names = [target.var] if target.var else list((target.vars or {}).values())
            out |= {(loaded.resolve_path(target.path), str(n)) for n in names}
    return out


def _variable_at(file: str, line: int) -> str | None:
    try:
        with open(file, encoding="utf-8", errors="replace") as fh:
            for number, text in enumerate(fh, start=1):
                if number == line:
                    found = _VAR.match(text)
                    return found[1] if found else None
    except OSError:
        return None
    return None


def check(facts: Facts) -> Iterator[Draft]:
    deliveries = _deliveries(facts)
    files = {path for path, _ in deliveries}
    for hit in facts.hits or []:
        where = f"{hit.file}:{hit.line}"
        path = Path(hit.file).resolve()
        if path in files and (path, _variable_at(hit.file, hit.line)) in deliveries:
            continue  # where the inventory delivers a value: a delivery, not a leak
        cred = facts.by_id.get(hit.credential_id) if hit.credential_id else None
        if cred is not None:
            yield Draft("exposure.known", "critical",
                        f"{cred.name} in plain text at {where}",
                        f"{where}: the value of {cred.id} (recognised by its fingerprint; "
                        f"{hit.detector})",
                        credential_id=cred.id, agent=hit.agent, key=where,
                        file=hit.file, line=hit.line)
        else:
            yield Draft("exposure.unknown", "high", f"a {hit.detector} at {where}",
                        f"{where}: {hit.detector} (detect-secrets)", agent=hit.agent, key=where,
                        file=hit.file, line=hit.line)
