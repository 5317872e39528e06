"""Sharing: one credential in the hands of several agents, one value in several places."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from console.findings.facts import Facts
from console.findings.grant_shape import reaches, through_wide_rule
from console.findings.rules import Draft, Rule

RULES = [
    Rule("sharing.agents", "sharing", "medium",
         "Two or more agents can reach it: one leak, several suspects, and no rotation without "
         "breaking them all."),
    Rule("sharing.value", "sharing", "medium",
         "The same value (equal fingerprints) is kept in two places that are not deliveries "
         "of one credential."),
    Rule("sharing.environments", "sharing", "high",
         "The same value is used in two environments: a dev leak opens prod."),
]


def check(facts: Facts) -> Iterator[Draft]:
    for cred in facts.credentials:
        # a grant through a wide rule is that rule's finding (scope.wildcard), not sharing
        agents = sorted({g.agent for g in facts.grants_of.get(cred.id, [])
                         if reaches(g.capabilities) and not through_wide_rule(g.chain)})
        if len(agents) >= 2:
            yield Draft("sharing.agents", "medium",
                        f"{cred.name} is reachable by {len(agents)} agents",
                        f"agents {', '.join(agents)} each hold a grant on it",
                        credential_id=cred.id)
    yield from _reuse(facts)


def _fingerprints(facts: Facts) -> dict[str, list[str]]:
    """fingerprint -> credential ids: whole values and each key of a multi-key secret."""
    out: dict[str, list[str]] = defaultdict(list)
    for cred in facts.credentials:
        prints = {cred.fingerprint} if cred.fingerprint else set()
        prints |= {v for k, v in cred.tags.items() if k.startswith("fingerprint:") and v}
        for fp in prints:
            out[fp].append(cred.id)
    return out


def _reuse(facts: Facts) -> Iterator[Draft]:
    for ids in _fingerprints(facts).values():
        if len(set(ids)) < 2:
            continue
        ids = sorted(set(ids))
        if any(set(ids) <= group for group in facts.delivery):
            continue  # one credential and the places it is delivered to
        envs = {facts.by_id[i].environment for i in ids} - {None}
        names = ", ".join(facts.by_id[i].name for i in ids)
        for cid in ids:
            others = [i for i in ids if i != cid
                      and not any({cid, i} <= g for g in facts.delivery)]
            if not others:
                continue
            cred = facts.by_id[cid]
            other_envs = {facts.by_id[i].environment for i in others} - {None}
            if len(envs) > 1 and other_envs - {cred.environment}:
                yield Draft("sharing.environments", "high",
                            f"{cred.name} ({cred.environment}) holds a value also used in "
                            f"{', '.join(sorted(other_envs - {cred.environment}))}",
                            f"equal fingerprints: {names}", credential_id=cid)
            else:
                yield Draft("sharing.value", "medium",
                            f"{cred.name} holds the same value as {len(others)} other place(s)",
                            f"equal fingerprints: {names}", credential_id=cid)
