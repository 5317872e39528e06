"""Reads for the metrics (console/metrics.py owns their names and meaning).

Each is one aggregate query, so a scrape costs the same however many runs, results or findings
the store has kept.
"""

from __future__ import annotations

from datetime import datetime

from console.store.base import StoreBase
from console.store.rows import ts


class MetricsRows(StoreBase):
    def rotation_run_counts(self) -> dict[str, int]:
        """status -> how many rotation runs are in it."""
        return {
            r["status"]: int(r["n"])
            for r in self._read(
                "SELECT status, count(*) AS n FROM rotation_runs GROUP BY status"
            )
        }

    def revoke_overdue_count(self, now: datetime) -> int:
        """Runs still awaiting revoke although their grace period has passed."""
        return int(
            self._scalar(
                "SELECT count(*) FROM rotation_runs WHERE status = 'awaiting-revoke' "
                "AND revoke_after IS NOT NULL AND revoke_after <= ?",
                (ts(now),),
            )
            or 0
        )

    def last_successful_syncs(self) -> dict[str, datetime]:
        """source -> when a sync last applied its listing (ok, or partial: the rows it could
        read were written)."""
        return self._times_by_source(
            "SELECT source, max(at) AS at FROM sync_source_results "
            "WHERE status IN ('ok', 'partial') GROUP BY source"
        )

    def latest_sync_statuses(self) -> dict[str, str]:
        """source -> the status of its newest sync result (ok, partial or failed)."""
        return {
            r["source"]: r["status"]
            for r in self._read(
                "SELECT source, status FROM sync_source_results WHERE id IN "
                "(SELECT max(id) FROM sync_source_results GROUP BY source)"
            )
        }

    def open_findings_count_by_severity(self, now: datetime) -> dict[str, int]:
        """severity -> open findings, counting an acceptance that has lapsed by ``now`` as open
        (as console.store.findings.effective_status does before the next refresh writes it)."""
        return {
            r["severity"]: int(r["n"])
            for r in self._read(
                "SELECT severity, count(*) AS n FROM findings WHERE status = 'open' "
                "OR (status = 'accepted' AND accepted_until IS NOT NULL "
                "AND accepted_until <= ?) GROUP BY severity",
                (ts(now),),
            )
        }
