"""How a Query becomes SQL: the walk and drive plans (see ``PlanBuilder``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from console.errors import StoreError
from console.query import (
    NOCASE_SORT,
    Query,
    Term,
    sort_column,
    time_limit,
)
from console.store.rows import (
    FTS_COLUMNS,
    FTS_MIN_CHARS,
    ts,
    utcnow,
)
from console.vocabulary import (
    AUDITED_KINDS,
    IAM_LAST_USED,
    NO_USE_RECORDED,
    VAULT_AUDIT,
)

# --- query -> SQL ---------------------------------------------------------------------------

# The name sort's index, which also holds the search text (schema migration 7).
NAME_INDEX = "ix_cred_sort_name"
TIME_SORT = {"expires": "expires_at", "used": "last_used_at", "age": "age"}
TIME_COLUMNS = {
    "expires": "c.expires_at",
    "used": "c.last_used_at",
    "age": "coalesce(c.rotated_at, c.created_at)",
}


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def no_use_sql(coverage: dict[str, datetime], tokens_from: datetime | None = None) -> str:
    """The SQL of a credential's ``no_use_evidence`` (``console/vocabulary.py``): the evidence
    that covers its whole life and shows no use, or NULL. ``coverage`` is each source's start
    of gapless use evidence (``evidence_coverage``); a handful of sources, so inlined as
    literals: one expression the filters and every row read share, with no join. A token
    must also be younger than ``tokens_from``, when the store's evidence of tokens' use
    began later than its log positions (schema migration 9)."""
    covered = " OR ".join(
        f"(c.source = {_literal(source)} AND c.created_at >= {_literal(ts(since) or '')})"
        for source, since in sorted(coverage.items())
    )
    audited = ", ".join(_literal(kind) for kind in AUDITED_KINDS)
    token_from = (
        f" AND c.created_at >= {_literal(ts(tokens_from) or '')}" if tokens_from else ""
    )
    vault = (
        f" WHEN c.kind IN ({audited}) AND ({covered}) AND (c.kind != 'vault-token' "
        f"OR (json_extract(c.tags, '$.keyshift') IS NULL{token_from})) "
        f"THEN {_literal(VAULT_AUDIT)}"
        if covered else ""
    )
    return (
        "(CASE WHEN c.last_used_at IS NULL AND c.created_at IS NOT NULL THEN CASE "
        f"WHEN c.kind = 'iam-key' AND json_extract(c.tags, '$.last_used') = "
        f"{_literal(NO_USE_RECORDED)} THEN {_literal(IAM_LAST_USED)}{vault} END END)"
    )


@dataclass
class Plan:
    where: str
    params: list
    order: str
    selective: bool = False  # a term that pins a few rows (id or fingerprint): drive at once
    fts_match: str | None = None  # the drive plan's FTS prefilter, if any
    source: str = "credentials c"  # FROM: the table, or the table with an index to use
    # the FTS MATCH alone answers the query exactly (every term exact, no other condition):
    # its rows are the matches, and a count need not read the table
    fts_only: bool = False


class PlanBuilder:
    """Turns a Query into WHERE and ORDER BY, in one of two shapes with identical results.

    ``walk``: every sortable column has an index ``(<col> COLLATE NOCASE, id)`` matching
    ``ORDER BY <col> COLLATE NOCASE, id``; filters are row checks (free text is ``instr`` over
    the searched columns; field columns are written ``+c.col`` so SQLite cannot use their
    index). SQLite walks the sort index and stops after offset+limit matches: when matches
    are dense (typing "s", "sup", env:prod) a page costs a few dozen rows, whatever the size.

    ``drive``: filters may use indexes and free text of 3+ characters uses the trigram FTS
    index (``rid IN (MATCH)``); the matches are then sorted. Cheap when matches are few.

    The store runs ``walk`` under a budget of VM steps and falls back to ``drive`` when it
    runs out, which happens exactly when matches are sparse along the sort order. Letting
    SQLite choose alone went wrong both ways: it drives from a low-selectivity index
    (status, environment) and then sorts most of the table.

    Inverted terms are ``NOT ifnull(<term>, 0)`` so NULLs invert like Python's ``not``.
    """

    def __init__(
        self,
        query: Query | None,
        mode: str,
        now: datetime | None = None,
        fts_rows: str | None = None,
        no_use: str = "NULL",
    ) -> None:
        self.query = query
        # the SQL of no_use_evidence (no_use_sql), for used:never and used:unknown
        self.no_use = no_use
        # the FTS prefilter's rows (a JSON array), when already read: the drive plan starts
        # from them
        self.fts_rows = fts_rows
        self.walk = mode == "walk"
        self.now = now or utcnow()
        self.params: list = []
        self.selective = False
        self.fts_match: str | None = None
        self.sort = sort_column(query.sort) if query is not None else "name"

    def build(self) -> Plan:
        query = self.query
        if query is None:
            return Plan("1", [], "c.name COLLATE NOCASE, c.id")
        clauses: list[str] = []
        exact: list[Term] = []  # terms the FTS MATCH answers exactly: no row check needed
        if not self.walk:
            # one MATCH intersecting every positive term the trigram index can answer or
            # narrow down (FTS5 merges the doclists itself)
            parts = []
            for term in query.terms:
                expr, is_exact = fts_prefilter(term)
                if expr:
                    parts.append(expr)
                    # rows read ahead of this statement may have changed since: check them
                    if is_exact and self.fts_rows is None:
                        exact.append(term)
            if parts:
                self.fts_match = " AND ".join(parts)
                if self.fts_rows is not None:
                    rows = self._p(self.fts_rows)
                    clauses.append(f"c.rid IN (SELECT value FROM json_each({rows}))")
                else:
                    clauses.append(
                        "c.rid IN (SELECT rowid FROM credentials_fts WHERE credentials_fts "
                        f"MATCH {self._p(self.fts_match)})"
                    )
        clauses += [self._term(t) for t in query.terms if t not in exact]
        column = sort_column(query.sort)
        direction = " DESC" if query.descending else ""
        if column == "age":
            expr = "coalesce(c.rotated_at, c.created_at)"
        elif column in NOCASE_SORT:
            expr = f"c.{column} COLLATE NOCASE"
        else:
            expr = f"c.{column}"
        if self.walk:
            order = f"{expr}{direction}, c.id{direction}"
        else:
            # unary + : drive sorts the (few) matches instead of walking the sort index
            order = f"+{expr}{direction}, +c.id{direction}"
        fts_only = (
            self.fts_match is not None and self.fts_rows is None
            and len(exact) == len(query.terms)
        )
        return Plan(
            " AND ".join(clauses) or "1", self.params, order, self.selective, self.fts_match,
            fts_only=fts_only,
        )

    def _p(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    def _col(self, name: str) -> str:
        # unary + keeps SQLite from driving the walk plan through this column's index; a
        # term on the sort column itself may use it (that index is the walk)
        return f"+c.{name}" if self.walk and name != self.sort else f"c.{name}"

    def _term(self, term: Term) -> str:
        sql = self._positive(term)
        return f"NOT ifnull(({sql}), 0)" if term.negate else f"({sql})"

    def _positive(self, term: Term) -> str:
        op, value, name = term.op, term.value, term.field
        if op == "text":
            return f"instr(c.search_text, {self._p(value)}) > 0"
        if name == "agent":
            if op == "none":
                return "NOT EXISTS (SELECT 1 FROM grants g WHERE g.credential_id = c.id)"
            cond = self._match("g.agent", op, value)
            if self.walk or term.negate:
                return f"EXISTS (SELECT 1 FROM grants g WHERE g.credential_id = c.id AND {cond})"
            return f"c.id IN (SELECT g.credential_id FROM grants g WHERE {cond})"
        if name == "tag":
            if op == "none":
                return "c.tags = '{}'"
            if op == "contains":
                return f"instr(lower(c.tags_text), {self._p(value)}) > 0"
            cond = f"t.key = {self._p(term.key)} COLLATE NOCASE"
            if op != "has":
                cond += f" AND {self._match('t.value', op, value)}"
            if self.walk or term.negate:
                return f"EXISTS (SELECT 1 FROM credential_tags t WHERE t.rid = c.rid AND {cond})"
            return f"c.rid IN (SELECT t.rid FROM credential_tags t WHERE {cond})"
        if name == "status" and op == "eq" and str(value).lower() == "stale":
            return f"{self._col('status')} = 'stale' OR c.stale_since IS NOT NULL"
        if name in TIME_COLUMNS:
            column = TIME_COLUMNS[name]
            if self.walk and TIME_SORT[name] != self.sort:
                column = f"+{column}"
            if op == "never" and name == "used":
                return f"{column} IS NULL AND {self.no_use} IS NOT NULL"
            if op == "unknown":
                return f"{column} IS NULL AND {self.no_use} IS NULL"
            if op == "never":
                return f"{column} IS NULL"
            limit = self._p(ts(time_limit(term, self.now)))
            if name == "expires":
                return f"{column} < {limit}" if op == "within" else f"{column} >= {limit}"
            return f"{column} >= {limit}" if op == "within" else f"{column} < {limit}"
        if op == "none":
            return f"{self._col(name)} IS NULL OR c.{name} = ''"
        if name in ("id", "fingerprint") and op == "eq":
            # exact and selective: these drive through their index in either plan
            self.selective = self.selective or not term.negate
            return f"c.{name} = {self._p(value)}"
        return self._match(self._col(name), op, value)

    def _match(self, column: str, op: str, value: Any) -> str:
        if op == "eq":
            return f"{column} = {self._p(value)} COLLATE NOCASE"
        if op == "glob":
            return f"lower({column}) GLOB {self._p(glob_pattern(str(value)))}"
        if op == "contains":
            return f"instr(lower({column}), {self._p(value)}) > 0"
        raise StoreError(f"unsupported filter operation {op!r}")


def fts_phrase(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def fts_prefilter(term: Term) -> tuple[str | None, bool]:
    """An FTS5 expression every row matching ``term`` also matches, and whether it is exact
    (the same rows). Trigram MATCH is a substring test per column that folds the case of
    every letter; keyshift's filters fold ASCII only."""
    if term.negate:
        return None, False
    value = str(term.value or "")
    if term.op == "text":
        if len(value) < FTS_MIN_CHARS:
            return None, False
        # the trigram index folds the case of every letter, the search text only ASCII's:
        # a term with other letters is narrowed by the index and checked row by row
        return fts_phrase(value), value.isascii()
    column = {"agent": "agents", "tag": "tags_text"}.get(term.field, term.field)
    if column not in FTS_COLUMNS:
        return None, False
    if term.op == "contains":
        needle, exact = value, term.field != "agent" and value.isascii()
    elif term.op == "glob":
        needle, exact = max(value.split("*"), key=len), False
    else:
        return None, False
    if len(needle) < FTS_MIN_CHARS:
        return None, False
    return f"{column} : {fts_phrase(needle)}", exact


def glob_pattern(pattern: str) -> str:
    """A ``*``-only wildcard pattern as a GLOB pattern with ``?`` and ``[`` taken literally."""
    return pattern.replace("[", "[[]").replace("?", "[?]")

