"""The store's schema: forward-only migrations, each frozen as it shipped.

``schema_version`` has one row per applied migration; a database at version N gets
``MIGRATIONS[N:]``. A shipped migration is never edited and never reads a live constant (a
column list from console/query.py, say): if it did, changing that constant would change what
an old migration builds, and two stores at "version 2" would differ. Append a migration
instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import sqlite_utils

from console.errors import StoreError
from console.store.rows import ts, utcnow

# Frozen copies of what migration 2 indexed, as console/query.py defined them when it shipped.
_M002_NOCASE_SORT = (
    "agents",
    "environment",
    "kind",
    "location",
    "name",
    "owner",
    "rotator",
    "scope",
    "sensitivity",
    "source",
    "status",
)
_M002_FTS_COLUMNS = (
    "name",
    "location",
    "owner",
    "agents",
    "tags_text",
    "kind",
    "source",
    "environment",
    "scope",
)


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
    for column in _M002_NOCASE_SORT:
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
    cols = ", ".join(_M002_FTS_COLUMNS)
    new_vals = ", ".join(f"new.{c}" for c in _M002_FTS_COLUMNS)
    old_vals = ", ".join(f"old.{c}" for c in _M002_FTS_COLUMNS)
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


def _m003_claims(db: sqlite_utils.Database) -> None:
    """Claims (an active run holds its subject through a unique index), process identities
    for runs and syncs, the one run-status vocabulary, and when a rotation last recorded."""
    for sql in (
        "ALTER TABLE rotation_runs ADD COLUMN subject TEXT",
        "ALTER TABLE rotation_runs ADD COLUMN owner_host TEXT",
        "ALTER TABLE rotation_runs ADD COLUMN owner_pid INTEGER",
        "ALTER TABLE rotation_runs ADD COLUMN owner_started TEXT",
        "ALTER TABLE rotation_runs ADD COLUMN revoke_after TEXT",
        "UPDATE rotation_runs SET subject = credential_id",
        "UPDATE rotation_runs SET status = 'running' WHERE status = 'planned'",
        "UPDATE rotation_runs SET status = 'completed' WHERE status = 'done'",
        "UPDATE rotation_runs SET status = 'rolled-back' "
        "WHERE status IN ('failed', 'rolled_back', 'aborted')",
        "UPDATE rotation_runs SET revoke_after = json_extract(detail, '$.revoke_after') "
        "WHERE status = 'awaiting-revoke' AND json_valid(detail)",
        # two active runs of one credential (the race this migration closes): keep the newest
        "UPDATE rotation_runs SET status = 'abandoned', error = 'abandoned by the store "
        "upgrade: another run of the same credential was active' "
        "WHERE status IN ('running', 'awaiting-revoke', 'rollback-failed') AND rowid NOT IN ("
        "  SELECT max(rowid) FROM rotation_runs "
        "  WHERE status IN ('running', 'awaiting-revoke', 'rollback-failed') GROUP BY subject)",
        "CREATE UNIQUE INDEX ux_rotation_claim ON rotation_runs(subject) "
        "WHERE status IN ('running', 'awaiting-revoke', 'rollback-failed')",
        "CREATE INDEX ix_rotation_runs_subject ON rotation_runs(subject, created_at)",
        "ALTER TABLE rotation_steps ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE sync_runs ADD COLUMN owner_host TEXT",
        "ALTER TABLE sync_runs ADD COLUMN owner_pid INTEGER",
        "ALTER TABLE sync_runs ADD COLUMN owner_started TEXT",
        "ALTER TABLE credentials ADD COLUMN rotation_recorded_at TEXT",
    ):
        db.execute(sql)


def _m004_read_positions(db: sqlite_utils.Database) -> None:
    """Where each source read its evidence logs up to, so a new process reads only what was
    appended since (the Vault audit device), and lines are neither lost nor counted twice.
    And where in a file a finding was seen (exposure: file and line, for SARIF)."""
    db.execute("ALTER TABLE findings ADD COLUMN file TEXT")
    db.execute("ALTER TABLE findings ADD COLUMN line INTEGER")
    # the most severe open finding of each credential, kept by the findings refresh (the
    # credentials view shows it; like ``agents``, a denormalised column)
    db.execute("ALTER TABLE credentials ADD COLUMN finding TEXT")
    db.execute(
        """CREATE TABLE read_positions (
              source TEXT NOT NULL,
              log TEXT NOT NULL,
              inode INTEGER NOT NULL,
              offset INTEGER NOT NULL,
              head TEXT NOT NULL,
              malformed INTEGER NOT NULL DEFAULT 0,
              covers_since TEXT,
              updated_at TEXT NOT NULL,
              PRIMARY KEY (source, log)
            )"""
    )


def _m005_unattended(db: sqlite_utils.Database) -> None:
    """Unattended work: playbook steps, the schedule's jobs (what ran, when, and who holds a
    job now), alerts (each sent once, retried until delivered), and the key id of a keyed
    audit entry (NULL for the unkeyed entries written before)."""
    db.execute("ALTER TABLE audit_log ADD COLUMN key_id TEXT")
    db.execute("ALTER TABLE playbook_runs ADD COLUMN params TEXT")  # JSON
    db.execute("ALTER TABLE playbook_runs ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0")
    db.execute(
        """CREATE TABLE playbook_steps (
              run_id TEXT NOT NULL REFERENCES playbook_runs(id),
              position INTEGER NOT NULL,
              credential_id TEXT,
              action TEXT NOT NULL,                    -- rotate | finish | manual | ...
              status TEXT NOT NULL,                -- pending | running | done | failed | skipped
              rotation_run_id TEXT REFERENCES rotation_runs(id),
              error TEXT,
              started_at TEXT,
              finished_at TEXT,
              detail TEXT,                             -- JSON
              PRIMARY KEY (run_id, position)
            )"""
    )
    db.execute(
        """CREATE TABLE schedule_jobs (
              job TEXT PRIMARY KEY,
              last_started TEXT,
              last_finished TEXT,
              last_status TEXT,                        -- ok | failed | skipped
              last_error TEXT,
              failures_in_row INTEGER NOT NULL DEFAULT 0,
              next_due TEXT,
              owner_host TEXT,                         -- the process running it now
              owner_pid INTEGER,
              owner_started TEXT,
              detail TEXT,                             -- JSON: the last run's summary
              updated_at TEXT NOT NULL
            )"""
    )
    db.execute(
        """CREATE TABLE alerts (
              id INTEGER PRIMARY KEY,
              event TEXT NOT NULL,
              dedupe_key TEXT NOT NULL UNIQUE,         -- one alert per event and subject
              subject TEXT NOT NULL DEFAULT '',
              created_at TEXT NOT NULL,
              body TEXT NOT NULL,                      -- JSON, references only
              delivered_at TEXT,
              attempts INTEGER NOT NULL DEFAULT 0,
              last_error TEXT,
              next_attempt_at TEXT                     -- NULL: due now; else not tried before
            )"""
    )
    db.execute("CREATE INDEX ix_alerts_pending ON alerts(delivered_at, id)")


def _m006_task_owner(db: sqlite_utils.Database) -> None:
    """Who an incident task is assigned to (``actor`` is who last changed it)."""
    db.execute("ALTER TABLE incident_tasks ADD COLUMN owner TEXT")


# Frozen copy of the characters migration 7 counts (console.store.rows.SEARCH_CHARS).
_M007_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_./:=@"


def _m007_search_chars(db: sqlite_utils.Database) -> None:
    """The name index carries the search text, and one row counts the credentials whose
    search text holds each common character.

    With the search text in the name index, a text filter over the default order reads
    index entries instead of seeking every table row (a sparse or negated term walks the
    index several times faster). The counts answer a one-character term no row can satisfy
    (``!e`` when every credential has an e) without reading a row: the trigram index
    cannot answer terms that short. Kept by triggers, so every writer keeps them true."""
    columns = [f"c{ord(ch):02x}" for ch in _M007_CHARS]
    db.execute("DROP INDEX ix_cred_sort_name")
    db.execute(
        "CREATE INDEX ix_cred_sort_name ON credentials(name COLLATE NOCASE, id, search_text)"
    )
    db.execute(
        "CREATE TABLE search_chars (id INTEGER PRIMARY KEY CHECK (id = 1), "
        "rows INTEGER NOT NULL, " + ", ".join(f"{c} INTEGER NOT NULL" for c in columns) + ")"
    )

    def has(alias: str) -> list[str]:
        return [f"(instr({alias}.search_text, '{ch}') > 0)" for ch in _M007_CHARS]

    sums = ", ".join(f"ifnull(sum({h}), 0)" for h in has("c"))
    db.execute(f"INSERT INTO search_chars SELECT 1, count(*), {sums} FROM credentials c")

    def change(sign: str, alias: str) -> str:
        return ", ".join(
            [f"rows = rows {sign} 1"]
            + [f"{c} = {c} {sign} {h}" for c, h in zip(columns, has(alias), strict=True)]
        )

    cols = ", ".join(_M002_FTS_COLUMNS)
    # named credentials_fts_* so that a bulk load drops and recreates them with the FTS ones
    db.execute(
        "CREATE TRIGGER credentials_fts_chars_ai AFTER INSERT ON credentials BEGIN "
        f"UPDATE search_chars SET {change('+', 'new')} WHERE id = 1; END"
    )
    db.execute(
        "CREATE TRIGGER credentials_fts_chars_ad AFTER DELETE ON credentials BEGIN "
        f"UPDATE search_chars SET {change('-', 'old')} WHERE id = 1; END"
    )
    db.execute(
        f"CREATE TRIGGER credentials_fts_chars_au AFTER UPDATE OF {cols} ON credentials BEGIN "
        f"UPDATE search_chars SET {change('-', 'old')} WHERE id = 1; "
        f"UPDATE search_chars SET {change('+', 'new')} WHERE id = 1; END"
    )


def _m008_search_pairs(db: sqlite_utils.Database) -> None:
    """search_pairs: two-character substrings that every credential's search text holds.

    A negated two-character term (`!en`, typed on the way to `!env:dev`) matches nothing
    when every row holds the pair, but proving it walks every row (0.2 s at 1,000,000); the
    trigram index cannot answer terms that short. Kept sound by triggers (an insert or an
    update of a searched column lacking a pair removes it); rows deleted or changed may make
    a pair universal again, which a recount (after a sync, after a bulk load) puts back."""
    db.execute("CREATE TABLE search_pairs (pair TEXT PRIMARY KEY) WITHOUT ROWID")
    # the recount as it shipped (console.store.rows.search_pairs_recount)
    sample = [
        text or ""
        for (text,) in db.execute("SELECT search_text FROM credentials LIMIT 1000").fetchall()
    ]
    if sample:
        first = sample[0]
        candidates = {first[i : i + 2] for i in range(len(first) - 1)}
        for text in sample[1:]:
            candidates = {p for p in candidates if p in text}
        pairs = sorted(candidates)[:64]
        if pairs:
            checks = ", ".join("min(instr(ifnull(search_text, ''), ?) > 0)" for _ in pairs)
            held = db.execute(f"SELECT {checks} FROM credentials", pairs).fetchone()
            for pair, ok in zip(pairs, held, strict=True):
                if ok:
                    db.execute("INSERT INTO search_pairs(pair) VALUES (?)", [pair])
    lacking = (
        "DELETE FROM search_pairs WHERE instr(ifnull(new.search_text, ''), pair) = 0; END"
    )
    cols = ", ".join(_M002_FTS_COLUMNS)
    # named credentials_fts_* so that a bulk load drops and recreates them with the FTS ones
    db.execute(
        f"CREATE TRIGGER credentials_fts_pairs_ai AFTER INSERT ON credentials BEGIN {lacking}"
    )
    db.execute(
        f"CREATE TRIGGER credentials_fts_pairs_au AFTER UPDATE OF {cols} ON credentials "
        f"BEGIN {lacking}"
    )


# meta key: since when every token's use in the audit log has been read (see _m009)
TOKEN_USE_FROM = "token_use_evidence_from"


def _m009_token_use_evidence(db: sqlite_utils.Database) -> None:
    """Where the store already holds audit log read positions, the lines behind them may
    have been read by a keyshift that looked for KV reads only: their coverage says nothing
    about tokens. Evidence of a token's use (and so its ``never``) starts now for such a
    store; a store with no position yet reads every line for both from its first sync."""
    # a Vault audit log's position (CloudTrail's are named "cloudtrail:<region>")
    if db.execute(
        "SELECT 1 FROM read_positions WHERE log NOT LIKE 'cloudtrail:%' LIMIT 1"
    ).fetchone():
        db.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
            [TOKEN_USE_FROM, ts(utcnow())],
        )


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _m001_core,
    _m002_search,
    _m003_claims,
    _m004_read_positions,
    _m005_unattended,
    _m006_task_owner,
    _m007_search_chars,
    _m008_search_pairs,
    _m009_token_use_evidence,
]


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
