"""The hash-chained audit log: verify finds every edit, deletion, reordering and truncation.

Tampering is done the way an attacker would: raw sqlite3 on the store file. The chain is
keyed (tests/test_audit_keyed.py covers the key, forgeries without it, and anchors).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from console import own_keys
from console.audit import GENESIS_HASH, AuditLog, current_actor
from console.redaction import ValueScope
from console.store import Store

N = 10


@pytest.fixture
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEYSHIFT_HOME", str(tmp_path / "home"))
    return tmp_path / "keyshift.db"


@pytest.fixture
def log(db_path: Path):  # type: ignore[no-untyped-def]
    store = Store(db_path)
    audit = AuditLog(store)
    for i in range(1, N + 1):
        audit.append(f"user{i % 3}", "rotate", f"cred-{i}", {"step": i, "note": f"entry {i}"})
    yield audit
    store.close()


def tamper(path: Path, sql: str, params: tuple = ()) -> None:
    conn = sqlite3.connect(path)
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def row(path: Path, seq: int) -> dict:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    found = conn.execute("SELECT * FROM audit_log WHERE seq = ?", (seq,)).fetchone()
    conn.close()
    return dict(found)


def test_append_and_verify(log: AuditLog, db_path: Path) -> None:
    result = log.verify()
    assert result.ok and result.count == N and result.bad_seq is None
    assert result.head == row(db_path, N)["hash"]
    assert result.message == f"OK {N} entries, head {result.head}"
    # the chain, recomputed independently of console.audit: HMAC-SHA256 under the audit key
    key = own_keys.audit_key()
    prev = "0" * 64
    for seq in range(1, N + 1):
        r = row(db_path, seq)
        assert r["prev_hash"] == prev
        assert r["key_id"] == key.key_id
        body = json.dumps(
            {
                "seq": seq,
                "at": r["at"],
                "actor": r["actor"],
                "action": r["action"],
                "target": r["target"],
                "detail": json.loads(r["detail"]),
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        assert r["hash"] == hmac.new(key.key, (prev + body).encode(), hashlib.sha256).hexdigest()
        prev = r["hash"]


def test_empty_log_verifies(db_path: Path) -> None:
    store = Store(db_path)
    result = AuditLog(store).verify()
    assert result.ok and result.count == 0 and result.head is None
    assert GENESIS_HASH in result.message
    store.close()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("detail", json.dumps({"step": 5, "note": "nothing happened"})),
        ("actor", "mallory"),
        ("at", "2020-01-01T00:00:00.000000+00:00"),
        ("action", "view"),
        ("target", "cred-other"),
    ],
)
def test_edited_entry(log: AuditLog, db_path: Path, column: str, value: str) -> None:
    tamper(db_path, f"UPDATE audit_log SET {column} = ? WHERE seq = 5", (value,))
    result = log.verify()
    assert not result.ok
    assert (result.bad_seq, result.reason) == (5, "edited")
    assert result.count == 4
    assert result.message == "audit chain broken at seq 5: edited (hash does not match its content)"


def test_edited_and_rehashed_entry(log: AuditLog, db_path: Path) -> None:
    """The attacker (even one with the key) recomputes the edited entry's own hash; the next
    entry's link betrays it."""
    r = row(db_path, 5)
    detail = {"step": 5, "note": "forged"}
    body = json.dumps(
        {"seq": 5, "at": r["at"], "actor": r["actor"], "action": r["action"],
         "target": r["target"], "detail": detail},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )  # fmt: skip
    key = own_keys.audit_key().key
    forged = hmac.new(key, (r["prev_hash"] + body).encode(), hashlib.sha256).hexdigest()
    tamper(
        db_path,
        "UPDATE audit_log SET detail = ?, hash = ? WHERE seq = 5",
        (json.dumps(detail), forged),
    )
    result = log.verify()
    assert (result.ok, result.bad_seq, result.reason) == (False, 5, "edited")


@pytest.mark.parametrize("seq", [6, 1])
def test_deleted_entry(log: AuditLog, db_path: Path, seq: int) -> None:
    tamper(db_path, "DELETE FROM audit_log WHERE seq = ?", (seq,))
    result = log.verify()
    assert (result.ok, result.bad_seq, result.reason) == (False, seq, "missing")
    assert result.message.startswith(f"audit chain broken at seq {seq}: missing")


def test_deleted_and_renumbered(log: AuditLog, db_path: Path) -> None:
    tamper(db_path, "DELETE FROM audit_log WHERE seq = 4")
    tamper(db_path, "UPDATE audit_log SET seq = seq - 1 WHERE seq > 4")
    result = log.verify()
    assert (result.ok, result.bad_seq, result.reason) == (False, 4, "missing")


def test_swapped_entries(log: AuditLog, db_path: Path) -> None:
    a, b = row(db_path, 4), row(db_path, 5)
    cols = [k for k in a if k != "seq"]
    sets = ", ".join(f"{c} = ?" for c in cols)
    tamper(db_path, f"UPDATE audit_log SET {sets} WHERE seq = 4", tuple(b[c] for c in cols))
    tamper(db_path, f"UPDATE audit_log SET {sets} WHERE seq = 5", tuple(a[c] for c in cols))
    result = log.verify()
    assert (result.ok, result.bad_seq, result.reason) == (False, 4, "reordered")


def test_truncated_tail(log: AuditLog, db_path: Path) -> None:
    tamper(db_path, "DELETE FROM audit_log WHERE seq > 8")
    result = log.verify()
    assert (result.ok, result.bad_seq, result.reason) == (False, 9, "truncated")
    assert "meta says 10 entries, found 8" in result.message
    assert result.count == 8


def test_forged_entry_appended_without_keyshift(log: AuditLog, db_path: Path) -> None:
    # unkeyed, after keyed entries: a forgery whatever its hash
    head = row(db_path, N)
    tamper(
        db_path,
        "INSERT INTO audit_log(seq, at, actor, action, target, detail, prev_hash, hash) "
        "VALUES (?, ?, 'mallory', 'x', '', '{}', ?, ?)",
        (N + 1, head["at"], head["hash"], "f" * 64),
    )
    result = log.verify()
    assert (result.ok, result.bad_seq, result.reason) == (False, N + 1, "forged")


def test_fields_are_written_as_given_never_rewritten(log: AuditLog, db_path: Path) -> None:
    # A value someone planted in a KV path (here a word that also names a source) is being
    # handled by a run: the audit trail must still say exactly what happened, unblinded.
    with ValueScope("a run") as scope:
        scope.add("vault-sandbox")
        entry = log.append("alice", "sync", "vault-sandbox", {"source": "vault-sandbox"})
    stored = row(db_path, entry.seq)
    assert stored["target"] == "vault-sandbox"
    assert json.loads(stored["detail"]) == {"source": "vault-sandbox"}
    assert log.verify().ok


def test_tail_and_entries(log: AuditLog) -> None:
    tail = log.tail(3)
    assert [e.seq for e in tail] == [8, 9, 10]
    assert tail[-1].detail == {"step": 10, "note": "entry 10"}
    assert tail[0].prev_hash == log.tail(4)[0].hash
    assert [e.seq for e in log.entries()] == list(range(1, N + 1))


def test_concurrent_appends_keep_one_chain(db_path: Path) -> None:
    store = Store(db_path)
    audit = AuditLog(store)

    def worker(name: str) -> None:
        for i in range(15):
            audit.append(name, "tick", str(i), {})

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # a second process (connection) appends too
    other = Store(db_path)
    AuditLog(other).append("other", "tick", "", {})
    other.close()
    result = audit.verify()
    assert result.ok and result.count == 61
    store.close()


def test_current_actor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYSHIFT_ACTOR", "ops-bot")
    assert current_actor() == "ops-bot"
    monkeypatch.delenv("KEYSHIFT_ACTOR")
    assert current_actor()


def test_verify_while_another_thread_appends_sees_one_state(log: AuditLog) -> None:
    """The schedule verifies the chain while a sync appends to it (two threads, one store):
    rows and meta's head must come from one snapshot, or a verify that walks the rows before
    an append and reads meta after it calls the chain truncated (seen in `make run`)."""
    import threading

    done = threading.Event()
    appended: list[int] = []

    def writer() -> None:
        try:
            for i in range(300):
                log.append("sync", "sync.source", f"src-{i}", {"i": i})
                appended.append(i)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    results = []
    while not done.is_set():
        results.append(log.verify())
    thread.join()
    results.append(log.verify())
    assert len(appended) == 300 and len(results) > 1
    bad = [r.message for r in results if not r.ok]
    assert bad == [], bad[:3]
    assert results[-1].count == N + 300
