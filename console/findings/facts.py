"""What the rules look at: one snapshot of the store and the inventory, read once per refresh."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from console.model import Credential, Grant

if TYPE_CHECKING:
    from console.config import LoadedInventory
    from console.inventory import Agent, AgePolicy
    from console.store import Store

DEFAULT_STALE_AFTER_DAYS = 90
# the owner keyshift puts on what it creates for itself (the sandbox's admin user)
KEYSHIFT_OWNER = "keyshift"


@dataclass(frozen=True)
class ExposureHit:
    """A secret seen in plain text in a file (from the workspace scanner). Never a value."""

    file: str
    line: int
    detector: str
    credential_id: str | None = None  # a known credential, recognised by its fingerprint
    agent: str | None = None  # whose workspace it is in


@dataclass
class Facts:
    now: datetime
    credentials: list[Credential]
    grants: list[Grant]
    loaded: LoadedInventory | None = None
    runs: dict[str, list[dict]] = field(default_factory=dict)  # credential id -> newest first
    usage: list[dict] = field(default_factory=list)  # latest use per (credential, identity)
    delivery: list[set[str]] = field(default_factory=list)  # rows holding one value by design
    hits: list[ExposureHit] | None = None  # None: no scan ran (exposure not evaluated)
    # source -> since when its use evidence (the Vault audit log) runs without a gap
    coverage: dict[str, datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {c.id: c for c in self.credentials}
        self.grants_of: dict[str, list[Grant]] = defaultdict(list)
        for g in self.grants:
            if g.credential_id in self.by_id:
                self.grants_of[g.credential_id].append(g)

    # -- the inventory's view ------------------------------------------------------------

    @property
    def agents(self) -> dict[str, Agent]:
        return dict(self.loaded.agents_by_name) if self.loaded else {}

    def policy(self, cred: Credential) -> AgePolicy | None:
        if self.loaded is None or not cred.sensitivity:
            return None
        return self.loaded.inventory.policies.by_sensitivity.get(cred.sensitivity)  # type: ignore[call-overload]

    def max_age_days(self, cred: Credential) -> int | None:
        from console.due import max_age_days

        return max_age_days(cred, self.loaded)

    def stale_after_days(self, cred: Credential) -> int:
        policy = self.policy(cred)
        return policy.stale_after_days if policy else DEFAULT_STALE_AFTER_DAYS

    def owner(self, cred: Credential) -> tuple[str | None, str]:
        """The owner and where it came from: the credential, or the inventory's defaults."""
        if cred.owner:
            return cred.owner, "the credential"
        if self.loaded is None:
            return None, ""
        policies = self.loaded.inventory.policies
        by_env = policies.owners_by_environment.get(cred.environment)  # type: ignore[call-overload]
        if by_env:
            return by_env, f"owners_by_environment.{cred.environment}"
        if policies.default_owner:
            return policies.default_owner, "default_owner"
        return None, ""

    def known_owners(self) -> set[str] | None:
        """Who the inventory knows: its agents' owners and its default owners (and keyshift,
        for what it creates for itself). None without an inventory: nothing to compare."""
        if self.loaded is None:
            return None
        inv = self.loaded.inventory
        known = {a.owner for a in inv.agents if a.owner}
        known |= set(inv.policies.owners_by_environment.values())
        if inv.policies.default_owner:
            known.add(inv.policies.default_owner)
        known.add(KEYSHIFT_OWNER)
        return known


def gather(
    store: Store,
    loaded: LoadedInventory | None,
    now: datetime,
    hits: list[ExposureHit] | None = None,
) -> Facts:
    """One read of everything the rules need."""
    from console.rotation.specs import delivery_groups

    creds = [c for c in store.all_credentials() if c.gone_at is None]
    runs: dict[str, list[dict]] = defaultdict(list)
    for run in store.rotation_runs(limit=100_000):
        if run.get("credential_id"):
            runs[run["credential_id"]].append(run)
    usage: list[dict[str, Any]] = store.latest_use_by_identity()
    return Facts(
        now=now,
        credentials=creds,
        grants=store.all_grants(),
        loaded=loaded,
        runs=dict(runs),
        usage=usage,
        delivery=delivery_groups(loaded, store) if loaded else [],
        hits=hits,
        coverage=store.evidence_coverage(),
    )
