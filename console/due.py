"""Which credentials are due for rotation: one answer for the rotate-due playbook, the
schedule's overdue and expiry alerts, and the metrics.

Due means **overdue** (its value is older than the maximum age for its sensitivity, or the
credential's own ``max_age_days``) or **expiring** (it expires within the threshold, or has
expired). A credential whose age is unknown (no creation or rotation time) is not called due:
it is reported by the findings as unknown, never guessed here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from console.model import Credential

if TYPE_CHECKING:
    from console.config import LoadedInventory
    from console.store import Store

Reason = Literal["overdue", "expiring"]


@dataclass(frozen=True)
class Due:
    credential: Credential
    reason: Reason
    detail: str  # one line, references only: "rotated 2026-01-02, 200 days ago; maximum 90"

    @property
    def id(self) -> str:
        return self.credential.id


def max_age_days(cred: Credential, loaded: LoadedInventory | None) -> int | None:
    if cred.max_age_days:
        return cred.max_age_days
    if loaded is None or not cred.sensitivity:
        return None
    policy = loaded.inventory.policies.by_sensitivity.get(cred.sensitivity)  # type: ignore[call-overload]
    return policy.max_age_days if policy else None


def why_due(
    cred: Credential,
    loaded: LoadedInventory | None,
    now: datetime,
    expiring_within: timedelta,
) -> Due | None:
    """Why ``cred`` is due now, or None. Overdue wins over expiring (it is the older fault)."""
    if cred.gone_at is not None:
        return None
    limit = max_age_days(cred, loaded)
    since = cred.rotated_at or cred.created_at
    if limit and since is not None:
        age = (now - since).days
        if age > limit:
            what = "rotated" if cred.rotated_at else "created"
            return Due(
                cred,
                "overdue",
                f"{what} {since.date().isoformat()}, {age} days ago; maximum age {limit} days",
            )
    if cred.expires_at is not None and cred.expires_at - now <= expiring_within:
        left = cred.expires_at - now
        when = (
            f"expired {cred.expires_at.isoformat(timespec='seconds')}"
            if left <= timedelta(0)
            else f"expires {cred.expires_at.isoformat(timespec='seconds')}, in {_human(left)}"
        )
        return Due(cred, "expiring", when)
    return None


def due_credentials(
    store: Store,
    loaded: LoadedInventory | None,
    now: datetime,
    expiring_within: timedelta,
    *,
    sensitivity: str | Iterable[str | None] | None = None,
) -> list[Due]:
    """Every present credential that is due, oldest fault first (overdue, then expiring).
    ``sensitivity``: only these (a None among them: credentials with no sensitivity set)."""
    wanted = (
        {sensitivity}
        if isinstance(sensitivity, str)
        else (set(sensitivity) if sensitivity is not None else None)
    )
    found = []
    for cred in store.all_credentials():
        if wanted is not None and cred.sensitivity not in wanted:
            continue
        due = why_due(cred, loaded, now, expiring_within)
        if due is not None:
            found.append(due)
    found.sort(key=lambda d: (d.reason != "overdue", d.credential.name, d.credential.id))
    return found


def _human(delta: timedelta) -> str:
    if delta >= timedelta(days=1):
        return f"{delta.days}d"
    hours = int(delta.total_seconds() // 3600)
    return f"{hours}h" if hours else f"{int(delta.total_seconds() // 60)}m"
