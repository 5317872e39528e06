"""One page (60 rows) of a filtered, sorted credential list, as the TUI and `ls` ask for it.

Builds a store with N synthetic credentials (default 100,000), then times 50 filters that
simulate typing ("s", "su", "sup", ...) mixed with field filters and different sort columns.
keyshift's figure is Store.page_credentials (FTS5 trigram + sort indexes + the dense/sparse
plan). The baseline, measured in the same run on the same rows, is the naive version: a plain
copy of the table without FTS or indexes, queried with ``LIKE '%x%' OR ...`` and ORDER BY.

    .venv/bin/python bench/store_page.py [--rows 1000000] [--db PATH] [--keep]

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
from console.query import NOCASE_SORT, TEXT_SEARCH_COLUMNS, Query, parse, sort_column
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
        ("used:never owner:none", "name", False),
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


# --- the naive baseline: same rows, no FTS, no indexes, LIKE over the searched columns --------


def build_baseline(store: Store) -> None:
    conn = store._conn()
    conn.execute("DROP TABLE IF EXISTS naive_credentials")
    conn.execute("CREATE TABLE naive_credentials AS SELECT * FROM credentials")
    conn.commit()


def naive_sql(query: Query) -> tuple[str, list]:
    clauses, params = [], []
    for term in query.terms:
        if term.op == "text":
            like = " OR ".join(f"{c} LIKE ?" for c in TEXT_SEARCH_COLUMNS)
            params += [f"%{term.value}%"] * len(TEXT_SEARCH_COLUMNS)
            clause = f"({like})"
        elif term.field in ("agent",):
            clause = "(' ' || ifnull(agents, '') || ' ') LIKE ?"
            params.append(f"% {term.value} %")
        elif term.field == "tag":
            clause = "tags_text LIKE ?"
            params.append(f"%{term.key}={term.value}%")
        elif term.field in ("expires", "used", "age"):
            column = {
                "expires": "expires_at",
                "used": "last_used_at",
                "age": "coalesce(rotated_at, created_at)",
            }[term.field]
            if term.op == "never":
                clause = f"{column} IS NULL"
            else:
                sign = {"expires": "<", "used": "<", "age": "<"}[term.field]
                clause = f"{column} {sign} ?"
                params.append(ts(NOW - timedelta(seconds=int(term.value or 0))))
        elif term.op == "none":
            clause = f"{term.field} IS NULL"
        elif term.op == "glob":
            clause = f"{term.field} LIKE ?"
            params.append(str(term.value).replace("*", "%"))
        elif term.op == "contains":
            clause = f"{term.field} LIKE ?"
            params.append(f"%{term.value}%")
        else:
            clause = f"{term.field} = ?"
            params.append(term.value)
        clauses.append(f"NOT ({clause})" if term.negate else clause)
    column = sort_column(query.sort)
    expr = "coalesce(rotated_at, created_at)" if column == "age" else column
    if column in NOCASE_SORT:
        expr += " COLLATE NOCASE"
    direction = " DESC" if query.descending else ""
    where = " AND ".join(clauses) or "1"
    return (
        f"SELECT * FROM naive_credentials WHERE {where} ORDER BY {expr}{direction}, id{direction} "
        "LIMIT 60",
        params,
    )


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--db", type=Path, default=None, help="reuse or create this store file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary store")
    ap.add_argument("--reps", type=int, default=3, help="passes over the 50 filters (keyshift)")
    ap.add_argument("--baseline-reps", type=int, default=1)
    ap.add_argument("--verbose", "-v", action="store_true", help="print each filter's timings")
    args = ap.parse_args(argv)

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
        .execute("SELECT 1 FROM sqlite_master WHERE name = 'naive_credentials'")
        .fetchone()
    ):
        build_baseline(store)

    cases = [(parse(text, sort=sort, descending=desc), text) for text, sort, desc in filters()]
    conn = store._conn()

    def keyshift_page(q: Query) -> None:
        store.page_credentials(q, 0, 60)

    def baseline_page(q: Query) -> None:
        sql, params = naive_sql(q)
        [row_to_cred(dict(zip([d[0] for d in cur.description], r, strict=True)))
         for cur in [conn.execute(sql, params)] for r in cur.fetchall()]  # fmt: skip

    for q, _ in cases:  # warm the page cache for both
        keyshift_page(q)
    ks: list[float] = []
    per_case: dict[str, list[float]] = {}
    for _ in range(args.reps):
        for q, text in cases:
            ms = timed(lambda q=q: keyshift_page(q))
            ks.append(ms)
            per_case.setdefault(text, []).append(ms)
    base: list[float] = []
    base_case: dict[str, float] = {}
    for _ in range(args.baseline_reps):
        for q, text in cases:
            ms = timed(lambda q=q: baseline_page(q))
            base.append(ms)
            base_case[text] = ms
    counts = []
    for q, _ in cases:
        counts.append(timed(lambda q=q: store.count_credentials(q, cap=10_000)))
    if args.verbose:
        for q, text in cases:
            print(
                f"  {text!r:32} sort={q.sort:<10} keyshift {statistics.median(per_case[text]):8.2f}"
                f" ms  baseline {base_case[text]:8.1f} ms"
            )
    ks50, ks95 = percentile(ks, 50), percentile(ks, 95)
    b50, b95 = percentile(base, 50), percentile(base, 95)
    print(f"rows={args.rows:,} filters={len(cases)} page=60")
    print(f"keyshift page  p50 {ks50:8.2f} ms  p95 {ks95:8.2f} ms  max {max(ks):8.2f} ms")
    print(f"naive LIKE     p50 {b50:8.2f} ms  p95 {b95:8.2f} ms  max {max(base):8.2f} ms")
    print(
        f"count (cap 10,000) p50 {percentile(counts, 50):.2f} ms  "
        f"p95 {percentile(counts, 95):.2f} ms"
    )
    store.close()
    if tmp is not None:
        tmp.cleanup()
    print(
        f"RESULT store-page keyshift={ks95:.2f} baseline={b95:.2f} ratio={b95 / ks95:.1f} unit=ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
