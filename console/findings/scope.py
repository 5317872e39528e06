"""Scope: grants broader than the job, and prod within a non-prod agent's reach."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from console.findings.facts import Facts
from console.findings.grant_shape import policy_of, reaches, rule_of, through_wide_rule, whole_mount
from console.findings.rules import Draft, Rule

RULES = [
    Rule("scope.wildcard", "scope", "high",
         "A rule with a wildcard over a whole mount (secret/*, secret/data/*) gives an agent "
         "every secret there, today's and tomorrow's; so does an AWS statement on `Resource: *` "
         "or with `secretsmanager:*`."),
    Rule("scope.privileged", "scope", "critical",
         "A grant through root or sudo: the agent can do anything the server can."),
    Rule("scope.prod-from-non-prod", "scope", "high",
         "A dev or staging agent can reach a prod credential: the weaker environment opens the "
         "stronger one."),
]


def check(facts: Facts) -> Iterator[Draft]:
    wide: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    privileged: dict[tuple[str, str], list[str]] = defaultdict(list)
    agents = facts.agents
    for cred in facts.credentials:
        for grant in facts.grants_of.get(cred.id, []):
            rule = rule_of(grant.chain)
            if rule and whole_mount(rule) and reaches(grant.capabilities):
                wide[(grant.agent, policy_of(grant.chain), rule)].append(cred.id)
            if {"root", "sudo"} & set(grant.capabilities):
                privileged[(grant.agent, policy_of(grant.chain))].append(cred.id)
            agent = agents.get(grant.agent)
            env = str(agent.environment) if agent else None
            if (cred.environment == "prod" and env in ("dev", "staging")
                    and reaches(grant.capabilities) and not through_wide_rule(grant.chain)):
                # through a wide rule it is one of that rule's finding, not one per secret
                yield Draft("scope.prod-from-non-prod", "high",
                            f"{grant.agent} ({env}) can reach prod {cred.name}",
                            f"chain {' → '.join(grant.chain)}; capabilities "
                            f"{', '.join(grant.capabilities)}",
                            credential_id=cred.id, agent=grant.agent)
    for (agent, policy, rule), ids in sorted(wide.items()):
        found = agents.get(agent)
        env = str(found.environment) if found else None
        prod = [i for i in ids if facts.by_id[i].environment == "prod"]
        opens_prod = bool(prod) and env in ("dev", "staging")
        yield Draft("scope.wildcard", "critical" if opens_prod else "high",
                    f"{agent} reaches every secret under {rule}",
                    f"policy {policy}, rule {rule}: {len(ids)} credentials today"
                    + (f", {len(prod)} of them prod, from a {env} agent" if opens_prod else ""),
                    agent=agent, key=f"{policy}|{rule}")
    for (agent, policy), ids in sorted(privileged.items()):
        yield Draft("scope.privileged", "critical",
                    f"{agent} holds root or sudo through {policy}",
                    f"policy {policy}: {len(ids)} credentials reachable with root or sudo",
                    agent=agent, key=policy)
