"""The Vault file audit device read incrementally: rotation, truncation, lines still being
written and malformed lines; then the real OpenBao writing the log and rotating it on SIGHUP,
and the read position kept in the store across processes."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_sources_vault import VAULT, agent_read, base_inventory, loaded_from, vault_cfg

from console import secret_refs
from console.audit import AuditLog
from console.query import parse
from console.sources.vault import VaultSource
from console.sources.vault_audit import SEED_MARK, parse_vault_time, read_audit_log
from console.store import Store
from console.sync import run_sync
from console.vocabulary import used_state


def entry(n: int, path: str = "secret/data/agents/x", *, role: str = "bot") -> bytes:
    """One response line shaped as OpenBao writes it (a successful KV read)."""
    line = {
        "time": f"2026-12-03T10:{n // 60 % 60:02d}:{n % 60:02d}.{n:06d}Z",
        "type": "response",
        "auth": {
            "client_token": f"hmac-sha256:{n:064x}",
            "display_name": f"approle-{role}",
            "policies": ["default", f"{role}-read"],
            "metadata": {"role_name": role},
        },
        "request": {"id": str(uuid.uuid4()), "operation": "read", "path": path,
                    "remote_address": "127.0.0.1"},
        "response": {"mount_type": "kv", "data": {"value": "hmac-sha256:abc"}},
    }
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"  # compact, as OpenBao


def request_line(n: int) -> bytes:
    line = {"time": "2026-12-03T10:00:00Z", "type": "request",
            "request": {"id": str(n), "operation": "read", "path": "secret/data/agents/x"}}
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"  # compact, as OpenBao


def times(batch: Any) -> list[str]:
    return [r.at.isoformat() for r in batch.reads]


def expected(ns: range) -> list[str]:
    from console.sources.vault_audit import parse_vault_time

    return [parse_vault_time(json.loads(entry(n))["time"]).isoformat() for n in ns]


def test_reads_only_what_was_appended_and_waits_for_a_line_being_written(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(entry(n) + request_line(n) for n in range(5)))
    first = read_audit_log(log)
    assert times(first) == expected(range(5))
    assert first.malformed == 0 and first.gap is None
    half = entry(5)
    with log.open("ab") as fh:
        fh.write(half[:40])  # the device is mid-write
    second = read_audit_log(log, first.position)
    assert second.reads == [] and second.position.offset == first.position.offset
    with log.open("ab") as fh:
        fh.write(half[40:] + entry(6))
    third = read_audit_log(log, second.position)
    assert times(third) == expected(range(5, 7))
    assert third.position.offset == log.stat().st_size


def test_rotation_mid_read_loses_and_double_counts_nothing(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(entry(n) for n in range(10)))
    first = read_audit_log(log)
    assert len(first.reads) == 10
    # more lines land in the old file, then it is renamed aside and a new one opened
    with log.open("ab") as fh:
        fh.write(b"".join(entry(n) for n in range(10, 14)))
    log.rename(tmp_path / "audit.log.1")
    (tmp_path / "audit.log.2.gz").write_bytes(b"\x1f\x8b old rotations are not read")
    log.write_bytes(b"".join(entry(n) for n in range(14, 20)))
    second = read_audit_log(log, first.position)
    assert times(second) == expected(range(10, 20))  # the old file's rest, then the new
    assert second.gap is None
    assert second.position.inode == log.stat().st_ino
    third = read_audit_log(log, second.position)
    assert third.reads == []  # nothing counted twice


def test_truncation_and_replacement_are_said_and_read_from_the_start(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(entry(n) for n in range(6)))
    first = read_audit_log(log)
    with log.open("r+b") as fh:  # copytruncate: the same file, emptied
        fh.truncate(0)
    with log.open("ab") as fh:
        fh.write(entry(30))
    second = read_audit_log(log, first.position)
    assert times(second) == expected(range(30, 31))
    assert second.gap and "truncated or replaced" in second.gap
    log.unlink()  # replaced, and the old file is gone
    log.write_bytes(b"".join(entry(n) for n in range(40, 43)))
    third = read_audit_log(log, second.position)
    assert times(third) == expected(range(40, 43))
    assert third.gap and "truncated or replaced" in third.gap


def test_the_evidence_covers_from_the_first_line_until_a_gap(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(entry(n) for n in range(3)))
    first = read_audit_log(log)
    assert first.position.covers_since == parse_vault_time(json.loads(entry(0))["time"])
    with log.open("ab") as fh:
        fh.write(entry(9))
    log.rename(tmp_path / "audit.log.1")
    log.write_bytes(entry(20))
    rotated = read_audit_log(log, first.position)
    assert rotated.position.covers_since == first.position.covers_since  # no gap
    log.unlink()
    log.write_bytes(entry(30))
    gap = read_audit_log(log, rotated.position)
    assert gap.gap and gap.position.covers_since == parse_vault_time(json.loads(entry(30))["time"])


def test_malformed_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    broken_json = b'{"type":"response","request":{"operation":"read","path":"a/data/b"'
    log.write_bytes(
        entry(1) + b"not json at all\n" + broken_json + b', "x": }\n' + entry(2)
        + b'{"type":"response","time":"yesterday","request":{"operation":"read",'
        b'"path":"secret/data/agents/x"}}\n'
    )
    batch = read_audit_log(log)
    assert times(batch) == expected(range(1, 3))
    assert batch.malformed == 3
    with log.open("ab") as fh:
        # a list; a request line cut short (a crash mid-write) with the next line run into it
        fh.write(b"[1, 2]\n" + b'{"time":"2026-12-03T11:00:00Z","type":"request","req'
                 + entry(3) + entry(4))
    later = read_audit_log(log, batch.position)
    assert times(later) == expected(range(4, 5))
    assert later.malformed == 2 and later.position.malformed == 5  # kept over the log's life


# -- the real OpenBao --------------------------------------------------------------------


@pytest.fixture
def rotated_audit_log(seeded_sandbox: Any):  # type: ignore[no-untyped-def]
    """The sandbox's audit log, which the test rotates as logrotate would (OpenBao only takes
    audit devices from its config file). Afterwards the two parts are joined back into one
    file at the original path and OpenBao reopens it, so later tests see the whole log."""
    log = Path(seeded_sandbox.state.vault_audit_log)
    aside = log.with_name(log.name + ".1")
    try:
        yield log, aside
    finally:
        if aside.exists():
            with aside.open("ab") as fh:
                fh.write(log.read_bytes() if log.exists() else b"")
            aside.replace(log)
            os.kill(seeded_sandbox.state.vault_pid, signal.SIGHUP)


def _wait_for(check: Any, what: str) -> None:
    for _ in range(200):
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_openbao_rotating_its_log_between_syncs_loses_nothing(
    seeded_sandbox: Any, vault: Any, rotated_audit_log: Any, tmp_path: Path
) -> None:
    """Reads by a real agent, a sync into the store, more reads, the log renamed and OpenBao
    told to reopen it (SIGHUP, as logrotate does), more reads, and a sync by a new collector
    (a new process, as far as the store knows): every read counted once."""
    log, aside = rotated_audit_log
    inv = base_inventory()
    for src in inv["sources"]:
        if src["name"] == VAULT:
            src["auth"] = False
    loaded = loaded_from(inv, tmp_path)
    store = Store(tmp_path / "store.db")
    audit = AuditLog(store)
    cred_id = f"{VAULT}:kv:secret/agents/support/openai"
    api_path = "secret/data/agents/support/openai"

    def agent_reads_in_log() -> int:
        return sum(
            1
            for p in [log, aside]
            if p.exists()
            for line in p.read_text().splitlines()
            if api_path in line and '"type":"response"' in line and "role_name" in line
            and '"support-bot"' in line and '"operation":"read"' in line
            and SEED_MARK[0] not in line  # the sandbox seed's reads are not use
        )

    before = agent_reads_in_log()  # earlier tests' reads of the same secret, if any
    agent_read(seeded_sandbox, vault, "support-bot", "agents/support/openai")
    _wait_for(lambda: agent_reads_in_log() == before + 1, "the first read in the log")
    run_sync(loaded, store, audit, actor="test", only=[VAULT])
    counted = len(store.usage_for_credential(cred_id))
    assert counted == before + 1
    # kept in the store; the log grew after the read (the sync's own requests are audited)
    assert 0 < store.read_positions(VAULT)[str(log)].offset <= log.stat().st_size

    agent_read(seeded_sandbox, vault, "support-bot", "agents/support/openai")
    _wait_for(lambda: agent_reads_in_log() == before + 2, "the second read in the old file")
    log.rename(aside)
    os.kill(seeded_sandbox.state.vault_pid, signal.SIGHUP)
    _wait_for(log.exists, "OpenBao to reopen its audit log")
    agent_read(seeded_sandbox, vault, "support-bot", "agents/support/openai")
    _wait_for(lambda: agent_reads_in_log() == before + 3, "the third read in the new file")

    source = VaultSource(vault_cfg(loaded), loaded)
    source.start_positions = store.read_positions(VAULT)
    result = source.collect()
    events = [u for u in result.usage if u.credential_id == cred_id]
    assert len(events) == 2  # the old file's unread rest and the new file: nothing twice
    assert not [e for e in result.errors if e.where == "audit log"]

    run_sync(loaded, store, audit, actor="test", only=[VAULT])
    usage = store.usage_for_credential(cred_id)
    assert len(usage) == counted + 2 and {u.identity for u in usage} == {"approle:support-bot"}
    assert store.read_positions(VAULT)[str(log)].inode == log.stat().st_ino
    # a grant once used stays used when a later sync reads no new use of it
    run_sync(loaded, store, audit, actor="test", only=[VAULT])
    assert any(g.used for g in store.grants_for_credential(cred_id) if g.agent == "support-bot")
    assert len(store.usage_for_credential(cred_id)) == counted + 2


# -- tokens' use -------------------------------------------------------------------------


def token_line(n: int, accessor: str | None, *, error: str | None = None,
               login_of: str | None = None, seeded: bool = False, operation: str = "update",
               logged_accessor: bool = True, path: str = "sys/mounts") -> bytes:
    """A response line as OpenBao writes it for a request made with the token ``accessor``
    (None: a login, whose top-level ``auth`` is the token it made, ``login_of``)."""
    request: dict[str, Any] = {"id": str(uuid.uuid4()), "operation": operation,
                               "path": "auth/approle/login" if login_of else path,
                               "remote_address": "127.0.0.9",
                               "data": {"input": "hmac-sha256:beef"}}
    if accessor:
        request["client_token"] = f"hmac-sha256:{n:064x}"
        if logged_accessor:
            request["client_token_accessor"] = accessor
    line: dict[str, Any] = {
        "time": f"2026-12-03T11:00:{n:02d}.{n:06d}Z",
        "type": "response",
        "auth": {"client_token": f"hmac-sha256:{n:064x}", "accessor": login_of or accessor,
                 "display_name": "token-x", "policies": ["default"],
                 "metadata": {SEED_MARK[0]: SEED_MARK[1]} if seeded else {}},
        "request": request,
        "response": {"data": {"secret": "hmac-sha256:cafe"}},
    }
    if error:
        line["error"] = error
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"  # compact, as OpenBao


def test_each_token_s_latest_successful_request_is_collected(tmp_path: Path) -> None:
    """Per accessor as logged: the latest successful response's time and the count; a failed
    request, a login (its ``auth`` is the token it made), the sandbox seed's requests and
    request lines are no use."""
    log = tmp_path / "audit.log"
    log.write_bytes(
        token_line(1, "acc-a") + request_line(1) + token_line(5, "acc-a")
        + token_line(3, "acc-a")  # written late: changes the count, not the latest
        + token_line(7, "acc-a", error="permission denied")
        + token_line(8, None, login_of="acc-new")
        + token_line(9, "acc-b", logged_accessor=False)  # an older device: auth.accessor
        + token_line(10, "acc-seed", seeded=True)
        + token_line(11, "hmac-sha256:feed", operation="read")
        + token_line(12, "hmac-sha256:feed", operation="read", path="kv/data/agents/x")
    )
    batch = read_audit_log(log)
    assert sorted(batch.tokens) == ["acc-a", "acc-b", "hmac-sha256:feed"]
    a = batch.tokens["acc-a"]
    assert a.at == parse_vault_time("2026-12-03T11:00:05.000005Z") and a.count == 3
    assert (a.operation, a.remote, a.display_name) == ("update", "127.0.0.9", "token-x")
    feed = batch.tokens["hmac-sha256:feed"]
    assert (feed.operation, feed.count) == ("read", 2)
    # a read under sys/ is the token's use but no KV read (no KV mount lives there)
    assert [r.path for r in batch.reads] == ["kv/data/agents/x"]
    assert "beef" not in repr(batch) and "cafe" not in repr(batch)  # no data copied
    assert batch.malformed == 0


def _log_time_of(log: Path, path: str, accessor_hmac: str) -> Any:
    """The time the audit log gives the successful response to ``path`` made with the token
    whose accessor the device names ``accessor_hmac``."""
    found = []
    for raw in log.read_bytes().splitlines():
        entry = json.loads(raw)
        request = entry.get("request") or {}
        if (entry.get("type") == "response" and request.get("path") == path
                and request.get("client_token_accessor") == accessor_hmac
                and not entry.get("error")):
            found.append(parse_vault_time(entry["time"]))
    assert len(found) == 1, found
    return found[0]


def test_a_token_s_request_is_its_last_use_matched_through_audit_hash(
    seeded_sandbox: Any, vault: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The device HMACs accessors (its default): a token that made a request gets that
    request's time as its last use, through sys/audit-hash, and its holder's grant is used.
    A token never used, and a token an AppRole login made (the login's entry names it) but
    nobody used, stay without a use; so does the login's secret-id (its value is unknown to
    keyshift). No token value in the result, the store or the logs."""
    import hvac

    suffix = uuid.uuid4().hex[:6]
    token_role, login_role = f"tok-use-{suffix}", f"tok-login-{suffix}"
    vault.write(f"auth/token/roles/{token_role}", allowed_policies=["default"], orphan=True)
    used = vault.write(f"auth/token/create/{token_role}", ttl="1h")["auth"]
    idle = vault.write(f"auth/token/create/{token_role}", ttl="1h")["auth"]
    vault.auth.approle.create_or_update_approle(login_role, token_policies=["default"])
    role_id = vault.auth.approle.read_role_id(role_name=login_role)["data"]["role_id"]
    made = vault.auth.approle.generate_secret_id(role_name=login_role)["data"]
    # the login carries some other token's header (a stale VAULT_TOKEN, say): the server
    # takes the login anyway, and neither that header nor the token made is a use
    agent = hvac.Client(url=seeded_sandbox.state.vault_addr, token=f"stale-{suffix}",
                        timeout=30)
    logged_in = agent.auth.approle.login(role_id=role_id, secret_id=made["secret_id"])["auth"]
    user = hvac.Client(url=seeded_sandbox.state.vault_addr, token=used["client_token"],
                       timeout=30)
    user.lookup_token()  # auth/token/lookup-self: the used token's one request

    log = Path(seeded_sandbox.state.vault_audit_log)
    hashed = vault.write("sys/audit-hash/file", input=used["accessor"])["data"]["hash"]
    _wait_for(lambda: hashed.encode() in log.read_bytes(), "the request in the log")
    at = _log_time_of(log, "auth/token/lookup-self", hashed)
    text = log.read_bytes()
    for accessor in (used["accessor"], idle["accessor"], logged_in["accessor"]):
        assert accessor.encode() not in text  # only HMAC'd: the match needs sys/audit-hash

    inv = {"version": 1, "sources": [{"name": "v", "type": "openbao", "sandbox": True,
                                      "kv_mounts": [], "fingerprint": False, "leases": False}]}
    inv["agents"] = [
        {"name": "runner", "environment": "dev",
         "identities": [{"type": "vault-token-role", "source": "v", "role": token_role}]},
        {"name": "logger", "environment": "dev",
         "identities": [{"type": "vault-approle", "source": "v", "role": login_role}]},
    ]
    loaded = loaded_from(inv, tmp_path)
    result = VaultSource(loaded.source("v"), loaded).collect()
    assert not [e for e in result.errors if e.where == "audit log"], result.errors
    rows = {c.native_id: c for c in result.credentials}
    mine = rows[used["accessor"]]
    assert (mine.last_used_at, mine.last_used_evidence) == (at, "vault:audit")
    for accessor in (idle["accessor"], logged_in["accessor"],
                     f"approle/{login_role}/{made['secret_id_accessor']}"):
        assert rows[accessor].last_used_at is None, accessor
    events = [u for u in result.usage if u.credential_id == mine.id]
    assert [(u.at, u.operation, u.evidence) for u in events] == [(at, "read", "vault:audit")]
    assert not [u for u in result.usage if u.credential_id in
                (rows[idle["accessor"]].id, rows[logged_in["accessor"]].id)]
    used_grants = {(g.agent, g.credential_id): g.used for g in result.grants}
    assert used_grants[("runner", mine.id)] is True
    assert used_grants[("runner", rows[idle["accessor"]].id)] is False
    assert used_grants[("logger", rows[logged_in["accessor"]].id)] is False
    # keyshift's own token: its requests (this collect's) are keyshift's: no use, no event
    (own,) = [c for c in result.credentials if c.kind == "vault-token" and "keyshift" in c.tags]
    assert own.last_used_evidence is None and own.last_used_at is None
    assert not [u for u in result.usage if u.credential_id == own.id]

    caplog.set_level(logging.DEBUG)
    store = Store(tmp_path / "store.db")
    try:
        run_sync(loaded, store, AuditLog(store), actor="test", only=["v"])
        kept = store.get_credential(mine.id)
        assert kept and kept.last_used_at == at
        assert any(g.used for g in store.grants_for_credential(mine.id))
        # the log has been read since before the idle tokens were made: "never", not
        # "unknown"; a secret-id's use (a login) and keyshift's own token's stay unknown
        states = {c.native_id: used_state(c) for c in store.all_credentials()}
        assert states[used["accessor"]] == "used"
        assert states[idle["accessor"]] == states[logged_in["accessor"]] == "never"
        assert states[f"approle/{login_role}/{made['secret_id_accessor']}"] == "unknown"
        assert states[own.native_id] == "unknown"
        never = {c.native_id for c in store.all_credentials(parse("used:never kind:vault-token"))}
        assert {idle["accessor"], logged_in["accessor"]} <= never
        assert used["accessor"] not in never and own.native_id not in never
    finally:
        store.close()
    secrets = [t["client_token"] for t in (used, idle, logged_in)] + [made["secret_id"]]
    dumped = repr(result) + caplog.text
    for path in tmp_path.iterdir():
        if path.name.startswith("store.db"):
            dumped += path.read_bytes().decode("latin-1")
    for value in secrets:
        assert value not in dumped


def test_token_use_that_cannot_be_matched_restarts_the_coverage(
    seeded_sandbox: Any, vault: Any, tmp_path: Path
) -> None:
    """keyshift's token may list tokens but not read sys/audit: the log's HMAC'd accessors
    cannot be matched, that is said, and the log's evidence restarts after the lines read (a
    token with no use seen in them is not shown as never used)."""
    suffix = uuid.uuid4().hex[:6]
    policy = f"lister-{suffix}"
    vault.sys.create_or_update_policy(
        policy,
        'path "auth/token/accessors" { capabilities = ["list", "sudo"] }\n'
        'path "auth/token/lookup-accessor" { capabilities = ["update"] }\n',
    )
    token = vault.auth.token.create(policies=[policy], ttl="10m")["auth"]["client_token"]
    other = vault.auth.token.create(policies=["default"], ttl="10m")["auth"]
    import hvac

    hvac.Client(url=seeded_sandbox.state.vault_addr, token=other["client_token"],
                timeout=30).lookup_token()
    log = Path(seeded_sandbox.state.vault_audit_log)
    hashed = vault.write("sys/audit-hash/file", input=other["accessor"])["data"]["hash"]
    _wait_for(lambda: hashed.encode() in log.read_bytes(), "the request in the log")
    at = _log_time_of(log, "auth/token/lookup-self", hashed)
    ref = f"vault-lister-{suffix}"
    secret_refs.put("keyshift-test", ref, token)
    try:
        inv = {"version": 1, "sources": [{
            "name": "v", "type": "openbao", "token": f"keyring:keyshift-test/{ref}",
            "address": seeded_sandbox.state.vault.address, "fingerprint": False,
            "kv_mounts": [], "leases": False, "audit_log": str(log)}]}
        loaded = loaded_from(inv, tmp_path)
        result = VaultSource(loaded.source("v"), loaded).collect()
    finally:
        secret_refs.delete("keyshift-test", ref)
    rows = {c.native_id: c for c in result.credentials if c.kind == "vault-token"}
    assert rows[other["accessor"]].last_used_at is None  # not matched, so not known
    assert any("sys/audit not readable" in e.message for e in result.errors)
    (position,) = result.positions
    first = parse_vault_time(json.loads(log.read_bytes().split(b"\n", 1)[0])["time"])
    assert position.covers_since is not None and position.covers_since >= at > first
    assert token not in repr(result)


def _audit_hash_calls(log: Path, after: int) -> int:
    """Requests to sys/audit-hash the log holds past byte ``after``."""
    count = 0
    for raw in log.read_bytes()[after:].splitlines():
        entry = json.loads(raw)
        if entry.get("type") == "request" and str(
            (entry.get("request") or {}).get("path", "")
        ).startswith("sys/audit-hash/"):
            count += 1
    return count


def test_a_gone_token_s_use_costs_the_hashes_once_per_process(
    seeded_sandbox: Any, vault: Any, tmp_path: Path
) -> None:
    """A short-lived token that made requests and is gone by the sync cannot be matched:
    every listed token is hashed looking for it. The hashes are remembered for the process,
    so the next sync (the console's, the scheduler's) hashes only keyshift's own token again,
    to check the device's salt, and still matches a used token's request."""
    import hvac

    from console.sources import vault as vault_source

    vault_source._HASHES.clear()  # as a new process starts: earlier tests' syncs hashed too
    address = seeded_sandbox.state.vault_addr

    def churn() -> None:  # a token that makes a request and is revoked before the sync
        gone = vault.auth.token.create(policies=["default"], ttl="10m")["auth"]
        hvac.Client(url=address, token=gone["client_token"], timeout=30).lookup_token()
        vault.auth.token.revoke_accessor(gone["accessor"])

    kept = vault.auth.token.create(policies=["default"], ttl="10m")["auth"]
    churn()
    log = Path(seeded_sandbox.state.vault_audit_log)
    inv = {"version": 1, "sources": [{"name": "v", "type": "openbao", "sandbox": True,
                                      "kv_mounts": [], "fingerprint": False,
                                      "leases": False}]}
    loaded = loaded_from(inv, tmp_path)
    start = log.stat().st_size
    first = VaultSource(loaded.source("v"), loaded).collect()
    listed = sum(1 for c in first.credentials if c.kind == "vault-token")
    cold = _audit_hash_calls(log, start)
    assert cold >= listed > 2  # every listed token hashed, the gone one never found

    hvac.Client(url=address, token=kept["client_token"], timeout=30).lookup_token()
    churn()
    start = log.stat().st_size
    second = VaultSource(loaded.source("v"), loaded).collect()
    warm = _audit_hash_calls(log, start)
    assert warm <= 2, (cold, warm)  # keyshift's own token, afresh (and nothing new to hash)
    rows = {c.native_id: c for c in second.credentials if c.kind == "vault-token"}
    assert rows[kept["accessor"]].last_used_evidence == "vault:audit"

    # a device enabled again hashes under a new salt: what is remembered no longer matches
    # (here: every remembered hash made wrong). keyshift's own token, hashed afresh, shows
    # it; the rest is dropped and hashed again, and the use is still found
    for known in vault_source._HASHES.values():
        for accessor in known:
            known[accessor] = "hmac-sha256:" + "0" * 64
    used_at = rows[kept["accessor"]].last_used_at
    hvac.Client(url=address, token=kept["client_token"], timeout=30).lookup_token()
    start = log.stat().st_size
    third = VaultSource(loaded.source("v"), loaded).collect()
    assert _audit_hash_calls(log, start) > warm
    rows = {c.native_id: c for c in third.credentials if c.kind == "vault-token"}
    assert rows[kept["accessor"]].last_used_at > used_at


@pytest.fixture
def plain_accessor_bao(tmp_path: Path):  # type: ignore[no-untyped-def]
    """An OpenBao dev server of its own whose file audit device logs accessors in plaintext
    (``hmac_accessor = false``): (address, root token, audit log)."""
    import secrets
    import socket
    import subprocess

    import requests

    from console.sandbox import find_bao

    log = tmp_path / "plain-audit.log"
    config = tmp_path / "audit.hcl"
    config.write_text(
        'audit "file" "plain" {\n  options {\n'
        f"    file_path = {json.dumps(str(log))}\n"
        '    hmac_accessor = "false"\n  }\n}\n'
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = secrets.token_urlsafe(18)
    address = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [find_bao(), "server", "-dev", f"-dev-root-token-id={root}",
         f"-dev-listen-address=127.0.0.1:{port}", f"-config={config}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    try:
        def up() -> bool:
            try:
                return requests.get(f"{address}/v1/sys/health", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        _wait_for(up, "the dev server")
        yield address, root, log
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_plaintext_accessor_matches_its_token_without_audit_hash(
    plain_accessor_bao: Any, tmp_path: Path
) -> None:
    """A device with ``hmac_accessor = false`` names the accessor itself: the token's row is
    matched directly, and no accessor is sent to sys/audit-hash (the one hash is of
    keyshift's own token, for its KV reads)."""
    import hvac

    address, root, log = plain_accessor_bao
    admin = hvac.Client(url=address, token=root, timeout=30)
    used = admin.auth.token.create(policies=["default"], ttl="1h")["auth"]
    idle = admin.auth.token.create(policies=["default"], ttl="1h")["auth"]
    hvac.Client(url=address, token=used["client_token"], timeout=30).lookup_token()
    _wait_for(lambda: used["accessor"].encode() in log.read_bytes(), "the request in the log")
    at = _log_time_of(log, "auth/token/lookup-self", used["accessor"])
    suffix = uuid.uuid4().hex[:6]
    ref = f"vault-plain-{suffix}"
    secret_refs.put("keyshift-test", ref, root)
    try:
        inv = {"version": 1, "sources": [{
            "name": "p", "type": "openbao", "token": f"keyring:keyshift-test/{ref}",
            "address": address, "fingerprint": False, "leases": False,
            "audit_log": str(log)}]}
        loaded = loaded_from(inv, tmp_path)
        result = VaultSource(loaded.source("p"), loaded).collect()
    finally:
        secret_refs.delete("keyshift-test", ref)
    rows = {c.native_id: c for c in result.credentials if c.kind == "vault-token"}
    assert (rows[used["accessor"]].last_used_at,
            rows[used["accessor"]].last_used_evidence) == (at, "vault:audit")
    assert rows[idle["accessor"]].last_used_at is None
    assert [u.at for u in result.usage if u.credential_id == rows[used["accessor"]].id] == [at]
    hashes = [line for line in log.read_bytes().splitlines()
              if b'"type":"response"' in line and b'"path":"sys/audit-hash/' in line]
    assert len(hashes) == 1  # keyshift's own token's, for its KV reads; no accessor
    assert root not in repr(result) and used["client_token"] not in repr(result)
