"""Playbook runs and their steps (console/playbooks/ owns what they mean).

A playbook run is one row in ``playbook_runs`` (its params and whether it was a dry run,
migration 5) and one row per selected credential or run in ``playbook_steps``, keyed by its
position in the playbook's order. A rotation a playbook started points back at it through
``rotation_runs.playbook_run_id``, written in the same transaction as the rotation's claim.
Rows hold references only (ids, one-line errors), never a value.
"""

from __future__ import annotations

from typing import Any

from console.errors import StoreError
from console.store.base import StoreBase
from console.store.rows import from_json, to_json, ts, utcnow

PLAYBOOK_STEP_FIELDS = (
    "credential_id",
    "action",
    "status",
    "rotation_run_id",
    "error",
    "started_at",
    "finished_at",
    "detail",
)


class PlaybookRows(StoreBase):
    def create_playbook_run(
        self,
        run_id: str,
        *,
        playbook: str,
        actor: str,
        params: dict[str, Any],
        dry_run: bool,
        steps: list[dict[str, Any]],
        detail: dict[str, Any] | None = None,
    ) -> None:
        """The run and every step it selected (``pending``), in one transaction: a crash
        leaves either nothing or the whole list of what it meant to do."""
        now = ts(utcnow())
        with self.transaction():
            conn = self._conn()
            conn.execute(
                "INSERT INTO playbook_runs(id, playbook, actor, status, started_at, detail, "
                "params, dry_run) VALUES (?, ?, ?, 'running', ?, ?, ?, ?)",
                (run_id, playbook, actor, now, to_json(detail or {}), to_json(params),
                 int(dry_run)),
            )
            conn.executemany(
                "INSERT INTO playbook_steps(run_id, position, credential_id, action, status, "
                "detail) VALUES (?, ?, ?, ?, 'pending', ?)",
                [
                    (run_id, s["position"], s.get("credential_id"), s["action"],
                     to_json(s["detail"]) if s.get("detail") is not None else None)
                    for s in steps
                ],
            )

    def update_playbook_step(self, run_id: str, position: int, **fields: Any) -> None:
        self._update_fields(
            "playbook_steps", {"run_id": run_id, "position": position}, fields,
            allowed=PLAYBOOK_STEP_FIELDS, json_fields=("detail",),
            what=f"step {position} in playbook run {run_id!r}",
        )

    def finish_playbook_run(self, run_id: str, status: str, detail: dict[str, Any]) -> None:
        with self.transaction():
            cur = self._conn().execute(
                "UPDATE playbook_runs SET status = ?, finished_at = ?, detail = ? WHERE id = ?",
                (status, ts(utcnow()), to_json(detail), run_id),
            )
            if cur.rowcount == 0:
                raise StoreError(f"no playbook run {run_id!r}")

    def link_rotation_to_playbook(self, rotation_run_id: str, playbook_run_id: str) -> None:
        """Mark a rotation run as started by a playbook run (called inside the claim's
        transaction, so the link exists from the rotation's first moment)."""
        with self.transaction():
            self._conn().execute(
                "UPDATE rotation_runs SET playbook_run_id = ? WHERE id = ?",
                (playbook_run_id, rotation_run_id),
            )

    def get_playbook_run(self, run_id: str) -> dict | None:
        rows = self._read("SELECT * FROM playbook_runs WHERE id = ?", (run_id,))
        return _run_dict(rows[0]) if rows else None

    def playbook_runs(self, playbook: str | None = None, limit: int = 50) -> list[dict]:
        clause, params = ("WHERE playbook = ?", [playbook]) if playbook else ("", [])
        rows = self._read(
            f"SELECT * FROM playbook_runs {clause} ORDER BY started_at DESC, rowid DESC LIMIT ?",
            [*params, limit],
        )
        return [_run_dict(r) for r in rows]

    def playbook_steps(self, run_id: str) -> list[dict]:
        rows = self._read(
            "SELECT * FROM playbook_steps WHERE run_id = ? ORDER BY position", (run_id,)
        )
        for row in rows:
            row["detail"] = from_json(row["detail"], None)
        return rows

    def rotations_of_playbook_run(self, run_id: str) -> list[str]:
        return [
            r["id"]
            for r in self._read(
                "SELECT id FROM rotation_runs WHERE playbook_run_id = ? ORDER BY created_at, id",
                (run_id,),
            )
        ]


def _run_dict(row: dict) -> dict:
    row["params"] = from_json(row.get("params"), {})
    row["detail"] = from_json(row.get("detail"), {})
    row["dry_run"] = bool(row.get("dry_run"))
    return row
