"""The rotation engine's rules, against the sandbox's real servers: plans that are complete,
unknown issuers that stay manual, claims, retries, grace, loud revoke failures, KV versions a
run still promises, gone credentials, abandoning stuck runs, sync racing a rotation, and
values that live only as long as their run. Scenarios come from tests/rotation_support.py.
"""

from __future__ import annotations

import json
import secrets as pysecrets
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import keyring
import pytest
from rotation_support import Scenario, build, standin_accepts

from console.errors import ReadOnlyError, RotationError
from console.model import Credential, credential_id
from console.process import Owner
from console.redaction import redact_active
from console.rotation import AWAITING_REVOKE, COMPLETED, ROLLED_BACK, RotationFailed
from console.sandbox import SandboxState, seal, unseal
from console.sources.vault import VaultSource
from rotators import registry
from rotators.base import Pending, Plan, RotatorError
from rotators.targets.env_file import read_vars

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PLAN_FIELDS = {"credential", "rotator", "issuer", "targets", "steps", "downtime",
               "grace_seconds", "refused"}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def kv_secret(s: Scenario, data: dict[str, str], tag: str | None = None,
              max_versions: int | None = None) -> Credential:
    """A KV v2 secret of the test's own, with its issuer tag; its store row."""
    path = f"rot/{uuid.uuid4().hex[:12]}"
    s.vault.secrets.kv.v2.create_or_update_secret(path, data, mount_point="secret")
    meta: dict[str, Any] = {"custom_metadata": {"keyshift-issuer": tag} if tag else {}}
    if max_versions:
        meta["max_versions"] = max_versions
    s.vault.secrets.kv.v2.update_metadata(path, mount_point="secret", **meta)
    cred = Credential(
        id=credential_id("vault-sandbox", "kv", f"secret/{path}"),
        source="vault-sandbox",
        kind="kv",
        native_id=f"secret/{path}",
        name=path,
        tags={"keyshift-issuer": tag} if tag else {},
    )
    s.extra["path"] = path
    return cred


@pytest.fixture
def bare(sandbox: SandboxState, tmp_path: Path) -> Scenario:
    s = Scenario(name="bare", tmp=tmp_path, state=sandbox)
    s.write_inventory("")
    return s


def _latest(s: Scenario, path: str) -> dict[str, Any]:
    return s.vault.secrets.kv.v2.read_secret_version(
        path, mount_point="secret", raise_on_deleted_version=True
    )["data"]


# --- plans ------------------------------------------------------------------------------------


def test_plans_are_complete_json_and_refuse_what_would_fail(bare: Scenario) -> None:
    s = bare
    single = kv_secret(s, {"value": "v-" + pysecrets.token_urlsafe(20)})
    multi = kv_secret(s, {"username": "svc", "password": "p-" + pysecrets.token_urlsafe(20)})
    weak = kv_secret(s, {"value": "w-" + pysecrets.token_urlsafe(20)}, tag="generated:alnum:16")
    good = kv_secret(s, {"value": "g-" + pysecrets.token_urlsafe(20)}, tag="generated")
    gone = kv_secret(s, {"value": "x-" + pysecrets.token_urlsafe(20)}, tag="generated")
    gone = gone.model_copy(update={"status": "gone", "gone_at": T0})
    env = s.env()
    env.store.bulk_insert_credentials([single, multi, weak, good, gone])
    engine = env.engine()

    plans = {c.id: engine.plan(c.id).as_dict() for c in (single, multi, weak, good, gone)}
    for plan in plans.values():
        assert set(plan) >= PLAN_FIELDS, set(plan)
        json.dumps(plan)  # JSON all the way down
    unknown = plans[single.id]
    assert unknown["issuer"] == "provider:unknown" and unknown["manual"] is True
    assert unknown["refused"] is None and unknown["origin"] == "not declared"
    assert any("not declared" in w for w in unknown["warnings"])
    assert "several keys (password, username)" in plans[multi.id]["refused"]
    assert "16 alnum characters give 95 bits" in plans[weak.id]["refused"]
    assert "gone from vault-sandbox" in plans[gone.id]["refused"]
    ok = plans[good.id]
    assert ok["refused"] is None and ok["issuer"] == "generated" and ok["manual"] is False
    assert [st["step"] for st in ok["steps"]] == [
        "issue", "deliver", "verify", "promote", "revoke", "retire"
    ]
    assert ok["targets"] == [{"type": "vault-kv", "where": f"vault-sandbox {good.native_id}",
                              "credential": good.id,
                              "place": f"vault-sandbox:kv:{good.native_id}"}]
    assert ok["downtime"] == "none" and ok["grace_seconds"] == 24 * 3600
    # a plan changes nothing
    assert env.store.rotation_runs(limit=10) == []


def test_an_iam_user_with_two_keys_is_refused_at_plan_time(sandbox: SandboxState,
                                                           tmp_path: Path) -> None:
    s = build("iam-kv", tmp_path, sandbox)
    s.aws("iam").create_access_key(UserName=s.extra["user"])  # now two keys
    env = s.env()
    plan = env.engine().plan(s.cred.id)
    assert "already has two access keys" in plan.refused
    with pytest.raises(RotationError, match="two access keys"):
        env.engine().rotate(s.cred.id, actor="tester")
    assert env.store.rotation_runs(limit=5) == []


# --- unknown means manual, never random ----------------------------------------------------


def test_an_undeclared_secret_is_never_replaced_with_a_random_value(bare: Scenario) -> None:
    s = bare
    value = "provider-issued-" + pysecrets.token_urlsafe(20)
    cred = kv_secret(s, {"value": value})
    env = s.env()
    env.store.bulk_insert_credentials([cred])
    with pytest.raises(RotationError, match="rotated by a person") as err:
        env.engine().rotate(cred.id, actor="tester")  # no person at hand
    assert "terminal" in err.value.one_line()
    assert _latest(s, s.extra["path"])["data"] == {"value": value}
    assert _latest(s, s.extra["path"])["metadata"]["version"] == 1


def test_a_multi_key_secret_rotates_only_its_declared_key(bare: Scenario) -> None:
    s = bare
    cred = kv_secret(s, {"username": "svc", "password": "p-" + pysecrets.token_urlsafe(20)},
                     tag="password=generated;username=static")
    env = s.env()
    env.store.bulk_insert_credentials([cred])
    before = _latest(s, s.extra["path"])["data"]
    result = env.engine().rotate(cred.id, actor="tester", grace=timedelta(0))
    assert result.status == COMPLETED
    after = _latest(s, s.extra["path"])["data"]
    assert after["username"] == "svc" and after["password"] != before["password"]
    assert len(after["password"]) == 40


# --- claims ----------------------------------------------------------------------------------


def test_a_claimed_subject_refuses_a_second_rotation_before_it_touches_anything(
    bare: Scenario,
) -> None:
    s = bare
    cred = kv_secret(s, {"value": "c-" + pysecrets.token_urlsafe(20)}, tag="generated")
    env = s.env()
    env.store.bulk_insert_credentials([cred])
    # another process (alive: this one's parent shell stands in for it) holds the claim
    import os

    from console import process

    holder = Owner(process.me().host, os.getppid(), process.start_time(os.getppid()))
    other = env.store.claim_run(subject=cred.id, credential_id=cred.id, rotator="generated",
                                plan={}, actor="other", owner=holder)
    with pytest.raises(RotationError) as err:
        env.engine().rotate(cred.id, actor="tester")
    assert "being rotated right now" in err.value.message and other[:12] in err.value.message
    assert "rolled back" not in err.value.one_line()
    assert _latest(s, s.extra["path"])["metadata"]["version"] == 1
    assert [r["id"] for r in env.store.rotation_runs(limit=5)] == [other]
    custom = _latest(s, s.extra["path"])["metadata"]["custom_metadata"] or {}
    assert not any(k.startswith("keyshift_pending") for k in custom)


def test_a_rotation_waits_for_the_previous_ones_grace_then_finishes_it_first(
    bare: Scenario,
) -> None:
    s = bare
    cred = kv_secret(s, {"value": "g-" + pysecrets.token_urlsafe(20)}, tag="generated")
    env = s.env()
    env.store.bulk_insert_credentials([cred])
    clock = Clock()
    engine = env.engine(clock=clock)
    first = engine.rotate(cred.id, actor="tester", grace=timedelta(hours=2))
    assert first.status == AWAITING_REVOKE
    with pytest.raises(RotationError) as err:
        engine.rotate(cred.id, actor="tester")
    assert "still waits for its grace period" in err.value.message
    assert f"keyshift runs finish {first.run_id[:12]} --now" in err.value.hint
    clock.now = T0 + timedelta(hours=3)
    second = engine.rotate(cred.id, actor="tester", grace=timedelta(0))
    assert env.store.get_rotation_run(first.run_id)["status"] == COMPLETED
    assert second.status == COMPLETED
    meta = _latest(s, s.extra["path"])["metadata"]
    assert meta["version"] == 3  # one new version per rotation, no more
    runs = env.store.rotation_runs(cred.id)
    assert [r["status"] for r in runs] == [COMPLETED, COMPLETED]


# --- retries ------------------------------------------------------------------------------------


def test_a_sealed_vault_during_verify_is_retried_until_it_is_back(bare: Scenario) -> None:
    s = bare
    cred = kv_secret(s, {"value": "s-" + pysecrets.token_urlsafe(20)}, tag="generated")
    env = s.env()
    env.store.bulk_insert_credentials([cred])
    from console.rotation import RetryPolicy

    seen: list[tuple[str, str]] = []
    unsealed = threading.Event()

    def progress(step: str, status: str, message: str) -> None:
        seen.append((step, status))
        if (step, status) == ("verify", "started"):
            seal()  # a sealed Vault answers 503 from now on

            def later() -> None:
                time.sleep(1.5)
                unseal()
                unsealed.set()

            threading.Thread(target=later, daemon=True).start()

    engine = env.engine(retry=RetryPolicy(attempts=12, base_seconds=0.2, cap_seconds=0.6))
    try:
        result = engine.rotate(cred.id, actor="tester", grace=timedelta(hours=1),
                               progress=progress)
    finally:
        unsealed.wait(10)
    assert result.status == AWAITING_REVOKE and result.ok
    assert ("verify", "retrying") in seen
    verify = [r for r in env.store.rotation_steps(result.run_id) if r["step"] == "verify"]
    assert verify[-1]["status"] == "done" and verify[-1]["attempts"] > 1


# --- failures -------------------------------------------------------------------------------


def test_a_key_the_provider_refuses_rolls_back_and_says_so_once(sandbox: SandboxState,
                                                               tmp_path: Path) -> None:
    s = build("provider-env-file", tmp_path, sandbox)
    env = s.env()
    old = s.current()["value"]

    class Mistyped:  # the person pastes a key the provider never issued
        def show(self, text: str) -> None:
            pass

        def ask_secret(self, prompt: str) -> str:
            return "sk-not-issued-" + pysecrets.token_urlsafe(20)

        def confirm(self, prompt: str) -> bool:
            return False

    with pytest.raises(RotationFailed) as err:
        env.engine().rotate(s.cred.id, actor="tester", interaction=Mistyped())
    result = err.value.result
    assert result.status == ROLLED_BACK
    line = err.value.one_line()
    assert "refused the new key" in line and line.count("verify failed") <= 1
    assert "failed: verify failed" not in (result.error or "")
    assert s.current()["value"] == old and standin_accepts(s.person.provider, old)
    steps = [(r["step"], r["status"]) for r in env.store.rotation_steps(result.run_id)]
    assert ("verify", "failed") in steps and ("restore:0", "done") in steps


def test_a_denied_revoke_is_a_loud_failure_and_is_retried(sandbox: SandboxState,
                                                         tmp_path: Path) -> None:
    s = build("approle-env-file", tmp_path, sandbox)
    root = s.vault
    policy = f"limited-{s.tag}"
    deny = 'path "auth/approle/role/+/secret-id-accessor/destroy" { capabilities = ["deny"] }\n'
    allow = 'path "auth/approle/*" { capabilities = ["create", "read", "update", "list"] }\n'
    root.sys.create_or_update_policy(policy, deny + allow)
    token = root.auth.token.create(policies=[policy], ttl="1h")["auth"]["client_token"]
    keyring.set_password(f"keyshift-limited-{s.tag}", "token", token)
    inventory = (s.tmp / "inventory.yaml").read_text().replace(
        "  - {name: declared, type: declared}\n",
        "  - {name: declared, type: declared}\n"
        f"  - {{name: vault-limited, type: openbao, address: \"{sandbox.vault.address}\", "
        f"token: \"keyring:keyshift-limited-{s.tag}/token\"}}\n",
    ).replace("source: vault-sandbox, role:", "source: vault-limited, role:")
    (s.tmp / "inventory.yaml").write_text(inventory)
    env = s.env()
    clock = Clock()
    engine = env.engine(clock=clock)
    old = s.current()
    result = engine.rotate(s.cred.id, actor="tester", grace=timedelta(hours=1))
    assert result.status == AWAITING_REVOKE
    clock.now = T0 + timedelta(hours=2)
    (failed,) = engine.finish_due(actor="tester")
    assert failed.status == AWAITING_REVOKE and "permission denied" in (failed.error or "")
    assert not failed.ok
    assert not s.refused(old), "the old secret-id is still valid: nothing pretended otherwise"
    root.sys.create_or_update_policy(policy, allow + 'path "auth/approle/role/+/secret-id-'
                                     'accessor/destroy" { capabilities = ["update"] }\n')
    (done,) = engine.finish_due(actor="tester")
    assert done.status == COMPLETED and done.error is None
    assert s.refused(old)


def test_kv_keeps_every_version_a_run_still_promises(bare: Scenario) -> None:
    s = bare
    cred = kv_secret(s, {"value": "m-" + pysecrets.token_urlsafe(20)}, tag="generated",
                     max_versions=1)
    env = s.env()
    env.store.bulk_insert_credentials([cred])
    clock = Clock()
    engine = env.engine(clock=clock)
    path = s.extra["path"]
    result = engine.rotate(cred.id, actor="tester", grace=timedelta(hours=1))
    previous = int(result.previous_version)
    for n in range(4):  # another writer during the grace period
        current = _latest(s, path)["data"]
        s.vault.secrets.kv.v2.create_or_update_secret(path, {**current, "n": str(n)},
                                                      mount_point="secret")
    kept = s.vault.secrets.kv.v2.read_secret_version(
        path, version=previous, mount_point="secret", raise_on_deleted_version=True)
    assert kept["data"]["data"]["value"].startswith("m-"), "the promised version survived"
    clock.now = T0 + timedelta(hours=2)
    (done,) = engine.finish_due(actor="tester")
    assert done.status == COMPLETED
    meta = s.vault.secrets.kv.v2.read_secret_metadata(path, mount_point="secret")["data"]
    assert meta["max_versions"] == 1, "the owner's setting is back once nothing is promised"
    assert "keyshift_kept_max_versions" not in (meta["custom_metadata"] or {})


def test_a_gone_credential_is_refused_and_a_stuck_run_can_be_abandoned(bare: Scenario) -> None:
    s = bare
    cred = kv_secret(s, {"value": "a-" + pysecrets.token_urlsafe(20)}, tag="generated")
    env = s.env()
    env.store.bulk_insert_credentials([cred])
    engine = env.engine()
    # a run whose process died and whose rollback failed: it holds the claim
    from console import process

    dead = Owner(process.me().host, 999_999, "boot:1")  # this host, a process long gone
    stuck = env.store.claim_run(subject=cred.id, credential_id=cred.id, rotator="generated",
                                plan={}, actor="other", owner=dead)
    env.store.set_run_status(stuck, "rollback-failed", error="rollback failed: denied")
    with pytest.raises(RotationError, match="could not be rolled back") as err:
        engine.rotate(cred.id, actor="tester")
    assert "keyshift runs abandon" in (err.value.hint or "")
    with pytest.raises(Exception, match="reason"):
        engine.abandon(stuck, actor="tester", reason=" ")
    abandoned = engine.abandon(stuck, actor="tester", reason="cleaned up by hand")
    assert abandoned.status == "abandoned"
    entry = [e for e in env.audit.entries() if e.action == "rotation.abandon"][-1]
    assert entry.detail["reason"] == "cleaned up by hand" and entry.detail["run_id"] == stuck
    assert engine.rotate(cred.id, actor="tester", grace=timedelta(0)).status == COMPLETED
    # gone from its source: refused at plan time, no run is created
    env.store.set_run_status(stuck, "abandoned")
    with env.store.transaction():
        env.store._conn().execute(
            "UPDATE credentials SET status = 'gone', gone_at = ? WHERE id = ?",
            ("2026-12-01T00:00:00.000000+00:00", cred.id),
        )
    before = len(env.store.rotation_runs(cred.id))
    with pytest.raises(RotationError, match="gone from vault-sandbox"):
        engine.rotate(cred.id, actor="tester")
    assert len(env.store.rotation_runs(cred.id)) == before


# --- what a rotation records, and syncs ----------------------------------------------------


def test_a_sync_listed_before_a_rotation_does_not_undo_what_it_recorded(bare: Scenario) -> None:
    s = bare
    cred = kv_secret(s, {"value": "r-" + pysecrets.token_urlsafe(20)}, tag="generated")
    env = s.env()
    source = VaultSource(env.loaded.source("vault-sandbox"), env.loaded)
    sync_id = env.store.begin_sync(["vault-sandbox"], "tester")
    listing = source.collect()  # listed before the rotation: version 1
    mine = [c for c in listing.credentials if c.id == cred.id]
    assert mine and mine[0].version == "1"
    env.store.apply_source(sync_id, "vault-sandbox", mine, [], [], [], False)
    result = env.engine().rotate(cred.id, actor="tester", grace=timedelta(hours=1))
    recorded = env.store.get_credential(cred.id)
    assert recorded.version == result.version == "2"
    env.store.apply_source(sync_id, "vault-sandbox", mine, [], [], [], False)
    after = env.store.get_credential(cred.id)
    assert (after.version, after.rotated_at) == (recorded.version, recorded.rotated_at)
    # a listing taken after the rotation is believed again
    later = env.store.begin_sync(["vault-sandbox"], "tester")
    fresh = [c for c in source.collect().credentials if c.id == cred.id]
    env.store.apply_source(later, "vault-sandbox", fresh, [], [], [], False)
    assert env.store.get_credential(cred.id).version == "2"


def test_values_live_as_long_as_their_run_and_are_redacted_from_its_errors(
    bare: Scenario,
) -> None:
    s = bare
    cred = kv_secret(s, {"value": "e-" + pysecrets.token_urlsafe(20)}, tag="generated")
    env = s.env()
    env.store.bulk_insert_credentials([cred])
    leaked: list[str] = []

    class Leaky:  # a third-party target that puts the value in its error text
        role = "target"
        name = f"leaky-{s.tag}"
        stages = False

        def __init__(self, spec: Any, fields: Any, ctx: Any) -> None:
            self.fields = dict(fields)

        def where(self) -> str:
            return "leaky"

        def plan(self, cred: Any) -> Any:
            from rotators.base import PartPlan

            return PartPlan(steps=["deliver: leak"])

        def read(self) -> None:
            return None

        def deliver(self, value: Any) -> Any:
            leaked.append(value["value"].reveal())
            raise RotatorError(f"rejected {value['value'].reveal()} at the gate")

        read_delivered = find_delivered = read_previous = lambda self, *a: None
        promote = retire = rollback = lambda self, *a: None

    registry.register(Leaky)
    try:
        inventory = (s.tmp / "inventory.yaml").read_text()
        (s.tmp / "inventory.yaml").write_text(inventory)
        from console.rotation.specs import Spec, TargetSpec

        engine = env.engine()
        spec = Spec(cred.id, {"type": "generated"}, [TargetSpec(Leaky.name, {}, {"value": ""},
                                                                None, "leaky")], "test")
        engine_spec = engine.spec_for
        engine.spec_for = lambda cred_id: spec  # type: ignore[method-assign]
        import console.rotation.engine as engine_module

        original = engine_module.resolve
        engine_module.resolve = lambda *a: spec  # type: ignore[assignment]
        try:
            with pytest.raises(RotationFailed) as err:
                engine.rotate(cred.id, actor="tester")
        finally:
            engine_module.resolve = original  # type: ignore[assignment]
            engine.spec_for = engine_spec  # type: ignore[method-assign]
    finally:
        registry.unregister(Leaky.name)
    (value,) = leaked
    assert value not in err.value.one_line() and "[redacted]" in err.value.one_line()
    steps = json.dumps(env.store.rotation_steps(err.value.result.run_id), default=str)
    audit = json.dumps([e.model_dump(mode="json") for e in env.audit.entries()])
    assert value not in steps and value not in audit and "[redacted]" in steps
    # the run is over: its values are forgotten, nothing else is redacted for the process
    assert redact_active(f"x {value} y") == f"x {value} y"


def test_read_only_engine_refuses_and_changes_nothing(bare: Scenario) -> None:
    s = bare
    cred = kv_secret(s, {"value": "o-" + pysecrets.token_urlsafe(20)}, tag="generated")
    env = s.env()
    env.store.bulk_insert_credentials([cred])
    engine = env.engine(read_only=True)
    assert engine.plan(cred.id).refused is None  # planning reads only
    for act in (
        lambda: engine.rotate(cred.id, actor="t"),
        lambda: engine.finish_due(actor="t"),
        lambda: engine.resume_unfinished("t"),
    ):
        with pytest.raises(ReadOnlyError):
            act()
    assert _latest(s, s.extra["path"])["metadata"]["version"] == 1


def test_a_watcher_that_goes_away_does_not_stop_a_run(bare: Scenario) -> None:
    s = bare
    cred = kv_secret(s, {"value": "w-" + pysecrets.token_urlsafe(20)}, tag="generated")
    env = s.env()
    env.store.bulk_insert_credentials([cred])
    calls: list[str] = []

    def gone(step: str, status: str, message: str) -> None:
        calls.append(step)
        raise RuntimeError("no active app")

    result = env.engine().rotate(cred.id, actor="tester", grace=timedelta(0), progress=gone)
    assert result.status == COMPLETED and calls == ["identify"]


# --- third-party rotators --------------------------------------------------------------------


class Whole:
    """A rotator written against keyshift's first protocol (a whole rotation in one class)."""

    name = "test-whole"
    kinds: ClassVar[tuple[str, ...]] = ("kv",)
    manual = False
    calls: ClassVar[list[str]] = []

    def __init__(self, context: Any) -> None:
        self.context = context

    def plan(self, cred: Any) -> Plan:
        return Plan(rotator=self.name, summary="whole", steps=["create: a new version"],
                    zero_downtime=True)

    def create(self, cred: Any, run_id: str) -> Pending:
        self.calls.append("create")
        return Pending(version="2", previous_version="1")

    def verify(self, cred: Any, pending: Pending) -> None:
        self.calls.append(f"verify {pending.version}")

    def promote(self, cred: Any, pending: Pending) -> None:
        self.calls.append(f"promote {pending.version}")

    def revoke(self, cred: Any, previous_version: str) -> None:
        self.calls.append(f"revoke {previous_version}")

    def rollback(self, cred: Any, pending: Pending) -> None:
        self.calls.append("rollback")


def test_a_third_party_whole_rotator_still_runs(bare: Scenario) -> None:
    s = bare
    registry.register(Whole)
    Whole.calls.clear()
    try:
        cred = Credential(id="x:kv:whole", source="vault-sandbox", kind="kv",
                          native_id="secret/whole", name="whole", rotator="test-whole")
        env = s.env()
        env.store.bulk_insert_credentials([cred])
        assert env.engine().plan(cred.id).rotator == "test-whole"
        result = env.engine().rotate(cred.id, actor="tester", grace=timedelta(0))
    finally:
        registry.unregister("test-whole")
    assert result.status == COMPLETED
    assert Whole.calls == ["create", "verify 2", "promote 2", "revoke 1"]


def test_old_provider_key_refused_only_after_a_person_revokes_it(sandbox: SandboxState,
                                                                 tmp_path: Path) -> None:
    s = build("provider-env-file", tmp_path, sandbox)
    env = s.env()
    old = s.current()["value"]
    # a person who says "done" without revoking: the provider's hook tells the truth (the
    # old key is still in this run's memory, so keyshift can ask the provider about it)
    liar = type(s.person)(s.person.provider, old_key=None)
    liar.ask_secret = s.person.ask_secret  # type: ignore[method-assign]
    result = env.engine().rotate(s.cred.id, actor="tester", grace=timedelta(0),
                                 interaction=liar)
    assert result.status == AWAITING_REVOKE
    assert "still accepts the old value" in (result.error or "")
    assert standin_accepts(s.person.provider, old)
    # asked again, a person who does revoke it
    done = env.engine().finish_run(result.run_id, actor="tester", now_regardless=True,
                                   interaction=s.person)
    assert done.status == COMPLETED and not standin_accepts(s.person.provider, old)
    checks = [r for r in env.store.rotation_steps(result.run_id) if r["step"] == "check"]
    assert [c["status"] for c in checks] == ["failed", "done"]


def test_a_provider_revoke_after_the_grace_period_waits_for_a_person(
    sandbox: SandboxState, tmp_path: Path
) -> None:
    s = build("provider-env-file", tmp_path, sandbox)
    env = s.env()
    clock = Clock()
    engine = env.engine(clock=clock)
    old = s.current()["value"]
    result = engine.rotate(s.cred.id, actor="tester", grace=timedelta(hours=1),
                           interaction=s.person)
    new = s.current()["value"]
    assert result.status == AWAITING_REVOKE and new != old
    clock.now = T0 + timedelta(hours=2)
    # nobody at the terminal (the schedule): the revoke waits for a person, not a failure
    (waiting,) = engine.finish_due(actor="tester")
    assert waiting.status == AWAITING_REVOKE and waiting.error is None
    assert "needs a person" in (waiting.waiting or "")
    (done,) = engine.finish_due(actor="tester", interaction=s.person)
    assert done.status == COMPLETED and not standin_accepts(s.person.provider, old)
    assert read_vars(s.tmp / "agent" / ".env")["STANDIN_API_KEY"] == new
    # the old key lived only in the agent's env file, overwritten at deliver: a later
    # process cannot ask the provider about it, and the journal says so instead of guessing
    (check,) = [r for r in env.store.rotation_steps(result.run_id) if r["step"] == "check"]
    assert check["detail"]["still_valid"] is None and "not checked" in check["detail"]["says"]


def test_a_generated_value_the_verify_hook_refuses_is_rolled_back(bare: Scenario) -> None:
    """A generated value may declare a hook that proves it (here the provider stand-in, which
    knows no such value): a refusal rolls the run back and the old value stays current."""
    from console.sandbox import provider_base

    s = bare
    old = "hooked-" + pysecrets.token_urlsafe(20)
    cred = kv_secret(s, {"value": old})
    inventory = (s.tmp / "inventory.yaml").read_text() + (
        "rotations:\n"
        f"  - name: hooked-{s.tag}\n"
        "    issuer:\n"
        "      type: generated\n"
        f"      verify: {{url: \"{provider_base('hooks')}/v1/check\"}}\n"
        "    targets:\n"
        f"      - {{type: vault-kv, source: vault-sandbox, path: {cred.native_id}}}\n"
    )
    (s.tmp / "inventory.yaml").write_text(inventory)
    env = s.env()
    env.store.bulk_insert_credentials([cred])
    plan = env.engine().plan(cred.id)
    assert any("the declared hook" in st["does"] for st in plan.steps)
    with pytest.raises(RotationFailed, match="verify hook refused") as err:
        env.engine().rotate(cred.id, actor="tester")
    assert err.value.result.status == ROLLED_BACK
    assert _latest(s, s.extra["path"])["data"] == {"value": old}
