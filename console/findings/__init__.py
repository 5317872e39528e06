"""Findings: what breaks policy, evaluated over the store and the inventory.

Rules are data (``rules.Rule``), one module per family: hygiene, use, sharing, scope, exposure.
``refresh`` gathers the facts once, runs every family, and records the result through the store
(new findings open; ones seen again keep their status; ones no longer seen are resolved), with
one audit entry. It runs after each sync; ``keyshift findings`` reads what it recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from console.findings import exposure, hygiene, scope, sharing, use
from console.findings.facts import ExposureHit, Facts, gather
from console.findings.rules import SEVERITIES, SEVERITY_RANK, Draft, Rule

if TYPE_CHECKING:
    from console.audit import AuditLog
    from console.config import LoadedInventory
    from console.store import FindingChanges, Store

FAMILIES = (hygiene, use, sharing, scope, exposure)
RULES: dict[str, Rule] = {r.id: r for family in FAMILIES for r in family.RULES}

__all__ = [
    "RULES",
    "SEVERITIES",
    "SEVERITY_RANK",
    "Draft",
    "ExposureHit",
    "Facts",
    "evaluate",
    "evaluated_rules",
    "refresh",
]


def evaluate(facts: Facts) -> Iterator[Draft]:
    for family in FAMILIES:
        yield from family.check(facts)


def evaluated_rules(facts: Facts) -> set[str]:
    """The rules this evaluation could have fired: only their old findings may be resolved
    when not seen again (no scan ran: exposure findings stay as they were)."""
    out = {r.id for r in RULES.values() if r.evaluated}
    if facts.hits is None:
        out -= {r.id for r in exposure.RULES}
    return out


def refresh(
    store: Store,
    loaded: LoadedInventory | None,
    audit: AuditLog,
    actor: str,
    *,
    now: datetime | None = None,
    hits: list[ExposureHit] | None = None,
) -> FindingChanges:
    now = now or datetime.now(UTC)
    facts = gather(store, loaded, now, hits)
    drafts = {d.id: d for d in evaluate(facts)}  # one finding per id (a rule may repeat one)
    with store.transaction():
        changes = store.apply_findings(list(drafts.values()), evaluated_rules(facts), now)
        audit.append(
            actor,
            "findings.refresh",
            "findings",
            {
                "new": len(changes.new),
                "reopened": len(changes.reopened),
                "resolved": len(changes.resolved),
                "open": changes.open,
                "accepted": changes.accepted,
                "open_by_severity": store.open_findings_by_severity(),
                "changed": (changes.new + changes.reopened + changes.resolved)[:50],
            },
        )
    return changes
