"""How a credential reads in a table cell: relative times and semantic colour marks.

Pure functions over ``Credential`` and a ``now``, so snapshot tests can freeze the clock and the
bench can format rows without an app. Styles are Rich styles named by meaning (STYLES), so a
theme changes one map, not the code.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rich.text import Text

from console.model import Credential
from console.vocabulary import NEVER, UNKNOWN, is_stale, owner_text, status_text

EXPIRING_SOON = timedelta(days=14)

# meaning -> Rich style
STYLES: dict[str, str] = {
    "expired": "bold red",
    "expiring": "yellow",
    "never-used": "magenta dim",
    "gone": "strike dim",
    "stale": "yellow italic",
    "inactive": "dim",
    "muted": "dim",
}

# (key, label, width): the inventory table's columns, in order. They fit 160 columns with the
# cell padding and the scrollbar; a narrower terminal scrolls sideways.
COLUMNS: list[tuple[str, str, int]] = [
    ("name", "NAME", 27),
    ("agents", "AGENTS", 14),
    ("owner", "OWNER", 11),
    ("kind", "KIND", 13),
    ("source", "SOURCE", 11),
    ("environment", "ENV", 7),
    ("scope", "SCOPE", 11),
    ("expires", "EXPIRES", 15),
    ("rotated", "ROTATED", 9),
    ("used", "LAST USED", 9),
    ("status", "STATUS", 8),
]


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
    """The inventory row of one credential as (text, Rich style) per column, styled by what
    is wrong with it. Plain pairs, so the table can build a line without Text objects."""
    expiry = expiry_state(cred, now)
    cells = {
        "name": (cred.name, ""),
        "agents": (",".join(sorted(set(cred.agents))) or "-", ""),
        "owner": (owner_text(cred), "" if cred.owner else STYLES["muted"]),
        "kind": (cred.kind, ""),
        "source": (cred.source, ""),
        "environment": (cred.environment or "-", ""),
        "scope": (cred.scope or "-", ""),
        "expires": (expires_text(cred, now), STYLES[expiry] if expiry else ""),
        "rotated": (ago(cred.rotated_at or cred.created_at, now, none="-"), ""),
        "used": (
            ago(cred.last_used_at, now, none=UNKNOWN),
            STYLES["muted"] if cred.last_used_at is None else "",
        ),
        "status": (status_text(cred), ""),
    }
    if cred.status == "gone":
        cells = {
            k: (text, f"{style} {STYLES['gone']}".strip()) for k, (text, style) in cells.items()
        }
    elif is_stale(cred):
        for key in ("status", "name"):
            cells[key] = (cells[key][0], STYLES["stale"])
    elif cred.status == "inactive":
        cells["status"] = (cells["status"][0], STYLES["inactive"])
    return [cells[key] for key, _label, _width in COLUMNS]


def row_cells(cred: Credential, now: datetime) -> list[Text]:
    """row_values as Rich Text cells (the baseline table of bench/tui.py takes these)."""
    return [
        Text(text, style=style, no_wrap=True, overflow="ellipsis", end="")
        for text, style in row_values(cred, now)
    ]


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
