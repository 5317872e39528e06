"""Drill runs in the user's main store (console/drills/ owns what they mean).

A drill builds its own world, inventory and store under ``<data dir>/drills/<run id>/``; the
main store keeps only the history: one ``drill_runs`` row per run with its status, times, score
and a ``detail`` JSON (the drill store's path and audit anchor, the incident id in that store,
the scores and ratings, the checks, and the owner process while it runs, so a run that was
killed is found by its dead pid). ``drill_runs.incident_id`` stays NULL: the incident lives in
the drill's store, not this one (the column's foreign key points at this store's incidents).
Rows hold references only, never a value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from console.errors import StoreError
from console.store.base import StoreBase
from console.store.rows import from_json, to_json, ts

DRILL_RUN_FIELDS = ("status", "finished_at", "score", "detail")
# statuses: running (set up or responding now), awaiting-response (set up without --auto: a
# person works the incident, then `drill verify`), passed, failed (a check failed), error (the
# drill itself could not run), interrupted (its process died; `drill cleanup` removes its world)
FINISHED_STATUSES = ("passed", "failed", "error", "interrupted")


def _drill(row: dict) -> dict:
    row["detail"] = from_json(row["detail"], {}) or {}
    return row


class DrillRows(StoreBase):
    def create_drill_run(
        self,
        run_id: str,
        *,
        scenario: str,
        actor: str,
        started_at: datetime,
        detail: dict[str, Any],
        status: str = "running",
    ) -> None:
        """A new run (an id already taken is a StoreError naming it)."""
        import sqlite3

        with self.transaction():
            try:
                self._conn().execute(
                    "INSERT INTO drill_runs(id, scenario, incident_id, actor, status, "
                    "started_at, detail) VALUES (?, ?, NULL, ?, ?, ?, ?)",
                    (run_id, scenario, actor, status, ts(started_at), to_json(detail)),
                )
            except sqlite3.IntegrityError:
                raise StoreError(f"drill run id {run_id} is taken") from None

    def update_drill_run(self, run_id: str, **fields: Any) -> None:
        """Set named fields (``status``, ``finished_at``, ``score``, ``detail``: the whole
        detail, as read and changed by the caller)."""
        self._update_fields("drill_runs", {"id": run_id}, fields, allowed=DRILL_RUN_FIELDS,
                            json_fields=("detail",), what=f"drill run {run_id}")

    def get_drill_run(self, run_id: str) -> dict | None:
        rows = self._read("SELECT * FROM drill_runs WHERE id = ?", (run_id,))
        return _drill(rows[0]) if rows else None

    def find_drill_runs(self, prefix: str, limit: int = 10) -> list[dict]:
        """Runs whose id starts with ``prefix`` (ids are upper case: ``DRL-1A2B3C``)."""
        rows = self._read(
            "SELECT * FROM drill_runs WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            (prefix, prefix + "\uffff", limit),
        )
        return [_drill(r) for r in rows]

    def drill_runs(self, scenario: str | None = None, limit: int = 200,
                   status: str | None = None) -> list[dict]:
        """Runs newest first, of one scenario and/or one status when given."""
        where, params = [], []
        if scenario is not None:
            where.append("scenario = ?")
            params.append(scenario)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        sql = "SELECT * FROM drill_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._read(sql + " ORDER BY started_at DESC, id DESC LIMIT ?", [*params, limit])
        return [_drill(r) for r in rows]

    def last_drill_scores(self) -> dict[str, dict]:
        """scenario -> its latest scored run (passed or failed): id, status, score, when."""
        rows = self._read(
            "SELECT id, scenario, status, score, started_at, finished_at FROM drill_runs d "
            "WHERE status IN ('passed', 'failed') AND started_at = ("
            "  SELECT max(started_at) FROM drill_runs e WHERE e.scenario = d.scenario "
            "  AND e.status IN ('passed', 'failed'))"
        )
        return {r["scenario"]: r for r in rows}

    def previous_drill_run(self, scenario: str, before: str) -> dict | None:
        """The latest scored run of ``scenario`` that started before ``before`` (store text):
        what a new run's score is compared with."""
        rows = self._read(
            "SELECT * FROM drill_runs WHERE scenario = ? AND status IN ('passed', 'failed') "
            "AND started_at < ? ORDER BY started_at DESC, id DESC LIMIT 1",
            (scenario, before),
        )
        return _drill(rows[0]) if rows else None
