"""A finding as scripts and the console see it: the record `keyshift findings --format json`
prints and the `:findings` view lists. Never a value: evidence names places, not contents."""

from __future__ import annotations

from datetime import datetime

from console.store.findings import effective_status

FIELDS = ("id", "rule", "severity", "status", "credential", "agent", "evidence", "title")
JSON_FIELDS = (
    "id", "rule", "severity", "credential", "agent", "evidence", "status", "first_seen",
    "last_seen", "title", "accepted_until", "accepted_reason", "accepted_by", "resolved_at",
)


def as_json(row: dict, now: datetime) -> dict:
    """A finding as scripts see it: never a value (evidence names places, not contents)."""
    return {
        "id": row["id"],
        "rule": row["rule"],
        "severity": row["severity"],
        "credential": row["credential_id"],
        "agent": row["agent"],
        "evidence": row["detail"],
        "status": effective_status(row, now),
        "first_seen": row["first_seen_at"],
        "last_seen": row["last_seen_at"],
        "title": row["title"],
        "accepted_until": row["accepted_until"],
        "accepted_reason": row["accepted_reason"],
        "accepted_by": row["accepted_by"],
        "resolved_at": row["resolved_at"],
        "file": row.get("file"),
        "line": row.get("line"),
    }
