"""Every issuer and target end to end against the sandbox's real servers, while a consumer reads
the credential where it is delivered and uses it with its issuer (tests/rotation_support.py).

For each scenario: zero consumer failures from before the rotation until after the old value
is revoked; the old value still valid through the grace period and refused after; nothing
issued twice; each step run again after it succeeded changes nothing; no value in the store.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rotation_support import SCENARIOS, RotEnv, Scenario, build

from console.redaction import ValueScope
from console.rotation import AWAITING_REVOKE, COMPLETED
from console.rotation.context import RunContext
from rotators import registry
from rotators.values import SecretValue

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
# issuers that keep the old value valid until revoke (a generated value has no issuer)
OVERLAP = {"approle-env-file", "token-keyring", "iam-kv", "provider-env-file"}
SECRET_PARTS = {"value", "secret_id", "token", "secret_access_key"}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Consumer:
    """Uses the credential, as its agent would, in a loop on a thread."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.uses = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ok = self.scenario.consumer()
            except Exception as exc:  # a read that blew up is a failure too
                ok = False
                self.failures.append(f"{type(exc).__name__}: {exc}"[:200])
            else:
                if not ok:
                    self.failures.append(f"use {self.uses} failed")
            self.uses += 1

    def __enter__(self) -> Consumer:
        self._thread.start()
        return self

    def wait_uses(self, more: int, timeout: float = 30) -> None:
        target = self.uses + more
        deadline = time.monotonic() + timeout
        while self.uses < target and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.uses >= target, f"the consumer made {self.uses} uses, wanted {target}"

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def values_in(env: RotEnv, tmp: Path) -> bytes:
    data = b""
    for path in tmp.glob("ks.db*"):
        data += path.read_bytes()
    return data


@pytest.fixture
def scenario(request: Any, sandbox: Any, tmp_path: Path) -> Scenario:
    return build(request.param, tmp_path, sandbox)


@pytest.mark.parametrize("scenario", list(SCENARIOS), indirect=True)
def test_rotation_end_to_end_while_a_consumer_uses_it(scenario: Scenario) -> None:
    s = scenario
    env = s.env()
    clock = Clock()
    engine = env.engine(clock=clock)
    old = s.current()
    assert old and s.consumer(), "the scenario's consumer works before the rotation"
    plan = engine.plan(s.cred.id)
    assert plan.refused is None, plan.refused
    with Consumer(s) as consumer:
        consumer.wait_uses(3)
        result = engine.rotate(
            s.cred.id, actor="tester", grace=timedelta(hours=1), interaction=s.person
        )
        assert result.status == AWAITING_REVOKE and result.ok, result
        new = s.current()
        assert new != old
        consumer.wait_uses(3)
        if s.name in OVERLAP:
            assert not s.refused(old), "the old value stays valid through the grace period"
        # the grace period passes (IAM: deactivate, then delete after a second one)
        for hours in (2, 4):
            clock.now = T0 + timedelta(hours=hours)
            for done in engine.finish_due(actor="tester", interaction=s.person):
                assert done.error is None, done.error
            consumer.wait_uses(2)
        assert consumer.failures == [], consumer.failures[:5]
    run = env.store.get_rotation_run(result.run_id)
    assert run["status"] == COMPLETED, run
    assert s.refused(old), "the old value is refused once revoked"
    assert s.consumer() and s.current() == new
    assert s.issued() == 1, "one live value: the new one"
    assert env.audit.verify().ok
    stored = values_in(env, s.tmp)
    for values in (old, new):
        for part, value in values.items():
            if part in SECRET_PARTS:  # an access key's id, a username: not secrets
                assert value.encode() not in stored, part
    env.close()


def _plugins(env: RotEnv, scenario: Scenario, run_id: str) -> tuple[Any, list[Any]]:
    engine = env.engine()
    spec = engine.spec_for(scenario.cred.id)
    ctx = RunContext(engine.clients, run_id, lambda: T0, scenario.person, ValueScope())
    issuer = registry.of_role(spec.issuer["type"], "issuer")(spec.issuer, ctx)
    targets = [
        registry.of_role(t.type, "target")(t.spec, t.fields, ctx) for t in spec.targets
    ]
    return issuer, targets


@pytest.mark.parametrize("scenario", list(SCENARIOS), indirect=True)
def test_each_step_run_again_right_after_it_succeeded_changes_nothing(
    scenario: Scenario,
) -> None:
    """The protocol's promise to the engine, which may re-run a step after a crash: each
    step, run a second time right after it succeeded, finds its own work and changes
    nothing (issue is the one step never re-run: a crash in it rolls the run back)."""
    import uuid

    from console.rotation import credential_info

    s = scenario
    env = s.env()
    issuer, targets = _plugins(env, s, uuid.uuid4().hex)
    cred = credential_info(env.store.get_credential(s.cred.id))

    def state() -> tuple[Any, int]:
        return s.current(), s.issued()

    old_value: dict[str, SecretValue] = {}
    for target in targets:
        old_value.update(target.read() or {})
    old = issuer.identify(cred, old_value)
    assert issuer.identify(cred, old_value) == old
    issued = issuer.issue(cred, old)
    handles = []
    for target in targets:
        parts = {p: v for p, v in issued.value.items() if p in target.fields}
        handle = target.deliver(parts)
        before = state()
        assert target.deliver(parts) == handle, f"{target.where()}: deliver found its own"
        assert state() == before
        handles.append(handle)
    issuer.verify(cred, issued)
    before = state()
    issuer.verify(cred, issued)
    assert state() == before
    for target, handle in zip(targets, handles, strict=True):
        target.promote(handle)
        before = state()
        target.promote(handle)
        assert state() == before
    for stage in issuer.revoke_stages():
        issuer.revoke(cred, stage, {**old, "new": issued.handle})
        before = state()
        issuer.revoke(cred, stage, {**old, "new": issued.handle})
        assert state() == before
    for target, handle in zip(targets, handles, strict=True):
        target.retire(handle)
        before = state()
        target.retire(handle)
        assert state() == before
    assert s.consumer() and s.issued() == 1
    env.close()
