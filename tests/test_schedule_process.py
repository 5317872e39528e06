"""`keyshift schedule run` as processes over the real sandbox: two at once rotate each due
credential exactly once; SIGTERM mid-playbook exits 0 with the journal consistent and a later
`--once` finishes the rest; a failing rotation posts one webhook with no value, and a receiver
that does not answer holds no rotation up; `--log-format json` is JSON on every line."""

from __future__ import annotations

import http.server
import json
import os
import secrets as pysecrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from console.model import Credential, credential_id
from console.process import me
from console.sandbox import vault_client
from console.store import Store

KEYSHIFT = str(Path(sys.executable).parent / "keyshift")
DONE = ("completed", "awaiting-revoke")


@dataclass
class DueSet:
    tmp: Path
    paths: list[str]
    creds: list[Credential]
    vault: Any
    extra_creds: list[Credential] = field(default_factory=list)

    @property
    def inventory(self) -> Path:
        return self.tmp / "inventory.yaml"

    @property
    def db(self) -> Path:
        return self.tmp / "ks.db"

    def keyshift(self, *args: str, env_extra: dict[str, str] | None = None,
                 **kw: Any) -> subprocess.Popen[str]:
        env = dict(os.environ, KEYSHIFT_ACTOR="schedule-test", **(env_extra or {}))
        return subprocess.Popen(
            [KEYSHIFT, "--inventory", str(self.inventory), "--db", str(self.db), *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL, **kw,
        )

    def versions(self) -> dict[str, int]:
        return {
            p: self.vault.secrets.kv.v2.read_secret_metadata(p, mount_point="secret")["data"][
                "current_version"]
            for p in self.paths
        }

    def rotated(self, store: Store) -> Counter[str]:
        runs = store.rotation_runs(limit=100_000)
        return Counter(r["credential_id"] for r in runs if r["status"] in DONE)


def due_set(sandbox: Any, tmp: Path, count: int, *, schedule: str = "", alerts: str = "",
            extra: str = "") -> DueSet:
    """``count`` generated KV secrets, each its own declared rotation, whose store rows say
    they were created 90 days ago (high sensitivity, 30 days at most): all due. The sync job
    is recorded as just run, so no sync rewrites those rows before the rotations."""
    vault = vault_client(sandbox)
    tag = uuid.uuid4().hex[:8]
    paths, rotations, creds = [], [], []
    old = datetime.now(UTC) - timedelta(days=90)
    for i in range(count):
        path = f"sched-{tag}/s{i:03d}"
        vault.secrets.kv.v2.create_or_update_secret(
            path, {"value": pysecrets.token_urlsafe(24)}, mount_point="secret"
        )
        paths.append(path)
        rotations.append(
            f"  - name: sched-{tag}-{i:03d}\n"
            "    issuer: {type: generated, generator: {length: 32, alphabet: urlsafe}}\n"
            f"    targets: [{{type: vault-kv, source: vault-sandbox, path: secret/{path}, "
            "key: value}]\n"
        )
        creds.append(Credential(
            id=credential_id("vault-sandbox", "kv", f"secret/{path}"), source="vault-sandbox",
            kind="kv", native_id=f"secret/{path}", name=f"s{i:03d}-{tag}", version="1",
            sensitivity="high", created_at=old + timedelta(minutes=i),
        ))
    text = textwrap.dedent(
        """\
        version: 1
        sources:
          - {name: vault-sandbox, type: openbao, sandbox: true, issuer_tag: keyshift-issuer}
        policies:
          grace_period_hours: 0
          by_sensitivity:
            high: {max_age_days: 30}
        """
    ) + schedule + alerts + "rotations:\n" + "".join(rotations)
    (tmp / "inventory.yaml").write_text(text)
    store = Store(tmp / "ks.db")
    store.bulk_insert_credentials(creds)
    now = datetime.now(UTC)
    assert store.claim_schedule_job("sync", None, me(), now)
    assert store.finish_schedule_job("sync", me(), status="ok", error=None, detail={}, now=now)
    store.close()
    return DueSet(tmp, paths, creds, vault)


def test_two_schedulers_rotate_each_due_credential_exactly_once(
    sandbox: Any, tmp_path: Path, keyshift_home: Path
) -> None:
    s = due_set(sandbox, tmp_path, 8, schedule="schedule: {concurrency: 4}\n")
    assert set(s.versions().values()) == {1}
    prom = tmp_path / "keyshift.prom"
    procs = [s.keyshift("schedule", "run", "--once", *extra)
             for extra in (["--metrics-file", str(prom)], [])]
    outs = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
    # the textfile, rewritten after each job, parses with the official client's parser
    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    assert "keyshift_rotations" in families and "keyshift_schedule_job_failures_in_row" in (
        families)
    store = Store(s.db, read_only=True)
    assert s.rotated(store) == Counter({c.id: 1 for c in s.creds})
    assert set(s.versions().values()) == {2}, "one new version per secret at the server"
    job = store.schedule_job("rotate-due:high")
    assert job is not None and job["last_status"] == "ok" and job["owner_pid"] is None
    store.close()


def _wait_for(what: str, check: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigterm_mid_playbook_exits_0_consistent_and_resumable(
    sandbox: Any, tmp_path: Path, keyshift_home: Path
) -> None:
    s = due_set(sandbox, tmp_path, 40, schedule="schedule: {concurrency: 1}\n")
    proc = s.keyshift("schedule", "run", "--log-format", "json")
    reader = Store(s.db, read_only=True)
    try:
        def running() -> bool:
            return any(r["status"] == "running" for r in reader.rotation_runs(limit=1000))

        _wait_for("a rotation in progress", running)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    for line in err.splitlines():
        json.loads(line)  # the JSON log stays JSON through the stop

    runs = reader.rotation_runs(limit=1000)
    assert runs and not [r for r in runs if r["status"] not in DONE], (
        "the step in flight finished; nothing is left running, rolled back or half-done")
    first = s.rotated(reader)
    assert 0 < len(first) < len(s.creds), "stopped part-way"
    assert all(n == 1 for n in first.values())
    job = reader.schedule_job("rotate-due:high")
    assert job is not None and job["last_status"] == "stopped" and job["owner_pid"] is None
    reader.close()

    # a later pass finishes the rest, and rotates nothing twice
    again = s.keyshift("schedule", "run", "--once")
    _out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    reader = Store(s.db, read_only=True)
    assert s.rotated(reader) == Counter({c.id: 1 for c in s.creds})
    assert set(s.versions().values()) == {2}
    assert reader.schedule_job("rotate-due:high")["last_status"] == "ok"
    reader.close()


class _Receiver:
    """A loopback webhook receiver that holds every answer until released."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.raw: list[bytes] = []
        self.release = threading.Event()
        self.received = threading.Event()
        self.answered = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.raw.append(data)
                outer.bodies.append(json.loads(data))
                outer.received.set()
                outer.release.wait(120)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")
                outer.answered.set()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_failed_rotation_posts_one_webhook_and_a_silent_receiver_delays_nothing(
    sandbox: Any, tmp_path: Path, keyshift_home: Path
) -> None:
    receiver = _Receiver()
    try:
        s = due_set(
            sandbox, tmp_path, 3,
            schedule="schedule: {concurrency: 1}\n",
            alerts="alerts:\n  webhook: {url: 'env:KS_SCHEDULE_HOOK'}\n"
            "  events: [rotation-failed]\n",
        )
        # a declared rotation of key `value` in a secret that holds only `password`: its
        # plan reads the secret and refuses. The oldest, so the playbook meets it first; the
        # value it read is a canary.
        canary = "canary-" + pysecrets.token_hex(16)
        path = f"sched-bad-{uuid.uuid4().hex[:8]}"
        s.vault.secrets.kv.v2.create_or_update_secret(
            path, {"password": canary}, mount_point="secret")
        with s.inventory.open("a") as inv:
            inv.write(
                f"  - name: bad-{path}\n"
                "    issuer: {type: generated, generator: {length: 32, alphabet: urlsafe}}\n"
                f"    targets: [{{type: vault-kv, source: vault-sandbox, path: secret/{path}, "
                "key: value}]\n"
            )
        bad = Credential(
            id=credential_id("vault-sandbox", "kv", f"secret/{path}"), source="vault-sandbox",
            kind="kv", native_id=f"secret/{path}", name=path, sensitivity="high",
            created_at=datetime.now(UTC) - timedelta(days=400),
        )
        store = Store(s.db)
        store.bulk_insert_credentials([bad])
        store.close()

        proc = s.keyshift("schedule", "run", "--once", "--log-format", "json",
                          env_extra={"KS_SCHEDULE_HOOK": receiver.url})
        reader = Store(s.db, read_only=True)
        try:
            def posted() -> bool:
                if proc.poll() is not None and not receiver.received.is_set():
                    raise AssertionError(proc.communicate()[1][-4000:])
                return receiver.received.is_set()

            _wait_for("the failure posted", posted)
            # the receiver holds its answer; the rotations after the failure go on regardless
            _wait_for("the other rotations", lambda: len(s.rotated(reader)) == len(s.creds))
            assert not receiver.answered.is_set()
            receiver.release.set()
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 1, err  # a job failed: --once says so
        assert len(receiver.bodies) == 1, receiver.bodies
        body = receiver.bodies[0]
        assert body["event"] == "rotation-failed" and body["credential"] == bad.id
        assert body["subject"] == bad.id and body["step"] == "plan"
        assert body["error"] and bad.id in body["text"]
        assert body["playbook_run"] and body["action"] == "rotate"
        for text in (*[r.decode() for r in receiver.raw], out, err):
            assert canary not in text
        assert canary.encode() not in s.db.read_bytes()
        for line in err.splitlines():
            entry = json.loads(line)
            assert {"time", "level", "job", "event", "fields"} <= set(entry)
        alert = reader.get_alert(f"rotation-failed:{body['playbook_run']}:{bad.id}")
        assert alert is not None and alert["delivered_at"] is not None
        reader.close()
    finally:
        receiver.close()
