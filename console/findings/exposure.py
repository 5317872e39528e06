"""Exposure: a secret in plain text where it should not be (the workspace scanner's hits)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from console.findings.facts import Facts
from console.findings.rules import Draft, Rule
from console.inventory import EnvFileTarget
from console.model import credential_id
from console.sources.declared import ROTATION_ROW_KINDS

RULES = [
    Rule("exposure.known", "exposure", "critical",
         "A credential keyshift knows is in plain text in a file it was never delivered to."),
    Rule("exposure.unknown", "exposure", "high",
         "Something that looks like a secret is in plain text in an agent's workspace."),
]


def _delivered(facts: Facts) -> set[tuple[str, Path]]:
    """(credential id, env file) where the inventory delivers a value on purpose."""
    out: set[tuple[str, Path]] = set()
    if facts.loaded is None:
        return out
    loaded = facts.loaded
    for decl in loaded.inventory.credentials:
        cid = credential_id(decl.source, decl.kind, decl.name)
        for target in decl.delivered_to:
            if isinstance(target, EnvFileTarget):
                out.add((cid, loaded.resolve_path(target.path)))
    first = next(iter(loaded.sources_of_type("declared")), None)
    for rot in loaded.inventory.rotations:
        kind = ROTATION_ROW_KINDS.get(rot.issuer.type)
        files = [loaded.resolve_path(t.path) for t in rot.targets if isinstance(t, EnvFileTarget)]
        if not files or first is None or kind is None:
            continue
        row = credential_id(first.name, kind, rot.name)
        holders = set().union(*(g for g in facts.delivery if row in g)) | {row}
        out |= {(cid, f) for cid in holders for f in files}
    return out


def check(facts: Facts) -> Iterator[Draft]:
    delivered = _delivered(facts)
    for hit in facts.hits or []:
        where = f"{hit.file}:{hit.line}"
        cred = facts.by_id.get(hit.credential_id) if hit.credential_id else None
        if cred is not None and (cred.id, Path(hit.file).resolve()) in delivered:
            continue  # where the inventory says it is delivered: a delivery, not a leak
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
