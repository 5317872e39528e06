"""Rules as data: each rule has an id, a family, a default severity and a one-line rationale.
A check function (one module per family) yields ``Draft`` findings for the rules it owns.

A rule keyshift cannot evaluate yet is listed with ``evaluated=False`` and the reason, so
`keyshift rules` never implies a check that does not run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from console.model import Severity

# most severe first, as the domain orders them (console.model.Severity)
SEVERITIES = tuple(s.value for s in Severity)
SEVERITY_RANK = {name: rank for rank, name in enumerate(reversed(SEVERITIES))}


@dataclass(frozen=True)
class Rule:
    id: str
    family: str  # hygiene | use | sharing | scope | exposure
    severity: str
    rationale: str
    evaluated: bool = True
    why_not: str = ""  # when not evaluated: why


@dataclass(frozen=True)
class Draft:
    """A finding as a check sees it now; the store adds its history (first seen, status)."""

    rule: str
    severity: str
    title: str
    evidence: str  # what showed it: never a value
    credential_id: str | None = None
    agent: str | None = None
    key: str = ""  # tells apart two findings of one rule on one subject (file:line)
    file: str | None = None  # where in a file it was seen (exposure)
    line: int | None = None

    @property
    def id(self) -> str:
        """Stable across syncs, so status and acceptance follow the finding."""
        raw = "\x1f".join((self.rule, self.credential_id or "", self.agent or "", self.key))
        return "F-" + hashlib.sha256(raw.encode()).hexdigest()[:10]


def at_least(severity: str, floor: str) -> str:
    return severity if SEVERITY_RANK[severity] >= SEVERITY_RANK[floor] else floor


def by_sensitivity(sensitivity: str | None, high: str, other: str) -> str:
    return high if sensitivity == "high" else other
