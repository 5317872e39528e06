"""The schedule's rows: what each job last did, who runs it now, and which credentials the
schedule has stopped retrying.

``schedule_jobs`` holds one row per job (``sync``, ``rotate-due:high``, ...). A process runs
a job only after claiming its row by compare-and-swap on what it read (the last start and the
owner), so of two schedulers that both see a job due, exactly one runs it; the other sees the
new last start and computes the next time from it. A claim whose owner died is taken over
the same way (the caller checks the owner with ``console.process.alive``).

Rows named ``hold:<credential id>`` count one credential's failed scheduled rotations in a
row (``failures_in_row``); the schedule stops retrying a credential at the inventory's
``failure_loop``. A later successful run of that credential (from any process: the
schedule, ``keyshift rotate``, ``runs resume``), or ``keyshift schedule release``, ends it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from console.model import RunStatus
from console.process import Owner
from console.store.base import StoreBase
from console.store.rows import from_json, to_json, ts, utcnow

HOLD_PREFIX = "hold:"
_SUCCESS = (RunStatus.completed.value, RunStatus.awaiting_revoke.value)


def _job_dict(row: dict) -> dict:
    row["detail"] = from_json(row.get("detail"), {})
    return row


class ScheduleRows(StoreBase):
    def schedule_job(self, job: str) -> dict | None:
        rows = self._read("SELECT * FROM schedule_jobs WHERE job = ?", (job,))
        return _job_dict(rows[0]) if rows else None

    def schedule_jobs(self) -> list[dict]:
        """Every job's row (holds excluded), by name."""
        return [
            _job_dict(r)
            for r in self._read(
                "SELECT * FROM schedule_jobs WHERE job NOT LIKE ? ORDER BY job",
                (HOLD_PREFIX + "%",),
            )
        ]

    def claim_schedule_job(
        self, job: str, seen: dict | None, owner: Owner, now: datetime
    ) -> bool:
        """Start ``job`` as ``owner`` if its row is still as ``seen`` (None: no row yet).
        False when another process started or holds it meanwhile."""
        stamp = ts(now)
        with self.transaction():
            conn = self._conn()
            if seen is None:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO schedule_jobs(job, last_started, owner_host, "
                    "owner_pid, owner_started, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (job, stamp, owner.host, owner.pid, owner.started, stamp),
                )
                return cur.rowcount == 1
            cur = conn.execute(
                "UPDATE schedule_jobs SET last_started = ?, owner_host = ?, owner_pid = ?, "
                "owner_started = ?, updated_at = ? WHERE job = ? AND last_started IS ? "
                "AND owner_host IS ? AND owner_pid IS ? AND owner_started IS ?",
                (
                    stamp,
                    owner.host,
                    owner.pid,
                    owner.started,
                    stamp,
                    job,
                    seen.get("last_started"),
                    seen.get("owner_host"),
                    seen.get("owner_pid"),
                    seen.get("owner_started"),
                ),
            )
            return cur.rowcount == 1

    def finish_schedule_job(
        self,
        job: str,
        owner: Owner,
        *,
        status: str,
        error: str | None,
        detail: dict[str, Any],
        now: datetime,
        next_due: datetime | None = None,
    ) -> bool:
        """Record how the run ended and release the claim (only ``owner``'s own claim)."""
        stamp = ts(now)
        with self.transaction():
            cur = self._conn().execute(
                "UPDATE schedule_jobs SET last_finished = ?, last_status = ?, last_error = ?, "
                "failures_in_row = CASE WHEN ? = 'failed' THEN failures_in_row + 1 ELSE 0 END, "
                "detail = ?, next_due = ?, owner_host = NULL, owner_pid = NULL, "
                "owner_started = NULL, updated_at = ? WHERE job = ? AND owner_host IS ? "
                "AND owner_pid IS ? AND owner_started IS ?",
                (
                    stamp,
                    status,
                    error,
                    status,
                    to_json(detail),
                    ts(next_due),
                    stamp,
                    job,
                    owner.host,
                    owner.pid,
                    owner.started,
                ),
            )
            return cur.rowcount == 1

    def release_schedule_job(self, job: str, seen: dict, *, note: str, now: datetime) -> bool:
        """A person ends the claim ``seen`` (the owner they were shown) on ``job``: its owner
        is on another host (nothing here can tell whether it lives) or gone without
        finishing. ``last_status`` 'released' makes the job due again at once, like an
        interrupted one. False when the row no longer has that owner (it finished, or another
        process took it over meanwhile)."""
        stamp = ts(now)
        with self.transaction():
            cur = self._conn().execute(
                "UPDATE schedule_jobs SET last_status = 'released', last_error = ?, "
                "owner_host = NULL, owner_pid = NULL, owner_started = NULL, updated_at = ? "
                "WHERE job = ? AND owner_pid IS NOT NULL AND owner_host IS ? "
                "AND owner_pid IS ? AND owner_started IS ?",
                (
                    note,
                    stamp,
                    job,
                    seen.get("owner_host"),
                    seen.get("owner_pid"),
                    seen.get("owner_started"),
                ),
            )
            return cur.rowcount == 1

    def set_schedule_next_due(self, job: str, next_due: datetime) -> None:
        """What the running scheduler plans for ``job`` (shown by ``schedule status``)."""
        with self.transaction():
            self._conn().execute(
                "UPDATE schedule_jobs SET next_due = ? WHERE job = ?", (ts(next_due), job)
            )

    # holds: credentials the schedule stopped retrying --------------------------------------

    def record_scheduled_rotation(
        self, credential_id: str, *, ok: bool, error: str | None, run_id: str | None,
        now: datetime,
    ) -> int:
        """Count one scheduled rotation of ``credential_id``: a failure adds one to its
        failures in a row, a success clears them. Returns the count after."""
        job, stamp = HOLD_PREFIX + credential_id, ts(now)
        with self.transaction():
            conn = self._conn()
            conn.execute(
                "INSERT OR IGNORE INTO schedule_jobs(job, updated_at) VALUES (?, ?)",
                (job, stamp),
            )
            marks = ",".join("?" * len(_SUCCESS))
            # a success from elsewhere since the last failure (keyshift rotate, runs resume)
            # ended the streak: this failure is the first of a new one
            conn.execute(
                "UPDATE schedule_jobs SET last_finished = ?, last_status = ?, last_error = ?, "
                "failures_in_row = CASE WHEN ? THEN 0 "
                "WHEN last_finished IS NOT NULL AND EXISTS (SELECT 1 FROM rotation_runs r "
                f"WHERE r.credential_id = ? AND r.status IN ({marks}) "
                "AND r.created_at > schedule_jobs.last_finished AND r.id IS NOT ?) THEN 1 "
                "ELSE failures_in_row + 1 END, detail = ?, updated_at = ? WHERE job = ?",
                (
                    stamp,
                    "ok" if ok else "failed",
                    error,
                    int(ok),
                    credential_id,
                    *_SUCCESS,
                    run_id,
                    to_json({"run_id": run_id}),
                    stamp,
                    job,
                ),
            )
            row = conn.execute(
                "SELECT failures_in_row FROM schedule_jobs WHERE job = ?", (job,)
            ).fetchone()
            return int(row[0])

    def credential_holds(self, failures: int) -> list[dict]:
        """Credentials with at least ``failures`` scheduled failures in a row and no
        successful run started since the last of them (``credential_id`` added to each row)."""
        marks = ",".join("?" * len(_SUCCESS))
        rows = self._read(
            "SELECT h.* FROM schedule_jobs h WHERE h.job LIKE ? AND h.failures_in_row >= ? "
            "AND NOT EXISTS (SELECT 1 FROM rotation_runs r "
            "WHERE r.credential_id = substr(h.job, ?) "
            f"AND r.status IN ({marks}) AND r.created_at > h.last_finished) ORDER BY h.job",
            (HOLD_PREFIX + "%", failures, len(HOLD_PREFIX) + 1, *_SUCCESS),
        )
        for row in rows:
            _job_dict(row)
            row["credential_id"] = row["job"][len(HOLD_PREFIX):]
        return rows

    def release_credential_hold(self, credential_id: str) -> bool:
        """A person looked: the schedule retries ``credential_id`` from its next run."""
        with self.transaction():
            cur = self._conn().execute(
                "UPDATE schedule_jobs SET failures_in_row = 0, last_status = 'released', "
                "updated_at = ? WHERE job = ? AND failures_in_row > 0",
                (ts(utcnow()), HOLD_PREFIX + credential_id),
            )
            return cur.rowcount == 1
