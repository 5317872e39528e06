"""One page (60 rows) of a filtered, sorted credential list, as the TUI and `ls` ask for it.

Builds a store with N synthetic credentials (default 100,000), then times 50 filters that
simulate typing ("s", "su", "sup", ...) mixed with field filters and different sort columns.
keyshift's figure is Store.page_credentials (FTS5 trigram + sort indexes + the dense/sparse
plan). The baseline, measured in the same run on the same rows, is what a competent SQLite user
would write: a plain copy of the table with the same b-tree indexes on the sort and filter
columns (``(col COLLATE NOCASE, id)``, ``(timestamp, id)``, the age expression, source,
fingerprint, a unique id) and a full ANALYZE, but no FTS, queried with ``LIKE '%x%' OR ...``
over the searched columns, the field filters written out in SQL (tags through ``json_each``,
agents through the grants table) and ORDER BY, leaving the plan to SQLite. Both sides get the
same warm-up pass and the same number of timed passes; the bench checks that, for every filter
(and a few extra time filters, untimed), both return the same page (ids, in order) and exits 1
naming the filter when they do not.

    .venv/bin/python bench/store_page.py [--rows 1000000] [--db PATH] [--keep] [--reps 3]

Prints p50/p95 for both and ends with the RESULT line (figure = p95 in milliseconds).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from console.model import Credential
from console.query import NOCASE_SORT, TEXT_SEARCH_COLUMNS, Query, Term, parse, sort_column
from console.store import Store, row_to_cred, ts

TEAMS = [
    "support", "payments", "search", "billing", "growth", "infra", "data", "ml", "security",
    "sales", "platform", "mobile", "web", "ops", "finance", "legal", "research", "ads",
    "identity", "risk",
]  # fmt: skip
SERVICES = [
    "openai", "anthropic", "stripe", "github", "slack", "postgres", "redis", "s3", "sendgrid",
    "twilio", "supabase", "datadog", "pagerduty", "jira", "linear", "notion", "zendesk",
    "intercom", "segment", "snowflake", "bigquery", "kafka", "elastic", "mongo", "openrouter",
    "mistral", "cohere", "huggingface", "vercel", "cloudflare",
]  # fmt: skip
SOURCES = [
    ("vault-prod", "kv", "prod"),
    ("vault-staging", "kv", "staging"),
    ("vault-prod", "approle-secret-id", "prod"),
    ("aws-main", "secretsmanager", "prod"),
    ("aws-main", "ssm-parameter", "prod"),
    ("aws-main", "iam-key", "prod"),
    ("aws-sandbox", "iam-key", "dev"),
    ("keyring-local", "keyring", "dev"),
    ("declared", "api-key", "prod"),
    ("declared", "bot-token", "staging"),
]
AGENTS = [f"{t}-agent" for t in TEAMS] + [f"{s}-worker" for s in SERVICES[:20]]
SCOPES = ["read", "read write", "admin", "kv read secret/*", "s3:GetObject", "chat:write", ""]
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def synthetic(n: int, seed: int = 7) -> Iterator[Credential]:
    rnd = random.Random(seed)
    for i in range(n):
        source, kind, env = SOURCES[i % len(SOURCES)]
        team, service = rnd.choice(TEAMS), rnd.choice(SERVICES)
        purpose = rnd.choice(["api-key", "token", "db-password", "webhook", "secret"])
        name = f"{team}-{service}-{purpose}-{i:07d}"
        if source.startswith("vault"):
            location = f"secret/agents/{team}/{service}/{purpose}-{i}"
        elif source.startswith("aws"):
            location = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{team}/{service}-{i}"
        else:
            location = f"{team}/{service}"
        created = NOW - timedelta(days=rnd.randint(0, 900), seconds=rnd.randint(0, 86400))
        rotated = created + timedelta(days=rnd.randint(0, 200)) if rnd.random() < 0.6 else None
        yield Credential(
            id=f"{source}:{kind}:{location}:{i}",
            source=source,
            kind=kind,
            native_id=f"{location}:{i}",
            name=name,
            location=location,
            owner=None if rnd.random() < 0.1 else rnd.choice(TEAMS),
            environment=env,
            scope=rnd.choice(SCOPES),
            sensitivity=rnd.choice(["high", "medium", "low"]),
            created_at=created,
            rotated_at=rotated,
            expires_at=(NOW + timedelta(days=rnd.randint(-30, 400)))
            if rnd.random() < 0.6
            else None,
            last_used_at=(NOW - timedelta(days=rnd.randint(0, 400)))
            if rnd.random() < 0.7
            else None,
            rotator=rnd.choice(["vault-kv", "aws-iam", "manual", None]),
            fingerprint=f"hmac-sha256:{rnd.getrandbits(128):032x}",
            tags={"team": team, "cost-center": f"cc-{rnd.randint(1, 40)}"},
            agents=sorted(set(rnd.sample(AGENTS, rnd.randint(0, 3)))),
        )


def filters() -> list[tuple[str, str, bool]]:
    """50 (filter, sort, descending): typing sessions plus field filters and sorts."""
    typed: list[tuple[str, str, bool]] = []
    for word, sort, desc in (
        ("support", "name", False),
        ("openai", "expires", False),
        ("pagerd", "last_used", True),
        ("zendesk", "owner", False),
        ("0012345", "name", False),
    ):
        typed += [(word[:k], sort, desc) for k in range(1, len(word) + 1)]
    typed += [
        ("env:prod sup", "name", False),
        ("owner:none", "name", False),
        ("kind:iam-key !env:dev", "created", True),
        ("!env:dev strip", "name", False),
        ("tag:team=payments", "expires", False),
        ("expires:<30d", "expires", False),
        ("age:>365d sensitivity:high", "age", False),
        ("used:unknown owner:none", "name", False),
        ("agent:support-agent", "name", False),
        ("source:declared kind:api-key", "rotated", True),
        ("location~secret/agents/ml", "name", False),
        ("name:*-0099* ", "name", False),
        ("github token", "name", False),
        ("rotator:manual used:>90d", "last_used", False),
        ("status:active", "location", True),
        ("sensitivity:high kafka", "source", False),
        ("!status:gone cloudfl", "expires", True),
    ]
    return typed[:50]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


# --- the baseline: same rows, the same b-tree indexes, no FTS, LIKE over the searched columns --

BASELINE_TABLE = "naive_credentials"
# the sort/filter indexes keyshift's store has (console/store/schema.py, migrations 2 and 7),
# minus FTS and the tags table; bump the suffix when this list changes so a kept --db store
# rebuilds it
BASELINE_MARK = "ix_naive_v3_id"
NOCASE_INDEXED = (
    "agents", "environment", "kind", "location", "name", "owner", "rotator", "scope",
    "sensitivity", "source", "status",
)  # fmt: skip
TIME_INDEXED = (
    "created_at", "rotated_at", "expires_at", "last_used_at", "first_seen_at", "last_seen_at",
)  # fmt: skip
# free text: the columns that may be NULL are read through ifnull() so NOT inverts them
NULLABLE_TEXT = {"location", "owner", "agents", "tags_text", "environment", "scope"}
TIME_EXPR = {
    "expires": "expires_at",
    "used": "last_used_at",
    "age": "coalesce(rotated_at, created_at)",
}


def build_baseline(store: Store) -> None:
    """Copy the credential rows (without keyshift's generated ``search_text``) into a plain
    table and give it the indexes a competent SQLite user would: one per sort column, shaped
    like its ORDER BY, which also serve equality filters on those columns."""
    conn = store._conn()
    columns = [r[1] for r in conn.execute("PRAGMA table_info(credentials)")]
    t = BASELINE_TABLE
    statements = [
        f"DROP TABLE IF EXISTS {t}",
        f"CREATE TABLE {t} AS SELECT {', '.join(columns)} FROM credentials",
        f"CREATE UNIQUE INDEX {BASELINE_MARK} ON {t}(id)",
        f"CREATE INDEX ix_naive_source ON {t}(source, id)",
        f"CREATE INDEX ix_naive_fingerprint ON {t}(fingerprint)",
        f"CREATE INDEX ix_naive_sort_age ON {t}(coalesce(rotated_at, created_at), id)",
    ]
    statements += [
        f"CREATE INDEX ix_naive_sort_{c} ON {t}({c} COLLATE NOCASE, id)"
        for c in NOCASE_INDEXED
        if c != "name"
    ]
    # keyshift's name index holds its search text (migration 7): this one, the searched
    # columns, so free text over the name order reads the index here too
    searched = ", ".join(c for c in TEXT_SEARCH_COLUMNS if c != "name")
    statements.append(
        f"CREATE INDEX ix_naive_sort_name ON {t}(name COLLATE NOCASE, id, {searched})"
    )
    statements += [f"CREATE INDEX ix_naive_sort_{c} ON {t}({c}, id)" for c in TIME_INDEXED]
    for sql in statements:
        conn.execute(sql)
    conn.commit()
    # a full ANALYZE, as a user would type it (keyshift's Store.analyze() samples 1,000 rows
    # per index, which is enough for its own plans but misleads SQLite's planner here)
    limit = conn.execute("PRAGMA analysis_limit").fetchone()[0]
    conn.execute("PRAGMA analysis_limit=0")
    conn.execute(f"ANALYZE {t}")
    conn.execute(f"PRAGMA analysis_limit={limit}")
    conn.commit()


def like_escape(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern with ESCAPE '\\'."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def baseline_term(term: Term, now: datetime, params: list) -> str:
    """One term of keyshift's filter grammar (console/query.py) in plain SQL: the same rows as
    ``Query.matches`` and keyshift's own SQL, without FTS or keyshift's tags table."""
    op, value, name = term.op, term.value, term.field
    if op == "text":
        columns = [f"ifnull({c}, '')" if c in NULLABLE_TEXT else c for c in TEXT_SEARCH_COLUMNS]
        params += [f"%{like_escape(str(value))}%"] * len(columns)
        return " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in columns)
    if name == "agent":
        owned = f"g.credential_id = {BASELINE_TABLE}.id"
        if op == "none":
            return f"NOT EXISTS (SELECT 1 FROM grants g WHERE {owned})"
        cond = match_sql("g.agent", op, value, params)
        return f"EXISTS (SELECT 1 FROM grants g WHERE {owned} AND {cond})"
    if name == "tag":
        if op == "none":
            return "tags = '{}'"
        if op == "contains":
            params.append(f"%{like_escape(str(value))}%")
            return "tags_text LIKE ? ESCAPE '\\'"
        params.append(term.key)
        cond = "j.key = ? COLLATE NOCASE"
        if op != "has":
            cond += " AND " + match_sql("j.value", op, value, params)
        return f"EXISTS (SELECT 1 FROM json_each(tags) j WHERE {cond})"
    if name == "status" and op == "eq" and str(value).lower() == "stale":
        return "status = 'stale' OR stale_since IS NOT NULL"
    if name in TIME_EXPR:
        column = TIME_EXPR[name]
        if op == "never":
            return f"{column} IS NULL"
        delta = timedelta(seconds=int(value or 0))
        if name == "expires":
            # expires:<N = expires before now+N (already expired included); >N = that or later
            params.append(ts(now + delta))
            return f"{column} < ?" if op == "within" else f"{column} >= ?"
        # age / used: <N = at or after now-N (more recent); >N = before it (longer ago)
        params.append(ts(now - delta))
        return f"{column} >= ?" if op == "within" else f"{column} < ?"
    if op == "none":
        return f"{name} IS NULL OR {name} = ''"
    if name == "id" and op == "eq":
        params.append(value)
        return "id = ?"
    return match_sql(name, op, value, params)


def match_sql(column: str, op: str, value: object, params: list) -> str:
    if op == "eq":
        params.append(value)
        return f"{column} = ? COLLATE NOCASE"
    if op == "glob":
        params.append(like_escape(str(value)).replace("*", "%"))
        return f"{column} LIKE ? ESCAPE '\\'"
    if op == "contains":
        params.append(f"%{like_escape(str(value))}%")
        return f"{column} LIKE ? ESCAPE '\\'"
    raise ValueError(f"baseline: unsupported filter operation {op!r}")


def naive_sql(query: Query, now: datetime | None = None) -> tuple[str, list]:
    """The baseline's SELECT for one page. NULL handling as keyshift's grammar: a NULL field
    fails a term and passes its inversion (``NOT ifnull(term, 0)``)."""
    moment = now or datetime.now(UTC)
    clauses: list[str] = []
    params: list = []
    for term in query.terms:
        sql = baseline_term(term, moment, params)
        clauses.append(f"NOT ifnull(({sql}), 0)" if term.negate else f"({sql})")
    column = sort_column(query.sort)
    expr = "coalesce(rotated_at, created_at)" if column == "age" else column
    if column in NOCASE_SORT:
        expr += " COLLATE NOCASE"
    direction = " DESC" if query.descending else ""
    where = " AND ".join(clauses) or "1"
    return (
        f"SELECT * FROM {BASELINE_TABLE} WHERE {where} "
        f"ORDER BY {expr}{direction}, id{direction} LIMIT 60",
        params,
    )


# untimed: extra time filters that check both sides read the grammar the same way
CHECK_ONLY = [
    ("expires:>90d", "expires", False),
    ("!expires:<30d", "name", False),
    ("expires:never", "name", True),
    ("!expires:never", "expires", True),
    ("age:<30d", "age", True),
    ("!age:>365d", "name", False),
    ("used:<60d", "last_used", True),
    ("!used:>90d", "name", False),
    ("used:unknown", "last_used", False),
    ("!used:unknown used:>30d", "name", False),
    ("tag:team", "name", False),
    ("!agent:none owner:none", "name", False),
    ("agent:*-worker", "agents", False),
]


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--db", type=Path, default=None, help="reuse or create this store file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary store")
    ap.add_argument("--reps", type=int, default=3, help="timed passes over the 50 filters (both)")
    ap.add_argument("--verbose", "-v", action="store_true", help="print each filter's timings")
    args = ap.parse_args(argv)
    if args.reps < 1:
        ap.error("--reps must be at least 1")

    tmp = None
    if args.db is None:
        if args.keep:
            db_path = Path(tempfile.mkdtemp(prefix="keyshift-bench-")) / "bench.db"
        else:
            tmp = tempfile.TemporaryDirectory(prefix="keyshift-bench-")
            db_path = Path(tmp.name) / "bench.db"
    else:
        db_path = args.db
    store = Store(db_path)
    try:
        return run(args, store, db_path)
    finally:
        store.close()
        if tmp is not None:
            tmp.cleanup()


def run(args: argparse.Namespace, store: Store, db_path: Path) -> int:
    have = store.count_credentials()
    if have != args.rows:
        if have:
            print(f"{db_path} holds {have} rows, not {args.rows}", file=sys.stderr)
            return 2
        start = time.perf_counter()
        store.bulk_insert_credentials(synthetic(args.rows))
        store.analyze()
        build_baseline(store)
        print(f"built {args.rows:,} credentials in {time.perf_counter() - start:.1f} s ({db_path})")
    elif (
        not store._conn()
        .execute("SELECT 1 FROM sqlite_master WHERE name = ?", (BASELINE_MARK,))
        .fetchone()
    ):
        build_baseline(store)

    cases = [(parse(text, sort=sort, descending=desc), text) for text, sort, desc in filters()]
    checks = [(parse(text, sort=sort, descending=desc), text) for text, sort, desc in CHECK_ONLY]
    conn = store._conn()
    pages: dict[str, dict[str, list[str]]] = {"keyshift": {}, "baseline": {}}

    def keyshift_page(q: Query) -> None:
        pages["keyshift"][q.text] = [c.id for c in store.page_credentials(q, 0, 60)]

    def baseline_page(q: Query) -> None:
        sql, params = naive_sql(q)
        cur = conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        creds = [row_to_cred(dict(zip(names, r, strict=True))) for r in cur.fetchall()]
        pages["baseline"][q.text] = [c.id for c in creds]

    def same_pages(batch: list[tuple[Query, str]], when: str) -> bool:
        ok = True
        for q, text in batch:
            ks, base = pages["keyshift"][text], pages["baseline"][text]
            if ks != base:
                ok = False
                first = next(
                    (i for i, (a, b) in enumerate(zip(ks, base, strict=False)) if a != b),
                    min(len(ks), len(base)),
                )
                print(
                    f"MISMATCH ({when}) filter {text!r} sort={q.sort}"
                    f"{' desc' if q.descending else ''}: keyshift {len(ks)} rows, baseline "
                    f"{len(base)} rows, first difference at row {first}",
                    file=sys.stderr,
                )
        return ok

    # one untimed warm-up pass for each side (page cache, statement cache), then the check
    for q, _ in cases + checks:
        keyshift_page(q)
        baseline_page(q)
    if not same_pages(cases + checks, "warm-up"):
        print("bench: keyshift and the baseline answer differently", file=sys.stderr)
        return 1
    empty = [text for q, text in cases + checks if not pages["keyshift"][text]]

    ks: list[float] = []
    base: list[float] = []
    per_case: dict[str, list[float]] = {}
    base_case: dict[str, list[float]] = {}
    for _ in range(args.reps):  # the same passes for both, alternating side by side per pass
        for q, text in cases:
            ms = timed(lambda q=q: keyshift_page(q))
            ks.append(ms)
            per_case.setdefault(text, []).append(ms)
        for q, text in cases:
            ms = timed(lambda q=q: baseline_page(q))
            base.append(ms)
            base_case.setdefault(text, []).append(ms)
        if not same_pages(cases, "timed pass"):
            print("bench: keyshift and the baseline answer differently", file=sys.stderr)
            return 1
    counts = []
    for q, _ in cases:
        counts.append(timed(lambda q=q: store.count_credentials(q, cap=10_000)))
    if args.verbose:
        for q, text in cases:
            print(
                f"  {text!r:32} sort={q.sort:<10} keyshift {statistics.median(per_case[text]):8.2f}"
                f" ms  baseline {statistics.median(base_case[text]):8.2f} ms"
            )
    ks50, ks95 = percentile(ks, 50), percentile(ks, 95)
    b50, b95 = percentile(base, 50), percentile(base, 95)
    print(
        f"rows={args.rows:,} filters={len(cases)} page=60 passes={args.reps} (+1 warm-up) each; "
        f"pages identical for all {len(cases)} filters and {len(checks)} extra time checks"
    )
    if empty:
        print(f"  (empty on both sides: {', '.join(repr(t) for t in empty)})")
    print(f"keyshift page       p50 {ks50:8.2f} ms  p95 {ks95:8.2f} ms  max {max(ks):8.2f} ms")
    print(f"indexed SQL + LIKE  p50 {b50:8.2f} ms  p95 {b95:8.2f} ms  max {max(base):8.2f} ms")
    print(
        f"count (cap 10,000) p50 {percentile(counts, 50):.2f} ms  "
        f"p95 {percentile(counts, 95):.2f} ms"
    )
    print(
        f"RESULT store-page keyshift={ks95:.2f} baseline={b95:.2f} ratio={b95 / ks95:.1f} unit=ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
