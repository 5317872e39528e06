"""Sync: agents and sources, and each source's listing applied in one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

from console.model import (
    Credential,
    CredentialStatus,
    Grant,
    ItemError,
    ReadPosition,
    UsageEvent,
)
from console.process import Owner
from console.store.base import StoreBase
from console.store.rows import (
    CONTENT_FIELDS,
    CRED_COLUMNS,
    INSERT_CREDENTIAL,
    chunks,
    cred_row,
    error_summary,
    from_json,
    iter_rows,
    keep_what_a_partial_listing_blanked,
    parse_ts,
    search_pairs_recount,
    to_json,
    ts,
    utcnow,
)


@dataclass
class SourceChanges:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    gone: int = 0
    stale: int = 0
    errors: int = 0
    new_ids: list[str] = field(default_factory=list)
    changed_ids: list[str] = field(default_factory=list)
    gone_ids: list[str] = field(default_factory=list)



class SyncRows(StoreBase):
    # agents and sources -------------------------------------------------------------------

    def upsert_agents(self, agents: Iterable[dict]) -> None:
        now = ts(utcnow())
        rows = [
            {
                "name": a["name"],
                "owner": a.get("owner"),
                "environment": a.get("environment"),
                "description": a.get("description") or "",
                "identities": to_json(a.get("identities") or []),
                "updated_at": now,
            }
            for a in agents
        ]
        if rows:
            with self.transaction():
                self.db["agents"].upsert_all(rows, pk="name")

    def upsert_sources(self, sources: Iterable[dict]) -> None:
        now = ts(utcnow())
        rows = [
            {
                "name": s["name"],
                "type": s["type"],
                "environment": s.get("environment"),
                # the source's config: references only (invariant 3), never a value
                "config": to_json(s.get("config") or {}),
                "updated_at": now,
            }
            for s in sources
        ]
        if rows:
            with self.transaction():
                self.db["sources"].upsert_all(rows, pk="name")

    def agents(self) -> list[dict]:
        rows = self._read("SELECT * FROM agents ORDER BY name")
        for row in rows:
            row["identities"] = from_json(row["identities"], [])
        return rows

    def sources(self) -> list[dict]:
        rows = self._read("SELECT * FROM sources ORDER BY name")
        for row in rows:
            row["config"] = from_json(row["config"], {})
        return rows

    # sync ---------------------------------------------------------------------------------

    def begin_sync(self, sources: list[str], actor: str, owner: Owner | None = None) -> int:
        with self.transaction():
            cur = self._conn().execute(
                "INSERT INTO sync_runs(started_at, actor, sources, status, owner_host, owner_pid, "
                "owner_started) VALUES (?, ?, ?, 'running', ?, ?, ?)",
                (
                    ts(utcnow()),
                    actor,
                    to_json(list(sources)),
                    owner.host if owner else None,
                    owner.pid if owner else None,
                    owner.started if owner else None,
                ),
            )
            return int(cur.lastrowid or 0)

    def running_syncs(self) -> list[dict]:
        """Syncs still marked running (a live one elsewhere, or one a crash left behind)."""
        return self._read("SELECT * FROM sync_runs WHERE status = 'running' ORDER BY id")

    def apply_source(
        self,
        sync_id: int,
        source: str,
        credentials: list[Credential],
        grants: list[Grant],
        usage: list[UsageEvent],
        errors: list[ItemError],
        complete: bool,
        positions: list[ReadPosition] | None = None,
    ) -> SourceChanges:
        """Write one source's listing (one transaction). See the module docstring."""
        now = ts(utcnow())
        changes = SourceChanges(errors=len(errors))
        incoming: dict[str, dict] = {}
        for cred in credentials:
            incoming[cred.id] = cred_row(cred)
        errors_text = error_summary(errors)
        with self.transaction():
            conn = self._conn()
            existing = {
                row["id"]: row
                for row in iter_rows(
                    conn.execute("SELECT * FROM credentials WHERE source = ?", (source,))
                )
            }
            missing = [i for i in incoming if i not in existing]
            for chunk in chunks(missing):
                marks = ",".join("?" * len(chunk))
                for row in iter_rows(
                    conn.execute(f"SELECT * FROM credentials WHERE id IN ({marks})", list(chunk))
                ):
                    existing[row["id"]] = row
            new_rows: list[dict] = []
            changed_rows: list[dict] = []
            seen_ids: list[str] = []
            listed_at = conn.execute(
                "SELECT started_at FROM sync_runs WHERE id = ?", (sync_id,)
            ).fetchone()
            listed_at = listed_at[0] if listed_at else now
            for cid, row in incoming.items():
                old = existing.get(cid)
                if old is None:
                    new_rows.append(row)
                    changes.new_ids.append(cid)
                    continue
                if old["rotation_recorded_at"] and old["rotation_recorded_at"] > listed_at:
                    # a rotation recorded a new value after this listing was taken: the
                    # listing's version and fingerprint are older than what the store knows
                    for name in ("rotated_at", "version", "fingerprint"):
                        row[name] = old[name]
                # usage evidence only accumulates: a source that no longer reports a last use
                # does not blank the one the store knew
                if old["last_used_at"] and (
                    row["last_used_at"] is None or row["last_used_at"] < old["last_used_at"]
                ):
                    row["last_used_at"] = old["last_used_at"]
                    row["last_used_evidence"] = old["last_used_evidence"]
                if not complete:
                    keep_what_a_partial_listing_blanked(row, old)
                if any(row[f] != old[f] for f in CONTENT_FIELDS):
                    changed_rows.append(row)
                    changes.changed_ids.append(cid)
                else:
                    seen_ids.append(cid)
            changes.new, changes.changed, changes.unchanged = (
                len(new_rows),
                len(changed_rows),
                len(seen_ids),
            )
            self._insert_credential_rows(conn, new_rows, now, sync_id)
            content = ", ".join(f"{c} = :{c}" for c in (*CONTENT_FIELDS, "tags_text"))
            conn.executemany(
                f"UPDATE credentials SET {content}, last_seen_at = :now, sync_id = :sync_id, "
                "gone_at = NULL, stale_since = NULL, stale_error = NULL WHERE id = :id",
                [{**r, "now": now, "sync_id": sync_id} for r in changed_rows],
            )
            conn.executemany(
                "UPDATE credentials SET last_seen_at = ?, sync_id = ?, gone_at = NULL, "
                "stale_since = NULL, stale_error = NULL WHERE id = ?",
                [(now, sync_id, cid) for cid in seen_ids],
            )
            unseen = [
                cid
                for cid, row in existing.items()
                if cid not in incoming and row["source"] == source and row["gone_at"] is None
            ]
            if complete:
                conn.executemany(
                    "UPDATE credentials SET gone_at = ?, status = ?, stale_since = NULL, "
                    "stale_error = NULL WHERE id = ?",
                    [(now, CredentialStatus.gone.value, cid) for cid in unseen],
                )
                changes.gone_ids = unseen
                changes.gone = len(unseen)
            else:
                conn.executemany(
                    "UPDATE credentials SET stale_since = coalesce(stale_since, ?), "
                    "stale_error = ? WHERE id = ?",
                    [(now, errors_text, cid) for cid in unseen],
                )
                changes.stale = len(unseen)
            self._replace_grants(conn, source, grants, set(incoming), complete, now, sync_id)
            self._append_usage(conn, source, usage, sync_id)
            # the read positions move only with the usage they produced: a failed write
            # leaves both where they were, so the next sync reads those lines again
            conn.executemany(
                "INSERT INTO read_positions(source, log, inode, offset, head, malformed, "
                "covers_since, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(source, log) DO UPDATE "
                "SET inode = excluded.inode, offset = excluded.offset, head = excluded.head, "
                "malformed = excluded.malformed, covers_since = excluded.covers_since, "
                "updated_at = excluded.updated_at",
                [
                    (source, p.log, p.inode, p.offset, p.head, p.malformed, ts(p.covers_since),
                     now)
                    for p in positions or []
                ],
            )
            status = "ok" if complete and not errors else "partial"
            self._record_source_result(
                conn, sync_id, source, status, changes, errors_text, errors, now
            )
        return changes

    def read_positions(self, source: str) -> dict[str, ReadPosition]:
        """Where ``source`` last read each of its evidence logs, by log path."""
        return {
            r["log"]: ReadPosition(
                log=r["log"],
                inode=r["inode"],
                offset=r["offset"],
                head=r["head"],
                malformed=r["malformed"],
                covers_since=parse_ts(r["covers_since"]),
            )
            for r in self._read("SELECT * FROM read_positions WHERE source = ?", (source,))
        }

    def _insert_credential_rows(
        self, conn: sqlite3.Connection, rows: list[dict], now: str | None, sync_id: int | None
    ) -> None:
        if not rows:
            return
        defaults = {"agents": None, "gone_at": None, "stale_since": None, "stale_error": None}
        for row in rows:
            for key, value in defaults.items():
                row.setdefault(key, value)
            row["first_seen_at"] = row.get("first_seen_at") or now
            row["last_seen_at"] = row.get("last_seen_at") or now
            row["sync_id"] = sync_id
        conn.executemany(INSERT_CREDENTIAL, [tuple(r[c] for c in CRED_COLUMNS) for r in rows])

    def _record_source_result(
        self,
        conn: sqlite3.Connection,
        sync_id: int,
        source: str,
        status: str,
        changes: SourceChanges,
        error: str | None,
        errors: list[ItemError],
        now: str | None,
    ) -> None:
        conn.execute(
            "INSERT INTO sync_source_results(sync_id, source, status, new, changed, unchanged, "
            "gone, stale, errors, error, detail, at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(sync_id, source) DO UPDATE SET status = excluded.status, "
            "new = excluded.new, changed = excluded.changed, unchanged = excluded.unchanged, "
            "gone = excluded.gone, stale = excluded.stale, errors = excluded.errors, "
            "error = excluded.error, detail = excluded.detail, at = excluded.at",
            (
                sync_id,
                source,
                status,
                changes.new,
                changes.changed,
                changes.unchanged,
                changes.gone,
                changes.stale,
                changes.errors,
                error,
                to_json([e.model_dump() for e in errors]) if errors else None,
                now,
            ),
        )

    def mark_source_failed(self, sync_id: int, source: str, error: str) -> int:
        """The whole source failed: keep every row as it was, marked stale with the error."""
        now = ts(utcnow())
        with self.transaction():
            conn = self._conn()
            cur = conn.execute(
                "UPDATE credentials SET stale_since = coalesce(stale_since, ?), stale_error = ? "
                "WHERE source = ? AND gone_at IS NULL",
                (now, error, source),
            )
            count = cur.rowcount
            self._record_source_result(
                conn,
                sync_id,
                source,
                "failed",
                SourceChanges(stale=count, errors=1),
                error,
                [],
                now,
            )
        return count

    def finish_sync(self, sync_id: int, status: str, summary: dict) -> None:
        with self.transaction():
            self._conn().execute(
                "UPDATE sync_runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?",
                (ts(utcnow()), status, to_json(summary), sync_id),
            )
            # the triggers only take pairs away: what the sync's changes made universal again
            # (or a store filled from empty) is counted here, one scan
            search_pairs_recount(self._conn())

    def _sync_dict(self, row: dict) -> dict:
        row["sources"] = from_json(row["sources"], [])
        row["summary"] = from_json(row["summary"], None)
        results = self._read(
            "SELECT source, status, new, changed, unchanged, gone, stale, errors, error, detail, "
            "at FROM sync_source_results WHERE sync_id = ? ORDER BY id",
            (row["id"],),
        )
        for r in results:
            r["detail"] = from_json(r["detail"], [])
        row["results"] = results
        return row

    def source_states(self) -> dict[str, dict]:
        """source -> its newest sync result (status, counts, error, at) and how many of its
        credentials are present, stale and gone now."""
        out: dict[str, dict] = {}
        for row in self._read(
            "SELECT r.* FROM sync_source_results r WHERE r.id IN "
            "(SELECT max(id) FROM sync_source_results GROUP BY source)"
        ):
            row["detail"] = from_json(row["detail"], [])
            out[row["source"]] = row
        for row in self._read(
            "SELECT source, sum(gone_at IS NULL) AS present, "
            "sum(gone_at IS NULL AND stale_since IS NOT NULL) AS stale_now, "
            "sum(gone_at IS NOT NULL) AS gone_now FROM credentials GROUP BY source"
        ):
            out.setdefault(row["source"], {"source": row["source"]}).update(row)
        return out

    def last_sync(self) -> dict | None:
        rows = self._read("SELECT * FROM sync_runs ORDER BY id DESC LIMIT 1")
        return self._sync_dict(rows[0]) if rows else None

    def sync_runs(self, limit: int = 20) -> list[dict]:
        rows = self._read("SELECT * FROM sync_runs ORDER BY id DESC LIMIT ?", (limit,))
        return [self._sync_dict(r) for r in rows]

