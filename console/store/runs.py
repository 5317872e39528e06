"""The rotation journal: runs, their steps, and the claim an active run holds.

A run claims its *subject* (what it rotates: a credential, or a declared rotation that several
credential rows share) through a unique partial index over the active statuses: two processes
that try to start a run on one subject at the same moment race inside SQLite, and exactly one
INSERT wins. The loser gets ``ClaimHeld`` naming the winner, before it has touched anything.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime
from typing import Any

from console.errors import StoreError
from console.model import ACTIVE_RUN_STATUSES, TERMINAL_RUN_STATUSES, RunStatus, StepStatus
from console.process import Owner
from console.store.base import StoreBase
from console.store.rows import (
    RUN_FIELDS,
    chunks,
    from_json,
    run_dict,
    to_json,
    ts,
    utcnow,
)


class ClaimHeld(StoreError):
    """Another active run holds the subject; ``holder`` is its row."""

    def __init__(self, subject: str, holder: dict | None) -> None:
        who = f"run {holder['id']} ({holder['status']})" if holder else "another run"
        super().__init__(f"{subject} is already claimed by {who}")
        self.subject = subject
        self.holder = holder


class RunRows(StoreBase):
    def claim_run(
        self,
        *,
        subject: str,
        credential_id: str,
        rotator: str,
        plan: dict,
        actor: str,
        owner: Owner,
    ) -> str:
        """Create a running run that holds ``subject``; ``ClaimHeld`` if an active one does."""
        run_id = uuid.uuid4().hex
        now = ts(utcnow())
        try:
            with self.transaction():
                self._conn().execute(
                    "INSERT INTO rotation_runs(id, credential_id, subject, rotator, status, plan, "
                    "actor, created_at, started_at, updated_at, owner_host, owner_pid, "
                    "owner_started) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        credential_id,
                        subject,
                        rotator,
                        to_json(plan),
                        actor,
                        now,
                        now,
                        now,
                        owner.host,
                        owner.pid,
                        owner.started,
                    ),
                )
        except StoreError:
            holder = self.active_run(subject)
            if holder is None:
                raise
            raise ClaimHeld(subject, holder) from None
        return run_id

    def take_over(self, run_id: str, holder: dict, owner: Owner) -> bool:
        """Make ``owner`` the run's owner if it is still owned as ``holder`` says (compare and
        swap: of two processes taking over one dead run, exactly one succeeds)."""
        with self.transaction():
            cur = self._conn().execute(
                "UPDATE rotation_runs SET owner_host = ?, owner_pid = ?, owner_started = ?, "
                "updated_at = ? WHERE id = ? AND owner_host IS ? AND owner_pid IS ? "
                "AND owner_started IS ?",
                (
                    owner.host,
                    owner.pid,
                    owner.started,
                    ts(utcnow()),
                    run_id,
                    holder.get("owner_host"),
                    holder.get("owner_pid"),
                    holder.get("owner_started"),
                ),
            )
            return cur.rowcount == 1

    def active_run(self, subject: str) -> dict | None:
        marks = ",".join("?" * len(ACTIVE_RUN_STATUSES))
        rows = self._read(
            f"SELECT * FROM rotation_runs WHERE subject = ? AND status IN ({marks}) LIMIT 1",
            (subject, *ACTIVE_RUN_STATUSES),
        )
        return run_dict(rows[0]) if rows else None

    def latest_rotation(self, subject: str) -> dict | None:
        """The newest run of ``subject`` that rotated it or is rotating it (not one that was
        rolled back or abandoned: that one left the old value in place)."""
        rows = self._read(
            "SELECT * FROM rotation_runs WHERE subject = ? "
            "AND status IN ('running', 'awaiting-revoke', 'completed') "
            "ORDER BY created_at DESC LIMIT 1",
            (subject,),
        )
        return run_dict(rows[0]) if rows else None

    def start_step(self, run_id: str, step: str, detail: dict | None = None) -> int:
        """Journal a step as started, before it runs (``detail``: what a resume needs to find
        what the step may have done before a crash, e.g. the keys that existed before it)."""
        with self.transaction():
            conn = self._conn()
            now = ts(utcnow())
            cur = conn.execute(
                "INSERT INTO rotation_steps(run_id, credential_id, rotator, step, status, "
                "started_at, detail) SELECT id, credential_id, rotator, ?, 'started', ?, ? "
                "FROM rotation_runs WHERE id = ?",
                (step, now, to_json(detail) if detail else None, run_id),
            )
            if not cur.rowcount:
                raise StoreError(f"no rotation run {run_id!r}")
            conn.execute("UPDATE rotation_runs SET updated_at = ? WHERE id = ?", (now, run_id))
            return int(cur.lastrowid or 0)

    def finish_step(
        self,
        step_id: int,
        status: str,
        error: str | None = None,
        detail: dict | None = None,
        attempts: int = 1,
    ) -> None:
        if status not in (StepStatus.done, StepStatus.failed):
            raise StoreError(f"a step finishes as done or failed, not {status!r}")
        with self.transaction():
            conn = self._conn()
            if detail is None:
                row = conn.execute(
                    "SELECT detail FROM rotation_steps WHERE id = ?", (step_id,)
                ).fetchone()
                detail = from_json(row[0], None) if row else None
            cur = conn.execute(
                "UPDATE rotation_steps SET status = ?, finished_at = ?, error = ?, detail = ?, "
                "attempts = ? WHERE id = ?",
                (
                    str(status),
                    ts(utcnow()),
                    error,
                    to_json(detail) if detail is not None else None,
                    attempts,
                    step_id,
                ),
            )
            if cur.rowcount == 0:
                raise StoreError(f"no rotation step {step_id}")

    def set_run_status(self, run_id: str, status: str, **fields: Any) -> None:
        """Set a run's status and any of RUN_FIELDS. A terminal status sets finished_at."""
        if status not in {s.value for s in RunStatus}:
            raise StoreError(f"unknown run status {status!r}")
        unknown = set(fields) - set(RUN_FIELDS)
        if unknown:
            raise StoreError(
                f"unknown rotation run field(s): {', '.join(sorted(unknown))}",
                hint=f"fields: {', '.join(RUN_FIELDS)}",
            )
        now = utcnow()
        values: dict[str, Any] = {"status": str(status), "updated_at": ts(now)}
        if status in TERMINAL_RUN_STATUSES and "finished_at" not in fields:
            values["finished_at"] = ts(now)
        for key, value in fields.items():
            if isinstance(value, datetime):
                value = ts(value)
            elif key == "detail" and value is not None:
                value = to_json(value)
            elif key == "error" and value is not None:
                value = str(value)
            values[key] = value
        sets = [f"{k} = :{k}" for k in values]
        with self.transaction():
            try:
                cur = self._conn().execute(
                    f"UPDATE rotation_runs SET {', '.join(sets)} WHERE id = :run_id",
                    {**values, "run_id": run_id},
                )
            except sqlite3.IntegrityError:
                raise StoreError(
                    f"run {run_id} cannot become {status}: another run holds its claim"
                ) from None
            if cur.rowcount == 0:
                raise StoreError(f"no rotation run {run_id!r}")

    def get_rotation_run(self, run_id: str) -> dict | None:
        rows = self._read("SELECT * FROM rotation_runs WHERE id = ?", (run_id,))
        return run_dict(rows[0]) if rows else None

    def find_rotation_runs(self, prefix: str, limit: int = 10) -> list[dict]:
        """Runs whose id starts with ``prefix`` (a person types the first few characters)."""
        rows = self._read(
            "SELECT * FROM rotation_runs WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            (prefix, prefix + "\uffff", limit),
        )
        return [run_dict(r) for r in rows]

    def rotation_steps(self, run_id: str) -> list[dict]:
        rows = self._read("SELECT * FROM rotation_steps WHERE run_id = ? ORDER BY id", (run_id,))
        for row in rows:
            row["detail"] = from_json(row["detail"], None)
        return rows

    def last_steps(self, run_ids: list[str]) -> dict[str, dict]:
        """run id -> its newest journal row (step, status, started_at, error)."""
        out: dict[str, dict] = {}
        for batch in chunks(list(run_ids), 500):
            marks = ",".join("?" * len(batch))
            for row in self._read(
                "SELECT run_id, step, status, started_at, finished_at, error FROM rotation_steps "
                f"WHERE id IN (SELECT max(id) FROM rotation_steps WHERE run_id IN ({marks}) "
                "GROUP BY run_id)",
                batch,
            ):
                out[row["run_id"]] = row
        return out

    def rotation_runs(
        self,
        credential_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        *,
        subject: str | None = None,
    ) -> list[dict]:
        clauses, params = ["1"], []
        if credential_id is not None:
            clauses.append("credential_id = ?")
            params.append(credential_id)
        if subject is not None:
            clauses.append("subject = ?")
            params.append(subject)
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
        """Every run that still holds its claim, oldest first."""
        marks = ",".join("?" * len(ACTIVE_RUN_STATUSES))
        rows = self._read(
            f"SELECT * FROM rotation_runs WHERE status IN ({marks}) ORDER BY created_at, rowid",
            ACTIVE_RUN_STATUSES,
        )
        return [run_dict(r) for r in rows]

    def record_rotation(
        self, credential_id: str, rotated_at: datetime, version: str | None, fingerprint: str | None
    ) -> bool:
        """A rotation promoted a new value where this credential is read. ``rotation_recorded_at``
        lets a sync that listed the source before this moment keep these fields (the listing
        is older than the rotation). Returns whether the credential exists."""
        with self.transaction():
            cur = self._conn().execute(
                "UPDATE credentials SET rotated_at = ?, version = coalesce(?, version), "
                "fingerprint = coalesce(?, fingerprint), rotation_recorded_at = ?, "
                "status = CASE WHEN status = 'inactive' THEN status ELSE 'active' END "
                "WHERE id = ?",
                (ts(rotated_at), version, fingerprint, ts(utcnow()), credential_id),
            )
            return cur.rowcount > 0
