"""Alerts: each recorded once per dedupe key, then sent until delivered (console/alerts.py
owns what is sent and how).

A row is an alert's body (JSON, references only) and its delivery record: ``attempts`` counts
sends, ``last_error`` says why the last one failed, ``delivered_at`` ends it. A sender takes
an attempt by compare-and-swap on ``attempts`` (``claim_alert_attempt``), so two processes
that deliver from one store never make the same attempt twice.
"""

from __future__ import annotations

from datetime import datetime

from console.store.base import StoreBase
from console.store.rows import from_json, to_json, ts

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

    def pending_alerts(self, max_attempts: int, limit: int = 100) -> list[dict]:
        """Undelivered alerts that have had fewer than ``max_attempts`` sends, oldest first."""
        rows = self._read(
            "SELECT * FROM alerts WHERE delivered_at IS NULL AND attempts < ? "
            "ORDER BY id LIMIT ?",
            (max_attempts, limit),
        )
        return [_alert_dict(r) for r in rows]

    def claim_alert_attempt(self, alert_id: int, seen_attempts: int) -> bool:
        """Count one more send of an alert, if it is still undelivered and nobody counted one
        since this caller read ``seen_attempts``; False means another sender has it."""
        with self.transaction():
            cur = self._conn().execute(
                "UPDATE alerts SET attempts = attempts + 1 "
                "WHERE id = ? AND attempts = ? AND delivered_at IS NULL",
                (alert_id, seen_attempts),
            )
            return cur.rowcount == 1

    def mark_alert_delivered(self, alert_id: int, at: datetime) -> None:
        """Delivered; ``last_error`` stays, as the record of why earlier sends failed."""
        with self.transaction():
            self._conn().execute(
                "UPDATE alerts SET delivered_at = ? WHERE id = ?", (ts(at), alert_id)
            )

    def record_alert_failure(self, alert_id: int, error: str) -> None:
        with self.transaction():
            self._conn().execute(
                "UPDATE alerts SET last_error = ? WHERE id = ?",
                (" ".join(error.split())[:_ERROR_MAX], alert_id),
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
