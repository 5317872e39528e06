"""The scorecard: per agent and per owner, how many of their credentials are well kept, and
what is open against them. `keyshift report` renders it (console/cli_report.py).

A well-kept credential has four properties. Each is judged per credential, so a credential
scores the same on every card it appears on, as one of ``yes``, ``no`` or ``unknown``:

known owner
    Someone answers for it: the credential's owner, else the inventory's
    ``owners_by_environment`` for its environment, else ``default_owner`` (``Facts.owner``),
    and, when an inventory is loaded, one the inventory knows (an agent's owner, a default
    owner, or keyshift itself: ``Facts.known_owners``). ``no`` is exactly when
    ``hygiene.no-owner`` or ``hygiene.unknown-owner`` would fire. Never ``unknown``: without
    an inventory, an owner on the credential counts as known (there is nothing to compare it
    with, and the report says it ran without one).

narrow scope
    Nothing reaches it through a grant wider than the job. ``no`` when a grant that reaches
    its value (``grant_shape.reaches``) comes through a whole-mount wildcard
    (``grant_shape.through_wide_rule``: ``secret/data/*``, an AWS statement on ``Resource: *``
    or ``secretsmanager:*``), when a grant carries root or sudo, or when an open or accepted
    ``scope.*`` finding names the credential (a prod credential in a dev agent's reach).
    Accepted counts: accepting a risk does not narrow the grant. ``unknown`` when it is not
    ``no`` but some grant on it could not be decided (capabilities ``unknown``: a policy
    keyshift could not read, or a templated rule). A credential no agent reaches is ``yes``.
    This is the credential's scope, not the agent's: on an agent's card, a credential another
    agent reaches through a wildcard counts as not narrow.

set lifetime
    Something ends the value. ``yes`` with an expiry or a TTL (the issuer ends it), or, for a
    kind whose issuer sets no end (a KV secret, a Secrets Manager secret, an IAM key, a
    keyring entry; not a provider key, token or secret-id: ``hygiene.EXPIRING_KINDS``), with a
    maximum age (the credential's ``max_age_days``, else its sensitivity's policy), which
    keyshift enforces with ``hygiene.over-age`` and the rotation schedule. A declared
    rotation's handle row counts as such a kind (its live tokens carry the expiry). So an
    expiring kind with no expiry, which ``hygiene.no-expiry`` flags, is ``no`` whatever its
    maximum age. ``unknown`` only without an inventory, for a credential with a sensitivity
    but no expiry, TTL or maximum age of its own: the policy that might set one is not loaded.

audit trail
    A system recorded its use, so "who used it, when" has an answer. ``yes`` when a source
    recorded use (``last_used_evidence``, or a usage event) with evidence other than
    ``declared`` (a person's statement in the YAML is not a record), or when its last use is
    ``never``: the evidence covers its whole life and records none (``no_use_evidence``).
    ``unknown`` when nothing is recorded but keyshift reads use evidence for it (a Vault KV
    secret or token on a source whose audit log keyshift reads, a Secrets Manager secret, an
    IAM key): unused so far, or used before the evidence reaches back. ``no`` when nothing
    keyshift reads could show its use (provider keys, keyring entries, SSM parameters, Vault
    secret-ids and leases, KV and tokens on a Vault source with no audit log).

A card's share of a property is ``yes / (yes + no)``: unknowns are in neither, and are counted
beside it, so what keyshift cannot tell neither passes nor fails a card. A card with only
unknowns has no share (``None``).

Open findings by severity: findings whose effective status is open (an acceptance that lapsed
counts as open, as in `keyshift findings`). On an agent's card: the findings naming the agent,
and those naming no agent on a credential it reaches. On an owner's card: the findings on
credentials they own, and those naming no credential on an agent they own (a wildcard grant,
root or sudo: the agent's owner answers for its policies).

Findings over time come from the audit log's ``findings.refresh`` entries: each records the
open and accepted counts right after that refresh, and new, reopened and resolved. That is the
recorded history, in a tamper-evident chain. The findings table cannot give it: a reopened
finding's earlier resolution is cleared and acceptances keep only their latest state, so a
history rebuilt from ``first_seen_at``/``resolved_at`` would be invented. Per UTC day, the
last refresh's counts are shown; a day with no refresh has no point (not zero), and an
acceptance made between refreshes shows from the next one.

Credential age: days since the value was last rotated, else created, for present
credentials; a credential with neither is counted apart as unknown, never as new.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Literal

from console.findings.facts import Facts, gather
from console.findings.grant_shape import reaches, through_wide_rule
from console.findings.hygiene import EXPIRING_KINDS
from console.findings.rules import SEVERITIES
from console.inventory import VaultSource
from console.model import Credential
from console.store.findings import effective_status
from console.vocabulary import AUDITED_KINDS

if TYPE_CHECKING:
    from console.config import LoadedInventory
    from console.store import Store

Verdict = Literal["yes", "no", "unknown"]
PROPERTIES = ("known_owner", "narrow_scope", "set_lifetime", "audit_trail")
PROPERTY_TITLES = {
    "known_owner": "known owner",
    "narrow_scope": "narrow scope",
    "set_lifetime": "set lifetime",
    "audit_trail": "audit trail",
}
# one line each for the report's readers; the module docstring has the full definitions
PROPERTY_HELP = {
    "known_owner": "someone the inventory knows answers for it (its owner, or the inventory's "
                   "default for its environment)",
    "narrow_scope": "no grant reaches it through a whole-mount wildcard, root or sudo, and no "
                    "open or accepted scope finding names it",
    "set_lifetime": "an expiry or TTL; or, where the issuer sets no end (KV, Secrets Manager, "
                    "IAM keys, keyring), a maximum age keyshift enforces",
    "audit_trail": "a system recorded its use (a Vault audit log, AWS last-used); a use "
                   "declared in the inventory is not a record",
}
UNKNOWN_HELP = (
    "A share is yes / (yes + no): what keyshift cannot tell (a grant it could not decide, no "
    "use recorded where it reads use evidence) is counted as unknown, apart, and neither "
    "passes nor fails a card."
)
# a person's statement in the inventory, not a record of use
DECLARED_EVIDENCE = "declared"
# kinds whose use keyshift reads from the provider whatever the source's settings
USE_READ_KINDS = frozenset({"secretsmanager", "iam-key"})  # LastAccessedDate, GetAccessKeyLastUsed
VAULT_KV_KINDS = frozenset(AUDITED_KINDS)  # read from the Vault audit log, when there is one
# upper bounds (days, inclusive) of the age buckets; past the last is its own bucket
AGE_BUCKETS = (30, 90, 180, 365)


@dataclass
class Tally:
    """One property over a card's credentials."""

    yes: int = 0
    no: int = 0
    unknown: int = 0

    def add(self, verdict: Verdict) -> None:
        setattr(self, verdict, getattr(self, verdict) + 1)

    @property
    def known(self) -> int:
        return self.yes + self.no

    @property
    def share(self) -> float | None:
        """yes / (yes + no); None when every credential is unknown (or there are none)."""
        return self.yes / self.known if self.known else None


@dataclass
class Judged:
    """One credential's four properties."""

    credential: Credential
    owner: str | None
    known_owner: Verdict
    narrow_scope: Verdict
    set_lifetime: Verdict
    audit_trail: Verdict


@dataclass
class Card:
    kind: Literal["agent", "owner", "all"]
    name: str | None  # an owner card's None: credentials nobody owns
    credentials: int = 0
    tallies: dict[str, Tally] = field(default_factory=lambda: {p: Tally() for p in PROPERTIES})
    open_findings: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SEVERITIES, 0))
    note: str = ""  # e.g. "not in the inventory"

    def count(self, judged: Judged) -> None:
        self.credentials += 1
        for prop in PROPERTIES:
            self.tallies[prop].add(getattr(judged, prop))

    @property
    def open_total(self) -> int:
        return sum(self.open_findings.values())


@dataclass
class TimelinePoint:
    day: date
    open: int  # after the day's last refresh
    accepted: int
    new: int  # summed over the day's refreshes
    reopened: int
    resolved: int
    refreshes: int


@dataclass
class Scorecard:
    generated_at: datetime
    inventory: str | None  # the inventory's path as given, None when run without one
    overall: Card
    agents: list[Card]
    owners: list[Card]
    ages: list[tuple[str, int]]  # bucket label -> credentials, youngest first
    age_unknown: int
    timeline: list[TimelinePoint]


# -- the four properties ---------------------------------------------------------------


def known_owner(facts: Facts, cred: Credential, known: set[str] | None) -> Verdict:
    owner, _ = facts.owner(cred)
    if owner is None:
        return "no"
    return "yes" if known is None or owner in known else "no"


def narrow_scope(facts: Facts, cred: Credential, scope_flagged: set[str]) -> Verdict:
    if cred.id in scope_flagged:
        return "no"
    undecided = False
    for grant in facts.grants_of.get(cred.id, []):
        if {"root", "sudo"} & set(grant.capabilities):
            return "no"
        wide = through_wide_rule(grant.chain)
        if wide and reaches(grant.capabilities):
            return "no"
        if "unknown" in grant.capabilities:
            undecided = True  # this grant's reach (and so its width) was not decided
    return "unknown" if undecided else "yes"


def set_lifetime(facts: Facts, cred: Credential) -> Verdict:
    if cred.expires_at is not None or cred.ttl_seconds:
        return "yes"
    handle = "rotation" in cred.tags and cred.kind in ("vault-token", "approle-secret-id")
    if cred.kind in EXPIRING_KINDS and not handle:
        return "no"  # its issuer could end it and does not: a maximum age does not excuse that
    if facts.max_age_days(cred):
        return "yes"
    if facts.loaded is None and cred.sensitivity:
        return "unknown"  # the policy for its sensitivity is not loaded
    return "no"


def _use_is_read(facts: Facts, cred: Credential) -> bool | None:
    """Does keyshift read use evidence for this credential? None: cannot tell (no inventory)."""
    if cred.kind in USE_READ_KINDS:
        return True
    if cred.kind in VAULT_KV_KINDS:
        if facts.loaded is None:
            return None
        source = facts.loaded.sources_by_name.get(cred.source)
        if source is None:
            return None
        return isinstance(source, VaultSource) and bool(source.sandbox or source.audit_log)
    return False


def audit_trail(facts: Facts, cred: Credential, recorded: set[str]) -> Verdict:
    evidence = cred.last_used_evidence
    if cred.id in recorded or (evidence and evidence != DECLARED_EVIDENCE):
        return "yes"
    if cred.no_use_evidence:
        return "yes"  # never used, and the record says so for its whole life
    return "no" if _use_is_read(facts, cred) is False else "unknown"


def judge(facts: Facts, recorded: set[str], scope_flagged: set[str]) -> dict[str, Judged]:
    """Every present credential's four properties, by id."""
    known = facts.known_owners()
    return {
        cred.id: Judged(
            credential=cred,
            owner=facts.owner(cred)[0],
            known_owner=known_owner(facts, cred, known),
            narrow_scope=narrow_scope(facts, cred, scope_flagged),
            set_lifetime=set_lifetime(facts, cred),
            audit_trail=audit_trail(facts, cred, recorded),
        )
        for cred in facts.credentials
    }


# -- the cards -------------------------------------------------------------------------


def _open(rows: Iterable[dict], now: datetime) -> list[dict]:
    return [r for r in rows if effective_status(r, now) == "open"]


def _tally_findings(card: Card, rows: Iterable[dict]) -> None:
    for row in rows:
        if row["severity"] in card.open_findings:
            card.open_findings[row["severity"]] += 1


def agent_cards(facts: Facts, judged: dict[str, Judged], open_rows: list[dict]) -> list[Card]:
    """The inventory's agents, then any only the grants know (marked so), by name."""
    reach: dict[str, set[str]] = defaultdict(set)
    for cred_id, grants in facts.grants_of.items():
        for grant in grants:
            reach[grant.agent].add(cred_id)
    inventory = set(facts.agents)
    cards: list[Card] = []
    for name in sorted(inventory | set(reach), key=str.lower):
        card = Card("agent", name, note="" if name in inventory or not facts.agents
                    else "not in the inventory")
        mine = reach.get(name, set())
        for cred_id in mine:
            card.count(judged[cred_id])
        _tally_findings(card, (
            r for r in open_rows
            if r["agent"] == name or (r["agent"] is None and r["credential_id"] in mine)
        ))
        cards.append(card)
    return cards


def owner_cards(facts: Facts, judged: dict[str, Judged], open_rows: list[dict]) -> list[Card]:
    """Each owner of a credential (as ``Facts.owner`` resolves it) and each agent owner, by
    name; credentials nobody owns are one card named None, last."""
    cards: dict[str | None, Card] = {}

    def card(owner: str | None) -> Card:
        if owner not in cards:
            cards[owner] = Card("owner", owner)
        return cards[owner]

    for item in judged.values():
        card(item.owner).count(item)
    agent_owner = {name: agent.owner for name, agent in facts.agents.items()}
    for owner in agent_owner.values():
        if owner:
            card(owner)
    for row in open_rows:
        if row["credential_id"] is not None:
            item = judged.get(row["credential_id"])
            if item is None:
                continue  # a credential no longer present: on the overall card only
            _tally_findings(card(item.owner), [row])
        elif row["agent"] is not None and agent_owner.get(row["agent"]):
            _tally_findings(card(agent_owner[row["agent"]]), [row])
    named = sorted((c for o, c in cards.items() if o is not None),
                   key=lambda c: (c.name or "").lower())
    return named + ([cards[None]] if None in cards else [])


# -- age and time ----------------------------------------------------------------------


def age_label(index: int) -> str:
    low = 0 if index == 0 else AGE_BUCKETS[index - 1] + 1
    if index == len(AGE_BUCKETS):
        return f"over {AGE_BUCKETS[-1]} days"
    return f"{low}-{AGE_BUCKETS[index]} days"


def ages(credentials: Iterable[Credential], now: datetime) -> tuple[list[tuple[str, int]], int]:
    """Credentials per age bucket (days since rotated, else created), and how many have no
    known age."""
    counts = [0] * (len(AGE_BUCKETS) + 1)
    unknown = 0
    for cred in credentials:
        since = cred.rotated_at or cred.created_at
        if since is None:
            unknown += 1
            continue
        days = max(0, int((now - since).total_seconds() // 86400))  # a clock ahead: new
        index = next((i for i, top in enumerate(AGE_BUCKETS) if days <= top), len(AGE_BUCKETS))
        counts[index] += 1
    return [(age_label(i), n) for i, n in enumerate(counts)], unknown


def timeline(entries: Iterable[dict]) -> list[TimelinePoint]:
    """One point per UTC day with a ``findings.refresh`` entry (see the module docstring)."""
    days: dict[date, TimelinePoint] = {}
    for entry in entries:
        at, detail = entry["at"], entry["detail"]
        if at is None:
            continue
        day = at.astimezone(UTC).date()
        point = days.get(day) or TimelinePoint(day, 0, 0, 0, 0, 0, 0)
        point.open = int(detail.get("open") or 0)  # entries come oldest first: last one wins
        point.accepted = int(detail.get("accepted") or 0)
        point.new += int(detail.get("new") or 0)
        point.reopened += int(detail.get("reopened") or 0)
        point.resolved += int(detail.get("resolved") or 0)
        point.refreshes += 1
        days[day] = point
    return [days[d] for d in sorted(days)]


# -- all of it -------------------------------------------------------------------------


def build(store: Store, loaded: LoadedInventory | None, now: datetime | None = None) -> Scorecard:
    """The scorecard from one read of the store (and the inventory, when there is one)."""
    now = now or datetime.now(UTC)
    facts = gather(store, loaded, now)
    rows = store.findings()  # open and accepted
    scope_flagged = {r["credential_id"] for r in rows
                     if r["rule"].startswith("scope.") and r["credential_id"]}
    recorded = store.credentials_with_recorded_use(except_evidence=(DECLARED_EVIDENCE,))
    judged = judge(facts, recorded, scope_flagged)
    open_rows = _open(rows, now)
    overall = Card("all", None)
    for item in judged.values():
        overall.count(item)
    _tally_findings(overall, open_rows)
    buckets, unknown_age = ages(facts.credentials, now)
    return Scorecard(
        generated_at=now,
        inventory=loaded.display if loaded is not None else None,
        overall=overall,
        agents=agent_cards(facts, judged, open_rows),
        owners=owner_cards(facts, judged, open_rows),
        ages=buckets,
        age_unknown=unknown_age,
        timeline=timeline(store.audit_entries_of("findings.refresh")),
    )
