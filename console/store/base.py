"""Connections and transactions: one connection per thread, writes serialised."""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any, Self, TypeVar

import sqlite_utils

from console.errors import ReadCancelled, StoreError
from console.store.rows import (
    BUSY_TIMEOUT_MS,
    CANCEL_TICK_STEPS,
    iter_rows,
    parse_ts,
)
from console.store.schema import MIGRATIONS, migrate, schema_version

T = TypeVar("T")


class StoreBase:
    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        """Open the store, creating and upgrading it as needed; ``read_only`` opens an existing
        store of this keyshift's schema without writing anything, and refuses any other file
        (someone else's SQLite database, or an older store) with a clear message."""
        if str(path) == ":memory:":
            raise StoreError(
                "an in-memory store is not supported",
                hint="use a file in a temporary directory",
            )
        self.path = Path(path)
        self.read_only = read_only
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._conns_lock = threading.Lock()
        self._conns: dict[int, tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = {}
        self._closed = False
        try:
            with self._guard("open"):
                if read_only:
                    self._check_readable()
                    return
                if not self.path.parent.is_dir():
                    # a directory keyshift makes for its store is as private as the data dir
                    self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                    self.path.parent.chmod(0o700)
                if not self.path.exists():
                    # private from the first byte, whatever the umask (invariant 7): SQLite
                    # gives the -wal, -shm and -journal files the database's own mode
                    # (tests/test_file_modes.py checks it under umask 000)
                    fd = os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600)
                    try:
                        os.fchmod(fd, 0o600)  # a umask like 0277 would cut 0600 to 0400
                    finally:
                        os.close(fd)
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

    def _check_readable(self) -> None:
        if not self.path.is_file():
            raise StoreError(
                f"no store at {self.path}",
                hint="run keyshift sync first (without --read-only)",
            )
        conn = self._conn()
        version = schema_version(conn)
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if not version or not has_meta or self.get_meta("installation_id") is None:
            raise StoreError(
                f"{self.path} is not a keyshift store",
                hint="point --db at a keyshift store; read-only mode never creates one",
            )
        if version < len(MIGRATIONS):
            raise StoreError(
                f"the store is at schema version {version}, older than this keyshift "
                f"({len(MIGRATIONS)}); read-only mode does not upgrade it",
                hint="run one command without --read-only (e.g. keyshift sync) to upgrade it",
            )
        if version > len(MIGRATIONS):
            raise StoreError(
                f"the store is at schema version {version}, newer than this keyshift "
                f"({len(MIGRATIONS)})",
                hint="upgrade keyshift",
            )

    # connections and transactions ---------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise StoreError("the store is closed")
        # check_same_thread=False only so close() may close every thread's connection;
        # each connection is otherwise used by the thread that opened it.
        if self.read_only:
            conn = sqlite3.connect(
                f"{self.path.absolute().as_uri()}?mode=ro",
                uri=True,
                timeout=BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA query_only=ON")
            return self._register(conn)
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
        return self._register(conn)

    def _register(self, conn: sqlite3.Connection) -> sqlite3.Connection:
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
            cancelled = getattr(self._local, "cancelled", None)
            if text == "interrupted" and cancelled is not None and cancelled():
                raise ReadCancelled(f"{what} cancelled: its answer is no longer wanted") from None
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
    def cancellable(self, cancelled: Callable[[], bool]) -> Iterator[None]:
        """Reads this thread runs inside stop early, raising ReadCancelled, once
        ``cancelled()`` turns true: a count over a million rows whose query was replaced
        while it ran frees the reader at once instead of finishing a stale answer."""
        conn = self._conn()
        previous = getattr(self._local, "cancelled", None)
        self._local.cancelled = cancelled
        self.restore_progress_handler(conn)
        try:
            yield
        finally:
            self._local.cancelled = previous
            self.restore_progress_handler(conn)

    def restore_progress_handler(self, conn: sqlite3.Connection) -> None:
        """The progress handler this thread's reads run under: the cancel check, or none."""
        cancelled = getattr(self._local, "cancelled", None)
        if cancelled is None:
            conn.set_progress_handler(None, 0)
        else:
            conn.set_progress_handler(lambda: int(cancelled()), CANCEL_TICK_STEPS)

    def is_cancelled(self) -> bool:
        cancelled = getattr(self._local, "cancelled", None)
        return bool(cancelled is not None and cancelled())

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of writes. A nested call is a savepoint of the outer transaction:
        an exception it lets out undoes its own writes (and, unless caught, the outer's)."""
        if self.read_only:
            raise StoreError("the store is open read-only", hint="drop --read-only to change it")
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

    def _update_fields(
        self,
        table: str,
        where: dict[str, Any],
        fields: dict[str, Any],
        *,
        allowed: Sequence[str],
        json_fields: Sequence[str] = (),
        what: str,
    ) -> None:
        """UPDATE ``table`` SET the given fields WHERE every ``where`` column matches; datetimes
        as store text, ``json_fields`` as JSON (a None JSON field is stored as given).
        StoreError for a field not in ``allowed`` or when no row matched (``what`` names it)."""
        from console.store.rows import to_json, ts

        unknown = set(fields) - set(allowed)
        if unknown:
            raise StoreError(f"unknown {table} field(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for key, value in fields.items():
            if isinstance(value, datetime):
                value = ts(value)
            elif key in json_fields and value is not None:
                value = to_json(value)
            values[key] = value
        if not values:
            return
        sets = ", ".join(f"{k} = :{k}" for k in values)
        match = " AND ".join(f"{k} = :w_{k}" for k in where)
        with self.transaction():
            cur = self._conn().execute(
                f"UPDATE {table} SET {sets} WHERE {match}",
                {**values, **{f"w_{k}": v for k, v in where.items()}},
            )
            if cur.rowcount == 0:
                raise StoreError(f"no {what}")

    @contextmanager
    def read_snapshot(self) -> Iterator[None]:
        """Every read inside sees one state of the store (a WAL read transaction), however many
        statements it takes: a check that reads rows and then what sums them up (the audit
        chain and its head in meta) must not see another thread's write land in between."""
        conn = self._conn()
        if conn.in_transaction or getattr(self._local, "depth", 0):
            yield  # already inside a transaction: it is the snapshot
            return
        with self._guard("read"):
            conn.execute("BEGIN")
        try:
            yield
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def atomically(self, fn: Callable[[], T]) -> T:
        """``fn()`` in one transaction (joining this thread's, if one is open); its result."""
        with self.transaction():
            return fn()

    def _read(self, sql: str, params: Sequence | dict = ()) -> list[dict]:
        with self._guard("read"):
            return list(iter_rows(self._conn().execute(sql, params)))

    def _times_by_source(self, sql: str) -> dict[str, datetime]:
        """``source`` -> ``at`` of each row ``sql`` reads (rows with no time left out)."""
        out: dict[str, datetime] = {}
        for r in self._read(sql):
            at = parse_ts(r["at"])
            if at is not None:
                out[r["source"]] = at
        return out

    def _scalar(self, sql: str, params: Sequence | dict = ()) -> Any:
        with self._guard("read"):
            row = self._conn().execute(sql, params).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        if self._closed:
            return
        conn = getattr(self._local, "conn", None)
        if conn is not None and not self.read_only:
            # optimising is a courtesy; closing must not fail on it
            with suppress(sqlite3.Error):
                conn.execute("PRAGMA optimize")
        self._closed = True
        with self._conns_lock:
            for _ref, conn in self._conns.values():
                conn.close()
            self._conns.clear()
        self._local = threading.local()

    def __enter__(self) -> Self:
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

