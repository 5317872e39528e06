"""The keyed audit chain and its anchors (issue 11): whoever can write the store file but lacks
the audit key cannot rewrite the chain consistently, and an anchor kept elsewhere catches a tail
cut with ``meta`` rewritten to match.

Forgeries are made the way an attacker would: raw sqlite3 on the store file, the chain and the
``meta`` anchor recomputed by this file's own code (plain sha256, or HMAC under a key), never
through console.audit. Keys are real entries in the session's Secret Service.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import keyring
import pytest
from test_cli import assert_one_line_error, run
from test_cli import env as env  # the CLI fixture (declared-only inventory, real keyring)

from console import own_keys
from console.audit import GENESIS_HASH, Anchor, AuditLog
from console.errors import AuditError, SecretError, UsageError
from console.store import Store

N = 10
SERVICE = "keyshift-test"


def _key_id(key_hex: str) -> str:
    return hmac.new(bytes.fromhex(key_hex), b"keyshift key id", hashlib.sha256).hexdigest()[:16]


def new_key() -> tuple[str, str]:
    """A fresh audit key in the keyring: (reference, hex value)."""
    name = f"audit-{uuid.uuid4().hex[:10]}"
    value = secrets.token_hex(32)
    keyring.set_password(SERVICE, name, value)
    return f"keyring:{SERVICE}/{name}", value


@pytest.fixture
def audit_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This test's own audit key (its hex value), named by $KEYSHIFT_AUDIT_KEY."""
    ref, value = new_key()
    monkeypatch.setenv("KEYSHIFT_AUDIT_KEY", ref)
    monkeypatch.delenv("KEYSHIFT_AUDIT_KEY_PREVIOUS", raising=False)
    own_keys._reset_for_tests()
    yield value
    own_keys._reset_for_tests()
    keyring.delete_password(*ref.removeprefix("keyring:").split("/", 1))


@pytest.fixture
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEYSHIFT_HOME", str(tmp_path / "home"))
    return tmp_path / "keyshift.db"


@pytest.fixture
def log(db_path: Path, audit_key: str) -> Iterator[AuditLog]:
    store = Store(db_path)
    audit = AuditLog(store)
    for i in range(1, N + 1):
        audit.append(f"user{i % 3}", "rotate", f"cred-{i}", {"step": i, "note": f"entry {i}"})
    yield audit
    store.close()


# --- the attacker's tools: sqlite3 and hashlib, nothing from console.audit --------------------


def rows(path: Path) -> list[dict]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    found = [dict(r) for r in conn.execute("SELECT * FROM audit_log ORDER BY seq")]
    conn.close()
    return found


def digest(prev: str, r: dict, key: bytes | None) -> str:
    body = json.dumps(
        {"seq": r["seq"], "at": r["at"], "actor": r["actor"], "action": r["action"],
         "target": r["target"], "detail": json.loads(r["detail"])},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )  # fmt: skip
    payload = (prev + body).encode()
    if key is None:
        return hashlib.sha256(payload).hexdigest()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def rechain(
    path: Path,
    start: int,
    *,
    key: bytes | None,
    key_id: str | bool | None = True,
    edit: dict[int, dict] | None = None,
) -> None:
    """Apply ``edit`` ({seq: {column: value}}), then recompute every hash from ``start`` on
    with ``key`` (None: plain sha256) and rewrite ``meta``'s head and count to match: a
    forgery as consistent as the attacker can make it. ``key_id=True`` keeps each row's."""
    conn = sqlite3.connect(path)
    for seq, changes in (edit or {}).items():
        for column, value in changes.items():
            conn.execute(f"UPDATE audit_log SET {column} = ? WHERE seq = ?", (value, seq))
    conn.commit()
    conn.close()
    all_rows = rows(path)
    conn = sqlite3.connect(path)
    prev = GENESIS_HASH
    for r in all_rows:
        if r["seq"] >= start:
            r["hash"] = digest(prev, r, key)
            new_id = r["key_id"] if key_id is True else key_id
            conn.execute(
                "UPDATE audit_log SET prev_hash = ?, hash = ?, key_id = ? WHERE seq = ?",
                (prev, r["hash"], new_id, r["seq"]),
            )
        prev = r["hash"]
    set_meta(conn, prev, len(all_rows))
    conn.commit()
    conn.close()


def set_meta(conn: sqlite3.Connection, head: str, count: int) -> None:
    conn.executemany(
        "UPDATE meta SET value = ? WHERE key = ?",
        [(head, "audit.head_hash"), (str(count), "audit.count")],
    )


def cut_tail(path: Path, from_seq: int) -> None:
    """Delete entries ``from_seq`` on and rewrite meta to the shorter chain: invisible
    without an anchor."""
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM audit_log WHERE seq >= ?", (from_seq,))
    head = conn.execute("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()[0]
    set_meta(conn, head, from_seq - 1)
    conn.commit()
    conn.close()


FORGED_DETAIL = {5: {"detail": json.dumps({"step": 5, "note": "nothing happened"})}}


# --- the key --------------------------------------------------------------------------------


def test_entries_are_keyed_and_name_their_key(log: AuditLog, db_path: Path, audit_key: str):
    kid = _key_id(audit_key)
    prev = GENESIS_HASH
    for r in rows(db_path):
        assert r["key_id"] == kid
        assert r["hash"] == digest(prev, r, bytes.fromhex(audit_key))
        assert r["hash"] != digest(prev, r, None)
        prev = r["hash"]
    assert log.tail(1)[0].key_id == kid
    result = log.verify()
    assert result.ok and result.count == N and result.unkeyed == 0


@pytest.mark.parametrize(
    ("how", "reason", "said"),
    [
        ({"key": None}, "forged", "plain sha256"),  # key_id kept
        ({"key": None, "key_id": None}, "forged", "unkeyed entry after keyed ones"),
        ({"key": b"\x01" * 32}, "edited", "hash does not match"),  # HMAC, a wrong key
    ],
    ids=["sha256", "sha256-unkeyed", "wrong-key"],
)
def test_a_chain_recomputed_without_the_key_is_caught(
    log: AuditLog, db_path: Path, how: dict, reason: str, said: str
) -> None:
    rechain(db_path, 5, edit=FORGED_DETAIL, **how)
    result = log.verify()
    assert (result.ok, result.bad_seq, result.reason) == (False, 5, reason)
    assert result.count == 4
    assert said in result.message and "seq 5" in result.message


def test_the_same_forgery_with_the_key_passes(
    log: AuditLog, db_path: Path, audit_key: str
) -> None:
    """What the key buys: the identical rewrite, made with it, is undetectable without an
    anchor. (So the chain's strength is exactly the key's secrecy.)"""
    anchor = log.anchor()
    rechain(db_path, 5, key=bytes.fromhex(audit_key), edit=FORGED_DETAIL)
    result = log.verify()
    assert result.ok and result.count == N
    assert log.entries()[4].detail == {"step": 5, "note": "nothing happened"}
    # an anchor taken before the rewrite still catches it
    late = log.verify(anchor)
    assert (late.ok, late.bad_seq, late.reason) == (False, N, "anchor")


def test_older_unkeyed_entries_then_keyed_ones_verify(
    db_path: Path, audit_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(db_path)
    log = AuditLog(store)
    log.append("old", "sync", "a", {"n": 1})
    log.append("old", "sync", "b", {"n": 2})
    log.append("old", "sync", "c", {"n": 3})
    # what keyshift wrote before the chain was keyed: plain sha256, no key id
    rechain(db_path, 1, key=None, key_id=None)
    for i in range(4):
        log.append("new", "rotate", f"k{i}", {"i": i})
    stored = rows(db_path)
    assert [r["key_id"] is None for r in stored] == [True] * 3 + [False] * 4
    result = log.verify()
    assert result.ok and result.count == 7 and result.unkeyed == 3
    assert result.message.endswith("(3 unkeyed, from before the chain was keyed)")
    # an entry keyed after the unkeyed ones, recomputed without the key, is caught
    anchor = log.anchor()
    rechain(db_path, 6, key=None, key_id=None)
    bad = log.verify()
    assert (bad.ok, bad.bad_seq, bad.reason) == (False, 6, "forged")
    assert "keyed since entry 4" in bad.message
    # the whole chain rewritten as if never keyed reads as an old store: the message says
    # every entry is unkeyed, and an anchor taken before catches it
    rechain(db_path, 4, key=None, key_id=None)
    downgraded = log.verify()
    assert downgraded.ok and downgraded.unkeyed == 7
    assert (log.verify(anchor).ok, log.verify(anchor).reason) == (False, "anchor")
    store.close()


def test_an_unkeyed_entry_after_keyed_ones_is_a_forgery(log: AuditLog, db_path: Path) -> None:
    # inserted in the middle: entries 6.. move up one, the newcomer is unkeyed, and the tail
    # is relinked as best the attacker can (plain sha256 from the newcomer on)
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE audit_log SET seq = seq + 100 WHERE seq >= 6")
    conn.execute("UPDATE audit_log SET seq = seq - 99 WHERE seq >= 106")
    conn.execute(
        "INSERT INTO audit_log(seq, at, actor, action, target, detail, prev_hash, hash) "
        "SELECT 6, at, 'mallory', 'secret.set', 'x', '{}', '', '' FROM audit_log WHERE seq = 5"
    )
    conn.commit()
    conn.close()
    rechain(db_path, 6, key=None, key_id=None)
    result = log.verify()
    assert (result.ok, result.bad_seq, result.reason) == (False, 6, "forged")
    assert "unkeyed entry after keyed ones (keyed since entry 1)" in result.message


def test_an_entry_keyed_with_another_key_cannot_be_checked(
    log: AuditLog, db_path: Path, audit_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_ref = os.environ["KEYSHIFT_AUDIT_KEY"]
    new_ref, new_value = new_key()
    monkeypatch.setenv("KEYSHIFT_AUDIT_KEY", new_ref)
    result = log.verify()
    assert (result.ok, result.bad_seq, result.reason) == (False, 1, "unverifiable")
    assert result.message == (
        f"audit chain unverifiable at seq 1: keyed with another key (id {_key_id(audit_key)}); "
        f"verify cannot check it (the audit key is id {_key_id(new_value)})"
    )
    assert result.hint and "KEYSHIFT_AUDIT_KEY_PREVIOUS" in result.hint
    # rotation: the old key named as the previous one; new entries use the new key
    monkeypatch.setenv("KEYSHIFT_AUDIT_KEY_PREVIOUS", old_ref)
    log.append("ops", "audit.key-rotated", "", {"from": _key_id(audit_key)})
    log.append("ops", "sync", "", {})
    assert [r["key_id"] for r in rows(db_path)[-3:]] == [
        _key_id(audit_key), _key_id(new_value), _key_id(new_value)
    ]
    result = log.verify()
    assert result.ok and result.count == N + 2
    # whoever still holds the old key cannot extend the chain past the rotation with it
    rechain(db_path, N + 2, key=bytes.fromhex(audit_key), key_id=_key_id(audit_key))
    forged = log.verify()
    assert (forged.ok, forged.bad_seq, forged.reason) == (False, N + 2, "forged")
    assert "previous key after entries under the current one" in forged.message
    keyring.delete_password(SERVICE, new_ref.split("/", 1)[1])


def test_without_the_key_verify_and_append_say_so_in_one_line(
    log: AuditLog, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    absent = f"keyring:{SERVICE}/absent-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("KEYSHIFT_AUDIT_KEY", absent)
    with pytest.raises(SecretError) as err:
        log.verify()
    line = err.value.one_line()
    assert "\n" not in line
    assert line.startswith("the audit key is unavailable")
    assert absent in line and "(hint: " in line
    with pytest.raises(SecretError):
        log.append("x", "y", "z", {})
    assert len(rows(db_path)) == N  # nothing appended unkeyed


def test_a_store_of_only_unkeyed_entries_verifies_without_the_key(
    db_path: Path, audit_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(db_path)
    log = AuditLog(store)
    log.append("old", "sync", "a", {})
    log.append("old", "sync", "b", {})
    rechain(db_path, 1, key=None, key_id=None)
    monkeypatch.setenv("KEYSHIFT_AUDIT_KEY", f"keyring:{SERVICE}/absent-{uuid.uuid4().hex}")
    result = log.verify()
    assert result.ok and result.count == 2 and result.unkeyed == 2
    store.close()


# --- anchors --------------------------------------------------------------------------------


def test_anchor_is_the_verified_head(log: AuditLog, db_path: Path, audit_key: str) -> None:
    anchor = log.anchor()
    head = rows(db_path)[-1]
    assert (anchor.seq, anchor.hash, anchor.key_id) == (N, head["hash"], _key_id(audit_key))
    assert isinstance(anchor.at, datetime) and anchor.at.tzinfo is not None
    assert anchor.text == f"{N}:{head['hash']}"
    assert Anchor.parse(anchor.text) == Anchor(N, head["hash"])
    # the anchor stays good while the chain grows (a daily anchor, checked later)
    log.append("later", "sync", "", {})
    assert log.verify(anchor).ok
    assert log.verify((anchor.seq, anchor.hash)).ok
    assert log.verify(anchor.text.upper()).message.endswith(f"; anchor {N} matches")


@pytest.mark.parametrize("cut_from", [N, 7])
def test_a_cut_tail_with_meta_rewritten_is_caught_by_the_anchor(
    log: AuditLog, db_path: Path, cut_from: int
) -> None:
    anchor = log.anchor()
    cut_tail(db_path, cut_from)
    assert log.verify().ok  # consistent without an anchor: why anchors are kept elsewhere
    result = log.verify(anchor)
    assert (result.ok, result.bad_seq, result.reason) == (False, cut_from, "truncated")
    assert f"the anchor names entry {N}, the chain ends at entry {cut_from - 1}" in result.message


def test_an_anchor_that_does_not_match_is_caught(log: AuditLog, db_path: Path) -> None:
    other = rows(db_path)[3]["hash"]  # entry 4's hash, offered as entry 6's
    result = log.verify(Anchor(6, other))
    assert (result.ok, result.bad_seq, result.reason) == (False, 6, "anchor")
    assert result.message.startswith("audit chain broken at seq 6: anchor (entry 6's hash is")
    assert other[:16] in result.message


def test_anchor_of_an_empty_log_and_of_a_broken_one(db_path: Path, audit_key: str) -> None:
    store = Store(db_path)
    log = AuditLog(store)
    empty = log.anchor()
    assert (empty.seq, empty.hash, empty.key_id) == (0, GENESIS_HASH, None)
    assert log.verify(empty).ok
    assert not log.verify((0, "1" * 64)).ok
    log.append("a", "b", "c", {})
    log.append("a", "b", "c", {})
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
    conn.commit()
    conn.close()
    with pytest.raises(AuditError) as err:
        log.anchor()  # an anchor vouches for the chain: a broken one gets none
    assert "seq 1: edited" in err.value.one_line()
    store.close()


@pytest.mark.parametrize("bad", ["", "5", "5:", ":" + "a" * 64, "x:" + "a" * 64,
                                 "5:" + "a" * 63, "5:" + "g" * 64, "-1:" + "a" * 64])
def test_a_malformed_anchor_is_a_usage_error(bad: str) -> None:
    with pytest.raises(UsageError) as err:
        Anchor.parse(bad)
    assert "SEQ:HASH" in err.value.one_line()


# --- the CLI --------------------------------------------------------------------------------


def test_cli_anchor_and_verify_exit_codes_and_the_key_nowhere(
    tmp_path: Path, env: dict[str, str], audit_key: str
) -> None:
    env["KEYSHIFT_AUDIT_KEY"] = os.environ["KEYSHIFT_AUDIT_KEY"]
    outputs: list[str] = []

    def ks(*args: str):  # type: ignore[no-untyped-def]
        proc = run(tmp_path, env, *args)
        outputs.extend((proc.stdout, proc.stderr))
        return proc

    assert ks("sync").returncode == 0
    assert ks("sync").returncode == 0
    text = ks("audit", "anchor")
    assert text.returncode == 0, text.stderr
    anchor = text.stdout.strip()
    seq_s, hash_ = anchor.split(":")
    seq = int(seq_s)
    assert rows(tmp_path / "ks.db")[-1]["hash"] == hash_ and rows(tmp_path / "ks.db")[-1][
        "seq"
    ] == seq
    as_json = json.loads(ks("audit", "anchor", "--format", "json").stdout)
    assert as_json["anchor"] == anchor and as_json["seq"] == seq and as_json["hash"] == hash_
    assert as_json["key_id"] == _key_id(audit_key)
    assert datetime.fromisoformat(as_json["at"]).tzinfo is not None

    ok = ks("audit", "verify", "--anchor", anchor)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().endswith(f"; anchor {seq} matches")
    assert ks("--read-only", "audit", "verify", "--anchor", anchor).returncode == 0

    assert_one_line_error(ks("audit", "verify", "--anchor", "nonsense"), 2, "SEQ:HASH")
    wrong = f"{seq}:{'0' * 64}"
    assert_one_line_error(ks("audit", "verify", "--anchor", wrong), 7, f"seq {seq}", "anchor")

    cut_tail(tmp_path / "ks.db", seq - 1)
    assert ks("audit", "verify").returncode == 0  # meta rewritten to match: looks whole
    assert_one_line_error(
        ks("audit", "verify", "--anchor", anchor), 7, f"seq {seq - 1}", "truncated"
    )

    rechain(tmp_path / "ks.db", 2, key=None, key_id=None)
    assert_one_line_error(ks("audit", "verify"), 7, "seq 2", "forged")
    assert_one_line_error(ks("audit", "anchor"), 7, "seq 2", "forged")

    # the key, whichever way it could leak: hex either case, raw bytes, in any file
    store_bytes = (tmp_path / "ks.db").read_bytes()
    files = [p for p in (tmp_path / "home").rglob("*") if p.is_file()]
    blobs = [store_bytes, *(p.read_bytes() for p in files)]
    everything = "\n".join(outputs)
    for needle in (audit_key, audit_key.upper(), audit_key[:32]):
        assert needle not in everything
        assert all(needle.encode() not in blob for blob in blobs)
    assert all(bytes.fromhex(audit_key) not in blob for blob in blobs)
    assert any(p.suffix == ".log" for p in files)  # the log file was searched too


def test_cli_verify_without_the_key_is_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    assert run(tmp_path, env, "sync").returncode == 0
    absent = f"keyring:{SERVICE}/absent-{uuid.uuid4().hex[:8]}"
    env["KEYSHIFT_AUDIT_KEY"] = absent
    for args in (("audit", "verify"), ("audit", "anchor")):
        assert_one_line_error(run(tmp_path, env, *args), 5, "the audit key is unavailable",
                              absent, "hint:")


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [("hash", "é" * 64, "edited"), ("prev_hash", 12345, "missing"), ("key_id", 7, "unverifiable")],
)
def test_odd_values_an_editor_may_write_are_findings_not_crashes(
    log: AuditLog, db_path: Path, column: str, value: object, reason: str
) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute(f"UPDATE audit_log SET {column} = ? WHERE seq = 3", (value,))
    conn.commit()
    conn.close()
    result = log.verify()
    assert (result.ok, result.bad_seq, result.reason) == (False, 3, reason)


def test_cli_anchor_post_sends_it_once_to_the_alert_channel(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """`audit anchor --post` sends the head to the inventory's webhook (a real loopback
    receiver), once per head; with the receiver gone it says so and exits 1."""
    import http.server
    import threading

    got: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(inventory.read_text() + "alerts:\n  webhook: {url: env:KS_ANCHOR_HOOK}\n")
    env["KS_ANCHOR_HOOK"] = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        assert run(tmp_path, env, "sync").returncode == 0
        posted = run(tmp_path, env, "audit", "anchor", "--post")
        assert posted.returncode == 0, posted.stderr
        anchor = posted.stdout.strip()
        assert [b["anchor"] for b in got] == [anchor]
        assert got[0]["event"] == "audit-anchor" and anchor in got[0]["text"]
        assert run(tmp_path, env, "audit", "anchor", "--post").returncode == 0
        assert len(got) == 1  # the same head is posted once
    finally:
        server.shutdown()
        server.server_close()
    assert run(tmp_path, env, "sync").returncode == 0  # a new head, and nobody listening
    assert_one_line_error(run(tmp_path, env, "audit", "anchor", "--post"), 1, "not posted")
    assert env["KS_ANCHOR_HOOK"] not in "".join(
        p.read_text() for p in (tmp_path / "home").glob("*.log"))


def test_cli_anchor_post_without_a_channel_is_a_usage_error(
    tmp_path: Path, env: dict[str, str]
) -> None:
    assert run(tmp_path, env, "sync").returncode == 0
    assert_one_line_error(run(tmp_path, env, "audit", "anchor", "--post"), 2, "alerts:")
