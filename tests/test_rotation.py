"""The rotation engine against the real OpenBao sandbox, with the vault-kv rotator.

Every test writes its own KV v2 secret under secret/rotation-tests/<random> (the seeded data
stays untouched) and puts a credential row for it in a fresh store. The values the tests read
back through hvac are the canaries: none may appear in the store's files.
"""

from __future__ import annotations

import json
import os
import secrets as stdlib_secrets
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest

from console.audit import AuditLog
from console.config import load_inventory
from console.errors import NotFoundError, ReadOnlyError, RotationError
from console.fingerprint import fingerprint
from console.model import Credential, credential_id
from console.rotation import (
    AWAITING_REVOKE,
    COMPLETED,
    CRASH_ENV,
    ROLLED_BACK,
    RotationEngine,
    RotationFailed,
)
from console.sandbox import SandboxState
from console.sandbox import vault_client as sandbox_vault_client
from console.sources.vault import canonical_value
from console.store import Store
from rotators import registry
from rotators.base import CredentialInfo, Pending, VerifyFailed
from rotators.vault_kv import CURRENT_VERSION, PENDING_RUN, VaultKvRotator

SOURCE = "vault-sandbox"
INVENTORY = """\
version: 1
sources:
  - {name: vault-sandbox, type: openbao, sandbox: true}
  - {name: declared, type: declared}
policies:
  grace_period_hours: 24
"""
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class Clock:
    """The engine's clock, moved by the test (no wall-clock assertions)."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Env:
    tmp: Path
    inventory: Path
    db: Path
    store: Store
    audit: AuditLog
    vault: hvac.Client
    clock: Clock
    loaded: Any

    def engine(self, **kwargs: Any) -> RotationEngine:
        kwargs.setdefault("clock", self.clock)
        return RotationEngine(self.store, self.audit, self.loaded, **kwargs)

    @property
    def kv(self) -> Any:
        return self.vault.secrets.kv.v2

    def secret(
        self,
        data: dict[str, str],
        *,
        custom: dict[str, str] | None = None,
        rotator: str | None = None,
        mount: str = "secret",
    ) -> tuple[str, str]:
        """Write a new KV secret and its credential row; returns (credential id, path)."""
        path = f"rotation-tests/{uuid.uuid4().hex[:12]}"
        self.kv.create_or_update_secret(path, data, mount_point=mount)
        if custom:
            self.kv.update_metadata(path, mount_point=mount, custom_metadata=custom)
        native = f"{mount}/{path}"
        cred = Credential(
            id=credential_id(SOURCE, "kv", native),
            source=SOURCE,
            kind="kv",
            native_id=native,
            name=path,
            location=native,
            rotator=rotator,
            version="1",
            tags=dict(custom or {}),
        )
        self.store.bulk_insert_credentials([cred])
        return cred.id, path

    def latest(self, path: str) -> dict[str, str]:
        response = self.kv.read_secret_version(
            path, mount_point="secret", raise_on_deleted_version=True
        )
        return response["data"]["data"]

    def version(self, path: str, version: int) -> dict[str, str]:
        return self.kv.read_secret_version(
            path, version=version, mount_point="secret", raise_on_deleted_version=True
        )["data"]["data"]

    def metadata(self, path: str) -> dict[str, Any]:
        return self.kv.read_secret_metadata(path, mount_point="secret")["data"]

    def store_bytes(self) -> bytes:
        """Everything the store has on disk: the db and its WAL/SHM files."""
        return b"".join(p.read_bytes() for p in self.tmp.glob(f"{self.db.name}*"))

    def assert_no_values_on_disk(self, *values: str) -> None:
        raw = self.store_bytes()
        assert raw, "the store wrote nothing?"
        for value in values:
            assert value.encode() not in raw, "a secret value reached the store file"
        rows = json.dumps([e.model_dump(mode="json") for e in self.audit.entries()])
        steps = json.dumps(
            [self.store.rotation_steps(r["id"]) for r in self.store.rotation_runs(limit=1000)],
            default=str,
        )
        for value in values:
            assert value not in rows, "a secret value reached the audit log"
            assert value not in steps, "a secret value reached the rotation journal"


@pytest.fixture
def env(sandbox: SandboxState, keyshift_home: Path, tmp_path: Path) -> Iterator[Env]:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY)
    db = tmp_path / "keyshift.db"
    store = Store(db)
    try:
        yield Env(
            tmp=tmp_path,
            inventory=inventory,
            db=db,
            store=store,
            audit=AuditLog(store),
            vault=sandbox_vault_client(sandbox),
            clock=Clock(),
            loaded=load_inventory(inventory),
        )
    finally:
        store.close()


def _value() -> str:
    # a value the test owns; it is a canary, so it must be long enough to be unmistakable
    return "canary-" + stdlib_secrets.token_urlsafe(24)


def _steps(env: Env, run_id: str) -> list[tuple[str, str]]:
    return [(s["step"], s["status"]) for s in env.store.rotation_steps(run_id)]


def _audit(env: Env, run_id: str) -> list[tuple[str, str, str]]:
    out = []
    for entry in env.audit.entries():
        if entry.detail.get("run_id") == run_id:
            out.append((entry.action, entry.detail.get("step", ""), entry.detail.get("status", "")))
    return out


# --- end to end ---------------------------------------------------------------------------


def test_a_watcher_that_goes_away_does_not_stop_a_run(env: Env) -> None:
    # the TUI's progress callback raises once its app has quit: the run must still finish
    cred_id, path = env.secret({"value": _value()})
    calls: list[str] = []

    def gone(step: str, status: str, message: str) -> None:
        calls.append(step)
        raise RuntimeError("no active app")

    result = env.engine().rotate(cred_id, actor="tester", progress=gone)
    assert result.status == AWAITING_REVOKE and result.ok
    assert calls == ["create"]  # called once, then dropped
    assert env.metadata(path)["current_version"] == 2


def test_rotate_end_to_end(env: Env) -> None:
    old = _value()
    cred_id, path = env.secret(
        {"value": old, "username": "svc-support"}, custom={"owner": "team-support"}
    )
    events: list[tuple[str, str, str]] = []
    engine = env.engine()

    plan = engine.plan(cred_id)
    assert plan.rotator == "vault-kv" and plan.zero_downtime and not plan.manual

    result = engine.rotate(cred_id, actor="tester", progress=lambda *e: events.append(e))

    assert result.status == AWAITING_REVOKE and result.ok
    assert (result.version, result.previous_version) == ("2", "1")
    assert result.revoke_after == T0 + timedelta(hours=24)  # the inventory's grace period
    new = env.latest(path)
    assert new["value"] != old and len(new["value"]) == 40 and new["value"].isalnum()
    assert new["username"] == "svc-support"  # other keys kept
    assert env.version(path, 1)["value"] == old  # old still readable through the grace period
    meta = env.metadata(path)
    assert meta["current_version"] == 2
    assert meta["custom_metadata"][CURRENT_VERSION] == "2"
    assert meta["custom_metadata"]["owner"] == "team-support"  # existing metadata kept
    assert not any(k.startswith("keyshift_pending") for k in meta["custom_metadata"])

    # the journal: each step started then done, in order
    assert _steps(env, result.run_id) == [
        ("create", "done"),
        ("verify", "done"),
        ("promote", "done"),
    ]
    run = env.store.get_rotation_run(result.run_id)
    assert run["status"] == AWAITING_REVOKE and run["actor"] == "tester"
    assert (run["pending_version"], run["previous_version"]) == ("2", "1")
    # the store knows the new version, and its fingerprint is what the next sync will compute
    cred = env.store.get_credential(cred_id)
    assert cred.version == "2"
    assert cred.rotated_at == T0
    assert cred.fingerprint == fingerprint(canonical_value(new))
    assert [(s, st) for s, st, _ in events] == [
        ("create", "started"),
        ("create", "done"),
        ("verify", "started"),
        ("verify", "done"),
        ("promote", "started"),
        ("promote", "done"),
        ("revoke", "scheduled"),
    ]

    # nothing is due yet; after the grace period the old version is destroyed
    assert engine.finish_due(actor="tester") == []
    env.clock.now = T0 + timedelta(hours=25)
    (done,) = engine.finish_due(actor="scheduler")
    assert done.run_id == result.run_id and done.status == COMPLETED
    versions = env.metadata(path)["versions"]
    assert versions["1"]["destroyed"] is True
    assert versions["2"]["destroyed"] is False
    assert env.latest(path)["value"] == new["value"]
    assert _steps(env, result.run_id)[-1] == ("revoke", "done")
    assert env.store.get_rotation_run(result.run_id)["status"] == COMPLETED

    # the audit chain verifies and tells the whole story
    check = env.audit.verify()
    assert check.ok, check.message
    assert _audit(env, result.run_id) == [
        ("rotation.start", "", ""),
        ("rotation.step", "create", "done"),
        ("rotation.step", "verify", "done"),
        ("rotation.step", "promote", "done"),
        ("rotation.outcome", "", AWAITING_REVOKE),
        ("rotation.step", "revoke", "done"),
        ("rotation.outcome", "", COMPLETED),
    ]
    env.assert_no_values_on_disk(old, new["value"])


def test_rotate_uses_generator_hints_and_rotate_keys(env: Env) -> None:
    old_user, old_pw, old_token = _value(), _value(), _value()
    cred_id, path = env.secret(
        {"username": old_user, "password": old_pw, "token": old_token},
        custom={
            "rotate_keys": "password,token",
            "generator_length": "24",
            "generator_alphabet": "hex",
            "generator_prefix": "ks_",
        },
    )
    env.engine().rotate(cred_id, actor="tester", grace=timedelta(0))
    new = env.latest(path)
    assert new["username"] == old_user
    for key, old in (("password", old_pw), ("token", old_token)):
        assert new[key] != old
        assert new[key].startswith("ks_") and len(new[key]) == 27
        assert set(new[key][3:]) <= set("0123456789abcdef")
    assert new["password"] != new["token"]
    env.assert_no_values_on_disk(old_user, old_pw, old_token, new["password"], new["token"])


def test_grace_zero_revokes_at_once(env: Env) -> None:
    old = _value()
    cred_id, path = env.secret({"value": old})
    result = env.engine().rotate(cred_id, actor="tester", grace=timedelta(0))
    assert result.status == COMPLETED
    assert env.metadata(path)["versions"]["1"]["destroyed"] is True
    with pytest.raises(hvac.exceptions.InvalidPath):
        env.version(path, 1)
    assert env.latest(path)["value"] != old
    assert _steps(env, result.run_id) == [
        ("create", "done"),
        ("verify", "done"),
        ("promote", "done"),
        ("revoke", "done"),
    ]


def test_finish_due_revokes_only_runs_past_their_grace(env: Env) -> None:
    engine = env.engine()
    short_id, short_path = env.secret({"value": _value()})
    long_id, long_path = env.secret({"value": _value()})
    short = engine.rotate(short_id, actor="tester", grace=timedelta(hours=1))
    long = engine.rotate(long_id, actor="tester", grace=timedelta(hours=10))

    env.clock.now = T0 + timedelta(hours=2)
    results = engine.finish_due(actor="scheduler")
    assert [(r.run_id, r.status) for r in results] == [(short.run_id, COMPLETED)]
    assert env.metadata(short_path)["versions"]["1"]["destroyed"] is True
    assert env.metadata(long_path)["versions"]["1"]["destroyed"] is False
    assert env.store.get_rotation_run(long.run_id)["status"] == AWAITING_REVOKE

    results = engine.finish_due(actor="scheduler", now=T0 + timedelta(hours=11))
    assert [(r.run_id, r.status) for r in results] == [(long.run_id, COMPLETED)]
    assert env.metadata(long_path)["versions"]["1"]["destroyed"] is True
    assert env.audit.verify().ok


# --- zero downtime ------------------------------------------------------------------------


def test_reader_sees_a_valid_value_throughout_a_rotation(env: Env, sandbox: SandboxState) -> None:
    old = _value()
    cred_id, path = env.secret({"value": old})
    reader = sandbox_vault_client(sandbox)  # its own client and connection, like an agent
    seen: list[str] = []
    failures: list[str] = []
    first_read = threading.Event()
    stop = threading.Event()

    def read_forever() -> None:
        while not stop.is_set():
            try:
                data = reader.secrets.kv.v2.read_secret_version(
                    path, mount_point="secret", raise_on_deleted_version=True
                )["data"]["data"]
                seen.append(data["value"])
            except Exception as exc:  # any failure is what this test exists to catch
                failures.append(f"{type(exc).__name__}")
            first_read.set()

    thread = threading.Thread(target=read_forever, daemon=True)
    thread.start()
    try:
        assert first_read.wait(30)
        env.engine().rotate(cred_id, actor="tester", grace=timedelta(0))
        new = env.latest(path)["value"]
        # keep reading until the reader has seen the new value too (bounded by reads, not time)
        for _ in range(10_000):
            if seen and seen[-1] == new:
                break
            threading.Event().wait(0.001)
    finally:
        stop.set()
        thread.join(30)
    assert failures == []
    assert set(seen) <= {old, new}
    assert seen[0] == old and seen[-1] == new
    # once the new value appeared, readers never went back to the old one
    assert old not in seen[seen.index(new) :]


# --- crash and resume ---------------------------------------------------------------------

CRASH_SCRIPT = """
import sys
from datetime import timedelta
from console.audit import AuditLog
from console.config import load_inventory
from console.rotation import RotationEngine
from console.store import Store

inventory, db, cred_id = sys.argv[1:4]
store = Store(db)
engine = RotationEngine(store, AuditLog(store), load_inventory(inventory))
engine.rotate(cred_id, actor="crashing", grace=timedelta(hours=1))
print("NOT KILLED")
"""


@pytest.mark.parametrize(
    "crash_after",
    ["create:started", "create:ran", "create", "verify:ran", "promote:started", "promote"],
)
def test_resume_after_a_crash_writes_exactly_one_new_version(env: Env, crash_after: str) -> None:
    old = _value()
    cred_id, path = env.secret({"value": old})
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(env.inventory), str(env.db), cred_id],
        env={**os.environ, CRASH_ENV: crash_after},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert "NOT KILLED" not in proc.stdout
    (run,) = env.store.rotation_runs(credential_id=cred_id)
    assert run["status"] == "running"
    step, _, point = crash_after.partition(":")
    journal = _steps(env, run["id"])
    assert journal[-1] == (step, "done" if not point else "started")

    results = env.engine().resume_unfinished("tester")

    assert [r.run_id for r in results] == [run["id"]]
    assert results[0].status == AWAITING_REVOKE
    meta = env.metadata(path)
    assert meta["current_version"] == 2, "a resumed create must not write a second version"
    assert set(meta["versions"]) == {"1", "2"}
    new = env.latest(path)["value"]
    assert new != old and env.version(path, 1)["value"] == old
    assert not any(k.startswith("keyshift_pending") for k in meta["custom_metadata"])
    statuses = _steps(env, run["id"])
    assert [s for s, st in statuses if st == "done"] == ["create", "verify", "promote"]
    assert env.store.get_credential(cred_id).fingerprint == fingerprint(new)
    assert env.audit.verify().ok
    assert ("rotation.resume", "", "") in _audit(env, run["id"])
    # resuming again is a no-op: nothing unfinished needs a hand
    assert env.engine().resume_unfinished("tester") == []
    env.assert_no_values_on_disk(old, new)


# --- failures roll back -------------------------------------------------------------------


class BrokenVerify(VaultKvRotator):
    """A third-party rotator (registered through the registry) whose check always fails."""

    name = "test-broken-verify"

    def verify(self, cred: CredentialInfo, pending: Pending) -> None:
        raise VerifyFailed("the provider rejected the new key")


class DeletedBeforeVerify(VaultKvRotator):
    """Someone deletes the pending version between create and verify; the real verify runs."""

    name = "test-deleted-before-verify"

    def verify(self, cred: CredentialInfo, pending: Pending) -> None:
        mount, _, path = cred.native_id.partition("/")
        client = self.context.vault_client(cred.source)
        client.secrets.kv.v2.delete_secret_versions(path, [int(pending.version)], mount_point=mount)
        super().verify(cred, pending)


@pytest.fixture
def test_rotators() -> Iterator[None]:
    for cls in (BrokenVerify, DeletedBeforeVerify):
        registry.register(cls)
    try:
        yield
    finally:
        for cls in (BrokenVerify, DeletedBeforeVerify):
            registry.unregister(cls.name)


@pytest.mark.usefixtures("test_rotators")
@pytest.mark.parametrize("rotator", [BrokenVerify.name, DeletedBeforeVerify.name])
def test_failed_verify_rolls_back_and_the_old_value_is_current(env: Env, rotator: str) -> None:
    old = _value()
    cred_id, path = env.secret({"value": old, "region": "eu"}, rotator=rotator)
    before = env.store.get_credential(cred_id)

    with pytest.raises(RotationFailed) as caught:
        env.engine().rotate(cred_id, actor="tester")

    err = caught.value
    assert isinstance(err, RotationError)
    assert "verify" in err.message and "rolled back" in err.message
    assert err.result.status == ROLLED_BACK
    assert env.latest(path) == {"value": old, "region": "eu"}  # readers get the old value again
    meta = env.metadata(path)
    assert meta["versions"]["2"]["destroyed"] is True  # the failed version is gone for good
    assert meta["current_version"] == 3
    assert PENDING_RUN not in (meta["custom_metadata"] or {})
    assert _steps(env, err.result.run_id) == [
        ("create", "done"),
        ("verify", "failed"),
        ("rollback", "done"),
    ]
    run = env.store.get_rotation_run(err.result.run_id)
    assert run["status"] == ROLLED_BACK and "verify failed" in run["error"]
    after = env.store.get_credential(cred_id)
    assert (after.version, after.fingerprint, after.rotated_at) == (
        before.version,
        before.fingerprint,
        before.rotated_at,
    )
    assert _audit(env, err.result.run_id)[-3:] == [
        ("rotation.step", "verify", "failed"),
        ("rotation.step", "rollback", "done"),
        ("rotation.outcome", "", ROLLED_BACK),
    ]
    assert env.audit.verify().ok
    # the run is over: nothing for resume to pick up, nothing blocking the next rotation
    assert env.store.unfinished_rotation_runs() == []
    env.assert_no_values_on_disk(old)


def test_kv_v1_mount_is_refused_clearly(env: Env) -> None:
    mount = f"kv1-{uuid.uuid4().hex[:8]}"
    env.vault.sys.enable_secrets_engine("kv", path=mount, options={"version": "1"})
    env.vault.secrets.kv.v1.create_or_update_secret("svc", {"value": _value()}, mount_point=mount)
    native = f"{mount}/svc"
    cred = Credential(
        id=credential_id(SOURCE, "kv", native),
        source=SOURCE,
        kind="kv",
        native_id=native,
        name="svc",
    )
    env.store.bulk_insert_credentials([cred])
    with pytest.raises(RotationFailed) as caught:
        env.engine().rotate(cred.id, actor="tester")
    assert "KV v1" in caught.value.message and "KV v2 only" in caught.value.message
    assert caught.value.result.status == ROLLED_BACK


# --- refusals -----------------------------------------------------------------------------


def test_read_only_engine_refuses_and_changes_nothing(env: Env) -> None:
    old = _value()
    cred_id, path = env.secret({"value": old})
    engine = env.engine(read_only=True)
    assert engine.plan(cred_id).rotator == "vault-kv"  # planning changes nothing: allowed
    with pytest.raises(ReadOnlyError):
        engine.rotate(cred_id, actor="tester")
    with pytest.raises(ReadOnlyError):
        engine.finish_due(actor="tester")
    with pytest.raises(ReadOnlyError):
        engine.resume_unfinished("tester")
    assert env.store.rotation_runs() == []
    assert env.metadata(path)["current_version"] == 1
    assert env.latest(path)["value"] == old


def test_plan_errors_and_manual_credentials(env: Env) -> None:
    engine = env.engine()
    with pytest.raises(NotFoundError):
        engine.plan("vault-sandbox:kv:secret/nope")

    unknown = Credential(
        id="vault-sandbox:kv:secret/x",
        source=SOURCE,
        kind="kv",
        native_id="secret/x",
        name="x",
        rotator="no-such-rotator",
    )
    nothing = Credential(
        id="declared:teleport:y", source="declared", kind="teleport", native_id="y", name="y"
    )
    manual = Credential(
        id="declared:api-key:openai",
        source="declared",
        kind="api-key",
        native_id="openai",
        name="openai",
        tags={"provider": "openai"},
    )
    env.store.bulk_insert_credentials([unknown, nothing, manual])

    with pytest.raises(RotationError) as caught:
        engine.plan(unknown.id)
    assert "no-such-rotator" in caught.value.message
    assert "vault-kv" in caught.value.hint and "manual" in caught.value.hint

    with pytest.raises(RotationError) as caught:
        engine.plan(nothing.id)
    assert "no rotator" in caught.value.message and "kind teleport" in caught.value.message
    assert caught.value.hint

    plan = engine.plan(manual.id)
    assert plan.manual and plan.rotator == "manual" and "openai" in plan.summary
    with pytest.raises(RotationError, match="rotated by hand"):
        engine.rotate(manual.id, actor="tester")
    assert env.store.rotation_runs() == []


def test_a_second_rotation_is_refused_while_one_is_in_flight(env: Env) -> None:
    cred_id, _ = env.secret({"value": _value()})
    run_id = env.store.create_rotation_run(cred_id, "vault-kv", {}, "someone")
    env.store.set_run_status(run_id, "running")
    with pytest.raises(RotationError, match="unfinished rotation") as caught:
        env.engine().rotate(cred_id, actor="tester")
    assert run_id in caught.value.hint


# --- vault-kv details ---------------------------------------------------------------------


def test_create_recognises_its_own_version_after_losing_the_marker(env: Env) -> None:
    """A crash between writing the version and recording its number: a re-run of create finds
    the version by the fingerprint it recorded first, and writes nothing new."""
    from console.rotation import EngineContext, credential_info

    cred_id, path = env.secret({"value": _value()})
    rotator = VaultKvRotator(EngineContext(env.loaded, env.clock))
    info = credential_info(env.store.get_credential(cred_id))
    first = rotator.create(info, "run-a")
    env.vault.adapter.request(
        "PATCH",
        f"/v1/secret/metadata/{path}",
        json={"custom_metadata": {"keyshift_pending_version": None}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    again = rotator.create(info, "run-a")
    assert again.version == first.version == "2"
    assert again.detail["fingerprint"] == first.detail["fingerprint"]
    assert env.metadata(path)["current_version"] == 2
    # another run is refused while this one is pending
    with pytest.raises(Exception, match="pending from run run-a"):
        rotator.create(info, "run-b")
    rotator.rollback(info, again)
    assert PENDING_RUN not in (env.metadata(path)["custom_metadata"] or {})


def test_previous_version_survives_a_tiny_max_versions(env: Env) -> None:
    old = _value()
    cred_id, path = env.secret({"value": old})
    env.kv.update_metadata(path, max_versions=1, mount_point="secret")
    result = env.engine().rotate(cred_id, actor="tester", grace=timedelta(hours=1))
    assert result.status == AWAITING_REVOKE
    assert env.version(path, 1)["value"] == old  # not evicted by the new write
    assert env.latest(path)["value"] != old
