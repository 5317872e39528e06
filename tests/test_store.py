"""The store: migrations, sync bookkeeping (new/changed/gone/stale), paging, FTS, journal."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from console import store as store_mod
from console.errors import StoreError
from console.model import Credential, Grant, ItemError, UsageEvent
from console.process import Owner, me
from console.query import parse
from console.store import MIGRATIONS, Store
from console.store.rows import BUSY_TIMEOUT_MS
from console.store.runs import ClaimHeld

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEYSHIFT_HOME", str(tmp_path / "home"))
    return tmp_path / "keyshift.db"


@pytest.fixture
def store(db_path: Path):  # type: ignore[no-untyped-def]
    s = Store(db_path)
    yield s
    s.close()


def mk(i: int, source: str = "vault-prod", **kw) -> Credential:  # type: ignore[no-untyped-def]
    data = {
        "id": f"{source}:kv:secret/app{i}",
        "source": source,
        "kind": "kv",
        "native_id": f"secret/app{i}",
        "name": f"app{i}",
        "location": f"secret/data/app{i}",
        "owner": "team-a",
        "environment": "prod",
        "created_at": T0 + timedelta(days=i),
        "tags": {"n": str(i)},
        "fingerprint": f"hmac-sha256:{i:032x}",
    }
    data.update(kw)
    return Credential(**data)


def raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    return conn


def snapshot(path: Path, ignore: tuple[str, ...] = ()) -> dict[str, dict]:
    with raw(path) as conn:
        rows = conn.execute("SELECT * FROM credentials").fetchall()
    keys = rows[0].keys() if rows else []  # sqlite3.Row iterates values, not keys
    return {r["id"]: {k: r[k] for k in keys if k not in ignore} for r in rows}


def apply(store: Store, creds, grants=(), usage=(), errors=(), complete=True, source="vault-prod"):  # type: ignore[no-untyped-def]
    sync = store.begin_sync([source], "tester")
    changes = store.apply_source(
        sync, source, list(creds), list(grants), list(usage), list(errors), complete
    )
    store.finish_sync(sync, "ok", {"source": source})
    return changes


# --- schema -----------------------------------------------------------------------------


def test_fresh_store_is_migrated_wal_and_foreign_keys(store: Store, db_path: Path) -> None:
    assert store.schema_version() == len(MIGRATIONS) >= 2
    assert store.pragma("journal_mode") == "wal"
    assert store.pragma("foreign_keys") == 1
    assert store.pragma("busy_timeout") == BUSY_TIMEOUT_MS
    # every thread's connection gets the same settings
    seen: list = []
    worker = threading.Thread(target=lambda: seen.append(store.pragma("foreign_keys")))
    worker.start()
    worker.join()
    assert seen == [1]
    # and foreign keys are enforced, not just declared
    with pytest.raises(StoreError):
        claim(store, "no-such:credential")
    assert store.get_meta("installation_id")


def test_reopening_does_not_rerun_migrations(db_path: Path) -> None:
    Store(db_path).close()
    with raw(db_path) as conn:
        before = conn.execute("SELECT version, applied_at FROM schema_version").fetchall()
    Store(db_path).close()
    with raw(db_path) as conn:
        after = conn.execute("SELECT version, applied_at FROM schema_version").fetchall()
        assert store_mod.migrate(conn) == []
    assert [tuple(r) for r in before] == [tuple(r) for r in after]
    assert [r["version"] for r in after] == list(range(1, len(MIGRATIONS) + 1))


def test_version_2_runs_upgrade_to_one_vocabulary_and_one_claim(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    store_mod.migrate(conn, upto=2)
    conn.execute(
        "INSERT INTO credentials(id, source, kind, native_id, name, first_seen_at, last_seen_at) "
        "VALUES ('v:kv:a', 'v', 'kv', 'a', 'a', '2025-01-01', '2025-01-01')"
    )
    for run_id, status, created in (
        ("r1", "planned", "2025-01-01"),  # two active runs of one credential: the old race
        ("r2", "awaiting-revoke", "2025-01-02"),
        ("r3", "done", "2025-01-03"),
    ):
        conn.execute(
            "INSERT INTO rotation_runs(id, credential_id, rotator, status, actor, created_at, "
            "updated_at, detail) VALUES (?, 'v:kv:a', 'vault-kv', ?, 'x', ?, ?, ?)",
            (run_id, status, created, created, '{"revoke_after": "2025-01-03T00:00:00+00:00"}'),
        )
    conn.commit()
    conn.close()
    with Store(db_path) as store:
        status = {r["id"]: r["status"] for r in store.rotation_runs(limit=10)}
        assert status == {"r1": "abandoned", "r2": "awaiting-revoke", "r3": "completed"}
        assert store.get_rotation_run("r2")["revoke_after"] == "2025-01-03T00:00:00+00:00"
        assert store.active_run("v:kv:a")["id"] == "r2"


def test_read_only_open_never_writes_and_refuses_what_it_cannot_read(db_path: Path) -> None:
    with pytest.raises(StoreError, match="no store"):
        Store(db_path, read_only=True)
    assert not db_path.exists()
    # someone else's SQLite file: not upgraded, not switched to WAL, refused
    foreign = db_path.with_name("other.db")
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    before = foreign.read_bytes()
    with pytest.raises(StoreError, match="not a keyshift store"):
        Store(foreign, read_only=True)
    assert foreign.read_bytes() == before
    assert not foreign.with_name("other.db-wal").exists()
    # an older keyshift store: refused, not upgraded
    with sqlite3.connect(db_path) as conn:
        store_mod.migrate(conn, upto=2)
        conn.execute("INSERT INTO meta VALUES ('installation_id', 'x')")
    with pytest.raises(StoreError, match="older than this keyshift") as err:
        Store(db_path, read_only=True)
    assert "without --read-only" in err.value.one_line()
    with raw(db_path) as conn:
        assert store_mod.schema_version(conn) == 2
    # a current store opens; reads work and writes are refused
    Store(db_path).close()
    with Store(db_path, read_only=True) as ro:
        assert ro.get_meta("installation_id") == "x"
        with pytest.raises(StoreError, match="read-only"):
            ro.set_meta("k", "v")


def test_database_at_version_1_migrates_forward(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    assert store_mod.migrate(conn, upto=1) == [1]
    assert store_mod.schema_version(conn) == 1
    # a row written by a version-1 keyshift (before FTS and tag rows existed)
    conn.execute(
        "INSERT INTO credentials(id, source, kind, native_id, name, location, tags, tags_text, "
        "first_seen_at, last_seen_at) VALUES ('old:kv:x', 'old', 'kv', 'x', 'legacy-zebra', "
        "'secret/x', '{\"team\":\"ops\"}', 'team=ops', '2025-01-01', '2025-01-01')"
    )
    conn.commit()
    conn.close()
    store = Store(db_path)
    assert store.schema_version() == len(MIGRATIONS)
    for plan in ("walk", "drive"):  # drive goes through the FTS index and the tag rows
        assert [c.id for c in store.page_credentials(parse("zebra"), plan=plan)] == ["old:kv:x"]
        assert [c.id for c in store.page_credentials(parse("tag:team=ops"), plan=plan)] == [
            "old:kv:x"
        ]
    store.close()


def test_newer_schema_is_refused(db_path: Path) -> None:
    Store(db_path).close()
    with raw(db_path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 'future')", (len(MIGRATIONS) + 1,))
    with pytest.raises(StoreError, match="newer than this keyshift"):
        Store(db_path)


def test_memory_and_garbage_files_are_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Store(":memory:")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError) as err:
        Store(junk)
    assert err.value.hint


# --- apply_source -----------------------------------------------------------------------


def test_new_changed_unchanged_counts(store: Store, db_path: Path) -> None:
    creds = [mk(i) for i in range(10)]
    first = apply(store, creds)
    assert (first.new, first.changed, first.unchanged, first.gone, first.stale) == (10, 0, 0, 0, 0)
    assert sorted(first.new_ids) == sorted(c.id for c in creds)

    before = snapshot(db_path, ignore=("last_seen_at", "sync_id"))
    again = apply(store, creds)
    assert (again.new, again.changed, again.unchanged, again.gone) == (0, 0, 10, 0)
    assert snapshot(db_path, ignore=("last_seen_at", "sync_id")) == before

    edited = list(creds)
    edited[2] = mk(2, owner="team-b")
    edited[5] = mk(5, tags={"n": "5", "extra": "yes"})
    edited[7] = mk(7, expires_at=T0 + timedelta(days=400))
    third = apply(store, edited)
    assert (third.new, third.changed, third.unchanged) == (0, 3, 7)
    assert sorted(third.changed_ids) == sorted(creds[i].id for i in (2, 5, 7))
    assert store.get_credential(creds[2].id).owner == "team-b"
    assert store.get_credential(creds[5].id).tags == {"n": "5", "extra": "yes"}
    first_seen = store.get_credential(creds[2].id).first_seen_at
    assert first_seen == store.get_credential(creds[3].id).first_seen_at


def test_complete_listing_marks_missing_gone_and_reappearing_ungone(
    store: Store, db_path: Path
) -> None:
    creds = [mk(i) for i in range(5)]
    apply(store, creds)
    changes = apply(store, creds[:3])
    assert changes.gone == 2 and sorted(changes.gone_ids) == [creds[3].id, creds[4].id]
    gone = store.get_credential(creds[4].id)
    assert gone is not None and gone.status == "gone" and gone.gone_at is not None
    assert gone.name == "app4" and gone.fingerprint == creds[4].fingerprint  # row kept
    assert store.count_credentials() == 5
    assert store.count_credentials(parse("status:gone")) == 2

    # a second complete listing without them does not count them gone again
    assert apply(store, creds[:3]).gone == 0

    back = apply(store, creds[:4])
    assert back.changed_ids == [creds[3].id] and back.gone == 0
    revived = store.get_credential(creds[3].id)
    assert revived.status == "active" and revived.gone_at is None
    assert store.get_credential(creds[4].id).status == "gone"


def test_partial_listing_keeps_rows_and_marks_unseen_stale(store: Store, db_path: Path) -> None:
    creds = [mk(i) for i in range(6)]
    grants = [Grant(agent="bot", credential_id=c.id, capabilities=["read"]) for c in creds]
    apply(store, creds, grants)
    before = snapshot(db_path)
    errors = [ItemError(where="secret/app4", message="permission denied")]
    changes = apply(store, creds[:3], grants[:3], errors=errors, complete=False)
    assert (changes.new, changes.unchanged, changes.gone, changes.stale, changes.errors) == (
        0,
        3,
        0,
        3,
        1,
    )
    after = snapshot(db_path)
    assert set(after) == set(before)
    for cid, row in after.items():
        assert row["gone_at"] is None and row["status"] == "active"
        for key in ("name", "owner", "fingerprint", "tags", "created_at", "agents"):
            assert row[key] == before[cid][key], (cid, key)
    for c in creds[3:]:
        got = store.get_credential(c.id)
        assert got.stale_since is not None
        assert "permission denied" in got.stale_error and "secret/app4" in got.stale_error
        assert [g.agent for g in store.grants_for_credential(c.id)] == ["bot"]  # grants kept
    for c in creds[:3]:
        assert store.get_credential(c.id).stale_since is None
    last = store.last_sync()
    assert last["results"][0]["status"] == "partial"
    assert last["results"][0]["detail"] == [
        {"where": "secret/app4", "message": "permission denied"}
    ]

    # the next good listing clears the stale marks
    apply(store, creds, grants)
    assert all(store.get_credential(c.id).stale_since is None for c in creds)


def test_partial_listing_never_blanks_fields_or_drops_grants(store: Store) -> None:
    # A denied tag/value read makes a collector return the credential with empty fields, and a
    # denied role read returns no grant for that agent: neither may erase what the store knew.
    creds = [mk(i) for i in range(3)]
    grants = [
        Grant(agent=agent, credential_id=c.id, capabilities=["read"])
        for c in creds
        for agent in ("bot", "other")
    ]
    apply(store, creds, grants)
    blanked = [c.model_copy(update={"owner": None, "fingerprint": None, "tags": {}}) for c in creds]
    only_bot = [g for g in grants if g.agent == "bot"]
    errors = [ItemError(where="auth/approle/role/other", message="permission denied")]
    apply(store, blanked, only_bot, errors=errors, complete=False)
    for c in creds:
        got = store.get_credential(c.id)
        assert (got.owner, got.fingerprint, got.tags) == (c.owner, c.fingerprint, c.tags)
        assert sorted(g.agent for g in store.grants_for_credential(c.id)) == ["bot", "other"]
        assert got.agents == ["bot", "other"]
    # a complete listing is the truth: now the blanks and the dropped grant apply
    apply(store, blanked, only_bot)
    got = store.get_credential(creds[0].id)
    assert (got.owner, got.fingerprint, got.tags) == (None, None, {})
    assert [g.agent for g in store.grants_for_credential(creds[0].id)] == ["bot"]


def test_mark_source_failed_keeps_every_field(store: Store, db_path: Path) -> None:
    apply(store, [mk(i) for i in range(4)])
    apply(store, [mk(i, source="aws-main") for i in range(2)], source="aws-main")
    apply(store, [mk(i) for i in range(3)])  # app3 gone
    before = snapshot(db_path)
    sync = store.begin_sync(["vault-prod"], "tester")
    assert store.mark_source_failed(sync, "vault-prod", "connection refused") == 3
    after = snapshot(db_path)
    stale_cols = ("stale_since", "stale_error")
    for cid, row in after.items():
        if cid.startswith("vault-prod") and row["gone_at"] is None:
            assert row["stale_since"] and row["stale_error"] == "connection refused"
        else:
            assert row["stale_since"] is None  # gone rows and other sources untouched
        assert {k: v for k, v in row.items() if k not in stale_cols} == {
            k: v for k, v in before[cid].items() if k not in stale_cols
        }
    # failing again keeps the first stale_since, updates the error
    first = {cid: r["stale_since"] for cid, r in after.items()}
    store.mark_source_failed(sync, "vault-prod", "timed out")
    for cid, row in snapshot(db_path).items():
        assert row["stale_since"] == first[cid]
        if row["stale_since"]:
            assert row["stale_error"] == "timed out"
    assert store.count_credentials(parse("status:stale")) == 3
    result = store.last_sync()["results"][0]
    assert result["status"] == "failed" and result["error"] == "timed out"


def test_grants_agents_and_usage(store: Store) -> None:
    creds = [mk(i) for i in range(3)]
    grants = [
        Grant(agent="bot-b", credential_id=creds[0].id, capabilities=["read"], chain=["a", "b"]),
        Grant(agent="bot-a", credential_id=creds[0].id),
        Grant(agent="bot-a", credential_id=creds[1].id, used=True),
    ]
    at = T0 + timedelta(days=30)
    usage = [
        UsageEvent(credential_id=creds[0].id, at=at, evidence="vault:audit"),
        UsageEvent(credential_id=creds[0].id, at=at, evidence="vault:audit"),  # duplicate
        UsageEvent(credential_id=creds[0].id, at=at, operation="read", evidence="vault:audit"),
    ]
    apply(store, creds, grants, usage)
    assert store.get_credential(creds[0].id).agents == ["bot-a", "bot-b"]
    assert store.page_credentials(parse(f"id:{creds[0].id}"))[0].agents == ["bot-a", "bot-b"]
    g = store.grants_for_credential(creds[0].id)
    assert [(x.agent, x.capabilities, x.chain) for x in g] == [
        ("bot-a", [], []),
        ("bot-b", ["read"], ["a", "b"]),
    ]
    assert sorted(x.credential_id for x in store.grants_for_agent("BOT-A")) == sorted(
        [creds[0].id, creds[1].id]
    )
    assert len(store.usage_for_credential(creds[0].id)) == 2
    assert store.get_credential(creds[0].id).last_used_at == at
    apply(store, creds, grants, usage)  # same events again: deduplicated
    assert len(store.usage_for_credential(creds[0].id)) == 2
    # a listing that no longer reports last use does not blank it, and is not "changed"
    assert apply(store, creds, grants).changed == 0
    assert store.get_credential(creds[0].id).last_used_at == at
    # grants are replaced by the next complete listing
    apply(store, creds, grants[2:])
    assert store.get_credential(creds[0].id).agents == []
    assert store.count_credentials(parse("agent:bot-a")) == 1


def test_no_row_is_ever_deleted(store: Store) -> None:
    rnd = random.Random(3)
    known: set[str] = set()
    for _ in range(12):
        creds = [mk(i) for i in sorted(rnd.sample(range(40), rnd.randint(0, 25)))]
        if rnd.random() < 0.3:
            sync = store.begin_sync(["vault-prod"], "t")
            store.mark_source_failed(sync, "vault-prod", "down")
        else:
            apply(store, creds, complete=rnd.random() < 0.6)
            known |= {c.id for c in creds}
        assert {c.id for c in store.all_credentials(None)} == known


def test_fts_stays_in_sync_with_updates(store: Store, db_path: Path) -> None:
    apply(store, [mk(1, name="alpha-key"), mk(2, name="beta-key")])
    drive = {"plan": "drive"}
    assert [c.name for c in store.page_credentials(parse("alpha"), **drive)] == ["alpha-key"]
    apply(store, [mk(1, name="omega-key"), mk(2, name="beta-key")])
    assert store.page_credentials(parse("alpha"), **drive) == []
    assert [c.name for c in store.page_credentials(parse("omega"), **drive)] == ["omega-key"]
    apply(store, [mk(1, name="omega-key")], [Grant(agent="zeta-bot", credential_id=mk(1).id)])
    assert [c.name for c in store.page_credentials(parse("zeta-b"), **drive)] == ["omega-key"]
    assert [c.name for c in store.page_credentials(parse("status:gone beta"), **drive)] == [
        "beta-key"
    ]
    with raw(db_path) as conn:  # FTS5's own check of index against content
        conn.execute("INSERT INTO credentials_fts(credentials_fts) VALUES ('integrity-check')")


def test_paging_sorting_filtering_match_python(store: Store) -> None:
    rnd = random.Random(5)
    teams = ["support", "payments", "Search", "infra"]
    creds = [
        mk(
            i,
            source=rnd.choice(["vault-prod", "aws-main"]),
            name=f"{rnd.choice(teams)}-{rnd.randint(0, 99)}",
            owner=rnd.choice([None, *teams]),
            environment=rnd.choice(["dev", "prod"]),
            expires_at=rnd.choice([None, T0 + timedelta(days=rnd.randint(0, 300))]),
            last_used_at=rnd.choice([None, T0 + timedelta(hours=rnd.randint(0, 9000))]),
        )
        for i in range(3000)
    ]
    assert store.bulk_insert_credentials(creds) == 3000
    stored = list(store.all_credentials(None))
    cases = [
        ("", "name", False),
        ("", "expires", True),
        ("sup", "owner", False),
        ("env:prod !owner:none", "last_used", True),
        ("source:aws-main pay", "name", True),
        ("owner~EAR", "created", False),
        ("expires:never env:dev", "id", False),
    ]
    for text, sort, desc in cases:
        q = parse(text, sort=sort, descending=desc)
        want = [c.id for c in sorted(filter(q.matches, stored), key=q.sort_key, reverse=desc)]
        assert want, text
        assert store.count_credentials(q) == len(want)
        pages = []
        offset = 0
        while True:
            page = store.page_credentials(q, offset, 60)
            if not page:
                break
            pages += [c.id for c in page]
            offset += 60
        assert pages == want, text


def test_walk_plan_uses_the_sort_index_not_a_temp_sort(store: Store) -> None:
    for text, sort in [("sup env:prod", "name"), ("owner:none", "expires"), ("x", "age")]:
        plan = " | ".join(store.explain(parse(text, sort=sort), "walk"))
        assert "TEMP B-TREE" not in plan and "ix_cred_sort_" in plan, plan
    drive = " | ".join(store.explain(parse("support"), "drive"))
    assert "credentials_fts" in drive


# --- transactions and threads -----------------------------------------------------------


def test_transaction_rolls_back_and_nests(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.set_meta("a", "1")
        raise RuntimeError("boom")
    assert store.get_meta("a") is None
    with store.transaction():
        store.set_meta("b", "1")
        with pytest.raises(RuntimeError), store.transaction():
            store.set_meta("c", "1")
            raise RuntimeError("inner")
    assert store.get_meta("b") == "1" and store.get_meta("c") is None


def test_readers_in_threads_while_writing(store: Store) -> None:
    apply(store, [mk(i) for i in range(200)])
    failures: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                n = store.count_credentials()
                assert n in (200, 300)  # never a half-applied listing
                store.page_credentials(parse("app1"), 0, 60)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(5):
        apply(store, [mk(i) for i in range(300)])
        apply(store, [mk(i) for i in range(300)], complete=False)
    stop.set()
    for t in threads:
        t.join()
    assert not failures


# --- rotation journal -------------------------------------------------------------------


def claim(
    store: Store, cred_id: str, subject: str | None = None, owner: Owner | None = None
) -> str:
    return store.claim_run(
        subject=subject or cred_id,
        credential_id=cred_id,
        rotator="generated",
        plan={"zero_downtime": True},
        actor="alice",
        owner=owner or me(),
    )


def test_rotation_journal(store: Store) -> None:
    cred = mk(1)
    apply(store, [cred])
    run = claim(store, cred.id)
    assert store.get_rotation_run(run)["status"] == "running"
    assert [r["id"] for r in store.unfinished_rotation_runs()] == [run]
    step = store.start_step(run, "issue", detail={"keys_before": ["AKIA1"]})
    assert store.rotation_steps(run)[0]["status"] == "started"
    assert store.rotation_steps(run)[0]["detail"] == {"keys_before": ["AKIA1"]}
    store.finish_step(step, "done", detail={"version": "2"})
    step2 = store.start_step(run, "verify")
    store.finish_step(step2, "failed", error="401 from provider", attempts=3)
    steps = store.rotation_steps(run)
    assert [(s["step"], s["status"]) for s in steps] == [("issue", "done"), ("verify", "failed")]
    assert steps[0]["detail"] == {"version": "2"} and steps[1]["error"] == "401 from provider"
    assert steps[1]["attempts"] == 3
    store.set_run_status(run, "rolled-back", error="verify failed", pending_version="2")
    got = store.get_rotation_run(run)
    assert got["finished_at"] and got["started_at"] and got["plan"] == {"zero_downtime": True}
    assert store.unfinished_rotation_runs() == []
    assert [r["id"] for r in store.rotation_runs(credential_id=cred.id)] == [run]
    assert store.rotation_runs(status="completed") == []
    assert [r["id"] for r in store.find_rotation_runs(run[:6])] == [run]
    with pytest.raises(StoreError):
        store.set_run_status(run, "completed", colour="blue")
    with pytest.raises(StoreError):
        store.set_run_status(run, "planned")  # not a status in the vocabulary
    with pytest.raises(StoreError):
        store.finish_step(step, "maybe")
    when = T0 + timedelta(days=90)
    assert store.record_rotation(cred.id, when, "3", "hmac-sha256:new")
    after = store.get_credential(cred.id)
    assert (after.rotated_at, after.version, after.fingerprint) == (when, "3", "hmac-sha256:new")
    assert not store.record_rotation("no:such:cred", when, "3", None)


def test_an_active_run_holds_its_claim_until_it_ends(store: Store) -> None:
    cred = mk(1)
    apply(store, [cred])
    first = claim(store, cred.id, subject="rotation:shared")
    with pytest.raises(ClaimHeld) as held:
        claim(store, cred.id, subject="rotation:shared")
    assert held.value.holder["id"] == first
    for status in ("awaiting-revoke", "rollback-failed"):
        store.set_run_status(first, status)
        with pytest.raises(ClaimHeld):
            claim(store, cred.id, subject="rotation:shared")
    store.set_run_status(first, "abandoned", error="gave up")
    second = claim(store, cred.id, subject="rotation:shared")
    assert store.active_run("rotation:shared")["id"] == second


def test_claims_race_across_processes_and_exactly_one_wins(db_path: Path) -> None:
    Store(db_path).close()
    code = (
        "import sys, time\n"
        "from console.process import me\n"
        "from console.store import Store\n"
        "from console.store.runs import ClaimHeld\n"
        "s = Store(sys.argv[1])\n"
        # late starters (a loaded machine) go at once: exactly one must still win
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "try:\n"
        "    s.claim_run(subject='race', credential_id='c', rotator='r', plan={}, actor='a',"
        " owner=me())\n"
        "    print('won')\n"
        "except ClaimHeld as e:\n"
        "    print('lost', e.holder['id'])\n"
    )
    with Store(db_path) as s:  # the foreign key needs the credential
        apply(s, [mk(1).model_copy(update={"id": "c"})])
    start = time.time() + 3
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(db_path), str(start)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(o.split()[0] for o in outs) == ["lost", "lost", "lost", "won"], outs


def test_take_over_is_compare_and_swap(store: Store) -> None:
    cred = mk(1)
    apply(store, [cred])
    dead = Owner(host="h", pid=999_999, started="boot:1")
    run = claim(store, cred.id, owner=dead)
    row = store.get_rotation_run(run)
    a, b = Owner("h", 1, "boot:2"), Owner("h", 2, "boot:3")
    assert store.take_over(run, row, a) is True
    assert store.take_over(run, row, b) is False  # the row no longer shows the dead owner
    assert store.get_rotation_run(run)["owner_pid"] == 1


def test_sync_runs_and_sources(store: Store) -> None:
    store.upsert_sources(
        [{"name": "v", "type": "vault", "environment": "prod", "config": {"token": "keyring:a/b"}}]
    )
    store.upsert_agents([{"name": "bot", "owner": "x", "identities": [{"type": "keyring"}]}])
    store.upsert_agents([{"name": "bot", "owner": "y"}])
    assert [(a["name"], a["owner"]) for a in store.agents()] == [("bot", "y")]
    assert store.sources()[0]["config"] == {"token": "keyring:a/b"}
    assert store.last_sync() is None
    apply(store, [mk(1)])
    last = store.last_sync()
    assert last["status"] == "ok" and last["actor"] == "tester" and last["finished_at"]
    assert last["results"][0]["new"] == 1
    assert len(store.sync_runs(10)) == 1


def test_reused_fingerprints(store: Store) -> None:
    apply(
        store, [mk(1, fingerprint="hmac-sha256:same"), mk(2, fingerprint="hmac-sha256:same"), mk(3)]
    )
    assert store.credentials_by_fingerprint() == {"hmac-sha256:same": [mk(1).id, mk(2).id]}


def test_a_process_is_known_by_its_pid_and_start_time() -> None:
    """A recorded pid that now belongs to another process (same pid, another start time) is
    not taken for the owner: a crashed run's claim is then taken over, never held forever."""
    import os
    import socket

    from console import process

    me = process.me()
    assert me.started and process.alive(me.host, me.pid, me.started) is True
    assert process.alive(me.host, me.pid, "boot:0") is False  # pid reused by someone else
    assert process.alive(me.host, 999_999_999, me.started) is False
    assert process.alive("another-host", me.pid, me.started) is None  # nothing here can tell
    assert socket.gethostname() == me.host and os.getpid() == me.pid


def test_sparse_filters_skip_the_walk_and_capped_counts_agree(store: Store) -> None:
    """A filter that matches almost nothing is not walked (the probe of the first rows finds
    none), a dense one is; either way every plan gives the same page and the same count."""
    from console.store.credentials import PlanBuilder

    apply(store, [mk(i, name=f"svc-{i:05d}-{'rare' if i == 2500 else 'common'}")
                  for i in range(3000)])
    for text, dense in (("common", True), ("rare", False), ("!common", False), ("svc", True)):
        query = parse(text)
        walk = PlanBuilder(query, "walk").build()
        assert store._dense(walk) is dense, text
        pages = {plan: [c.id for c in store.page_credentials(query, 0, 60, plan=plan)]
                 for plan in ("auto", "walk", "drive")}
        assert pages["auto"] == pages["walk"] == pages["drive"], text
        for cap in (None, 10, 1000):
            counts = {plan: store.count_credentials(query, cap=cap, plan=plan)
                      for plan in ("auto", "walk", "drive")}
            assert len(set(counts.values())) == 1, (text, cap, counts)


# --- one-character terms and the name index ----------------------------------------------


def _char_counts(store: Store) -> dict[str, int]:
    """search_chars as kept by the triggers, next to the truth counted from the rows."""
    from console.store.rows import SEARCH_CHARS, search_chars_column

    with raw(store.path) as conn:
        kept = conn.execute("SELECT * FROM search_chars").fetchone()
        texts = [r[0] for r in conn.execute("SELECT search_text FROM credentials")]
    truth = {"rows": len(texts)} | {
        ch: sum(ch in t for t in texts) for ch in SEARCH_CHARS
    }
    counted = {"rows": kept["rows"]} | {
        ch: kept[search_chars_column(ch)] for ch in SEARCH_CHARS
    }
    assert counted == truth
    return counted


def test_character_counts_follow_every_write(store: Store) -> None:
    """Inserts, a rename, a new owner, a row gone and a bulk load each keep search_chars
    equal to the rows: a wrong count would make a filter answer nothing when rows match."""
    apply(store, [mk(i, name=f"alpha-{i}") for i in range(5)])
    assert _char_counts(store)["q"] == 0
    apply(store, [mk(0, name="quota-key"), *(mk(i, name=f"alpha-{i}") for i in range(1, 5))])
    assert _char_counts(store)["q"] == 1
    apply(store, [mk(0, name="quota-key", owner="zed"),
                  *(mk(i, name=f"alpha-{i}") for i in range(1, 4))])  # app4 gone: kept, marked
    counts = _char_counts(store)
    assert counts["z"] >= 1 and counts["rows"] == 5
    with raw(store.path) as conn:  # a row deleted outright (no keyshift path does it yet)
        conn.execute("DELETE FROM credential_tags")
        conn.execute("DELETE FROM credentials WHERE id = ?", (mk(0).id,))
    assert _char_counts(store)["q"] == 0
    bulk = Store(store.path.with_name("bulk.db"))
    bulk.bulk_insert_credentials([mk(i, name=f"q{i}") for i in range(50)])
    assert _char_counts(bulk)["q"] == 50 and _char_counts(bulk)["rows"] == 50
    bulk.close()


def test_a_one_character_term_no_row_can_satisfy_answers_nothing_at_once(store: Store) -> None:
    """``!e`` when every credential has an e and ``q`` when none has a q match nothing; the
    answer is the same as a full scan's (walk and drive), and so are the terms that do match."""
    apply(store, [mk(i, name=f"service-{i:04d}") for i in range(400)])
    stored = list(store.all_credentials())
    cases = {"!e": 0, "q": 0, "!q": 400, "e": 400, "!e svc": 0, "q !e": 0, "!v": 0, "!x": 400}
    for text, want in cases.items():
        query = parse(text)
        assert sum(query.matches(c) for c in stored) == want, text  # the Python semantics
        assert store._unsatisfiable(query) is (want == 0), text
        for plan in ("auto", "walk", "drive"):
            assert store.count_credentials(query, plan=plan) == want, (text, plan)
            assert len(store.page_credentials(query, 0, 500, plan=plan)) == want, (text, plan)


def test_short_and_negated_words_read_the_name_index(store: Store) -> None:
    """Free text the trigram index cannot narrow walks the name index, which holds the
    search text: the same rows as the other plans, without reading every table row."""
    apply(store, [mk(i, name=f"svc-{i:05d}-{'rare' if i % 97 == 0 else 'common'}")
                  for i in range(1500)])
    with raw(store.path) as conn:
        columns = [r["name"] for r in conn.execute("PRAGMA index_xinfo(ix_cred_sort_name)")]
    assert columns[:3] == ["name", "id", "search_text"]
    for text in ("ra", "!co", "!common", "r", "!m !ra"):
        query = parse(text)
        pages = {plan: [c.id for c in store.page_credentials(query, 0, 60, plan=plan)]
                 for plan in ("auto", "walk", "drive")}
        assert pages["auto"] == pages["walk"] == pages["drive"], text
        counts = {plan: store.count_credentials(query, plan=plan)
                  for plan in ("auto", "walk", "drive")}
        assert len(set(counts.values())) == 1, (text, counts)
    plan = " | ".join(store.explain(parse("!co"), "walk"))
    assert "ix_cred_sort_name" in plan and "TEMP B-TREE" not in plan


def _old_store(db_path: Path, version: int, names: tuple[str, ...]) -> None:
    """A store as migration ``version`` left it, holding credentials named ``names``."""
    conn = sqlite3.connect(db_path)
    store_mod.migrate(conn, upto=version)
    for i, name in enumerate(names):
        conn.execute(
            "INSERT INTO credentials(id, source, kind, native_id, name, first_seen_at, "
            "last_seen_at) VALUES (?, 'v', 'kv', ?, ?, '2025-01-01', '2025-01-01')",
            (f"v:kv:{i}", str(i), name),
        )
    conn.commit()
    conn.close()


def test_version_6_store_gets_the_character_counts(db_path: Path) -> None:
    _old_store(db_path, 6, ("quartz", "quince", "apple"))
    with Store(db_path) as store:
        counts = _char_counts(store)
        assert counts["rows"] == 3 and counts["q"] == 2
        assert [c.name for c in store.page_credentials(parse("!q"))] == ["apple"]
        assert store.count_credentials(parse("!a")) == 1  # quince


def _pairs(store: Store) -> set[str]:
    """search_pairs as kept, checked sound: every pair in it is in every row's search text
    (a pair kept that a row lacks would make `!xy` answer nothing when that row matches)."""
    with raw(store.path) as conn:
        kept = {r[0] for r in conn.execute("SELECT pair FROM search_pairs")}
        texts = [r[0] or "" for r in conn.execute("SELECT search_text FROM credentials")]
    assert all(p in t for p in kept for t in texts), kept
    return kept


def _universal(store: Store) -> set[str]:
    with raw(store.path) as conn:
        texts = [r[0] or "" for r in conn.execute("SELECT search_text FROM credentials")]
    first = texts[0]
    return {first[i:i + 2] for i in range(len(first) - 1)
            if all(first[i:i + 2] in t for t in texts)}


def test_a_negated_pair_every_row_holds_answers_nothing_at_once(store: Store) -> None:
    """``!se`` when every credential says "service": nothing matches, known from
    search_pairs without a walk. Inserts and updates that lack a pair take it away at once
    (triggers); a sync's end counts back what became universal again; the answers always
    equal a full scan's (walk and drive)."""
    apply(store, [mk(i, name=f"service-{i:04d}") for i in range(300)])
    assert _pairs(store) == _universal(store) and "se" in _pairs(store)

    def check(text: str, want: int, known: bool = True) -> None:
        query = parse(text)
        assert sum(query.matches(c) for c in store.all_credentials()) == want, text
        assert store._unsatisfiable(query) is (known and want == 0), text
        for plan in ("auto", "walk", "drive"):
            assert store.count_credentials(query, plan=plan) == want, (text, plan)
            assert len(store.page_credentials(query, 0, 500, plan=plan)) == want, (text, plan)

    check("!se", 0)
    check("!vi", 0)
    check("!zz", 300)
    # a row without "se" or "vi", written outside a sync: the triggers take the pairs away
    store.bulk_insert_credentials([mk(900, name="lone")])
    assert "vi" not in _pairs(store)
    check("!vi", 1)
    # renamed to hold "vi" again: the set stays short until a sync's end counts it back
    with raw(store.path) as conn:
        conn.execute("UPDATE credentials SET name = 'vim', location = 'x' WHERE id = ?",
                     (mk(900).id,))
    _pairs(store)
    check("!vi", 0, known=False)  # answered by a walk
    sync = store.begin_sync(["vault-prod"], "tester")
    store.finish_sync(sync, "ok", {})
    assert "vi" in _pairs(store)
    check("!vi", 0)
    # an update that drops a pair: taken away at once
    with raw(store.path) as conn:
        conn.execute("UPDATE credentials SET name = 'x', location = 'x' WHERE id = ?",
                     (mk(900).id,))
    assert "vi" not in _pairs(store)
    check("!vi", 1)
    bulk = Store(store.path.with_name("bulk.db"))  # a bulk load into an empty store counts
    bulk.bulk_insert_credentials([mk(i, name=f"qu-{i}") for i in range(50)])
    assert "qu" in _pairs(bulk) and _pairs(bulk) == _universal(bulk)
    bulk.close()


def test_a_count_the_trigram_index_answers_alone_reads_only_the_index(store: Store) -> None:
    """Words of three or more ASCII characters (and `field~word` on a searched column) are
    answered exactly by the trigram index: the count is its rows', capped or not, and equals
    the filter language's answer; anything else (a negated or short word, other letters, a
    field condition) is counted through the table as before."""
    from console.store.plan import PlanBuilder

    apply(store, [mk(i, name=f"{('alpha', 'beta', 'Gamma')[i % 3]}-svc-{i:03d}",
                     owner=("team-a" if i % 2 else "ops")) for i in range(240)])
    apply(store, [mk(900, name="café-ÉÉÉ")], source="other")
    stored = list(store.all_credentials())
    cases = {"alpha": True, "gamma svc": True, "owner~ops": True, "alp 00": False,
             "alpha !beta": False, "ééé": False, "alpha env:prod": False, "svc-0": True}
    for text, only in cases.items():
        query = parse(text)
        assert PlanBuilder(query, "drive").build().fts_only is only, text
        want = sum(query.matches(c) for c in stored)
        assert store.count_credentials(query) == want, text
        assert store.count_credentials(query, cap=7) == min(want, 7), text
        assert store.count_credentials(query, plan="walk") == want, text
    # rows gone from the table leave the index too (its triggers): the count follows
    with raw(store.path) as conn:
        conn.execute("DELETE FROM credential_tags")
        conn.execute("DELETE FROM credentials WHERE name LIKE 'alpha-%'")
    assert store.count_credentials(parse("alpha")) == 0


def test_version_7_store_gets_the_pairs_every_row_holds(db_path: Path) -> None:
    _old_store(db_path, 7, ("envoy", "tenant", "sentry"))
    with Store(db_path) as store:
        assert "en" in _pairs(store) and _pairs(store) == _universal(store)
        assert store.page_credentials(parse("!en")) == []
        assert store.count_credentials(parse("!nt")) == 1  # envoy


def test_words_with_letters_beyond_ascii_match_as_the_filter_language_says(store: Store) -> None:
    """The trigram index folds É to é; the filter language folds ASCII only: a word with
    other letters is checked row by row after the index narrowed it (both plans)."""
    apply(store, [mk(0, name="café-ÉÉÉ"), mk(1, name="café-ééé"), mk(2, name="plain")])
    stored = list(store.all_credentials())
    for text in ("ééé", "ÉÉÉ", "café", "name~ééé"):
        query = parse(text)
        want = sorted(c.id for c in stored if query.matches(c))
        for plan in ("auto", "walk", "drive"):
            got = sorted(c.id for c in store.page_credentials(query, plan=plan))
            assert got == want, (text, plan)
            assert store.count_credentials(query, plan=plan) == len(want), (text, plan)


def test_a_store_with_log_positions_from_before_token_use_starts_its_token_evidence_now(
    db_path: Path, tmp_path: Path
) -> None:
    """A store at version 8 may have read its audit log looking for KV reads only: the
    coverage its positions claim says nothing of tokens. After migration 9, a token made
    before the migration has no evidence of no use (unknown), one made after has (never);
    a KV secret keeps the log's coverage. A store with no position gets no such limit."""
    since = datetime(2026, 1, 1, tzinfo=UTC)

    def position(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO read_positions(source, log, inode, offset, head, malformed, "
            "covers_since, updated_at) VALUES ('v', '/var/log/audit.log', 1, 0, '', 0, ?1, ?1)",
            (store_mod.ts(since),),
        )

    conn = sqlite3.connect(db_path)
    store_mod.migrate(conn, upto=8)
    position(conn)
    conn.commit()
    conn.close()
    before = datetime.now(UTC) - timedelta(minutes=1)
    with Store(db_path) as store:
        after = datetime.now(UTC) + timedelta(minutes=1)

        def c(name: str, kind: str, created: datetime) -> Credential:
            return Credential(id=f"v:{kind}:{name}", source="v", kind=kind, native_id=name,
                              name=name, created_at=created)

        store.bulk_insert_credentials([
            c("old-token", "vault-token", before), c("new-token", "vault-token", after),
            c("kv", "kv", before),
        ])
        assert {x.name for x in store.all_credentials(parse("used:never"))} == {
            "new-token", "kv"}
    fresh = tmp_path / "fresh.db"
    conn = sqlite3.connect(fresh)
    store_mod.migrate(conn)
    position(conn)
    conn.commit()
    conn.close()
    with Store(fresh) as store:
        store.bulk_insert_credentials([c("old-token", "vault-token", before)])
        assert [x.name for x in store.all_credentials(parse("used:never"))] == ["old-token"]
    # CloudTrail's positions say nothing of the Vault audit log: no limit either
    trail = tmp_path / "trail.db"
    conn = sqlite3.connect(trail)
    store_mod.migrate(conn, upto=8)
    conn.execute(
        "INSERT INTO read_positions(source, log, inode, offset, head, malformed, "
        "covers_since, updated_at) VALUES ('aws', 'cloudtrail:us-east-1', 0, 1, '', 0, NULL, "
        "?1)", (store_mod.ts(since),),
    )
    conn.commit()
    conn.close()
    with Store(trail) as store:
        assert store.get_meta("token_use_evidence_from") is None
