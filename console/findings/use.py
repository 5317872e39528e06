"""Use: what evidence says about use, and use nobody granted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from console.callers import agents_by_caller, arn_account, foreign, principal
from console.findings.facts import Facts
from console.findings.grant_shape import reaches, through_wide_rule
from console.findings.rules import Draft, Rule, by_sensitivity
from console.vocabulary import IAM_LAST_USED, VAULT_AUDIT

RULES = [
    Rule("use.stale", "use", "low",
         "Not used within stale_after_days for its sensitivity: a key nobody needs is a key "
         "that can only leak."),
    Rule("use.without-grant", "use", "high",
         "Used by an identity no agent of the inventory holds a grant through (the Vault "
         "audit log's or CloudTrail's caller): either the inventory is wrong, or someone else "
         "has the value."),
    Rule("use.never-used", "use", "low",
         "Never used in its life, and the evidence covers all of it (a Vault audit log read "
         "without a gap since before it was made; AWS's last use of an access key): it can go."),
    Rule("use.grant-unused", "use", "low",
         "An agent can reach it and has not used it in stale_after_days, while the Vault "
         "audit log covered that whole time: a grant it does not need (least privilege)."),
]


# the evidence that names who used a credential (GetAccessKeyLastUsed and Secrets Manager's
# LastAccessedDate do not)
NAMING_EVIDENCE = frozenset({VAULT_AUDIT, "aws:cloudtrail"})

# the kinds an agent's grant lets it read, each read in the Vault audit log (its data path)
READ_AUDITED_KINDS = frozenset({"kv", "kv-v1"})


def check(facts: Facts) -> Iterator[Draft]:
    yield from _stale(facts)
    yield from _without_grant(facts)
    yield from _never_used(facts)
    yield from _grant_unused(facts)


def _never_used(facts: Facts) -> Iterator[Draft]:
    for cred in facts.credentials:
        if cred.no_use_evidence is None or cred.created_at is None:
            continue  # used, or no evidence covers its whole life: unknown, not never
        days = int((facts.now - cred.created_at).total_seconds() // 86400)
        if days <= facts.stale_after_days(cred):
            continue  # young: not using it yet is no finding
        since = facts.coverage.get(cred.source)
        if cred.no_use_evidence == VAULT_AUDIT and since is not None:
            evidence = f"the audit log covers it since {since.date().isoformat()}"
        elif cred.no_use_evidence == IAM_LAST_USED:
            evidence = "AWS records no use of this key (GetAccessKeyLastUsed)"
        else:
            evidence = f"{cred.no_use_evidence} covers its whole life"
        yield Draft("use.never-used", by_sensitivity(cred.sensitivity, "medium", "low"),
                    f"{cred.name} never used in its {days} days",
                    f"created {cred.created_at.date().isoformat()}; {evidence}",
                    credential_id=cred.id)


def _grant_unused(facts: Facts) -> Iterator[Draft]:
    agents_of = agents_by_caller(facts.agents.values())
    last_use: dict[tuple[str, str], datetime] = {}  # (agent, credential) -> latest use
    for use in facts.usage:
        at = datetime.fromisoformat(use["at"]) if isinstance(use["at"], str) else use["at"]
        for agent in agents_of.get(principal(use["identity"]), set()):
            key = (agent, use["credential_id"])
            if key not in last_use or at > last_use[key]:
                last_use[key] = at
    for cred in facts.credentials:
        since = facts.coverage.get(cred.source)
        if cred.kind not in READ_AUDITED_KINDS or since is None:
            continue
        window = timedelta(days=facts.stale_after_days(cred))
        start = facts.now - window
        if since > start or cred.created_at is None or cred.created_at > start:
            continue  # the evidence (or the credential) is younger than the window
        for grant in facts.grants_of.get(cred.id, []):
            if not reaches(grant.capabilities) or through_wide_rule(grant.chain):
                continue  # a wide rule's reach is that rule's finding
            used = last_use.get((grant.agent, cred.id))
            if used is not None and used >= start:
                continue
            last = f"last used {used.date().isoformat()}" if used else "never used"
            yield Draft("use.grant-unused", by_sensitivity(cred.sensitivity, "medium", "low"),
                        f"{grant.agent} can read {cred.name} and has not in "
                        f"{window.days} days",
                        f"{last} by {grant.agent}; the audit log covers since "
                        f"{since.date().isoformat()}; chain {' → '.join(grant.chain)}",
                        credential_id=cred.id, agent=grant.agent)


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


def _without_grant(facts: Facts) -> Iterator[Draft]:
    if not facts.agents:
        return  # no inventory: no agent to compare the evidence with
    agents_of = agents_by_caller(facts.agents.values())
    # one finding per credential and caller: a role's sessions are one caller
    latest: dict[tuple[str, str], dict] = {}
    for use in facts.usage:
        if use["evidence"] not in NAMING_EVIDENCE or use["credential_id"] not in facts.by_id:
            continue  # evidence that does not name who used it
        cred = facts.by_id[use["credential_id"]]
        caller = principal(use["identity"])
        if foreign(use["identity"], arn_account(cred.location) or arn_account(cred.native_id)):
            # another account's user or role: not the inventory's namesake
            caller = f"{caller}@{arn_account(use['identity'])}"
        key = (use["credential_id"], caller)
        if key not in latest or str(use["at"]) > str(latest[key]["at"]):
            latest[key] = use
    for (cid, caller), use in sorted(latest.items()):
        cred = facts.by_id[cid]
        holders = {g.agent for g in facts.grants_of.get(cid, [])}
        agents = agents_of.get(caller, set())
        if agents & holders:
            continue
        identity = use["identity"]
        named = caller if caller == identity else f"{caller} ({identity})"
        who = (f"{named} (agent {', '.join(sorted(agents))}, which holds no grant on it)"
               if agents else f"{named}, which no agent of the inventory runs as")
        yield Draft("use.without-grant", "high",
                    f"{cred.name} used by {caller} without a known grant",
                    f"last read {use['at']} by {who} ({use['evidence']})",
                    credential_id=cid, key=caller)
