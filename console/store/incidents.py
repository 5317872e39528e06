"""Incidents and their checklist tasks (console/incidents/ owns what they mean).

An incident is one row in ``incidents`` (its scope, template and since in ``detail`` JSON, a
snapshot taken at open that later syncs never touch) and one row per checklist task in
``incident_tasks``. Also the few reads an incident needs that no other part has: usage events
since a time, the credentials that hold the same value, and whether an evidence reference
exists. Rows hold references only (ids, names, notes a person typed), never a value.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from console.errors import StoreError
from console.store.base import StoreBase
from console.store.rows import chunks, from_json, to_json, ts

INCIDENT_TASK_FIELDS = ("status", "actor", "owner", "started_at", "done_at", "note", "evidence",
                        "rotation_run_id")


def _incident(row: dict) -> dict:
    row["detail"] = from_json(row["detail"], {}) or {}
    row["drill"] = bool(row["drill"])
    return row


def _task(row: dict) -> dict:
    row["evidence"] = from_json(row["evidence"], []) or []
    return row


class IncidentRows(StoreBase):
    def create_incident(
        self,
        incident_id: str,
        *,
        title: str,
        kind: str,
        severity: str | None,
        actor: str,
        opened_at: datetime,
        detail: dict[str, Any],
        tasks: list[dict[str, Any]],
    ) -> None:
        """The incident and its whole checklist (``todo``) in one transaction. An id already
        taken is a StoreError naming it (the caller draws another)."""
        with self.transaction():
            conn = self._conn()
            try:
                conn.execute(
                    "INSERT INTO incidents(id, title, kind, severity, status, actor, opened_at, "
                    "drill, detail) VALUES (?, ?, ?, ?, 'open', ?, ?, 0, ?)",
                    (incident_id, title, kind, severity, actor, ts(opened_at), to_json(detail)),
                )
            except sqlite3.IntegrityError:
                raise StoreError(f"incident id {incident_id} is taken") from None
            conn.executemany(
                "INSERT INTO incident_tasks(incident_id, phase, position, title, status, "
                "evidence) VALUES (?, ?, ?, ?, 'todo', '[]')",
                [(incident_id, t["phase"], t["position"], t["title"]) for t in tasks],
            )

    def get_incident(self, incident_id: str) -> dict | None:
        rows = self._read("SELECT * FROM incidents WHERE id = ?", (incident_id,))
        return _incident(rows[0]) if rows else None

    def find_incidents(self, prefix: str, limit: int = 10) -> list[dict]:
        """Incidents whose id starts with ``prefix`` (ids are upper case: ``INC-1A2B3C``)."""
        rows = self._read(
            "SELECT * FROM incidents WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            (prefix, prefix + "\uffff", limit),
        )
        return [_incident(r) for r in rows]

    def incidents(self, limit: int = 200) -> list[dict]:
        rows = self._read(
            "SELECT i.*, "
            "(SELECT count(*) FROM incident_tasks t WHERE t.incident_id = i.id) AS tasks, "
            "(SELECT count(*) FROM incident_tasks t WHERE t.incident_id = i.id "
            " AND t.status IN ('done', 'skipped')) AS tasks_finished "
            "FROM incidents i ORDER BY i.opened_at DESC, i.id LIMIT ?",
            (limit,),
        )
        return [_incident(r) for r in rows]

    def incident_tasks(self, incident_id: str) -> list[dict]:
        rows = self._read(
            "SELECT * FROM incident_tasks WHERE incident_id = ? ORDER BY position",
            (incident_id,),
        )
        return [_task(r) for r in rows]

    def update_incident_task(self, incident_id: str, position: int, **fields: Any) -> None:
        if "evidence" in fields:
            fields["evidence"] = fields["evidence"] or []
        self._update_fields(
            "incident_tasks", {"incident_id": incident_id, "position": position}, fields,
            allowed=INCIDENT_TASK_FIELDS, json_fields=("evidence",),
            what=f"task {position} in incident {incident_id}",
        )

    def close_incident(
        self, incident_id: str, closed_at: datetime, detail: dict[str, Any],
        skip: list[int], actor: str,
    ) -> None:
        """Close the incident; the tasks at ``skip`` positions become ``skipped`` (a forced
        close), in the same transaction."""
        with self.transaction():
            conn = self._conn()
            conn.executemany(
                "UPDATE incident_tasks SET status = 'skipped', done_at = ?, actor = ? "
                "WHERE incident_id = ? AND position = ? AND status IN ('todo', 'doing')",
                [(ts(closed_at), actor, incident_id, p) for p in skip],
            )
            cur = conn.execute(
                "UPDATE incidents SET status = 'closed', closed_at = ?, detail = ? "
                "WHERE id = ? AND status = 'open'",
                (ts(closed_at), to_json(detail), incident_id),
            )
            if cur.rowcount == 0:
                raise StoreError(f"incident {incident_id} is not open")

    # the reads an incident's scope and evidence need ---------------------------------------

    def incident_credentials(self, ids: list[str]) -> dict[str, dict]:
        """id -> the references a scope lists (never a value, never a fingerprint)."""
        out: dict[str, dict] = {}
        for batch in chunks(list(dict.fromkeys(ids)), 500):
            marks = ",".join("?" * len(batch))
            for row in self._read(
                "SELECT id, name, source, kind, owner, environment, sensitivity, status, "
                f"gone_at FROM credentials WHERE id IN ({marks})", batch,
            ):
                out[row["id"]] = row
        return out

    def usage_since(self, credential_ids: list[str], since: datetime,
                    limit: int = 1000) -> list[dict]:
        """Usage events of these credentials at or after ``since``, oldest first, with their
        row ids (what an evidence reference ``usage:ID`` names)."""
        out: list[dict] = []
        for batch in chunks(list(dict.fromkeys(credential_ids)), 500):
            marks = ",".join("?" * len(batch))
            out += self._read(
                "SELECT id, credential_id, at, identity, remote, operation, evidence "
                f"FROM usage_events WHERE credential_id IN ({marks}) AND at >= ? "
                "ORDER BY at, id LIMIT ?",
                [*batch, ts(since), limit],
            )
        out.sort(key=lambda r: (r["at"], r["id"]))
        return out[:limit]

    def same_value_elsewhere(self, credential_id: str) -> list[str]:
        """Other credentials still present that hold a value of this one: equal fingerprints,
        the row's or a per-key one kept in tags ``fingerprint:<key>``."""
        rows = self._read(
            "WITH mine(fp) AS ("
            "  SELECT fingerprint FROM credentials WHERE id = ?1 AND fingerprint IS NOT NULL "
            "  UNION SELECT t.value FROM credential_tags t JOIN credentials c ON c.rid = t.rid "
            "  WHERE c.id = ?1 AND t.key LIKE 'fingerprint:%' AND t.value IS NOT NULL) "
            "SELECT c.id FROM credentials c WHERE c.gone_at IS NULL AND c.id != ?1 "
            "AND c.fingerprint IN (SELECT fp FROM mine) "
            "UNION SELECT c.id FROM credential_tags t JOIN credentials c ON c.rid = t.rid "
            "WHERE c.gone_at IS NULL AND c.id != ?1 AND t.key LIKE 'fingerprint:%' "
            "AND t.value IN (SELECT fp FROM mine) ORDER BY 1",
            (credential_id,),
        )
        return [r["id"] for r in rows]

    def update_incident_detail(self, incident_id: str, detail: dict[str, Any]) -> None:
        """Replace an open incident's detail (what ``incident run`` found and did is kept
        there by task, references only)."""
        with self.transaction():
            cur = self._conn().execute(
                "UPDATE incidents SET detail = ? WHERE id = ? AND status = 'open'",
                (to_json(detail), incident_id),
            )
            if cur.rowcount == 0:
                raise StoreError(f"incident {incident_id} is not open")

    def credentials_owned_by(self, owner: str) -> list[str]:
        """Ids of present credentials whose owner is ``owner`` (any case)."""
        rows = self._read(
            "SELECT id FROM credentials WHERE gone_at IS NULL AND owner = ? COLLATE NOCASE "
            "ORDER BY id", (owner,),
        )
        return [r["id"] for r in rows]

    def known_iam_key_users(self, source: str) -> set[str]:
        """IAM users the store has ever seen an access key of (the ``user`` tag of its
        ``iam-key`` rows, gone ones too)."""
        rows = self._read(
            "SELECT DISTINCT t.value FROM credential_tags t JOIN credentials c ON c.rid = t.rid "
            "WHERE c.source = ? AND c.kind = 'iam-key' AND t.key = 'user'", (source,),
        )
        return {r["value"] for r in rows}

    def known_iam_keys(self, source: str) -> set[str]:
        rows = self._read(
            "SELECT native_id FROM credentials WHERE source = ? AND kind = 'iam-key'", (source,))
        return {r["native_id"] for r in rows}

    def issued_access_keys(self, since: datetime) -> set[str]:
        """Key ids keyshift's own rotations issued since ``since`` (the ``access_key_id`` of
        a done ``issue`` step's handle) whose run was not rolled back or abandoned: a key the
        hunt must not take for an attacker's."""
        rows = self._read(
            "SELECT s.detail FROM rotation_steps s JOIN rotation_runs r ON r.id = s.run_id "
            "WHERE s.step = 'issue' AND s.status = 'done' AND s.finished_at >= ? "
            "AND r.status IN ('running', 'awaiting-revoke', 'completed')", (ts(since),),
        )
        out: set[str] = set()
        for row in rows:
            handle = (from_json(row["detail"], None) or {}).get("handle") or {}
            if isinstance(handle, dict) and handle.get("access_key_id"):
                out.add(str(handle["access_key_id"]))
        return out

    def split_made(self, source: str) -> dict[str, set[str]]:
        """IAM users of ``source`` that ``keyshift incident split`` made (its ``incident.split``
        audit entries on ``<source>:iam-user:<name>``) -> the access key ids it issued them.
        The audit log is keyed, so an attacker holding only an AWS key cannot add to it; a
        key on such a user that no entry names is still someone else's."""
        prefix = f"{source}:iam-user:"
        rows = self._read(
            "SELECT target, detail FROM audit_log WHERE action = 'incident.split' "
            "AND substr(target, 1, ?) = ? ORDER BY seq", (len(prefix), prefix),
        )
        out: dict[str, set[str]] = {}
        for row in rows:
            detail = from_json(row["detail"], None) or {}
            if not isinstance(detail, dict):
                continue
            keys = out.setdefault(row["target"][len(prefix):], set())
            if detail.get("outcome") in ("key issued", "created") and detail.get("key_id"):
                keys.add(str(detail["key_id"]))
        return out

    def last_source_sync(self, source: str) -> str | None:
        """When the source was last listed in full (the newest ok sync of it)."""
        rows = self._read("SELECT max(at) AS at FROM sync_source_results "
                          "WHERE source = ? AND status = 'ok'", (source,))
        return rows[0]["at"] if rows else None

    def audit_seq_exists(self, seq: int) -> bool:
        return bool(self._read("SELECT 1 FROM audit_log WHERE seq = ?", (seq,)))

    def usage_event_exists(self, event_id: int) -> bool:
        return bool(self._read("SELECT 1 FROM usage_events WHERE id = ?", (event_id,)))
