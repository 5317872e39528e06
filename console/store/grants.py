"""Grants (agent -> credential) and usage events."""

from __future__ import annotations

import sqlite3

from console.model import Grant, UsageEvent
from console.query import (
    agents_text,
)
from console.store.base import StoreBase
from console.store.rows import (
    chunks,
    row_to_grant,
    to_json,
    ts,
)


class GrantRows(StoreBase):
    def grants_for_credential(self, credential_id: str) -> list[Grant]:
        return [
            row_to_grant(r)
            for r in self._read(
                "SELECT * FROM grants WHERE credential_id = ? ORDER BY agent, id", (credential_id,)
            )
        ]

    def grants_for_agent(self, name: str) -> list[Grant]:
        return [
            row_to_grant(r)
            for r in self._read(
                "SELECT * FROM grants WHERE agent = ? COLLATE NOCASE ORDER BY credential_id, id",
                (name,),
            )
        ]

    def agent_reach(self) -> list[dict]:
        """Per agent holding any grant: how many credentials still present it can reach, and
        how many of those it has been seen using."""
        return self._read(
            "SELECT g.agent AS agent, count(DISTINCT g.credential_id) AS reach, "
            "count(DISTINCT CASE WHEN g.used THEN g.credential_id END) AS used "
            "FROM grants g JOIN credentials c ON c.id = g.credential_id AND c.gone_at IS NULL "
            "GROUP BY g.agent ORDER BY g.agent COLLATE NOCASE"
        )

    def credential_labels(self, ids: list[str]) -> dict[str, dict]:
        """id -> {name, status, gone} for the credentials of ``ids`` the store knows."""
        out: dict[str, dict] = {}
        for batch in chunks(list(dict.fromkeys(ids)), 500):
            marks = ",".join("?" * len(batch))
            for row in self._read(
                f"SELECT id, name, status, gone_at FROM credentials WHERE id IN ({marks})", batch
            ):
                out[row["id"]] = {
                    "name": row["name"],
                    "status": row["status"],
                    "gone": row["gone_at"] is not None,
                }
        return out

    def all_grants(self) -> list[Grant]:
        return [row_to_grant(r) for r in self._read("SELECT * FROM grants ORDER BY id")]

    def usage_for_credential(self, credential_id: str, limit: int = 100) -> list[UsageEvent]:
        rows = self._read(
            "SELECT credential_id, at, identity, remote, operation, evidence FROM usage_events "
            "WHERE credential_id = ? ORDER BY at DESC, id DESC LIMIT ?",
            (credential_id, limit),
        )
        return [UsageEvent.model_validate(r) for r in rows]

    def latest_use_by_identity(self) -> list[dict]:
        """Per credential and identity that used it: the latest use and its evidence."""
        return self._read(
            "SELECT credential_id, identity, max(at) AS at, evidence FROM usage_events "
            "WHERE identity IS NOT NULL GROUP BY credential_id, identity, evidence"
        )

    def _replace_grants(
        self,
        conn: sqlite3.Connection,
        source: str,
        grants: list[Grant],
        seen: set[str],
        complete: bool,
        now: str | None,
        sync_id: int,
    ) -> None:
        affected = {g.credential_id for g in grants}
        # use is evidence and only accumulates: a collector reports the use it read this time
        # (an audit log read on from where it stopped), so a grant once used stays used
        used_before = {
            (agent, cid)
            for agent, cid in conn.execute(
                "SELECT agent, credential_id FROM grants WHERE source = ? AND used", (source,)
            )
        }
        if complete:
            old = {
                r[0]
                for r in conn.execute(
                    "SELECT credential_id FROM grants WHERE source = ?", (source,)
                )
            }
            conn.execute("DELETE FROM grants WHERE source = ?", (source,))
        else:
            # A partial listing may have failed to read some agent's role or policy, so the
            # absence of a grant proves nothing: it adds and updates grants, never removes one
            # (invariant 6). The next complete listing settles removals.
            old = set()
            conn.executemany(
                "DELETE FROM grants WHERE source = ? AND agent = ? AND credential_id = ?",
                [(source, g.agent, g.credential_id) for g in grants],
            )
        conn.executemany(
            "INSERT INTO grants(source, agent, credential_id, capabilities, chain, used, "
            "sync_id, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    source,
                    g.agent,
                    g.credential_id,
                    to_json(g.capabilities),
                    to_json(g.chain),
                    int(g.used or (g.agent, g.credential_id) in used_before),
                    sync_id,
                    now,
                )
                for g in grants
            ],
        )
        self._refresh_agents(conn, sorted(affected | old))

    def _refresh_agents(self, conn: sqlite3.Connection, credential_ids: list[str]) -> None:
        """Recompute the denormalised ``agents`` column (search and sort) from grants."""
        for chunk in chunks(credential_ids):
            marks = ",".join("?" * len(chunk))
            by_cred: dict[str, list[str]] = {cid: [] for cid in chunk}
            for cid, agent in conn.execute(
                f"SELECT credential_id, agent FROM grants WHERE credential_id IN ({marks})",
                list(chunk),
            ):
                by_cred[cid].append(agent)
            # only rows whose value differs are written, so the FTS trigger fires rarely
            conn.executemany(
                "UPDATE credentials SET agents = ?1 WHERE id = ?2 AND agents IS NOT ?1",
                [(agents_text(a) or None, cid) for cid, a in by_cred.items()],
            )

    def _append_usage(
        self, conn: sqlite3.Connection, source: str, usage: list[UsageEvent], sync_id: int
    ) -> None:
        if not usage:
            return
        conn.executemany(
            "INSERT OR IGNORE INTO usage_events(credential_id, at, identity, remote, operation, "
            "evidence, source, sync_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    u.credential_id,
                    ts(u.at),
                    u.identity,
                    u.remote,
                    u.operation,
                    u.evidence,
                    source,
                    sync_id,
                )
                for u in usage
            ],
        )
        latest: dict[str, UsageEvent] = {}
        for u in usage:
            if u.credential_id not in latest or ts(u.at) > ts(latest[u.credential_id].at):  # type: ignore[operator]
                latest[u.credential_id] = u
        conn.executemany(
            "UPDATE credentials SET last_used_at = ?1, last_used_evidence = ?2 "
            "WHERE id = ?3 AND (last_used_at IS NULL OR last_used_at < ?1)",
            [(ts(u.at), u.evidence, cid) for cid, u in latest.items()],
        )

