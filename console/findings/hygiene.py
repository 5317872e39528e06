"""Hygiene: who owns it, when it ends, how old it is, how its rotations went."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from console.findings.facts import Facts
from console.findings.rules import Draft, Rule, by_sensitivity
from console.model import Credential

# kinds whose issuer sets an end when it mints one: no end there is a choice someone made
EXPIRING_KINDS = frozenset({
    "api-key", "bot-token", "code-host-token", "payment-key", "webhook",
    "vault-token", "approle-secret-id",
})
# runs that ended without the new value in place
FAILED_RUNS = frozenset({"rolled-back", "rollback-failed", "abandoned"})
FAILING_IN_A_ROW = 3

RULES = [
    Rule("hygiene.no-owner", "hygiene", "medium",
         "Nobody answers for it: no owner on the credential and no default in the inventory."),
    Rule("hygiene.unknown-owner", "hygiene", "medium",
         "Its owner is not known to the inventory (no agent's owner, no default owner): they "
         "may have left."),
    Rule("hygiene.no-expiry", "hygiene", "low",
         "Its issuer could have set an end and did not: a leaked copy works for ever."),
    Rule("hygiene.ttl-above-max", "hygiene", "medium",
         "It lives longer than the maximum lifetime its sensitivity allows (max_ttl_days)."),
    Rule("hygiene.over-age", "hygiene", "medium",
         "Its value is older than the maximum age for its sensitivity (max_age_days)."),
    Rule("hygiene.revoke-overdue", "hygiene", "high",
         "A rotation replaced it, but the old value is still valid past its grace period."),
    Rule("hygiene.rotation-failed", "hygiene", "medium",
         "Its last rotation failed: the old value is still the one in use."),
    Rule("hygiene.rotation-failing", "hygiene", "high",
         f"Its last {FAILING_IN_A_ROW} rotations failed in a row: something keeps breaking."),
]


def _days(delta: timedelta) -> int:
    return int(delta.total_seconds() // 86400)


def _lifetime_seconds(cred: Credential) -> int | None:
    if cred.ttl_seconds:
        return cred.ttl_seconds
    start = cred.rotated_at or cred.created_at
    if cred.expires_at and start:
        return int((cred.expires_at - start).total_seconds())
    return None


def check(facts: Facts) -> Iterator[Draft]:
    known = facts.known_owners()
    for cred in facts.credentials:
        yield from _owner(facts, cred, known)
        yield from _lifetime(facts, cred)
        yield from _age(facts, cred)
        yield from _runs(facts, cred)


def _owner(facts: Facts, cred: Credential, known: set[str] | None) -> Iterator[Draft]:
    owner, origin = facts.owner(cred)
    if owner is None:
        yield Draft("hygiene.no-owner", by_sensitivity(cred.sensitivity, "high", "medium"),
                    f"{cred.name} has no owner",
                    "no owner on the credential; the inventory sets no default_owner or "
                    f"owners_by_environment.{cred.environment or '?'}",
                    credential_id=cred.id)
    elif known is not None and owner not in known:
        yield Draft("hygiene.unknown-owner", "medium",
                    f"{cred.name} is owned by {owner}, whom the inventory does not know",
                    f"owner {owner!r} (from {origin}) is no agent's owner and no default owner "
                    "in the inventory",
                    credential_id=cred.id)


def _lifetime(facts: Facts, cred: Credential) -> Iterator[Draft]:
    handle = "rotation" in cred.tags and cred.kind in ("vault-token", "approle-secret-id")
    if handle:
        return  # a declared rotation's row: the live tokens and secret-ids carry the expiry
    if cred.kind in EXPIRING_KINDS and cred.expires_at is None and not cred.ttl_seconds:
        yield Draft("hygiene.no-expiry", by_sensitivity(cred.sensitivity, "medium", "low"),
                    f"{cred.name} never expires",
                    f"a {cred.kind} with no expiry and no TTL", credential_id=cred.id)
        return
    policy = facts.policy(cred)
    lifetime = _lifetime_seconds(cred)
    if policy and policy.max_ttl_days and lifetime and lifetime > policy.max_ttl_days * 86400:
        yield Draft("hygiene.ttl-above-max", by_sensitivity(cred.sensitivity, "high", "medium"),
                    f"{cred.name} lives {lifetime // 86400} days, above {policy.max_ttl_days}",
                    f"lifetime {lifetime // 86400} days (expiry or TTL); max_ttl_days for "
                    f"{cred.sensitivity} is {policy.max_ttl_days}",
                    credential_id=cred.id)


def _age(facts: Facts, cred: Credential) -> Iterator[Draft]:
    limit = facts.max_age_days(cred)
    since = cred.rotated_at or cred.created_at
    if not limit or since is None:
        return  # no maximum, or no age known: nothing to compare (the row says unknown)
    age = _days(facts.now - since)
    if age > limit:
        what = "rotated" if cred.rotated_at else "created"
        yield Draft("hygiene.over-age", by_sensitivity(cred.sensitivity, "high", "medium"),
                    f"{cred.name} is {age} days old, above {limit}",
                    f"{what} {since.date().isoformat()}, {age} days ago; maximum age {limit} "
                    "days", credential_id=cred.id)


def _runs(facts: Facts, cred: Credential) -> Iterator[Draft]:
    runs = facts.runs.get(cred.id) or []
    for run in runs:
        after = datetime.fromisoformat(run["revoke_after"]) if run.get("revoke_after") else None
        if run.get("status") == "awaiting-revoke" and after and after < facts.now:
            yield Draft("hygiene.revoke-overdue", "high",
                        f"{cred.name}: the old value outlived its grace period",
                        f"run {run['id']} awaits revoke since {after.isoformat()}",
                        credential_id=cred.id, key=str(run["id"]))
    ended = [r for r in runs if r.get("status") not in ("running", "awaiting-revoke")]
    if not ended or ended[0].get("status") not in FAILED_RUNS:
        return
    streak = 0
    for run in ended:
        if run.get("status") not in FAILED_RUNS:
            break
        streak += 1
    last = ended[0]
    evidence = f"run {last['id']} {last['status']}: {last.get('error') or 'no error recorded'}"
    if streak >= FAILING_IN_A_ROW:
        yield Draft("hygiene.rotation-failing", "high",
                    f"{cred.name}: {streak} rotations failed in a row",
                    f"{streak} failed runs in a row; the last, {evidence}", credential_id=cred.id)
    else:
        yield Draft("hygiene.rotation-failed", "medium", f"{cred.name}: its last rotation failed",
                    evidence, credential_id=cred.id)
