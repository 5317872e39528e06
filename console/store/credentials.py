"""Credentials: reads, counts, pages (walk or drive), bulk insert."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from console.errors import StoreError
from console.model import Credential
from console.query import (
    Query,
    agents_text,
    sort_column,
)
from console.store.base import StoreBase
from console.store.plan import NAME_INDEX, Plan, PlanBuilder, no_use_sql
from console.store.rows import (
    BOOKKEEPING_FIELDS,
    BULK_CACHE_KIB,
    FTS_FEW,
    PROBE_MIN,
    PROBE_ROWS,
    SEARCH_CHARS,
    WALK_BUDGET_MS,
    WALK_TICK_STEPS,
    cred_row,
    iter_rows,
    parse_ts,
    row_to_cred,
    search_chars_column,
    search_chars_recount,
    search_pairs_recount,
    ts,
    utcnow,
)
from console.store.schema import TOKEN_USE_FROM


class CredentialRows(StoreBase):
    # credentials: reads -------------------------------------------------------------------

    def evidence_coverage(self) -> dict[str, datetime]:
        """Source -> since when its use evidence runs without a gap (the latest start of its
        logs: a source is covered only where every log of it is)."""
        return self._times_by_source(
            "SELECT source, max(covers_since) AS at FROM read_positions "
            "WHERE covers_since IS NOT NULL GROUP BY source"
        )

    def _no_use(self) -> str:
        """The SQL of ``no_use_evidence`` under the evidence's coverage now (``no_use_sql``)."""
        return no_use_sql(self.evidence_coverage(), parse_ts(self.get_meta(TOKEN_USE_FROM)))

    def _plan(
        self, query: Query | None, mode: str, no_use: str | None = None, **kwargs: Any
    ) -> Plan:
        """``no_use``: the expression the caller already read (one read of the coverage per
        call, so its filter and its rows' ``no_use_evidence`` cannot disagree)."""
        no_use = no_use if no_use is not None else self._no_use()
        return PlanBuilder(query, mode, no_use=no_use, **kwargs).build()

    def _select(self, no_use: str | None = None) -> str:
        """A credential row's columns: the table's and the computed ``no_use_evidence``."""
        return f"c.*, {no_use if no_use is not None else self._no_use()} AS no_use_evidence"


    def get_credential(self, credential_id: str) -> Credential | None:
        rows = self._read(
            f"SELECT {self._select()} FROM credentials c WHERE id = ?", (credential_id,)
        )
        if not rows:
            return None
        cred = row_to_cred(rows[0])
        cred.agents = sorted(
            {
                g["agent"]
                for g in self._read(
                    "SELECT agent FROM grants WHERE credential_id = ?", (credential_id,)
                )
            }
        )
        return cred

    def credentials_by_reference(self, ref: str, limit: int = 11) -> list[Credential]:
        """Credentials a person may mean by ``ref``: the id itself; else those named ``ref``;
        else those whose id ends in ``ref`` after a ``:`` or ``/`` (a path's tail, an access key
        id, a secret's name without its ARN's random suffix)."""
        exact = self._read(f"SELECT {self._select()} FROM credentials c WHERE id = ?", (ref,))
        if exact:
            return [row_to_cred(exact[0])]
        named = self._read(
            f"SELECT {self._select()} FROM credentials c WHERE name = ? "
            "ORDER BY gone_at IS NOT NULL, id LIMIT ?",
            (ref, limit),
        )
        if named:
            return [row_to_cred(r) for r in named]
        tail = self._read(
            f"SELECT {self._select()} FROM credentials c WHERE length(id) > length(?1) "
            "AND substr(id, length(id) - length(?1) + 1) = ?1 "
            "AND substr(id, length(id) - length(?1), 1) IN (':', '/') "
            "ORDER BY gone_at IS NOT NULL, id LIMIT ?2",
            (ref, limit),
        )
        if tail:
            return [row_to_cred(r) for r in tail]
        # a Secrets Manager ARN ends in "-" and six random characters nobody types
        arn = self._read(
            f"SELECT {self._select()} FROM credentials c WHERE kind = 'secretsmanager' "
            "AND (substr(id, 1, length(id) - 7) LIKE '%:' || ?1 ESCAPE '\\' "
            "OR substr(id, 1, length(id) - 7) LIKE '%/' || ?1 ESCAPE '\\') "
            "ORDER BY gone_at IS NOT NULL, id LIMIT ?2",
            (ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"), limit),
        )
        return [row_to_cred(r) for r in arn]

    def names_like(self, text: str, limit: int = 3) -> list[str]:
        """Names containing ``text`` (ignoring ASCII case), for a "did you mean" hint."""
        rows = self._read(
            "SELECT name FROM credentials WHERE instr(lower(name), lower(?)) > 0 LIMIT ?",
            (text, limit),
        )
        return [r["name"] for r in rows]

    def environments(self) -> list[str]:
        """The environments present credentials carry, each once (what the console offers as
        a playbook's environment)."""
        rows = self._read(
            "SELECT DISTINCT environment FROM credentials WHERE gone_at IS NULL "
            "AND environment IS NOT NULL AND environment != '' "
            "ORDER BY environment COLLATE NOCASE"
        )
        return [r["environment"] for r in rows]

    def find_credential_id(self, source: str, kind: str, name: str) -> str | None:
        """The id of the credential of ``source`` and ``kind`` named ``name`` (or whose native
        id is ``name``); None when there is none. Present ones first."""
        return self._scalar(
            "SELECT id FROM credentials WHERE source = ? AND kind = ? AND (name = ? OR "
            "native_id = ?) ORDER BY gone_at IS NOT NULL, id LIMIT 1",
            (source, kind, name, name),
        )

    def count_credentials(
        self, query: Query | None = None, *, cap: int | None = None, plan: str = "auto"
    ) -> int:
        """How many credentials match. With ``cap`` the count stops at ``cap`` (the TUI shows
        "10,000+"): an exact count of a broad substring match over 1M rows is a full scan
        (seconds); a capped one stops as soon as it has found ``cap``. ``plan`` forces
        "walk" or "drive" (tests check both give the same answer)."""
        no_use = self._no_use()
        drive = self._plan(query, "drive", no_use)
        if plan == "auto" and drive.fts_only:
            # every term answered exactly by the trigram index: count its rows, no table row
            # read (a capped count of a common word: 2 ms against 40-60 ms walking at 1M)
            limit = "" if cap is None else f" LIMIT {int(cap)}"
            return int(self._scalar(
                f"SELECT count(*) FROM (SELECT rowid FROM credentials_fts WHERE "
                f"credentials_fts MATCH ?{limit})",
                (drive.fts_match,),
            ) or 0)
        text_only = plan == "auto" and self._text_only(query, drive)
        if plan == "auto":
            # A count has no order to walk. Capped and dense, a scan in table order stops
            # after about cap/density rows, fewer than the FTS prefilter's density*total
            # matches when density^2 * total >= cap; otherwise the drive plan (FTS prefilter,
            # any index) is as fast or faster for every filter measured (bench/tui.py).
            plan = "drive"
            if cap is not None and query is not None and query.terms:
                walk = self._plan(query, "walk", no_use)
                density = self._probe(walk) / PROBE_ROWS
                total = int(self._scalar("SELECT max(rid) FROM credentials") or 0)
                if density * density * total >= cap:
                    plan = "walk"

        def sql(built: Plan) -> tuple[str, list]:
            if cap is None:
                return f"SELECT count(*) FROM {built.source} WHERE {built.where}", built.params
            return (
                f"SELECT count(*) FROM (SELECT 1 FROM {built.source} WHERE {built.where} "
                "LIMIT ?)",
                [*built.params, cap],
            )

        if self._unsatisfiable(query):
            return 0
        if text_only:
            # the name index holds the search text: reading it is reading fewer pages
            built = self._plan(query, "walk", no_use)
            built.source = f"credentials c INDEXED BY {NAME_INDEX}"
            rows = self._read(*sql(built))
        else:
            rows = self._adaptive(query, sql, plan, no_use)
        return int(next(iter(rows[0].values())) if rows else 0)

    def page_credentials(
        self, query: Query | None = None, offset: int = 0, limit: int = 60, *, plan: str = "auto"
    ) -> list[Credential]:
        """One page of matches in the query's order (the TUI's table, 60 rows at a time).
        ``plan`` forces "walk" or "drive" (tests check both give the same rows)."""
        no_use = self._no_use()
        select = self._select(no_use)

        def sql(plan: Plan) -> tuple[str, list]:
            return (
                f"SELECT {select} FROM {plan.source} WHERE {plan.where} "
                f"ORDER BY {plan.order} LIMIT ? OFFSET ?",
                [*plan.params, limit, offset],
            )

        if self._unsatisfiable(query):
            return []
        return [row_to_cred(r) for r in self._adaptive(query, sql, plan, no_use)]

    def _unsatisfiable(self, query: Query | None) -> bool:
        """Whether a one-character text term of ``query`` holds for no credential at all
        (``e`` when none has an e, ``!e`` when all do): then nothing matches, and a scan
        that would only prove it is skipped. The trigram index cannot answer such a term;
        the counts in search_chars can."""
        if query is None:
            return False
        text = [t for t in query.terms if t.op == "text" and isinstance(t.value, str)]
        pairs = [t.value for t in text if t.negate and len(t.value) == 2]
        # a negated pair every row holds (search_pairs, migration 8)
        if pairs and self._conn().execute(
            f"SELECT 1 FROM search_pairs WHERE pair IN ({', '.join('?' * len(pairs))}) LIMIT 1",
            pairs,
        ).fetchone():
            return True
        chars = [t for t in text if len(t.value) == 1 and t.value in SEARCH_CHARS]
        if not chars:
            return False
        columns = ", ".join(search_chars_column(t.value) for t in chars)
        row = self._conn().execute(f"SELECT rows, {columns} FROM search_chars").fetchone()
        if row is None:
            return False
        total, *having = row
        return any(
            (n == total) if t.negate else (n == 0) for t, n in zip(chars, having, strict=True)
        )

    def _adaptive(
        self,
        query: Query | None,
        make: Callable[[Plan], tuple[str, list]],
        plan: str = "auto",
        no_use: str | None = None,
    ) -> list:
        """Run the walk plan within WALK_BUDGET_MS; when it runs out, the matches are sparse
        along the sort order, so run the drive plan instead (see ``PlanBuilder``)."""
        if plan not in ("auto", "walk", "drive"):
            raise StoreError(f"unknown plan {plan!r}", hint="auto, walk or drive")
        if plan != "auto":
            sql, params = make(self._plan(query, plan, no_use))
            return self._read(sql, params)
        no_use = no_use if no_use is not None else self._no_use()
        walk = self._plan(query, "walk", no_use)
        drive = self._plan(query, "drive", no_use)
        on_name = query is not None and sort_column(query.sort) == "name"
        if on_name and self._text_only(query, drive):
            # the name index holds the search text (migration 7): walking it reads index
            # entries and stops at the page; the drive plan would read every table row
            walk.source = f"credentials c INDEXED BY {NAME_INDEX}"
            sql, params = make(walk)
            return self._read(sql, params)
        conn = self._conn()
        few = None if walk.selective else self._fts_few(drive)
        if few is not None:
            # the prefilter's rows are in hand: the drive plan starts from them instead of
            # asking the FTS index again
            drive = self._plan(query, "drive", no_use, fts_rows=few)
        elif not walk.selective and self._dense(walk):
            sql, params = make(walk)
            deadline = time.perf_counter() + WALK_BUDGET_MS / 1000
            expired = False

            def tick() -> int:
                nonlocal expired
                expired = time.perf_counter() > deadline
                return expired or self.is_cancelled()

            conn.set_progress_handler(tick, WALK_TICK_STEPS)
            try:
                with self._guard("read"):
                    return list(iter_rows(conn.execute(sql, params)))
            except StoreError:
                if not expired or self.is_cancelled():
                    raise
            finally:
                self.restore_progress_handler(conn)
        sql, params = make(drive)
        return self._read(sql, params)

    @staticmethod
    def _text_only(query: Query | None, drive: Plan) -> bool:
        """Only free-text terms the trigram index cannot narrow (shorter than three
        characters, or negated): no index but the name index, which holds the search text,
        helps."""
        return bool(
            query is not None
            and query.terms
            and drive.fts_match is None
            and all(t.op == "text" for t in query.terms)
        )

    def _dense(self, walk: Plan) -> bool:
        """Whether matches look dense enough for walking to find a page within its budget:
        the filter checked on the first PROBE_ROWS rows (a millisecond) finds at least
        PROBE_MIN of them. A filter that matches almost nothing (``!e``) would walk the whole
        sort index for its budget and then drive anyway."""
        return walk.where == "1" or self._probe(walk) >= PROBE_MIN

    def _probe(self, walk: Plan) -> int:
        """How many of the first PROBE_ROWS rows the filter matches (a sample of density)."""
        found = self._scalar(
            f"SELECT count(*) FROM (SELECT * FROM credentials LIMIT {PROBE_ROWS}) c "
            f"WHERE {walk.where}",
            walk.params,
        )
        return int(found or 0)

    def _fts_few(self, drive: Plan) -> str | None:
        """The rows the FTS prefilter alone leaves, as a JSON array, when they are at most
        FTS_FEW (then the drive plan is cheap and walking would only burn its budget); None
        when there are more, or no prefilter. FTS5 stops at the LIMIT, so this costs well under a
        millisecond even for a term in every row."""
        if drive.fts_match is None:
            return None
        # one row back, whatever the count: the rows as a JSON array the drive plan reads
        with self._guard("read"):
            found, rows = self._conn().execute(
                "SELECT count(*), json_group_array(rowid) FROM (SELECT rowid FROM "
                "credentials_fts WHERE credentials_fts MATCH ? LIMIT ?)",
                (drive.fts_match, FTS_FEW + 1),
            ).fetchone()
        return rows if found <= FTS_FEW else None

    def explain(self, query: Query | None = None, mode: str = "walk") -> list[str]:
        """EXPLAIN QUERY PLAN of a page in the given plan mode (tests and benchmarks)."""
        plan = self._plan(query, mode)
        sql = f"SELECT c.* FROM credentials c WHERE {plan.where} ORDER BY {plan.order} LIMIT 60"
        return [r["detail"] for r in self._read(f"EXPLAIN QUERY PLAN {sql}", plan.params)]

    def all_credentials(self, query: Query | None = None) -> Iterator[Credential]:
        """Every match in the query's order, streamed (``keyshift ls``). Everything is read
        anyway, so filters drive (no early stop to gain from walking), unless there are none."""
        mode = "drive" if query is not None and query.terms else "walk"
        no_use = self._no_use()
        plan = self._plan(query, mode, no_use)
        sql = (
            f"SELECT {self._select(no_use)} FROM credentials c WHERE {plan.where} "
            f"ORDER BY {plan.order}"
        )
        with self._guard("read"):
            cursor = self._conn().execute(sql, plan.params)
        for row in iter_rows(cursor):
            yield row_to_cred(row)

    def credentials_by_fingerprint(self) -> dict[str, list[str]]:
        """Fingerprints shared by two or more credentials still present (reuse)."""
        result: dict[str, list[str]] = {}
        for fp, cid in self._conn().execute(
            "SELECT fingerprint, id FROM credentials WHERE gone_at IS NULL AND fingerprint IN ("
            "  SELECT fingerprint FROM credentials WHERE fingerprint IS NOT NULL "
            "  AND gone_at IS NULL GROUP BY fingerprint HAVING count(*) > 1) "
            "ORDER BY fingerprint, id"
        ):
            result.setdefault(fp, []).append(cid)
        return result

    def known_fingerprints(self) -> dict[str, tuple[str, ...]]:
        """fingerprint -> ids of the credentials still present with that value: each row's
        fingerprint and the per-key ones a source keeps in tags ``fingerprint:<key>`` (a KV
        secret's keys). What the workspace scan recognises values by."""
        result: dict[str, set[str]] = {}
        rows = self._read(
            "SELECT fingerprint AS fp, id FROM credentials "
            "WHERE gone_at IS NULL AND fingerprint IS NOT NULL "
            "UNION SELECT t.value, c.id FROM credential_tags t "
            "JOIN credentials c ON c.rid = t.rid "
            "WHERE c.gone_at IS NULL AND t.key LIKE 'fingerprint:%' AND t.value IS NOT NULL"
        )
        for r in rows:
            result.setdefault(r["fp"], set()).add(r["id"])
        return {fp: tuple(sorted(ids)) for fp, ids in result.items()}

    def bulk_insert_credentials(self, creds: Iterable[Credential], batch: int = 5000) -> int:
        """Insert many new credentials (fixtures, benchmarks); an existing id is an error.
        Bookkeeping fields and ``agents`` are taken from the records as given.

        Into an empty table this drops the credentials' secondary indexes and FTS triggers,
        inserts, then recreates them from their own stored SQL and rebuilds the FTS index:
        building an index once by sorting is several times faster than growing 20 indexes
        row by row. All in one transaction, so no reader sees the table without them.
        Returns the number inserted."""
        now = ts(utcnow())
        conn = self._conn()
        # a big page cache while indexes are built keeps their pages from spilling to the WAL
        cache = conn.execute("PRAGMA cache_size").fetchone()[0]
        conn.execute(f"PRAGMA cache_size={BULK_CACHE_KIB}")
        try:
            return self._bulk_insert(conn, creds, batch, now)
        finally:
            conn.execute(f"PRAGMA cache_size={cache}")

    def _bulk_insert(
        self, conn: sqlite3.Connection, creds: Iterable[Credential], batch: int, now: str | None
    ) -> int:
        total = 0
        buffer: list[dict] = []
        with self.transaction():
            empty = conn.execute("SELECT 1 FROM credentials LIMIT 1").fetchone() is None
            saved: list[str] = []
            if empty:
                for kind, name, sql in conn.execute(
                    "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'credentials' "
                    "AND sql IS NOT NULL AND (type = 'index' "
                    "OR (type = 'trigger' AND name LIKE 'credentials_fts_%'))"
                ).fetchall():
                    saved.append(sql)
                    conn.execute(f'DROP {kind.upper()} "{name}"')
            grants: list[tuple] = []
            for cred in creds:
                row = cred_row(cred)
                row["agents"] = agents_text(cred.agents) or None
                # agents are derived from grants: give each one a (bare) grant
                grants += [(cred.source, a, cred.id, now) for a in set(cred.agents)]
                for f in BOOKKEEPING_FIELDS:
                    value = getattr(cred, f)
                    row[f] = ts(value) if isinstance(value, datetime) else value
                buffer.append(row)
                if len(buffer) >= batch:
                    self._insert_credential_rows(conn, buffer, now, None)
                    total += len(buffer)
                    buffer = []
            self._insert_credential_rows(conn, buffer, now, None)
            total += len(buffer)
            conn.executemany(
                "INSERT INTO grants(source, agent, credential_id, seen_at) VALUES (?, ?, ?, ?)",
                grants,
            )
            for sql in saved:
                conn.execute(sql)
            if saved:
                conn.execute("INSERT INTO credentials_fts(credentials_fts) VALUES ('rebuild')")
                for sql in search_chars_recount():
                    conn.execute(sql)
                search_pairs_recount(conn, afresh=True)
        return total

