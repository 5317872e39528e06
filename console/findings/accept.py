"""Accepting a finding for a while: the one place the CLI and the console both call."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import TYPE_CHECKING, Any

from console.errors import NotFoundError, UsageError
from console.store.findings import effective_status

if TYPE_CHECKING:
    from console.audit import AuditLog
    from console.store import Store


def parse_until(text: str) -> datetime:
    """A date means the end of that day (UTC); a time without a zone is UTC."""
    text = text.strip()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"until {text!r} is not a date", hint="write it as YYYY-MM-DD (UTC)"
        ) from None
    if len(text) == 10:
        return datetime.combine(when.date(), time.max, tzinfo=UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def find_finding(store: Any, ref: str) -> dict:
    """A finding by id or a unique start of one (at least 4 characters)."""
    found = store.get_finding(ref)
    if found is None:
        matches = store.findings_by_prefix(ref) if len(ref) >= 4 else []
        if len(matches) > 1:
            raise UsageError(
                f"{ref!r} matches {len(matches)} findings",
                hint="candidates: " + ", ".join(m["id"] for m in matches),
            )
        found = matches[0] if matches else None
    if found is None:
        raise NotFoundError(f"no finding {ref!r}", hint="keyshift findings --all lists them")
    return found


def accept(
    store: Store, audit: AuditLog, actor: str, ref: str, until_text: str, reason: str,
    now: datetime | None = None,
) -> tuple[dict, datetime]:
    """Accept an open finding until a date, with a reason; audited with the store change."""
    now = now or datetime.now(UTC)
    until = parse_until(until_text)
    reason = reason.strip()
    if until <= now:
        raise UsageError(f"until {until_text} is already past", hint="give a future date")
    if not reason:
        raise UsageError("the reason is empty", hint="say why the risk is accepted")
    row = find_finding(store, ref)
    if row["status"] == "resolved":
        raise UsageError(f"{row['id']} is resolved: nothing to accept")
    with store.transaction():
        store.accept_finding(row["id"], until, reason, actor)
        audit.append(actor, "finding.accept", row["id"], {
            "rule": row["rule"], "credential": row["credential_id"], "agent": row["agent"],
            "until": until.isoformat(), "reason": reason, "was": effective_status(row, now),
        })
    return row, until
