"""The store: keyshift's only shared state, and the only module that writes SQL.

SQLite through sqlite-utils, in WAL mode with foreign keys on and a busy timeout.

Threads: each thread gets its own connection (WAL lets the TUI's worker threads read while a
sync writes on another thread, without seeing half a transaction). Writes take a process-wide
lock and ``BEGIN IMMEDIATE``, so writers queue instead of failing on a lock upgrade, and another
keyshift process waits up to the busy timeout. Connections of threads that have ended are
closed when the next one opens; ``close()`` closes them all. ``:memory:`` is not supported
(each connection would see its own empty database): use a file in a temp dir.

Schema: forward-only migrations. ``schema_version`` has one row per applied migration; a
database at version N gets ``MIGRATIONS[N:]``. Never edit a shipped migration: append one.

Rows are never deleted from ``credentials``: a credential that leaves its source gets
``gone_at`` and status ``gone``; one whose source failed gets ``stale_since``/``stale_error``
(DESIGN.md invariant 6). Datetimes are ISO-8601 UTC text of fixed width (so text order is time
order); JSON columns are text.

Search: ``credentials_fts`` is an FTS5 trigram index (substring match, ASCII case ignored) over
the columns in ``console.query.TEXT_SEARCH_COLUMNS``; ``credentials.search_text`` is the same
text lowercased in one generated column (one ``instr`` per row when scanning);
``credential_tags`` holds tags as rows for ``tag:k=v``. Triggers keep all three in sync. Every
sortable column has an index ``(<col> COLLATE NOCASE, id)``. How a query is turned into SQL,
and why it switches between walking a sort index and FTS, is explained at ``_PlanBuilder``.
Trigram was chosen over unicode61 prefix queries because the filter promises substrings
("agents/sup", "0099") and prefix queries only find word starts; bench/store_page.py measures.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from console.errors import StoreError
from console.model import Credential, CredentialStatus, Grant, ItemError, UsageEvent
from console.query import (
    NOCASE_SORT,
    TEXT_SEARCH_COLUMNS,
    Query,
    Term,
    agents_text,
    sort_column,
    tags_text,
    time_limit,
)
from console.secrets import redact

BUSY_TIMEOUT_MS = 10_000
BULK_CACHE_KIB = -1_000_000  # negative: KiB, i.e. ~1 GB while bulk_insert_credentials runs
# The walk plan's budget (see _PlanBuilder). Time, not VM steps: a step that seeks a table row
# costs ten times one that compares a value, so a step budget is no bound on latency. Only
# which plan answers depends on it, never the rows returned.
WALK_BUDGET_MS = 50.0
WALK_TICK_STEPS = 200
# Matches the FTS index may return for the drive plan to be chosen without trying the walk.
FTS_FEW = 2_000
# Shortest substring the trigram index can answer; shorter terms always scan.
FTS_MIN_CHARS = 3

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
_DATETIME_FIELDS = (
    "created_at",
    "rotated_at",
    "expires_at",
    "last_used_at",
    "first_seen_at",
    "last_seen_at",
    "gone_at",
    "stale_since",
)
_CRED_COLUMNS = ("id", *CONTENT_FIELDS, *BOOKKEEPING_FIELDS, "agents", "tags_text", "sync_id")
_INSERT_CREDENTIAL = (
    f"INSERT INTO credentials({', '.join(_CRED_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_CRED_COLUMNS))})"
)
# the columns the FTS triggers watch (TEXT_SEARCH_COLUMNS)
_FTS_COLUMNS = TEXT_SEARCH_COLUMNS

# Rotation runs in one of these states are over; anything else is resumed after a crash.
# "completed" and "rolled-back" are the statuses console/rotation.py writes (added by the
# rotation helper; the engine's own list is console.rotation.TERMINAL).
TERMINAL_RUN_STATUSES = ("done", "failed", "rolled_back", "aborted", "completed", "rolled-back")
_RUN_FIELDS = (
    "started_at",
    "finished_at",
    "error",
    "pending_version",
    "previous_version",
    "playbook_run_id",
    "detail",
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


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _json(value: Any) -> str:
    return _ENCODER.encode(value)


def _loads(value: str | None, default: Any = None) -> Any:
    return json.loads(value) if value else default


def _rows(cursor: sqlite3.Cursor) -> Iterator[dict]:
    names = [d[0] for d in cursor.description]
    for row in cursor:
        yield dict(zip(names, row, strict=True))


def _chunks(items: Sequence, size: int = 500) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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


# --- migrations ---------------------------------------------------------------------------
# Each takes the connection inside an open transaction. Append only; never edit one.


def _m001_core(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);

        CREATE TABLE agents (
            name TEXT PRIMARY KEY,
            owner TEXT,
            environment TEXT,
            description TEXT NOT NULL DEFAULT '',
            identities TEXT NOT NULL DEFAULT '[]',      -- JSON list
            updated_at TEXT NOT NULL
        );

        CREATE TABLE sources (
            name TEXT PRIMARY KEY,
            type TEXT NOT NULL,
            environment TEXT,
            config TEXT NOT NULL DEFAULT '{}',          -- JSON; references only, never values
            updated_at TEXT NOT NULL
        );

        CREATE TABLE sync_runs (
            id INTEGER PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            actor TEXT NOT NULL,
            sources TEXT NOT NULL DEFAULT '[]',         -- JSON list of names
            status TEXT NOT NULL DEFAULT 'running',     -- running | ok | partial | failed
            summary TEXT                                -- JSON
        );

        CREATE TABLE sync_source_results (
            id INTEGER PRIMARY KEY,
            sync_id INTEGER NOT NULL REFERENCES sync_runs(id),
            source TEXT NOT NULL,
            status TEXT NOT NULL,                       -- ok | partial | failed
            new INTEGER NOT NULL DEFAULT 0,
            changed INTEGER NOT NULL DEFAULT 0,
            unchanged INTEGER NOT NULL DEFAULT 0,
            gone INTEGER NOT NULL DEFAULT 0,
            stale INTEGER NOT NULL DEFAULT 0,
            errors INTEGER NOT NULL DEFAULT 0,
            error TEXT,                                 -- one-line summary
            detail TEXT,                                -- JSON list of item errors
            at TEXT NOT NULL,
            UNIQUE (sync_id, source)
        );

        CREATE TABLE credentials (
            rid INTEGER PRIMARY KEY,                    -- stable rowid for the FTS index
            id TEXT NOT NULL UNIQUE,                    -- <source>:<kind>:<native id>
            source TEXT NOT NULL,
            kind TEXT NOT NULL,
            native_id TEXT NOT NULL,
            name TEXT NOT NULL,
            location TEXT NOT NULL DEFAULT '',
            owner TEXT,
            environment TEXT,
            scope TEXT,
            sensitivity TEXT,
            created_at TEXT,
            rotated_at TEXT,
            expires_at TEXT,
            ttl_seconds INTEGER,
            last_used_at TEXT,
            last_used_evidence TEXT,
            rotator TEXT,
            max_age_days INTEGER,
            fingerprint TEXT,
            version TEXT,
            tags TEXT NOT NULL DEFAULT '{}',            -- JSON object
            tags_text TEXT NOT NULL DEFAULT '',         -- "k=v k2=v2", for search
            status TEXT NOT NULL DEFAULT 'active',      -- active | inactive | stale | gone
            agents TEXT,                                -- derived from grants: "a b c" or NULL
            first_seen_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            gone_at TEXT,
            stale_since TEXT,
            stale_error TEXT,
            sync_id INTEGER REFERENCES sync_runs(id),   -- last sync that saw it
            -- what free text searches, ASCII-lowercased, columns joined by U+001F: one instr()
            -- per row instead of nine lower()s (console.query.TEXT_SEARCH_COLUMNS, in order)
            search_text TEXT GENERATED ALWAYS AS (lower(
                name || char(31) || ifnull(location, '') || char(31) || ifnull(owner, '')
                || char(31) || ifnull(agents, '') || char(31) || ifnull(tags_text, '')
                || char(31) || kind || char(31) || source || char(31)
                || ifnull(environment, '') || char(31) || ifnull(scope, ''))) STORED
        );

        CREATE TABLE grants (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,                       -- the source that reported it
            agent TEXT NOT NULL,
            credential_id TEXT NOT NULL,                -- may name a credential of another source
            capabilities TEXT NOT NULL DEFAULT '[]',    -- JSON list
            chain TEXT NOT NULL DEFAULT '[]',           -- JSON list: agent -> identity -> ...
            used INTEGER NOT NULL DEFAULT 0,
            sync_id INTEGER REFERENCES sync_runs(id),
            seen_at TEXT NOT NULL
        );
        CREATE INDEX ix_grants_credential ON grants(credential_id, agent);
        CREATE INDEX ix_grants_agent ON grants(agent COLLATE NOCASE);
        CREATE INDEX ix_grants_source ON grants(source);

        CREATE TABLE usage_events (
            id INTEGER PRIMARY KEY,
            credential_id TEXT NOT NULL,
            at TEXT NOT NULL,
            identity TEXT,
            remote TEXT,
            operation TEXT,
            evidence TEXT NOT NULL,
            source TEXT,
            sync_id INTEGER REFERENCES sync_runs(id)
        );
        -- NULLs are distinct in a UNIQUE index, so dedupe on the coalesced values
        CREATE UNIQUE INDEX ux_usage_dedupe ON usage_events(
            credential_id, at, coalesce(operation, ''), coalesce(identity, ''));

        CREATE TABLE findings (
            id TEXT PRIMARY KEY,
            rule TEXT NOT NULL,
            credential_id TEXT,
            agent TEXT,
            severity TEXT NOT NULL,
            title TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'open',        -- open | accepted | resolved
            first_seen_at TEXT,
            last_seen_at TEXT,
            accepted_until TEXT,
            accepted_reason TEXT,
            accepted_by TEXT,
            resolved_at TEXT,
            sync_id INTEGER REFERENCES sync_runs(id)
        );
        CREATE INDEX ix_findings_credential ON findings(credential_id);
        CREATE INDEX ix_findings_status ON findings(status, severity);

        CREATE TABLE playbook_runs (
            id TEXT PRIMARY KEY,
            playbook TEXT NOT NULL,
            actor TEXT NOT NULL,
            status TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            detail TEXT                                 -- JSON
        );

        CREATE TABLE rotation_runs (
            id TEXT PRIMARY KEY,
            credential_id TEXT NOT NULL REFERENCES credentials(id),
            rotator TEXT NOT NULL,
            status TEXT NOT NULL,                       -- planned | running | completed | ...
            plan TEXT NOT NULL DEFAULT '{}',            -- JSON
            actor TEXT NOT NULL,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            updated_at TEXT NOT NULL,
            error TEXT,
            pending_version TEXT,
            previous_version TEXT,
            playbook_run_id TEXT REFERENCES playbook_runs(id),
            detail TEXT                                 -- JSON
        );
        CREATE INDEX ix_rotation_runs_credential ON rotation_runs(credential_id, created_at);
        CREATE INDEX ix_rotation_runs_status ON rotation_runs(status);

        CREATE TABLE rotation_steps (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES rotation_runs(id),
            credential_id TEXT NOT NULL,
            rotator TEXT NOT NULL,
            step TEXT NOT NULL,                         -- plan | create | verify | promote | ...
            status TEXT NOT NULL,                       -- started | done | failed
            started_at TEXT NOT NULL,
            finished_at TEXT,
            error TEXT,
            detail TEXT                                 -- JSON
        );
        CREATE INDEX ix_rotation_steps_run ON rotation_steps(run_id, id);

        CREATE TABLE incidents (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            kind TEXT,                                  -- the playbook / scenario
            severity TEXT,
            status TEXT NOT NULL DEFAULT 'open',        -- open | closed
            actor TEXT NOT NULL,
            opened_at TEXT NOT NULL,
            closed_at TEXT,
            drill INTEGER NOT NULL DEFAULT 0,
            detail TEXT                                 -- JSON
        );

        CREATE TABLE incident_tasks (
            id INTEGER PRIMARY KEY,
            incident_id TEXT NOT NULL REFERENCES incidents(id),
            phase TEXT NOT NULL,                        -- detect | contain | eradicate | ...
            position INTEGER NOT NULL,
            title TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'todo',        -- todo | doing | done | skipped
            actor TEXT,
            started_at TEXT,
            done_at TEXT,
            note TEXT,
            evidence TEXT,                              -- JSON
            rotation_run_id TEXT REFERENCES rotation_runs(id)
        );
        CREATE INDEX ix_incident_tasks ON incident_tasks(incident_id, position);

        CREATE TABLE drill_runs (
            id TEXT PRIMARY KEY,
            scenario TEXT NOT NULL,
            incident_id TEXT REFERENCES incidents(id),
            actor TEXT NOT NULL,
            status TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            score REAL,
            detail TEXT                                 -- JSON
        );

        CREATE TABLE audit_log (
            seq INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '{}',          -- canonical JSON
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        """
    )


def _m002_search(db: sqlite_utils.Database) -> None:
    """Sort/filter indexes and the trigram FTS index (rebuilt from existing rows)."""
    statements = [
        "CREATE INDEX ix_cred_source ON credentials(source, id)",
        "CREATE INDEX ix_cred_fingerprint ON credentials(fingerprint)",
        "CREATE INDEX ix_cred_sort_age ON credentials(coalesce(rotated_at, created_at), id)",
    ]
    for column in sorted(NOCASE_SORT):
        statements.append(
            f"CREATE INDEX ix_cred_sort_{column} ON credentials({column} COLLATE NOCASE, id)"
        )
    for column in (
        "created_at",
        "rotated_at",
        "expires_at",
        "last_used_at",
        "first_seen_at",
        "last_seen_at",
    ):
        statements.append(f"CREATE INDEX ix_cred_sort_{column} ON credentials({column}, id)")
    cols = ", ".join(_FTS_COLUMNS)
    new_vals = ", ".join(f"new.{c}" for c in _FTS_COLUMNS)
    old_vals = ", ".join(f"old.{c}" for c in _FTS_COLUMNS)
    statements += [
        f"CREATE VIRTUAL TABLE credentials_fts USING fts5({cols}, content='credentials', "
        "content_rowid='rid', tokenize='trigram')",
        f"""CREATE TRIGGER credentials_fts_ai AFTER INSERT ON credentials BEGIN
              INSERT INTO credentials_fts(rowid, {cols}) VALUES (new.rid, {new_vals});
            END""",
        f"""CREATE TRIGGER credentials_fts_ad AFTER DELETE ON credentials BEGIN
              INSERT INTO credentials_fts(credentials_fts, rowid, {cols})
              VALUES ('delete', old.rid, {old_vals});
            END""",
        # only when a searched column is SET: bookkeeping updates cost no FTS work
        f"""CREATE TRIGGER credentials_fts_au AFTER UPDATE OF {cols} ON credentials BEGIN
              INSERT INTO credentials_fts(credentials_fts, rowid, {cols})
              VALUES ('delete', old.rid, {old_vals});
              INSERT INTO credentials_fts(rowid, {cols}) VALUES (new.rid, {new_vals});
            END""",
        "INSERT INTO credentials_fts(credentials_fts) VALUES ('rebuild')",
        # tags as rows, so tag:key=value is an index lookup rather than JSON parsed per row
        """CREATE TABLE credential_tags (
              rid INTEGER NOT NULL REFERENCES credentials(rid),
              key TEXT NOT NULL,
              value TEXT,
              PRIMARY KEY (rid, key)
            ) WITHOUT ROWID""",
        "CREATE INDEX ix_credential_tags ON credential_tags(key COLLATE NOCASE, "
        "value COLLATE NOCASE)",
        """CREATE TRIGGER credential_tags_ai AFTER INSERT ON credentials BEGIN
              INSERT INTO credential_tags(rid, key, value)
              SELECT new.rid, j.key, j.value FROM json_each(new.tags) j;
            END""",
        """CREATE TRIGGER credential_tags_au AFTER UPDATE OF tags ON credentials BEGIN
              DELETE FROM credential_tags WHERE rid = old.rid;
              INSERT INTO credential_tags(rid, key, value)
              SELECT new.rid, j.key, j.value FROM json_each(new.tags) j;
            END""",
        """CREATE TRIGGER credential_tags_ad AFTER DELETE ON credentials BEGIN
              DELETE FROM credential_tags WHERE rid = old.rid;
            END""",
        "INSERT INTO credential_tags(rid, key, value) "
        "SELECT c.rid, j.key, j.value FROM credentials c, json_each(c.tags) j",
    ]
    for sql in statements:
        db.execute(sql)


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_m001_core, _m002_search]


def schema_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if not exists:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return row[0] or 0


def migrate(conn: sqlite3.Connection, upto: int | None = None) -> list[int]:
    """Apply the migrations this database lacks (up to version ``upto``), each in its own
    transaction. Returns the versions applied."""
    db = sqlite_utils.Database(conn, execute_plugins=False)
    target = len(MIGRATIONS) if upto is None else upto
    applied: list[int] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.rollback()
        raise
    current = schema_version(conn)
    if current > len(MIGRATIONS):
        raise StoreError(
            f"the store is at schema version {current}, newer than this keyshift "
            f"({len(MIGRATIONS)})",
            hint="upgrade keyshift, or point --db at another file",
        )
    for version in range(current + 1, target + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # re-check under the write lock: another process may have migrated meanwhile
            if schema_version(conn) >= version:
                conn.execute("COMMIT")
                continue
            MIGRATIONS[version - 1](db)
            conn.execute(
                "INSERT INTO schema_version(version, applied_at) VALUES (?, ?)",
                (version, ts(utcnow())),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.rollback()
            raise
        applied.append(version)
    return applied


# --- the store ----------------------------------------------------------------------------


class Store:
    """Open (creating and migrating as needed) the store at ``path``."""

    def __init__(self, path: str | Path) -> None:
        if str(path) == ":memory:":
            raise StoreError(
                "an in-memory store is not supported",
                hint="use a file in a temporary directory",
            )
        self.path = Path(path)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._conns_lock = threading.Lock()
        self._conns: dict[int, tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = {}
        self._closed = False
        try:
            with self._guard("open"):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = self._conn()
                with self._write_lock:
                    migrate(conn)
                if self.get_meta("installation_id") is None:
                    with self.transaction():
                        if self.get_meta("installation_id") is None:
                            self.set_meta("installation_id", uuid.uuid4().hex)
        except BaseException:
            self.close()
            raise

    # connections and transactions ---------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise StoreError("the store is closed")
        # check_same_thread=False only so close() may close every thread's connection;
        # each connection is otherwise used by the thread that opened it.
        conn = sqlite3.connect(
            str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
        )
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(
                    f"could not put the store in WAL mode (got {mode})",
                    hint=f"put the store on a local filesystem: {self.path}",
                )
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint; safe in WAL
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.execute("PRAGMA cache_size=-32000")
        except BaseException:
            conn.close()
            raise
        self._local.conn = conn
        self._local.depth = 0
        current = threading.current_thread()
        with self._conns_lock:
            for ident, (ref, other) in list(self._conns.items()):
                thread = ref()
                if thread is None or not thread.is_alive():
                    other.close()
                    del self._conns[ident]
            self._conns[current.ident or 0] = (weakref.ref(current), conn)
        return conn

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's sqlite-utils view of the store (for the store's own use)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite_utils.Database(self._conn(), execute_plugins=False)
            self._local.db = db
        return db

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "locked" in text or "busy" in text:
                raise StoreError(
                    f"the store is busy ({what}): another keyshift process holds it",
                    hint="retry when the other sync or rotation finishes",
                ) from None
            raise StoreError(f"store error during {what}: {text}", hint=str(self.path)) from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"store error during {what}: {exc}",
                hint=f"is {self.path} a keyshift store? move it aside to start afresh",
            ) from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of writes. Nested calls become savepoints of the outer one."""
        conn = self._conn()
        with self._write_lock, self._guard("write"):
            depth = self._local.depth
            if depth == 0:
                conn.execute("BEGIN IMMEDIATE")
            else:
                conn.execute(f"SAVEPOINT sp{depth}")
            self._local.depth = depth + 1
            try:
                yield
            except BaseException:
                self._local.depth = depth
                if depth == 0:
                    conn.rollback()
                elif conn.in_transaction:
                    conn.execute(f"ROLLBACK TO sp{depth}")
                    conn.execute(f"RELEASE sp{depth}")
                raise
            self._local.depth = depth
            if depth == 0:
                conn.execute("COMMIT")
            else:
                conn.execute(f"RELEASE sp{depth}")

    def _read(self, sql: str, params: Sequence | dict = ()) -> list[dict]:
        with self._guard("read"):
            return list(_rows(self._conn().execute(sql, params)))

    def _scalar(self, sql: str, params: Sequence | dict = ()) -> Any:
        with self._guard("read"):
            row = self._conn().execute(sql, params).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        if self._closed:
            return
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            # optimising is a courtesy; closing must not fail on it
            with suppress(sqlite3.Error):
                conn.execute("PRAGMA optimize")
        self._closed = True
        with self._conns_lock:
            for _ref, conn in self._conns.values():
                conn.close()
            self._conns.clear()
        self._local = threading.local()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_version(self) -> int:
        return schema_version(self._conn())

    def pragma(self, name: str) -> Any:
        """Read one PRAGMA (tests check journal_mode and foreign_keys)."""
        if not name.replace("_", "").isalnum():
            raise StoreError(f"not a pragma name: {name!r}")
        return self._scalar(f"PRAGMA {name}")

    def analyze(self) -> None:
        """Refresh the query planner's statistics (sampled, so cheap on big tables)."""
        with self._write_lock, self._guard("analyze"):
            conn = self._conn()
            conn.execute("PRAGMA analysis_limit=1000")
            conn.execute("ANALYZE")

    # meta ---------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        return self._scalar("SELECT value FROM meta WHERE key = ?", (key,))

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self._conn().execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # agents and sources -------------------------------------------------------------------

    def upsert_agents(self, agents: Iterable[dict]) -> None:
        now = ts(utcnow())
        rows = [
            {
                "name": a["name"],
                "owner": a.get("owner"),
                "environment": a.get("environment"),
                "description": a.get("description") or "",
                "identities": _json(a.get("identities") or []),
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
                # summary of config: references only (invariant 3); redact as defence in depth
                "config": redact(_json(s.get("config") or {})),
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
            row["identities"] = _loads(row["identities"], [])
        return rows

    def sources(self) -> list[dict]:
        rows = self._read("SELECT * FROM sources ORDER BY name")
        for row in rows:
            row["config"] = _loads(row["config"], {})
        return rows

    # sync ---------------------------------------------------------------------------------

    def begin_sync(self, sources: list[str], actor: str) -> int:
        with self.transaction():
            cur = self._conn().execute(
                "INSERT INTO sync_runs(started_at, actor, sources, status) "
                "VALUES (?, ?, ?, 'running')",
                (ts(utcnow()), actor, _json(list(sources))),
            )
            return int(cur.lastrowid or 0)

    def apply_source(
        self,
        sync_id: int,
        source: str,
        credentials: list[Credential],
        grants: list[Grant],
        usage: list[UsageEvent],
        errors: list[ItemError],
        complete: bool,
    ) -> SourceChanges:
        """Write one source's listing (one transaction). See the module docstring."""
        now = ts(utcnow())
        changes = SourceChanges(errors=len(errors))
        incoming: dict[str, dict] = {}
        for cred in credentials:
            incoming[cred.id] = _cred_row(cred)
        error_summary = _error_summary(errors)
        with self.transaction():
            conn = self._conn()
            existing = {
                row["id"]: row
                for row in _rows(
                    conn.execute("SELECT * FROM credentials WHERE source = ?", (source,))
                )
            }
            missing = [i for i in incoming if i not in existing]
            for chunk in _chunks(missing):
                marks = ",".join("?" * len(chunk))
                for row in _rows(
                    conn.execute(f"SELECT * FROM credentials WHERE id IN ({marks})", list(chunk))
                ):
                    existing[row["id"]] = row
            new_rows: list[dict] = []
            changed_rows: list[dict] = []
            seen_ids: list[str] = []
            for cid, row in incoming.items():
                old = existing.get(cid)
                if old is None:
                    new_rows.append(row)
                    changes.new_ids.append(cid)
                    continue
                # usage evidence only accumulates: a source that no longer reports a last use
                # does not blank the one the store knew
                if old["last_used_at"] and (
                    row["last_used_at"] is None or row["last_used_at"] < old["last_used_at"]
                ):
                    row["last_used_at"] = old["last_used_at"]
                    row["last_used_evidence"] = old["last_used_evidence"]
                if not complete:
                    _keep_what_a_partial_listing_blanked(row, old)
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
                    [(now, error_summary, cid) for cid in unseen],
                )
                changes.stale = len(unseen)
            self._replace_grants(conn, source, grants, set(incoming), complete, now, sync_id)
            self._append_usage(conn, source, usage, sync_id)
            status = "ok" if complete and not errors else "partial"
            self._record_source_result(
                conn, sync_id, source, status, changes, error_summary, errors, now
            )
        return changes

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
        conn.executemany(_INSERT_CREDENTIAL, [tuple(r[c] for c in _CRED_COLUMNS) for r in rows])

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
                    _json(g.capabilities),
                    _json(g.chain),
                    int(g.used),
                    sync_id,
                    now,
                )
                for g in grants
            ],
        )
        self._refresh_agents(conn, sorted(affected | old))

    def _refresh_agents(self, conn: sqlite3.Connection, credential_ids: list[str]) -> None:
        """Recompute the denormalised ``agents`` column (search and sort) from grants."""
        for chunk in _chunks(credential_ids):
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
                redact(_json([e.model_dump() for e in errors])) if errors else None,
                now,
            ),
        )

    def mark_source_failed(self, sync_id: int, source: str, error: str) -> int:
        """The whole source failed: keep every row as it was, marked stale with the error."""
        now = ts(utcnow())
        error = redact(error)
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
                (ts(utcnow()), status, redact(_json(summary)), sync_id),
            )

    def _sync_dict(self, row: dict) -> dict:
        row["sources"] = _loads(row["sources"], [])
        row["summary"] = _loads(row["summary"], None)
        results = self._read(
            "SELECT source, status, new, changed, unchanged, gone, stale, errors, error, detail, "
            "at FROM sync_source_results WHERE sync_id = ? ORDER BY id",
            (row["id"],),
        )
        for r in results:
            r["detail"] = _loads(r["detail"], [])
        row["results"] = results
        return row

    def last_sync(self) -> dict | None:
        rows = self._read("SELECT * FROM sync_runs ORDER BY id DESC LIMIT 1")
        return self._sync_dict(rows[0]) if rows else None

    def sync_runs(self, limit: int = 20) -> list[dict]:
        rows = self._read("SELECT * FROM sync_runs ORDER BY id DESC LIMIT ?", (limit,))
        return [self._sync_dict(r) for r in rows]

    # credentials: reads -------------------------------------------------------------------

    def get_credential(self, credential_id: str) -> Credential | None:
        rows = self._read("SELECT * FROM credentials WHERE id = ?", (credential_id,))
        if not rows:
            return None
        cred = _row_to_cred(rows[0])
        cred.agents = sorted(
            {
                g["agent"]
                for g in self._read(
                    "SELECT agent FROM grants WHERE credential_id = ?", (credential_id,)
                )
            }
        )
        return cred

    def grants_for_credential(self, credential_id: str) -> list[Grant]:
        return [
            _row_to_grant(r)
            for r in self._read(
                "SELECT * FROM grants WHERE credential_id = ? ORDER BY agent, id", (credential_id,)
            )
        ]

    def grants_for_agent(self, name: str) -> list[Grant]:
        return [
            _row_to_grant(r)
            for r in self._read(
                "SELECT * FROM grants WHERE agent = ? COLLATE NOCASE ORDER BY credential_id, id",
                (name,),
            )
        ]

    def all_grants(self) -> list[Grant]:
        return [_row_to_grant(r) for r in self._read("SELECT * FROM grants ORDER BY id")]

    def usage_for_credential(self, credential_id: str, limit: int = 100) -> list[UsageEvent]:
        rows = self._read(
            "SELECT credential_id, at, identity, remote, operation, evidence FROM usage_events "
            "WHERE credential_id = ? ORDER BY at DESC, id DESC LIMIT ?",
            (credential_id, limit),
        )
        return [UsageEvent.model_validate(r) for r in rows]

    def count_credentials(
        self, query: Query | None = None, *, cap: int | None = None, plan: str = "auto"
    ) -> int:
        """How many credentials match. With ``cap`` the count stops at ``cap`` (the TUI shows
        "10,000+"): an exact count of a broad substring match over 1M rows is a full scan
        (seconds); a capped one stops as soon as it has found ``cap``. ``plan`` forces
        "walk" or "drive" (tests check both give the same answer)."""
        if cap is None and plan == "auto":
            plan = "drive"

        def sql(built: _Plan) -> tuple[str, list]:
            if cap is None:
                return f"SELECT count(*) FROM credentials c WHERE {built.where}", built.params
            return (
                f"SELECT count(*) FROM (SELECT 1 FROM credentials c WHERE {built.where} LIMIT ?)",
                [*built.params, cap],
            )

        rows = self._adaptive(query, sql, plan)
        return int(next(iter(rows[0].values())) if rows else 0)

    def page_credentials(
        self, query: Query | None = None, offset: int = 0, limit: int = 60, *, plan: str = "auto"
    ) -> list[Credential]:
        """One page of matches in the query's order (the TUI's table, 60 rows at a time).
        ``plan`` forces "walk" or "drive" (tests check both give the same rows)."""

        def sql(plan: _Plan) -> tuple[str, list]:
            return (
                f"SELECT c.* FROM credentials c WHERE {plan.where} ORDER BY {plan.order} "
                "LIMIT ? OFFSET ?",
                [*plan.params, limit, offset],
            )

        return [_row_to_cred(r) for r in self._adaptive(query, sql, plan)]

    def _adaptive(
        self, query: Query | None, make: Callable[[_Plan], tuple[str, list]], plan: str = "auto"
    ) -> list:
        """Run the walk plan within WALK_BUDGET_MS; when it runs out, the matches are sparse
        along the sort order, so run the drive plan instead (see ``_PlanBuilder``)."""
        if plan not in ("auto", "walk", "drive"):
            raise StoreError(f"unknown plan {plan!r}", hint="auto, walk or drive")
        if plan != "auto":
            sql, params = make(_PlanBuilder(query, plan).build())
            return self._read(sql, params)
        walk = _PlanBuilder(query, "walk").build()
        drive = _PlanBuilder(query, "drive").build()
        conn = self._conn()
        if not walk.selective and not self._few_fts_matches(drive):
            sql, params = make(walk)
            deadline = time.perf_counter() + WALK_BUDGET_MS / 1000
            expired = False

            def tick() -> int:
                nonlocal expired
                expired = time.perf_counter() > deadline
                return expired

            conn.set_progress_handler(tick, WALK_TICK_STEPS)
            try:
                with self._guard("read"):
                    return list(_rows(conn.execute(sql, params)))
            except StoreError:
                if not expired:
                    raise
            finally:
                conn.set_progress_handler(None, 0)
        sql, params = make(drive)
        return self._read(sql, params)

    def _few_fts_matches(self, drive: _Plan) -> bool:
        """Whether the FTS prefilter alone leaves at most FTS_FEW rows: then the drive plan is
        cheap and walking would only burn its budget. FTS5 stops at the LIMIT, so this costs
        well under a millisecond even for a term in every row."""
        if drive.fts_match is None:
            return False
        found = self._scalar(
            "SELECT count(*) FROM (SELECT 1 FROM credentials_fts WHERE credentials_fts MATCH ? "
            "LIMIT ?)",
            (drive.fts_match, FTS_FEW + 1),
        )
        return int(found or 0) <= FTS_FEW

    def explain(self, query: Query | None = None, mode: str = "walk") -> list[str]:
        """EXPLAIN QUERY PLAN of a page in the given plan mode (tests and benchmarks)."""
        plan = _PlanBuilder(query, mode).build()
        sql = f"SELECT c.* FROM credentials c WHERE {plan.where} ORDER BY {plan.order} LIMIT 60"
        return [r["detail"] for r in self._read(f"EXPLAIN QUERY PLAN {sql}", plan.params)]

    def all_credentials(self, query: Query | None = None) -> Iterator[Credential]:
        """Every match in the query's order, streamed (``keyshift ls``). Everything is read
        anyway, so filters drive (no early stop to gain from walking), unless there are none."""
        mode = "drive" if query is not None and query.terms else "walk"
        plan = _PlanBuilder(query, mode).build()
        sql = f"SELECT c.* FROM credentials c WHERE {plan.where} ORDER BY {plan.order}"
        with self._guard("read"):
            cursor = self._conn().execute(sql, plan.params)
        for row in _rows(cursor):
            yield _row_to_cred(row)

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
                row = _cred_row(cred)
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
        return total

    # rotation journal ---------------------------------------------------------------------

    def create_rotation_run(self, credential_id: str, rotator: str, plan: dict, actor: str) -> str:
        run_id = uuid.uuid4().hex
        now = ts(utcnow())
        with self.transaction():
            self._conn().execute(
                "INSERT INTO rotation_runs(id, credential_id, rotator, status, plan, actor, "
                "created_at, updated_at) VALUES (?, ?, ?, 'planned', ?, ?, ?, ?)",
                (run_id, credential_id, rotator, redact(_json(plan)), actor, now, now),
            )
        return run_id

    def start_step(self, run_id: str, step: str) -> int:
        """Journal a step as started, before it runs."""
        with self.transaction():
            conn = self._conn()
            run = conn.execute(
                "SELECT credential_id, rotator FROM rotation_runs WHERE id = ?", (run_id,)
            ).fetchone()
            if run is None:
                raise StoreError(f"no rotation run {run_id!r}")
            now = ts(utcnow())
            cur = conn.execute(
                "INSERT INTO rotation_steps(run_id, credential_id, rotator, step, status, "
                "started_at) VALUES (?, ?, ?, ?, 'started', ?)",
                (run_id, run[0], run[1], step, now),
            )
            conn.execute("UPDATE rotation_runs SET updated_at = ? WHERE id = ?", (now, run_id))
            return int(cur.lastrowid or 0)

    def finish_step(
        self, step_id: int, status: str, error: str | None = None, detail: dict | None = None
    ) -> None:
        if status not in ("done", "failed"):
            raise StoreError(f"a step finishes as done or failed, not {status!r}")
        with self.transaction():
            cur = self._conn().execute(
                "UPDATE rotation_steps SET status = ?, finished_at = ?, error = ?, detail = ? "
                "WHERE id = ?",
                (
                    status,
                    ts(utcnow()),
                    redact(error) if error else None,
                    redact(_json(detail)) if detail is not None else None,
                    step_id,
                ),
            )
            if cur.rowcount == 0:
                raise StoreError(f"no rotation step {step_id}")

    def set_run_status(self, run_id: str, status: str, **fields: Any) -> None:
        """Set a run's status and any of: started_at, finished_at, error, pending_version,
        previous_version, playbook_run_id, detail (dict). A terminal status sets finished_at."""
        unknown = set(fields) - set(_RUN_FIELDS)
        if unknown:
            raise StoreError(
                f"unknown rotation run field(s): {', '.join(sorted(unknown))}",
                hint=f"fields: {', '.join(_RUN_FIELDS)}",
            )
        now = utcnow()
        values: dict[str, Any] = {"status": status, "updated_at": ts(now)}
        if status in TERMINAL_RUN_STATUSES and "finished_at" not in fields:
            values["finished_at"] = ts(now)
        if status == "running" and "started_at" not in fields:
            values["started_at_default"] = ts(now)
        for key, value in fields.items():
            if isinstance(value, datetime):
                value = ts(value)
            elif key == "detail" and value is not None:
                value = redact(_json(value))
            elif key == "error" and value is not None:
                value = redact(str(value))
            values[key] = value
        sets = [f"{k} = :{k}" for k in values if k != "started_at_default"]
        if "started_at_default" in values:
            sets.append("started_at = coalesce(started_at, :started_at_default)")
        with self.transaction():
            cur = self._conn().execute(
                f"UPDATE rotation_runs SET {', '.join(sets)} WHERE id = :run_id",
                {**values, "run_id": run_id},
            )
            if cur.rowcount == 0:
                raise StoreError(f"no rotation run {run_id!r}")

    def get_rotation_run(self, run_id: str) -> dict | None:
        rows = self._read("SELECT * FROM rotation_runs WHERE id = ?", (run_id,))
        return _run_dict(rows[0]) if rows else None

    def rotation_steps(self, run_id: str) -> list[dict]:
        rows = self._read("SELECT * FROM rotation_steps WHERE run_id = ? ORDER BY id", (run_id,))
        for row in rows:
            row["detail"] = _loads(row["detail"], None)
        return rows

    def rotation_runs(
        self, credential_id: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[dict]:
        clauses, params = ["1"], []
        if credential_id is not None:
            clauses.append("credential_id = ?")
            params.append(credential_id)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        rows = self._read(
            f"SELECT * FROM rotation_runs WHERE {' AND '.join(clauses)} "
            "ORDER BY created_at DESC, rowid DESC LIMIT ?",
            [*params, limit],
        )
        return [_run_dict(r) for r in rows]

    def unfinished_rotation_runs(self) -> list[dict]:
        marks = ",".join("?" * len(TERMINAL_RUN_STATUSES))
        rows = self._read(
            f"SELECT * FROM rotation_runs WHERE status NOT IN ({marks}) ORDER BY created_at, rowid",
            TERMINAL_RUN_STATUSES,
        )
        return [_run_dict(r) for r in rows]

    def record_rotation(
        self, credential_id: str, rotated_at: datetime, version: str | None, fingerprint: str | None
    ) -> None:
        with self.transaction():
            cur = self._conn().execute(
                "UPDATE credentials SET rotated_at = ?, version = ?, fingerprint = ? WHERE id = ?",
                (ts(rotated_at), version, fingerprint, credential_id),
            )
            if cur.rowcount == 0:
                raise StoreError(f"no credential {credential_id!r}")

    # audit (low level; console/audit.py owns the chain) ------------------------------------

    def append_audit(self, row: dict) -> None:
        with self.transaction():
            self._conn().execute(
                "INSERT INTO audit_log(seq, at, actor, action, target, detail, prev_hash, hash) "
                "VALUES (:seq, :at, :actor, :action, :target, :detail, :prev_hash, :hash)",
                row,
            )

    def audit_rows(self, start_seq: int = 1) -> Iterator[dict]:
        with self._guard("read"):
            cursor = self._conn().execute(
                "SELECT * FROM audit_log WHERE seq >= ? ORDER BY seq", (start_seq,)
            )
        yield from _rows(cursor)

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


# --- query -> SQL ---------------------------------------------------------------------------

_TIME_SORT = {"expires": "expires_at", "used": "last_used_at", "age": "age"}
_TIME_COLUMNS = {
    "expires": "c.expires_at",
    "used": "c.last_used_at",
    "age": "coalesce(c.rotated_at, c.created_at)",
}


@dataclass
class _Plan:
    where: str
    params: list
    order: str
    selective: bool = False  # a term that pins a few rows (id or fingerprint): drive at once
    fts_match: str | None = None  # the drive plan's FTS prefilter, if any


class _PlanBuilder:
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

    def __init__(self, query: Query | None, mode: str, now: datetime | None = None) -> None:
        self.query = query
        self.walk = mode == "walk"
        self.now = now or utcnow()
        self.params: list = []
        self.selective = False
        self.fts_match: str | None = None
        self.sort = sort_column(query.sort) if query is not None else "name"

    def build(self) -> _Plan:
        query = self.query
        if query is None:
            return _Plan("1", [], "c.name COLLATE NOCASE, c.id")
        clauses: list[str] = []
        exact: list[Term] = []  # terms the FTS MATCH answers exactly: no row check needed
        if not self.walk:
            # one MATCH intersecting every positive term the trigram index can answer or
            # narrow down (FTS5 merges the doclists itself)
            parts = []
            for term in query.terms:
                expr, is_exact = _fts_prefilter(term)
                if expr:
                    parts.append(expr)
                    if is_exact:
                        exact.append(term)
            if parts:
                self.fts_match = " AND ".join(parts)
                clauses.append(
                    "c.rid IN (SELECT rowid FROM credentials_fts WHERE credentials_fts MATCH "
                    f"{self._p(self.fts_match)})"
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
        return _Plan(
            " AND ".join(clauses) or "1", self.params, order, self.selective, self.fts_match
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
        if name in _TIME_COLUMNS:
            column = _TIME_COLUMNS[name]
            if self.walk and _TIME_SORT[name] != self.sort:
                column = f"+{column}"
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
            return f"lower({column}) GLOB {self._p(_glob(str(value)))}"
        if op == "contains":
            return f"instr(lower({column}), {self._p(value)}) > 0"
        raise StoreError(f"unsupported filter operation {op!r}")


def _fts_phrase(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _fts_prefilter(term: Term) -> tuple[str | None, bool]:
    """An FTS5 expression every row matching ``term`` also matches, and whether it is exact
    (the same rows). Trigram MATCH is an ASCII-case-insensitive substring test per column."""
    if term.negate:
        return None, False
    value = str(term.value or "")
    if term.op == "text":
        return (_fts_phrase(value), True) if len(value) >= FTS_MIN_CHARS else (None, False)
    column = {"agent": "agents", "tag": "tags_text"}.get(term.field, term.field)
    if column not in _FTS_COLUMNS:
        return None, False
    if term.op == "contains":
        needle, exact = value, term.field != "agent"
    elif term.op == "glob":
        needle, exact = max(value.split("*"), key=len), False
    else:
        return None, False
    if len(needle) < FTS_MIN_CHARS:
        return None, False
    return f"{column} : {_fts_phrase(needle)}", exact


def _glob(pattern: str) -> str:
    """A ``*``-only wildcard pattern as a GLOB pattern with ``?`` and ``[`` taken literally."""
    return pattern.replace("[", "[[]").replace("?", "[?]")


# --- row <-> record -------------------------------------------------------------------------


def _keep_what_a_partial_listing_blanked(row: dict, old: dict) -> None:
    """In a partial listing an empty field may mean "could not read it" (a denied tag or value
    read), not "it is gone": keep what the store knew (invariant 6)."""
    for name in CONTENT_FIELDS:
        if row[name] in (None, "") and old[name] not in (None, ""):
            row[name] = old[name]
    old_tags = _loads(old["tags"], {})
    if old_tags:
        merged = {**old_tags, **_loads(row["tags"], {})}
        row["tags"] = _json(merged)
        row["tags_text"] = tags_text(merged)


def _cred_row(cred: Credential) -> dict:
    data = cred.__dict__  # the validated fields; skipping model_dump matters at 1M rows
    row: dict[str, Any] = {"id": cred.id}
    for f in CONTENT_FIELDS:
        row[f] = data[f]
    for f in _DATETIME_FIELDS:
        if f in row and row[f] is not None:
            row[f] = ts(row[f])
    row["tags"] = _json(cred.tags)
    row["tags_text"] = tags_text(cred.tags)
    return row


def _row_to_cred(row: dict) -> Credential:
    data = {k: row[k] for k in ("id", *CONTENT_FIELDS, *BOOKKEEPING_FIELDS)}
    data["tags"] = _loads(row["tags"], {})
    data["agents"] = row["agents"].split(" ") if row["agents"] else []
    return Credential.model_validate(data)


def _row_to_grant(row: dict) -> Grant:
    return Grant(
        agent=row["agent"],
        credential_id=row["credential_id"],
        capabilities=_loads(row["capabilities"], []),
        chain=_loads(row["chain"], []),
        used=bool(row["used"]),
    )


def _run_dict(row: dict) -> dict:
    row["plan"] = _loads(row["plan"], {})
    row["detail"] = _loads(row["detail"], None)
    return row


def _error_summary(errors: list[ItemError]) -> str | None:
    if not errors:
        return None
    first = "; ".join(f"{e.where}: {e.message}" for e in errors[:3])
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    text = f"{len(errors)} error{'s' if len(errors) != 1 else ''}: {first}{more}"
    return redact(text[:500])
