"""Alerts: each recorded once per dedupe key, then sent until delivered (console/alerts.py
owns what is sent and how).

A row is an alert's body (JSON, references only) and its delivery record: ``attempts`` counts
sends, ``last_error`` says why the last one failed, ``next_attempt_at`` is when it may be sent
again (NULL: now), ``delivered_at`` ends it. A sender takes an attempt by compare-and-swap on
``attempts`` (``claim_alert_attempt``), so two processes that deliver from one store never make
the same attempt twice; the claim also moves ``next_attempt_at`` past the send, so the other
process does not start the next attempt while this one is under way.
"""

from __future__ import annotations

from datetime import UTC, datetime

from console.store.base import StoreBase
from console.store.rows import from_json, parse_ts, to_json, ts

# last_error is one line for a person, not a log
_ERROR_MAX = 500


def _alert_dict(row: dict) -> dict:
    row["body"] = from_json(row["body"], {})
    return row


class AlertRows(StoreBase):
    def add_alert(
        self, *, event: str, dedupe_key: str, subject: str, body: dict, created_at: datetime
    ) -> bool:
        """Record an alert unless one with this dedupe key exists; returns whether it was new."""
        with self.transaction():
            cur = self._conn().execute(
                "INSERT INTO alerts(event, dedupe_key, subject, created_at, body) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(dedupe_key) DO NOTHING",
                (event, dedupe_key, subject, ts(created_at), to_json(body)),
            )
            return cur.rowcount == 1

    def pending_alerts(
        self, max_attempts: int, now: datetime, *, after_id: int = 0, limit: int = 100
    ) -> list[dict]:
        """Undelivered alerts due at ``now`` (``next_attempt_at`` unset or not later) that have
        had fewer than ``max_attempts`` sends, oldest first, from id ``after_id`` on (a pass
        pages by id, so it meets each alert once)."""
        rows = self._read(
            "SELECT * FROM alerts WHERE delivered_at IS NULL AND attempts < ? AND id > ? "
            "AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id LIMIT ?",
            (max_attempts, after_id, ts(now), limit),
        )
        return [_alert_dict(r) for r in rows]

    def next_alert_attempt_at(self, max_attempts: int) -> datetime | None:
        """When the earliest undelivered alert with sends left is due; None when there is
        none, the minimum datetime when one is due now (its ``next_attempt_at`` is unset)."""
        row = self._read(
            "SELECT count(*) AS n, min(coalesce(next_attempt_at, '')) AS at FROM alerts "
            "WHERE delivered_at IS NULL AND attempts < ?",
            (max_attempts,),
        )[0]
        if not row["n"]:
            return None
        return parse_ts(row["at"]) if row["at"] else datetime.min.replace(tzinfo=UTC)

    def claim_alert_attempt(self, alert_id: int, seen_attempts: int, busy_until: datetime) -> bool:
        """Count one more send of an alert, if it is still undelivered and nobody counted one
        since this caller read ``seen_attempts``; False means another sender has it. The alert
        is not due again before ``busy_until`` (a bound on the send), so a sender that dies
        mid-send leaves it to be tried again then."""
        with self.transaction():
            cur = self._conn().execute(
                "UPDATE alerts SET attempts = attempts + 1, next_attempt_at = ? "
                "WHERE id = ? AND attempts = ? AND delivered_at IS NULL",
                (ts(busy_until), alert_id, seen_attempts),
            )
            return cur.rowcount == 1

    def mark_alert_delivered(self, alert_id: int, at: datetime) -> None:
        """Delivered; ``last_error`` stays, as the record of why earlier sends failed."""
        with self.transaction():
            self._conn().execute(
                "UPDATE alerts SET delivered_at = ?, next_attempt_at = NULL WHERE id = ?",
                (ts(at), alert_id),
            )

    def record_alert_failure(
        self, alert_id: int, error: str, next_attempt_at: datetime | None
    ) -> None:
        """A failed send: why, and when the next may be made (None: there is no next)."""
        with self.transaction():
            self._conn().execute(
                "UPDATE alerts SET last_error = ?, next_attempt_at = ? WHERE id = ?",
                (" ".join(error.split())[:_ERROR_MAX], ts(next_attempt_at), alert_id),
            )

    def alerts(self, limit: int = 100) -> list[dict]:
        """The newest alerts first, delivered or not."""
        rows = self._read("SELECT * FROM alerts ORDER BY id DESC LIMIT ?", (limit,))
        return [_alert_dict(r) for r in rows]

    def get_alert(self, dedupe_key: str) -> dict | None:
        rows = self._read("SELECT * FROM alerts WHERE dedupe_key = ?", (dedupe_key,))
        return _alert_dict(rows[0]) if rows else None

    def undelivered_alert_counts(self, max_attempts: int) -> dict[str, int]:
        """How many undelivered alerts are still being tried (``pending``) and how many have
        used every attempt (``given-up``)."""
        row = self._read(
            "SELECT coalesce(sum(attempts < ?), 0) AS pending, "
            "coalesce(sum(attempts >= ?), 0) AS given_up "
            "FROM alerts WHERE delivered_at IS NULL",
            (max_attempts, max_attempts),
        )[0]
        return {"pending": int(row["pending"]), "given-up": int(row["given_up"])}

    def alert_by_key(self, dedupe_key: str) -> dict | None:
        rows = self._read("SELECT * FROM alerts WHERE dedupe_key = ?", (dedupe_key,))
        return _alert_dict(rows[0]) if rows else None
