"""Use: what evidence says about use, and use nobody granted."""

from __future__ import annotations

from collections.abc import Iterator

from console.findings.facts import Facts
from console.findings.rules import Draft, Rule, by_sensitivity
from console.inventory import VaultIdentity

RULES = [
    Rule("use.stale", "use", "low",
         "Not used within stale_after_days for its sensitivity: a key nobody needs is a key "
         "that can only leak."),
    Rule("use.without-grant", "use", "high",
         "Used by an identity no agent of the inventory holds a grant through: either the "
         "inventory is wrong, or someone else has the value."),
    Rule("use.never-used", "use", "low",
         "Never used while evidence covered its whole life.", evaluated=False,
         why_not="keyshift does not yet record how far back each source's evidence reaches, "
         "so an empty last use is unknown, not never"),
    Rule("use.grant-unused", "use", "low",
         "A grant its agent has not used within stale_after_days (least privilege).",
         evaluated=False,
         why_not="keyshift does not yet record how far back each source's evidence reaches, "
         "so an unused grant cannot be told from one whose use predates the evidence"),
]


def check(facts: Facts) -> Iterator[Draft]:
    yield from _stale(facts)
    yield from _without_grant(facts)


def _stale(facts: Facts) -> Iterator[Draft]:
    for cred in facts.credentials:
        if cred.last_used_at is None:
            continue  # no evidence either way: unknown, never stale
        days = int((facts.now - cred.last_used_at).total_seconds() // 86400)
        limit = facts.stale_after_days(cred)
        if days > limit:
            yield Draft("use.stale", by_sensitivity(cred.sensitivity, "medium", "low"),
                        f"{cred.name} not used in {days} days",
                        f"last used {cred.last_used_at.date().isoformat()} "
                        f"({cred.last_used_evidence or 'evidence not recorded'}); "
                        f"stale after {limit} days", credential_id=cred.id)


def _identity_agents(facts: Facts) -> dict[str, set[str]]:
    """How usage evidence names an identity -> the agents that run as it."""
    out: dict[str, set[str]] = {}
    for agent in facts.agents.values():
        for ident in agent.identities:
            if isinstance(ident, VaultIdentity):
                prefix = {"vault-approle": "approle", "vault-entity": "entity"}.get(ident.type)
                if prefix:
                    out.setdefault(f"{prefix}:{ident.role}", set()).add(agent.name)
    return out


def _without_grant(facts: Facts) -> Iterator[Draft]:
    if not facts.agents:
        return  # no inventory: no agent to compare the evidence with
    agents_of = _identity_agents(facts)
    for use in facts.usage:
        cred = facts.by_id.get(use["credential_id"])
        identity = use["identity"]
        if cred is None or use["evidence"] != "vault:audit":
            continue  # only the audit log names who used it
        holders = {g.agent for g in facts.grants_of.get(cred.id, [])}
        agents = agents_of.get(identity, set())
        if agents & holders:
            continue
        who = (f"{identity} (agent {', '.join(sorted(agents))}, which holds no grant on it)"
               if agents else f"{identity}, which no agent of the inventory runs as")
        yield Draft("use.without-grant", "high",
                    f"{cred.name} used by {identity} without a known grant",
                    f"last read {use['at']} by {who}", credential_id=cred.id, key=identity)
