"""The Vault file audit device read incrementally: rotation, truncation, lines still being
written and malformed lines; then the real OpenBao writing the log and rotating it on SIGHUP,
and the read position kept in the store across processes."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_sources_vault import VAULT, agent_read, base_inventory, loaded_from, vault_cfg

from console.audit import AuditLog
from console.sources.vault import VaultSource
from console.sources.vault_audit import SEED_MARK, parse_vault_time, read_audit_log
from console.store import Store
from console.sync import run_sync


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
    return json.dumps(line).encode() + b"\n"


def request_line(n: int) -> bytes:
    line = {"time": "2026-12-03T10:00:00Z", "type": "request",
            "request": {"id": str(n), "operation": "read", "path": "secret/data/agents/x"}}
    return json.dumps(line).encode() + b"\n"


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
        fh.write(b"[1, 2]\n" + entry(3))
    later = read_audit_log(log, batch.position)
    assert times(later) == expected(range(3, 4))
    assert later.malformed == 1 and later.position.malformed == 4  # kept over the log's life


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
