"""Rows and records: column lists, time and JSON conversions, row <-> model."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from console.model import Credential, Grant, ItemError
from console.query import (
    TEXT_SEARCH_COLUMNS,
    tags_text,
)

BUSY_TIMEOUT_MS = 10_000
BULK_CACHE_KIB = -1_000_000  # negative: KiB, i.e. ~1 GB while bulk_insert_credentials runs
# The walk plan's budget (see PlanBuilder). Time, not VM steps: a step that seeks a table row
# costs ten times one that compares a value, so a step budget is no bound on latency. Only
# which plan answers depends on it, never the rows returned.
WALK_BUDGET_MS = 50.0
WALK_TICK_STEPS = 200
# how often (SQLite VM steps) a cancellable read checks whether it is still wanted
CANCEL_TICK_STEPS = 1000
# Matches the FTS index may return for the drive plan to be chosen without trying the walk.
FTS_FEW = 2_000
# the walk plan is tried only when the filter matches at least PROBE_MIN of the first
# PROBE_ROWS rows (see CredentialRows._dense)
PROBE_ROWS = 500
PROBE_MIN = 1
# Shortest substring the trigram index can answer; shorter terms always scan.
FTS_MIN_CHARS = 3
# The characters whose presence table search_chars counts (migration 7 made its columns):
# a one-character term that no row can satisfy is answered without reading a row.
SEARCH_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_./:=@"


def search_chars_column(char: str) -> str:
    return f"c{ord(char):02x}"


def search_chars_recount() -> list[str]:
    """The statements that count search_chars afresh (after a bulk load without triggers)."""
    sums = ", ".join(
        f"ifnull(sum(instr(c.search_text, '{ch}') > 0), 0)" for ch in SEARCH_CHARS
    )
    return [
        "DELETE FROM search_chars",
        f"INSERT INTO search_chars SELECT 1, count(*), {sums} FROM credentials c",
    ]

# search_pairs (migration 8) holds two-character substrings found in every credential's
# search text, so a negated two-character term (`!en` on the way to `!env:dev`) that no row
# can satisfy is answered without a walk. Candidates are the pairs a sample of rows (the
# first, the last and some between) all hold; at most PAIRS_MAX are checked.
PAIRS_SAMPLE = 500
PAIRS_MAX = 64


def _sample_pairs(conn: sqlite3.Connection) -> list[str]:
    """Pairs every sampled row holds: the rows at both ends of the table and PAIRS_SAMPLE
    spread between (new rows, another source's, sit at the end)."""
    top = conn.execute("SELECT max(rid) FROM credentials").fetchone()[0]
    if top is None:
        return []
    between = json.dumps(list(range(1, top + 1, max(1, top // PAIRS_SAMPLE))))
    texts = [
        text or ""
        for (text,) in conn.execute(
            "SELECT search_text FROM credentials WHERE rid IN (SELECT rid FROM credentials "
            f"ORDER BY rid LIMIT {PAIRS_SAMPLE}) OR rid IN (SELECT rid FROM credentials ORDER "
            f"BY rid DESC LIMIT {PAIRS_SAMPLE}) OR rid IN (SELECT value FROM json_each(?))",
            (between,),
        )
    ]
    if not texts:
        return []
    first = texts[0]
    candidates = {first[i : i + 2] for i in range(len(first) - 1)}
    for text in texts[1:]:
        candidates = {p for p in candidates if p in text}
        if not candidates:
            break
    return sorted(candidates)[:PAIRS_MAX]


def search_pairs_recount(conn: sqlite3.Connection, *, afresh: bool = False) -> None:
    """Add to search_pairs the pairs every credential's search text now holds (call inside
    a write transaction, so no row is written between the check and the insert). The
    triggers only take pairs away (an insert or update lacking one), which keeps the set
    sound; this puts back what updates and deletes made universal, and fills the set for a
    table filled from empty. Each candidate not yet kept is looked for in a row lacking it:
    one that is not universal stops at the first such row; one that is reads every row (once:
    then it is kept). ``afresh``: start from an empty set and check every candidate in one
    scan (after a load without triggers)."""
    if afresh:
        conn.execute("DELETE FROM search_pairs")
        pairs = _sample_pairs(conn)
        if pairs:  # most candidates are universal here: one scan checks them all
            checks = ", ".join("min(instr(ifnull(search_text, ''), ?) > 0)" for _ in pairs)
            held = conn.execute(f"SELECT {checks} FROM credentials", pairs).fetchone()
            conn.executemany(
                "INSERT INTO search_pairs(pair) VALUES (?)",
                [(p,) for p, ok in zip(pairs, held, strict=True) if ok],
            )
        return
    kept = {pair for (pair,) in conn.execute("SELECT pair FROM search_pairs")}
    for pair in _sample_pairs(conn):
        if pair in kept:
            continue
        lacking = conn.execute(
            "SELECT 1 FROM credentials WHERE instr(ifnull(search_text, ''), ?) = 0 LIMIT 1",
            (pair,),
        ).fetchone()
        if lacking is None:
            conn.execute("INSERT INTO search_pairs(pair) VALUES (?)", (pair,))


# Credential fields whose change counts as "changed" (everything but the store's bookkeeping).
CONTENT_FIELDS = (
    "source",
    "kind",
    "native_id",
    "name",
    "location",
    "owner",
    "environment",
    "scope",
    "sensitivity",
    "created_at",
    "rotated_at",
    "expires_at",
    "ttl_seconds",
    "last_used_at",
    "last_used_evidence",
    "rotator",
    "max_age_days",
    "fingerprint",
    "version",
    "tags",
    "status",
)
BOOKKEEPING_FIELDS = ("first_seen_at", "last_seen_at", "gone_at", "stale_since", "stale_error")
DATETIME_FIELDS = (
    "created_at",
    "rotated_at",
    "expires_at",
    "last_used_at",
    "first_seen_at",
    "last_seen_at",
    "gone_at",
    "stale_since",
)
CRED_COLUMNS = ("id", *CONTENT_FIELDS, *BOOKKEEPING_FIELDS, "agents", "tags_text", "sync_id")
INSERT_CREDENTIAL = (
    f"INSERT INTO credentials({', '.join(CRED_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(CRED_COLUMNS))})"
)
# the columns the FTS triggers watch (TEXT_SEARCH_COLUMNS)
FTS_COLUMNS = TEXT_SEARCH_COLUMNS

# rotation_runs columns set_run_status may write (statuses: console.model.RunStatus)
RUN_FIELDS = (
    "started_at",
    "finished_at",
    "error",
    "pending_version",
    "previous_version",
    "playbook_run_id",
    "detail",
    "revoke_after",
    "owner_host",
    "owner_pid",
    "owner_started",
)
GENESIS_HASH = "0" * 64



# --- small conversions --------------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(UTC)


def ts(value: datetime | None) -> str | None:
    """A datetime as fixed-width ISO-8601 UTC text; naive datetimes are taken to be UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.utcoffset():
        value = value.astimezone(UTC)
    # any zero-offset tzinfo (pydantic's TzInfo(0), timezone.utc) prints +00:00
    return value.isoformat(timespec="microseconds")


def parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def to_json(value: Any) -> str:
    return ENCODER.encode(value)


def from_json(value: str | None, default: Any = None) -> Any:
    return json.loads(value) if value else default


def iter_rows(cursor: sqlite3.Cursor) -> Iterator[dict]:
    names = [d[0] for d in cursor.description]
    for row in cursor:
        yield dict(zip(names, row, strict=True))


def chunks(items: Sequence, size: int = 500) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]




# --- row <-> record -------------------------------------------------------------------------


def keep_what_a_partial_listing_blanked(row: dict, old: dict) -> None:
    """In a partial listing an empty field may mean "could not read it" (a denied tag or value
    read), not "it is gone": keep what the store knew (invariant 6)."""
    for name in CONTENT_FIELDS:
        if row[name] in (None, "") and old[name] not in (None, ""):
            row[name] = old[name]
    old_tags = from_json(old["tags"], {})
    if old_tags:
        merged = {**old_tags, **from_json(row["tags"], {})}
        row["tags"] = to_json(merged)
        row["tags_text"] = tags_text(merged)


def cred_row(cred: Credential) -> dict:
    data = cred.__dict__  # the validated fields; skipping model_dump matters at 1M rows
    row: dict[str, Any] = {"id": cred.id}
    for f in CONTENT_FIELDS:
        row[f] = data[f]
    for f in DATETIME_FIELDS:
        if f in row and row[f] is not None:
            row[f] = ts(row[f])
    row["tags"] = to_json(cred.tags)
    row["tags_text"] = tags_text(cred.tags)
    return row


def row_to_cred(row: dict) -> Credential:
    data = {k: row[k] for k in ("id", *CONTENT_FIELDS, *BOOKKEEPING_FIELDS)}
    data["tags"] = from_json(row["tags"], {})
    data["agents"] = row["agents"].split(" ") if row["agents"] else []
    data["finding"] = row.get("finding")
    data["no_use_evidence"] = row.get("no_use_evidence")
    return Credential.model_validate(data)


def row_to_grant(row: dict) -> Grant:
    return Grant(
        agent=row["agent"],
        credential_id=row["credential_id"],
        capabilities=from_json(row["capabilities"], []),
        chain=from_json(row["chain"], []),
        used=bool(row["used"]),
    )


def run_dict(row: dict) -> dict:
    row["plan"] = from_json(row["plan"], {})
    row["detail"] = from_json(row["detail"], None)
    return row


def error_summary(errors: list[ItemError]) -> str | None:
    if not errors:
        return None
    first = "; ".join(f"{e.where}: {e.message}" for e in errors[:3])
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    text = f"{len(errors)} error{'s' if len(errors) != 1 else ''}: {first}{more}"
    return text[:500]
