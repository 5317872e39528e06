"""Findings: what the rules found, with their history (first seen, last seen, status)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from console.model import Severity
from console.store.base import StoreBase
from console.store.rows import iter_rows, parse_ts, ts

if TYPE_CHECKING:
    from console.findings.rules import Draft


@dataclass
class FindingChanges:
    new: list[str] = field(default_factory=list)
    reopened: list[str] = field(default_factory=list)  # resolved, or acceptance lapsed
    resolved: list[str] = field(default_factory=list)
    open: int = 0
    accepted: int = 0


# most severe first (console.model.Severity's order): 0 is the most severe
_RANK = {s.value: i for i, s in enumerate(Severity)}


def effective_status(row: dict, now: datetime) -> str:
    """An acceptance that has lapsed is open again, even before the next refresh writes it."""
    if row["status"] == "accepted":
        until = parse_ts(row.get("accepted_until"))
        if until is not None and until <= now:
            return "open"
    return str(row["status"])


class FindingRows(StoreBase):
    def apply_findings(
        self, drafts: list[Draft], evaluated_rules: set[str], now: datetime
    ) -> FindingChanges:
        """Record this evaluation (one transaction): new findings open, ones seen again keep
        their status (a lapsed acceptance reopens, a resolved one reopens), and open or
        accepted findings of an evaluated rule that were not seen again are resolved."""
        changes = FindingChanges()
        stamp = ts(now)
        seen = {d.id: d for d in drafts}
        with self.transaction():
            conn = self._conn()
            existing = {r["id"]: r for r in iter_rows(conn.execute("SELECT * FROM findings"))}
            for fid, d in seen.items():
                row = existing.get(fid)
                if row is None:
                    conn.execute(
                        "INSERT INTO findings(id, rule, credential_id, agent, severity, title, "
                        "detail, status, first_seen_at, last_seen_at, file, line) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?)",
                        (fid, d.rule, d.credential_id, d.agent, d.severity, d.title,
                         d.evidence, stamp, stamp, d.file, d.line),
                    )
                    changes.new.append(fid)
                    continue
                status = effective_status(row, now)
                lapsed = row["status"] == "accepted" and status == "open"
                if row["status"] == "resolved" or lapsed:
                    status = "open"
                    changes.reopened.append(fid)
                conn.execute(
                    "UPDATE findings SET severity = ?, title = ?, detail = ?, last_seen_at = ?, "
                    "status = ?, resolved_at = CASE WHEN ? = 'open' THEN NULL ELSE resolved_at "
                    "END WHERE id = ?",
                    (d.severity, d.title, d.evidence, stamp, status, status, fid),
                )
            for fid, row in existing.items():
                if fid in seen or row["rule"] not in evaluated_rules:
                    continue
                if row["status"] in ("open", "accepted"):
                    conn.execute(
                        "UPDATE findings SET status = 'resolved', resolved_at = ? WHERE id = ?",
                        (stamp, fid),
                    )
                    changes.resolved.append(fid)
            self._mark_credentials(conn)
            for status, count in conn.execute(
                "SELECT status, count(*) FROM findings GROUP BY status"
            ):
                if status == "open":
                    changes.open = count
                elif status == "accepted":
                    changes.accepted = count
        return changes

    def _mark_credentials(self, conn: sqlite3.Connection) -> None:
        """Set ``credentials.finding`` to each credential's most severe open finding, writing
        only the rows whose mark changes (a refresh must not touch a million rows)."""
        want: dict[str, str] = {}
        for cid, sev in conn.execute(
            "SELECT credential_id, severity FROM findings "
            "WHERE status = 'open' AND credential_id IS NOT NULL"
        ):
            if cid not in want or _RANK.get(sev, 9) < _RANK.get(want[cid], 9):
                want[cid] = sev
        have = dict(conn.execute("SELECT id, finding FROM credentials WHERE finding IS NOT NULL"))
        changes = [(sev, cid) for cid, sev in want.items() if have.get(cid) != sev]
        changes += [(None, cid) for cid in have if cid not in want]
        conn.executemany("UPDATE credentials SET finding = ? WHERE id = ?", changes)

    def findings(self, *, include_resolved: bool = False) -> list[dict]:
        where = "" if include_resolved else "WHERE status != 'resolved'"
        return self._read(f"SELECT * FROM findings {where} ORDER BY rule, credential_id, id")

    def get_finding(self, finding_id: str) -> dict | None:
        rows = self._read("SELECT * FROM findings WHERE id = ?", (finding_id,))
        return rows[0] if rows else None

    def findings_by_prefix(self, prefix: str, limit: int = 10) -> list[dict]:
        return self._read(
            "SELECT * FROM findings WHERE id LIKE ? ESCAPE '\\' ORDER BY id LIMIT ?",
            (prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%", limit),
        )

    def accept_finding(
        self, finding_id: str, until: datetime, reason: str, by: str
    ) -> None:
        with self.transaction():
            self._conn().execute(
                "UPDATE findings SET status = 'accepted', accepted_until = ?, "
                "accepted_reason = ?, accepted_by = ? WHERE id = ?",
                (ts(until), reason, by, finding_id),
            )
            self._mark_credentials(self._conn())

    def open_findings_by_severity(self) -> dict[str, int]:
        return {
            r["severity"]: r["n"]
            for r in self._read(
                "SELECT severity, count(*) AS n FROM findings WHERE status = 'open' "
                "GROUP BY severity"
            )
        }
