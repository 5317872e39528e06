"""The rotation journal: runs and their steps."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from console.errors import StoreError
from console.store.base import StoreBase
from console.store.rows import (
    RUN_FIELDS,
    TERMINAL_RUN_STATUSES,
    from_json,
    run_dict,
    to_json,
    ts,
    utcnow,
)


class RunRows(StoreBase):
    # rotation journal ---------------------------------------------------------------------

    def create_rotation_run(self, credential_id: str, rotator: str, plan: dict, actor: str) -> str:
        run_id = uuid.uuid4().hex
        now = ts(utcnow())
        with self.transaction():
            self._conn().execute(
                "INSERT INTO rotation_runs(id, credential_id, rotator, status, plan, actor, "
                "created_at, updated_at) VALUES (?, ?, ?, 'planned', ?, ?, ?, ?)",
                (run_id, credential_id, rotator, to_json(plan), actor, now, now),
            )
        return run_id

    def start_step(self, run_id: str, step: str) -> int:
        """Journal a step as started, before it runs."""
        with self.transaction():
            conn = self._conn()
            run = conn.execute(
                "SELECT credential_id, rotator FROM rotation_runs WHERE id = ?", (run_id,)
            ).fetchone()
            if run is None:
                raise StoreError(f"no rotation run {run_id!r}")
            now = ts(utcnow())
            cur = conn.execute(
                "INSERT INTO rotation_steps(run_id, credential_id, rotator, step, status, "
                "started_at) VALUES (?, ?, ?, ?, 'started', ?)",
                (run_id, run[0], run[1], step, now),
            )
            conn.execute("UPDATE rotation_runs SET updated_at = ? WHERE id = ?", (now, run_id))
            return int(cur.lastrowid or 0)

    def finish_step(
        self, step_id: int, status: str, error: str | None = None, detail: dict | None = None
    ) -> None:
        if status not in ("done", "failed"):
            raise StoreError(f"a step finishes as done or failed, not {status!r}")
        with self.transaction():
            cur = self._conn().execute(
                "UPDATE rotation_steps SET status = ?, finished_at = ?, error = ?, detail = ? "
                "WHERE id = ?",
                (
                    status,
                    ts(utcnow()),
                    error,
                    to_json(detail) if detail is not None else None,
                    step_id,
                ),
            )
            if cur.rowcount == 0:
                raise StoreError(f"no rotation step {step_id}")

    def set_run_status(self, run_id: str, status: str, **fields: Any) -> None:
        """Set a run's status and any of: started_at, finished_at, error, pending_version,
        previous_version, playbook_run_id, detail (dict). A terminal status sets finished_at."""
        unknown = set(fields) - set(RUN_FIELDS)
        if unknown:
            raise StoreError(
                f"unknown rotation run field(s): {', '.join(sorted(unknown))}",
                hint=f"fields: {', '.join(RUN_FIELDS)}",
            )
        now = utcnow()
        values: dict[str, Any] = {"status": status, "updated_at": ts(now)}
        if status in TERMINAL_RUN_STATUSES and "finished_at" not in fields:
            values["finished_at"] = ts(now)
        if status == "running" and "started_at" not in fields:
            values["started_at_default"] = ts(now)
        for key, value in fields.items():
            if isinstance(value, datetime):
                value = ts(value)
            elif key == "detail" and value is not None:
                value = to_json(value)
            elif key == "error" and value is not None:
                value = str(value)
            values[key] = value
        sets = [f"{k} = :{k}" for k in values if k != "started_at_default"]
        if "started_at_default" in values:
            sets.append("started_at = coalesce(started_at, :started_at_default)")
        with self.transaction():
            cur = self._conn().execute(
                f"UPDATE rotation_runs SET {', '.join(sets)} WHERE id = :run_id",
                {**values, "run_id": run_id},
            )
            if cur.rowcount == 0:
                raise StoreError(f"no rotation run {run_id!r}")

    def get_rotation_run(self, run_id: str) -> dict | None:
        rows = self._read("SELECT * FROM rotation_runs WHERE id = ?", (run_id,))
        return run_dict(rows[0]) if rows else None

    def rotation_steps(self, run_id: str) -> list[dict]:
        rows = self._read("SELECT * FROM rotation_steps WHERE run_id = ? ORDER BY id", (run_id,))
        for row in rows:
            row["detail"] = from_json(row["detail"], None)
        return rows

    def rotation_runs(
        self, credential_id: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[dict]:
        clauses, params = ["1"], []
        if credential_id is not None:
            clauses.append("credential_id = ?")
            params.append(credential_id)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        rows = self._read(
            f"SELECT * FROM rotation_runs WHERE {' AND '.join(clauses)} "
            "ORDER BY created_at DESC, rowid DESC LIMIT ?",
            [*params, limit],
        )
        return [run_dict(r) for r in rows]

    def unfinished_rotation_runs(self) -> list[dict]:
        marks = ",".join("?" * len(TERMINAL_RUN_STATUSES))
        rows = self._read(
            f"SELECT * FROM rotation_runs WHERE status NOT IN ({marks}) ORDER BY created_at, rowid",
            TERMINAL_RUN_STATUSES,
        )
        return [run_dict(r) for r in rows]

    def record_rotation(
        self, credential_id: str, rotated_at: datetime, version: str | None, fingerprint: str | None
    ) -> None:
        with self.transaction():
            cur = self._conn().execute(
                "UPDATE credentials SET rotated_at = ?, version = ?, fingerprint = ? WHERE id = ?",
                (ts(rotated_at), version, fingerprint, credential_id),
            )
            if cur.rowcount == 0:
                raise StoreError(f"no credential {credential_id!r}")

