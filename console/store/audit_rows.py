"""Audit rows (console/audit.py owns the chain; this only stores and reads rows)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from console.store.base import StoreBase
from console.store.rows import (
    iter_rows,
    ts,
)


class AuditRows(StoreBase):
    # audit (low level; console/audit.py owns the chain) ------------------------------------

    def append_audit(self, row: dict, meta: dict[str, str]) -> None:
        """One entry and the chain's anchor in ``meta`` (head hash, count), together."""
        with self.transaction():
            conn = self._conn()
            conn.execute(
                "INSERT INTO audit_log(seq, at, actor, action, target, detail, prev_hash, hash, "
                "key_id) VALUES (:seq, :at, :actor, :action, :target, :detail, :prev_hash, :hash, "
                ":key_id)",
                {"key_id": None, **row},
            )
            conn.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                list(meta.items()),
            )

    def audit_rows(self, start_seq: int = 1) -> Iterator[dict]:
        with self._guard("read"):
            cursor = self._conn().execute(
                "SELECT * FROM audit_log WHERE seq >= ? ORDER BY seq", (start_seq,)
            )
        yield from iter_rows(cursor)

    def audit_head(self) -> dict | None:
        rows = self._read("SELECT * FROM audit_log ORDER BY seq DESC LIMIT 1")
        return rows[0] if rows else None

    def audit_count(self) -> int:
        return int(self._scalar("SELECT count(*) FROM audit_log") or 0)

    def audit_seq_of_hash(self, hash_: str) -> int | None:
        """The seq of the entry whose stored hash is ``hash_`` (verify's reorder check)."""
        return self._scalar("SELECT seq FROM audit_log WHERE hash = ? LIMIT 1", (hash_,))

    def audit_tail(self, n: int) -> list[dict]:
        rows = self._read("SELECT * FROM audit_log ORDER BY seq DESC LIMIT ?", (n,))
        return list(reversed(rows))

    def audit_search(self, terms: list[Any], limit: int = 200, offset: int = 0) -> list[dict]:
        """Entries matching every term (console/audit_query.py), newest first."""
        clauses, params = ["1"], []
        for term in terms:
            if term.field in ("actor", "action"):
                sql = f"lower({term.field}) GLOB ?"
                params.append(term.value.replace("[", "[[]").replace("?", "[?]"))
            elif term.field == "target":
                sql = "instr(lower(target), ?) > 0"
                params.append(term.value)
            elif term.field == "since":
                sql = "at >= ?"
                params.append(ts(term.value))
            elif term.field == "until":
                sql = "at < ?"
                params.append(ts(term.value))
            else:
                sql = ("instr(lower(action || char(31) || target || char(31) || actor "
                       "|| char(31) || detail), ?) > 0")
                params.append(term.value)
            clauses.append(f"NOT ({sql})" if term.negate else f"({sql})")
        return self._read(
            f"SELECT * FROM audit_log WHERE {' AND '.join(clauses)} "
            "ORDER BY seq DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
