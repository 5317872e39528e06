"""How a credential reads in a table cell: relative times and semantic colour marks.

Pure functions over ``Credential`` and a ``now``, so snapshot tests can freeze the clock and the
bench can format rows without an app. A cell carries a meaning ("expired", "stale", "muted"),
never a colour: screens/theme.py turns meanings into the current theme's colours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from console.model import Credential
from console.vocabulary import NEVER, is_stale, no_use_text, owner_text, status_text

EXPIRING_SOON = timedelta(days=14)
# a finding's severity -> the meaning its cell is marked with
FINDING_MEANING = {"critical": "expired", "high": "failed", "medium": "warning", "low": "muted",
                   "info": "muted"}


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int  # base width in cells
    priority: int  # 0 is kept longest when the terminal is narrow
    grow: int = 0  # how many more cells it may take on a wide terminal


# The inventory table's columns in display order. On a narrow terminal the lowest priorities
# give way first; at 100 columns the name, agents, owner, expiry and status always stay (the
# column chooser shows the rest). Names, agents and scope are what a person reads: they grow.
COLUMNS: list[Column] = [
    Column("name", "NAME", 27, 0, 36),
    Column("agents", "AGENTS", 14, 5, 30),
    Column("owner", "OWNER", 11, 3, 8),
    Column("kind", "KIND", 13, 9, 4),
    Column("source", "SOURCE", 11, 10, 6),
    Column("environment", "ENV", 7, 7),
    Column("scope", "SCOPE", 11, 11, 30),
    Column("expires", "EXPIRES", 15, 2),
    Column("rotated", "ROTATED", 9, 8),
    Column("used", "LAST USED", 9, 6),
    Column("finding", "FINDING", 8, 4),  # its most severe open finding (`:findings`)
    Column("status", "STATUS", 8, 1),
]
COLUMN_KEYS = [c.key for c in COLUMNS]


def aware(value: datetime | str) -> datetime:
    """UTC-aware; the store's journal rows carry ISO text, records carry datetimes."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def span(delta: timedelta) -> str:
    """A short unsigned duration: 12d, 5h, 3m, now."""
    seconds = abs(int(delta.total_seconds()))
    if seconds >= 86400:
        return f"{seconds // 86400}d"
    if seconds >= 3600:
        return f"{seconds // 3600}h"
    if seconds >= 60:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def ago(value: datetime | str | None, now: datetime, *, none: str = "never") -> str:
    if value is None:
        return none
    delta = now - aware(value)
    if delta < timedelta(0):
        return f"in {span(delta)}"
    return f"{span(delta)} ago"


def expiry_state(cred: Credential, now: datetime) -> str | None:
    """ "expired", "expiring" (within EXPIRING_SOON) or None."""
    if cred.expires_at is None:
        return None
    left = aware(cred.expires_at) - now
    if left <= timedelta(0):
        return "expired"
    if left <= EXPIRING_SOON:
        return "expiring"
    return None


def expires_text(cred: Credential, now: datetime) -> str:
    if cred.expires_at is None:
        if cred.ttl_seconds:
            return f"ttl {span(timedelta(seconds=cred.ttl_seconds))}"
        return NEVER
    left = aware(cred.expires_at) - now
    if left <= timedelta(0):
        return f"expired {span(left)} ago"
    return f"in {span(left)}"


def row_values(cred: Credential, now: datetime) -> list[tuple[str, str]]:
    """The inventory row of one credential as (text, meaning) per column of COLUMNS, marked by
    what is wrong with it. Plain pairs, so the table can build a line without Text objects."""
    expiry = expiry_state(cred, now)
    cells = {
        "name": (cred.name, ""),
        "agents": (",".join(sorted(set(cred.agents))) or "-", ""),
        "owner": (owner_text(cred), "" if cred.owner else "muted"),
        "kind": (cred.kind, ""),
        "source": (cred.source, ""),
        "environment": (cred.environment or "-", ""),
        "scope": (cred.scope or "-", ""),
        "expires": (expires_text(cred, now), expiry or ""),
        "rotated": (ago(cred.rotated_at or cred.created_at, now, none="-"), ""),
        "used": (
            ago(cred.last_used_at, now, none=no_use_text(cred)),
            "muted" if cred.last_used_at is None and not cred.no_use_evidence else "",
        ),
        "finding": (cred.finding or "-", FINDING_MEANING.get(cred.finding or "", "muted")),
        "status": (status_text(cred), ""),
    }
    if cred.status == "gone":
        cells = {k: (text, "gone") for k, (text, _meaning) in cells.items()}
    elif is_stale(cred):
        for key in ("status", "name"):
            cells[key] = (cells[key][0], "stale")
    elif cred.status == "inactive":
        cells["status"] = (cells["status"][0], "inactive")
    return [cells[key] for key in COLUMN_KEYS]


def short_fingerprint(fingerprint: str | None) -> str:
    """Enough of the HMAC to compare by eye; the full one is in `keyshift show --format json`."""
    if not fingerprint:
        return "-"
    scheme, _, digest = fingerprint.rpartition(":")
    return f"{scheme}:{digest[:12]}…" if scheme else f"{digest[:12]}…"


def when(value: datetime | str | None, now: datetime, *, none: str = "-") -> str:
    """An absolute UTC time with its relative reading, for the detail screen."""
    if value is None:
        return none
    return f"{aware(value):%Y-%m-%d %H:%M} UTC ({ago(value, now)})"
