"""Searching the audit log: ``keyshift audit ls FILTER`` and the console's audit view.

Words of a filter, all of which must hold (``!`` before one inverts it):

- ``actor:alice``, ``action:rotation.*``: the actor, the action (``*`` is a wildcard; ASCII
  case ignored, as SQLite's lower() does);
- ``target:support-bot``: a substring of the target;
- ``since:2026-12-01``, ``since:2h``, ``until:7d``: times (a date, an ISO time, or a duration
  back from now: ``30m``, ``2h``, ``7d``);
- any other word: a substring of the action, target, actor or detail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from console.errors import UsageError
from console.query import nocase

FIELDS = ("actor", "action", "target", "since", "until")
MAX_FILTER_CHARS = 4096
_DURATION = re.compile(r"^(?P<n>[0-9]{1,6})(?P<unit>[smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class AuditTerm:
    field: str  # actor | action | target | since | until | text
    value: Any  # str, or a datetime for since/until
    negate: bool = False


def parse_audit_filter(text: str, now: datetime | None = None) -> list[AuditTerm]:
    if len(text) > MAX_FILTER_CHARS:
        raise UsageError(f"the filter is longer than {MAX_FILTER_CHARS} characters")
    now = now or datetime.now(UTC)
    terms = []
    for word in text.split():
        negate = word.startswith("!")
        word = word[1:] if negate else word
        if not word:
            raise UsageError("a lone ! inverts nothing", hint="write !actor:alice")
        name, sep, value = word.partition(":")
        if sep and name in FIELDS:
            if not value:
                raise UsageError(f"{name}: needs a value", hint=f"e.g. {_example(name)}")
            if name in ("since", "until"):
                terms.append(AuditTerm(name, _when(value, now), negate))
            else:
                terms.append(AuditTerm(name, nocase(value), negate))
        elif sep and re.fullmatch(r"[a-z_]+", name):
            raise UsageError(f"unknown field {name!r}", hint=f"fields: {', '.join(FIELDS)}")
        else:
            terms.append(AuditTerm("text", nocase(word), negate))
    return terms


def _when(value: str, now: datetime) -> datetime:
    match = _DURATION.match(value)
    if match:
        return now - timedelta(seconds=int(match["n"]) * _UNITS[match["unit"]])
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"cannot read the time {value!r}", hint="a date (2026-12-01) or a duration (2h, 7d)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _example(name: str) -> str:
    return {
        "actor": "actor:alice",
        "action": "action:rotation.*",
        "target": "target:support-bot",
        "since": "since:2h, since:2026-12-01",
        "until": "until:2026-12-02",
    }[name]


def csv_safe(value: Any) -> str:
    """A CSV cell no spreadsheet will run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
