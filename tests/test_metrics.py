"""Metrics (console/metrics.py): parsed with the official client's parser, every value checked
against what was put in the store (through the real engine against the sandbox, and through
the store's own methods), the textfile written atomically with its mode, and /metrics served
on loopback only.
"""

from __future__ import annotations

import os
import socket
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from prometheus_client.parser import text_string_to_metric_families
from rotation_support import build

from console import metrics
from console.alerts import Alerter
from console.config import LoadedInventory, load_inventory
from console.errors import UsageError
from console.findings.rules import Draft
from console.inventory import Alerts
from console.model import Credential, credential_id
from console.process import me
from console.rotation import AWAITING_REVOKE, COMPLETED
from console.sandbox import SandboxState
from console.store import Store

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SYNCED = NOW - timedelta(minutes=20)
SYNCED_BEFORE = NOW - timedelta(hours=5)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """sample name and labels -> value; every family has HELP and a TYPE."""
    out: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("keyshift_")
        assert family.documentation, f"{family.name} has no HELP"
        assert family.type in ("counter", "gauge"), family.name
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(parsed: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return parsed[(name, frozenset(labels.items()))]


def no_proxy_get(url: str) -> tuple[int, str, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


# --- values from the store ------------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Store, LoadedInventory, dict[str, str]]]:
    """A store with syncs, credentials, runs, findings, schedule rows and alerts, each put
    there by the store's own methods; the inventory the metrics read."""
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(textwrap.dedent("""\
        version: 1
        sources:
          - {name: declared, type: declared}
          - {name: local-keyring, type: keyring}
          - {name: never-synced, type: declared}
        policies:
          by_sensitivity: {high: {max_age_days: 90}}
        schedule:
          expiry_warning: 7d
          failure_loop: 2
        alerts:
          retries: 1
        """))
    loaded = load_inventory(inventory)
    store = Store(tmp_path / "ks.db")

    def cred(name: str, **extra: object) -> Credential:
        return Credential(id=credential_id("declared", "api-key", name), source="declared",
                          kind="api-key", native_id=name, name=name, **extra)

    creds = [
        cred("old", sensitivity="high", rotated_at=NOW - timedelta(days=200)),
        cred("soon", expires_at=NOW + timedelta(days=3)),
        cred("later", expires_at=NOW + timedelta(days=10)),  # outside the 7d warning
        cred("old-and-soon", sensitivity="high", rotated_at=NOW - timedelta(days=100),
             expires_at=NOW + timedelta(days=1)),  # overdue wins
        cred("fine", sensitivity="high", rotated_at=NOW - timedelta(days=5)),
    ]
    ids = {c.name: c.id for c in creds}
    with time_machine.travel(SYNCED_BEFORE, tick=False):
        sync = store.begin_sync(["local-keyring"], "tester")
        store.apply_source(sync, "local-keyring", [], [], [], [], complete=True)
        store.finish_sync(sync, "ok", {})
    with time_machine.travel(SYNCED, tick=False):
        sync = store.begin_sync(["declared", "local-keyring"], "tester")
        store.apply_source(sync, "declared", creds, [], [], [], complete=True)
        store.mark_source_failed(sync, "local-keyring", "the keyring is locked")
        store.finish_sync(sync, "partial", {})

    owner = me()

    def run(name: str, status: str, **fields: object) -> str:
        run_id = store.claim_run(subject=f"{ids[name]}#{status}", credential_id=ids[name],
                                 rotator="test", plan={}, actor="tester", owner=owner)
        store.set_run_status(run_id, status, **fields)
        return run_id

    run("old", "completed")
    run("soon", "completed")
    run("later", "rolled-back")
    run("fine", "abandoned")
    run("old", "awaiting-revoke", revoke_after=NOW - timedelta(hours=1))
    run("soon", "awaiting-revoke", revoke_after=NOW + timedelta(hours=1))
    run("later", "rollback-failed")

    drafts = [
        Draft(rule="r", severity="high", title="a", evidence="e", credential_id=ids["old"]),
        Draft(rule="r", severity="high", title="b", evidence="e", credential_id=ids["soon"]),
        Draft(rule="r", severity="low", title="c", evidence="e", credential_id=ids["later"]),
        Draft(rule="r", severity="medium", title="d", evidence="e", credential_id=ids["fine"]),
    ]
    store.apply_findings(drafts, {"r"}, NOW - timedelta(days=2))
    # an acceptance that lapsed counts as open; one still in force does not
    store.accept_finding(drafts[1].id, NOW - timedelta(days=1), "later", "tester")
    store.accept_finding(drafts[2].id, NOW + timedelta(days=30), "known", "tester")
    store.apply_findings(drafts[:3], {"r"}, NOW - timedelta(days=1))  # d resolved

    # the sync job failed three times in a row; "later" failed twice (a failure loop)
    for n in range(3):
        seen = store.schedule_job("sync")
        assert store.claim_schedule_job("sync", seen, owner, NOW - timedelta(minutes=40 - n))
        assert store.finish_schedule_job("sync", owner, status="failed", error="down",
                                         detail={}, now=NOW - timedelta(minutes=30 - n))
    for _ in range(2):
        store.record_scheduled_rotation(ids["later"], ok=False, error="x", run_id=None,
                                        now=NOW - timedelta(minutes=10))

    with socket.socket() as sock:  # a port nothing listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ["KEYSHIFT_TEST_METRICS_HOOK"] = f"http://127.0.0.1:{port}/hook"
    alert_clock = [NOW]
    alerter = Alerter(Alerts.model_validate(
        {"webhook": {"url": "env:KEYSHIFT_TEST_METRICS_HOOK"}, "retries": 1}), store,
        clock=lambda: alert_clock[0])
    alerter.raise_alert("overdue", "old", dedupe_key="overdue:old", summary="old is overdue",
                        fields={})
    for _ in range(2):  # two sends refused, each in its own pass once due: given up
        assert alerter.deliver_pending() == 0
        alert_clock[0] += timedelta(hours=2)
    alerter.raise_alert("overdue", "soon", dedupe_key="overdue:soon", summary="soon",
                        fields={})
    yield store, loaded, ids
    store.close()


def test_every_metric_matches_the_store(
    world: tuple[Store, LoadedInventory, dict[str, str]],
) -> None:
    store, loaded, _ids = world
    got = parse(metrics.collect(store, loaded, NOW))

    assert value(got, "keyshift_rotations_total", result="completed") == 2
    assert value(got, "keyshift_rotations_total", result="failed") == 2
    assert value(got, "keyshift_rotation_runs_active", status="awaiting-revoke") == 2
    assert value(got, "keyshift_rotation_runs_active", status="rollback-failed") == 1
    assert value(got, "keyshift_rotation_runs_active", status="running") == 0
    assert value(got, "keyshift_rotations_revoke_overdue") == 1

    assert value(got, "keyshift_credentials_overdue") == 2  # old, old-and-soon
    assert value(got, "keyshift_credentials_expiring") == 1  # soon (later is 10 days off)

    assert {sev: value(got, "keyshift_findings_open", severity=sev) for sev in
            ("critical", "high", "medium", "low", "info")} == {
        "critical": 0, "high": 2, "medium": 0, "low": 0, "info": 0}

    stamp = "keyshift_source_last_sync_timestamp_seconds"
    age = "keyshift_source_last_sync_age_seconds"
    ok = "keyshift_source_last_sync_success"
    assert value(got, stamp, source="declared") == SYNCED.timestamp()
    assert value(got, age, source="declared") == 20 * 60
    # its newest sync failed: the last success is the older one
    assert value(got, stamp, source="local-keyring") == SYNCED_BEFORE.timestamp()
    assert value(got, age, source="local-keyring") == 5 * 3600
    assert value(got, ok, source="declared") == 1
    assert value(got, ok, source="local-keyring") == 0
    assert value(got, ok, source="never-synced") == 0
    assert (stamp, frozenset({("source", "never-synced")})) not in got

    assert value(got, "keyshift_schedule_job_failures_in_row", job="sync") == 3
    assert value(got, "keyshift_schedule_job_last_finished_timestamp_seconds", job="sync") == (
        NOW - timedelta(minutes=28)).timestamp()
    jobs = {dict(labels).get("job") for name, labels in got
            if name == "keyshift_schedule_job_failures_in_row"}
    assert jobs == {"sync"}, "the failure-loop holds are not jobs"
    assert value(got, "keyshift_credentials_held") == 1

    assert value(got, "keyshift_alerts_undelivered", state="given-up") == 1
    assert value(got, "keyshift_alerts_undelivered", state="pending") == 1


def test_counters_survive_a_restart_and_ages_follow_the_clock(
    world: tuple[Store, LoadedInventory, dict[str, str]], tmp_path: Path
) -> None:
    store, loaded, _ids = world
    first = parse(metrics.collect(store, loaded, NOW))
    store.close()
    again = Store(tmp_path / "ks.db")
    try:
        later = parse(metrics.collect(again, loaded, NOW + timedelta(minutes=10)))
    finally:
        again.close()
    for result in ("completed", "failed"):
        assert value(later, "keyshift_rotations_total", result=result) == value(
            first, "keyshift_rotations_total", result=result)
    assert value(later, "keyshift_source_last_sync_age_seconds", source="declared") == 30 * 60


def test_label_values_are_escaped(tmp_path: Path) -> None:
    odd = 'we"ird\\source\nname'
    with Store(tmp_path / "ks.db") as store:
        sync = store.begin_sync([odd], "tester")
        store.apply_source(sync, odd, [], [], [], [], complete=True)
        store.finish_sync(sync, "ok", {})
        text = metrics.collect(store, None, datetime.now(UTC))
    assert 'source="we\\"ird\\\\source\\nname"' in text
    got = parse(text)
    assert value(got, "keyshift_source_last_sync_success", source=odd) == 1


# --- the real engine moves the counters ---------------------------------------------------------


def test_counters_move_as_a_rotation_completes(sandbox: SandboxState, tmp_path: Path) -> None:
    s = build("generated-kv2", tmp_path, sandbox)
    env = s.env()
    assert s.cred is not None
    clock = Clock(NOW)
    engine = env.engine(clock=clock)
    textfile = tmp_path / "keyshift.prom"
    try:
        def scrape(now: datetime) -> dict[tuple[str, frozenset], float]:
            metrics.write_textfile(textfile, metrics.collect(env.store, env.loaded, now))
            return parse(textfile.read_text())

        before = scrape(NOW)
        assert value(before, "keyshift_rotations_total", result="completed") == 0
        assert value(before, "keyshift_rotation_runs_active", status="awaiting-revoke") == 0

        result = engine.rotate(s.cred.id, actor="tester", grace=timedelta(hours=1))
        assert result.status == AWAITING_REVOKE
        promoted = scrape(NOW)
        assert value(promoted, "keyshift_rotations_total", result="completed") == 0
        assert value(promoted, "keyshift_rotation_runs_active", status="awaiting-revoke") == 1
        assert value(promoted, "keyshift_rotations_revoke_overdue") == 0
        assert value(scrape(NOW + timedelta(hours=2)), "keyshift_rotations_revoke_overdue") == 1

        clock.now = NOW + timedelta(hours=2)
        (done,) = engine.finish_due(actor="tester")
        assert done.status == COMPLETED
        after = scrape(clock.now)
        assert value(after, "keyshift_rotations_total", result="completed") == 1
        assert value(after, "keyshift_rotations_total", result="failed") == 0
        assert value(after, "keyshift_rotation_runs_active", status="awaiting-revoke") == 0
        assert value(after, "keyshift_rotations_revoke_overdue") == 0
    finally:
        env.close()


# --- the textfile -----------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o077, 0o000])
def test_the_textfile_is_replaced_whole_and_readable_by_node_exporter(
    tmp_path: Path, umask: int
) -> None:
    path = tmp_path / "keyshift.prom"
    path.write_text("# old\n")
    old_umask = os.umask(umask)
    try:
        metrics.write_textfile(path, "keyshift_x 1\n")
    finally:
        os.umask(old_umask)
    assert path.read_text() == "keyshift_x 1\n"
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keyshift.prom"], "no temp file left"


def test_the_textfile_path_is_checked(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"does not end in \.prom"):
        metrics.write_textfile(tmp_path / "keyshift.txt", "")
    with pytest.raises(UsageError, match="no directory"):
        metrics.write_textfile(tmp_path / "missing" / "keyshift.prom", "")
    assert list(tmp_path.iterdir()) == []


# --- the port -----------------------------------------------------------------------------------


def test_metrics_are_served_on_loopback_only() -> None:
    calls: list[int] = []

    def collect() -> str:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the store is busy")
        return "# HELP keyshift_up 1 when up.\n# TYPE keyshift_up gauge\nkeyshift_up 1\n"

    for host in ("0.0.0.0", "::", "192.0.2.1", "example.org"):
        with pytest.raises(UsageError, match="loopback only"):
            metrics.serve(0, collect, host=host)

    server = metrics.serve(0, collect)
    try:
        assert server.host == "127.0.0.1"
        status, kind, body = no_proxy_get(server.url)
        assert status == 200
        assert kind.startswith("text/plain; version=0.0.4")
        assert value(parse(body), "keyshift_up") == 1
        status, _, body = no_proxy_get(server.url)
        assert status == 500 and "the store is busy" in body
        status, _, body = no_proxy_get(server.url)
        assert status == 200, "one failed scrape does not stop the port"
        status, _, _ = no_proxy_get(server.url.replace("/metrics", "/other"))
        assert status == 404
    finally:
        server.close()
    with pytest.raises(urllib.error.URLError):
        no_proxy_get(server.url)

    local = metrics.serve(0, collect, host="localhost")
    try:
        assert local.host == "127.0.0.1"
        assert no_proxy_get(local.url)[0] == 200
    finally:
        local.close()
