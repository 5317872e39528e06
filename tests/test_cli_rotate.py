"""`keyshift rotate` and `keyshift runs` as a script (and a person at a terminal) drive them,
against the sandbox's real servers. Output and exit codes are the CLI's stable API."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from rotation_support import build, standin, standin_accepts

from console import sandbox as sb
from console.store import Store

KEYSHIFT = str(Path(sys.executable).parent / "keyshift")


def cli_for(inventory: Path, db: Path) -> Any:
    environ = dict(os.environ, KEYSHIFT_ACTOR="rotator-test")

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KEYSHIFT, "--inventory", str(inventory), "--db", str(db), *args],
            env=environ,
            capture_output=True,
            text=True,
            timeout=180,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )

    return run


def one_line(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def kv(sandbox: Any, tmp_path: Path) -> Any:
    """A generated KV scenario whose store row exists (tests/rotation_support.py)."""
    s = build("generated-kv2", tmp_path, sandbox)
    s.env().close()
    return s, cli_for(tmp_path / "inventory.yaml", tmp_path / "ks.db")


def test_dry_run_json_then_a_rotation_its_history_and_its_runs(kv: Any) -> None:
    s, cli = kv
    old = s.current()
    proc = cli("rotate", s.cred.id, "--dry-run", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert {"credential", "rotator", "issuer", "targets", "steps", "downtime", "grace_seconds",
            "refused"} <= set(plan)
    assert plan["credential"] == s.cred.id and plan["issuer"] == "generated"
    assert plan["refused"] is None and plan["steps"][0] == {
        "step": "issue", "does": plan["steps"][0]["does"]}
    assert s.current() == old, "a dry run changes nothing"
    text = cli("rotate", s.cred.id, "--dry-run")
    assert text.returncode == 0 and "dry run: nothing changed" in text.stdout
    assert "1. issue:" in text.stdout and "downtime     none" in text.stdout

    declined = cli("rotate", s.cred.id)  # no terminal, no --yes
    one_line(declined, 1, "needs confirmation", "--yes")
    done = cli("rotate", s.cred.id, "--yes", "--grace", "0")
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout.splitlines()[-1]
    assert s.current() != old and old["value"] not in done.stdout + done.stderr

    show = cli("show", s.cred.id)
    assert "rotation history:" in show.stdout and "completed" in show.stdout
    assert "deliver:0" in show.stdout
    runs = json.loads(cli("runs", "--format", "json").stdout)
    assert runs[0]["status"] == "completed" and runs[0]["issuer"] == "generated"
    assert [st["step"] for st in runs[0]["steps"]][:3] == ["identify", "issue", "deliver:0"]
    shown = json.loads(cli("show", s.cred.id, "--format", "json").stdout)
    assert shown["runs"][0]["id"] == runs[0]["id"]
    one_line(cli("runs", "--status", "planned"), 2, "unknown status")


def test_a_refused_plan_exits_10_and_says_why(kv: Any, tmp_path: Path) -> None:
    s, cli = kv
    path = f"rot/multi-{uuid.uuid4().hex[:8]}"
    s.vault.secrets.kv.v2.create_or_update_secret(path, {"username": "u", "password": "p" * 30},
                                                  mount_point="secret")
    store = Store(tmp_path / "ks.db")
    from console.model import Credential

    cred = Credential(id=f"vault-sandbox:kv:secret/{path}", source="vault-sandbox", kind="kv",
                      native_id=f"secret/{path}", name=path)
    store.bulk_insert_credentials([cred])
    store.close()
    proc = cli("rotate", cred.id, "--dry-run", "--format", "json")
    assert proc.returncode == 10
    assert "several keys" in json.loads(proc.stdout)["refused"]
    one_line(cli("rotate", cred.id, "--yes"), 10, "several keys")


def test_two_processes_rotating_at_once_run_exactly_one(kv: Any) -> None:
    s, _ = kv
    args = [KEYSHIFT, "--inventory", str(s.tmp / "inventory.yaml"), "--db",
            str(s.tmp / "ks.db"), "rotate", s.cred.id, "--yes"]
    start = time.time() + 1.0
    wrapper = ("import os,sys,time; time.sleep(max(0, float(sys.argv[1]) - time.time())); "
               "os.execv(sys.argv[2], sys.argv[2:])")
    procs = [
        subprocess.Popen([sys.executable, "-c", wrapper, str(start), *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 10], outs
    loser = next(err for (out, err), p in zip(outs, procs, strict=True) if p.returncode == 10)
    assert "rolled back" not in loser
    assert ("being rotated right now" in loser or "still waits for its grace period" in loser
            or "already claimed" in loser), loser
    store = Store(s.tmp / "ks.db")
    try:
        runs = store.rotation_runs(s.cred.id)
        assert len(runs) == 1 and runs[0]["status"] == "awaiting-revoke"
        steps = [(r["step"], r["status"]) for r in store.rotation_steps(runs[0]["id"])]
        assert all(status == "done" for _, status in steps), steps
    finally:
        store.close()
    meta = s.vault.secrets.kv.v2.read_secret_metadata(s.extra["path"],
                                                      mount_point="secret")["data"]
    assert meta["current_version"] == 2  # one new version: the winner's
    assert not any(k.startswith("keyshift_pending") for k in (meta["custom_metadata"] or {}))


def _drive_pty(argv: list[str], script: list[tuple[str, str]], timeout: float = 90) -> str:
    """Run ``argv`` on a real pseudo-terminal; when the output shows a prompt, type its
    answer. Returns everything the terminal showed."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    seen = ""
    deadline = time.monotonic() + timeout
    steps = list(script)
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 4096).decode(errors="replace")
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
            if steps and steps[0][0] in seen:
                prompt, answer = steps.pop(0)
                seen = seen.replace(prompt, f"<{prompt}>", 1)  # answered: do not match again
                os.write(fd, (answer + "\r").encode())
    finally:
        _, status = os.waitpid(pid, 0)
    return seen + f"\n<exit {os.waitstatus_to_exitcode(status)}>"


def test_a_provider_key_through_the_hidden_prompt(sandbox: Any, tmp_path: Path) -> None:
    s = build("provider-env-file", tmp_path, sandbox)
    s.env().close()
    old = s.current()["value"]
    new = standin(s.person.provider, "keys", name="pasted")["key"]
    argv = [KEYSHIFT, "--inventory", str(tmp_path / "inventory.yaml"), "--db",
            str(tmp_path / "ks.db"), "rotate", s.cred.id, "--grace", "0"]

    def revoke_then_yes() -> str:
        standin(s.person.provider, "revoke", key=old)  # the person revokes it at the console
        return "y"

    shown = _drive_pty(
        argv,
        [
            (f"Rotate {s.cred.id}? [y/N]:", "y"),
            (f"new key for key-{s.tag}: ", new),
            ("now. Done? [y/N]:", revoke_then_yes()),
        ],
    )
    assert "<exit 0>" in shown, shown[-2000:]
    assert "Mint a new key for" in shown and "never stored" in shown
    assert new not in shown and old not in shown, "a key reached the terminal"
    assert "the issuer refuses the old value" in shown
    assert s.current()["value"] == new and standin_accepts(s.person.provider, new)
    for path in tmp_path.glob("ks.db*"):
        data = path.read_bytes()
        assert new.encode() not in data and old.encode() not in data
    log = Path(os.environ["KEYSHIFT_HOME"]) / "keyshift.log"
    if log.exists():
        assert new not in log.read_text()


def test_a_failed_revoke_fails_finish_due_loudly(sandbox: Any, tmp_path: Path) -> None:
    s = build("provider-env-file", tmp_path, sandbox)
    s.env().close()
    cli = cli_for(tmp_path / "inventory.yaml", tmp_path / "ks.db")
    env = s.env()
    from datetime import timedelta

    result = env.engine().rotate(s.cred.id, actor="t", grace=timedelta(0), interaction=type(
        s.person)(s.person.provider, old_key=None))  # says "done", revokes nothing
    env.close()
    assert "still accepts" in (result.error or "")
    # the next finish-due, with nobody at the terminal, waits for a person: not a failure
    waiting = cli("rotate", "--finish-due")
    assert waiting.returncode == 0, waiting.stderr
    assert "needs a person" in waiting.stdout and "1 runs finished" in waiting.stdout
    runs = json.loads(cli("runs", "--format", "json").stdout)
    assert runs[0]["status"] == "awaiting-revoke"


@pytest.mark.parametrize("grace", ["nan", "inf", "1e308", "-1", "8761", "soon"])
def test_a_bad_grace_is_a_usage_error(kv: Any, grace: str) -> None:
    s, cli = kv
    one_line(cli("rotate", s.cred.id, "--yes", "--grace", grace), 2, "--grace")


def test_an_inventory_that_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "inventory.yaml"
    os.mkfifo(fifo)
    started = time.monotonic()
    proc = cli_for(fifo, tmp_path / "ks.db")("sync")
    assert time.monotonic() - started < 60
    one_line(proc, 2, "not a regular file")


def test_a_huge_filter_is_a_usage_error_not_a_store_error(kv: Any) -> None:
    _, cli = kv
    one_line(cli("ls", "a" * 120_000), 2, "the limit is")
    one_line(cli("ls", *["env:prod"] * 100), 2, "terms")


def test_a_value_equal_to_a_word_blinds_no_output(sandbox: Any, tmp_path: Path) -> None:
    """Anyone who can write one KV path must not be able to blind keyshift's output: a
    value of "vault-sandbox" (a source's name) is printed nowhere, and hides nothing."""
    s = build("generated-kv2", tmp_path, sandbox)
    path = f"rot/word-{uuid.uuid4().hex[:8]}"
    s.vault.secrets.kv.v2.create_or_update_secret(path, {"value": "vault-sandbox"},
                                                  mount_point="secret")
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(inventory.read_text().replace(
        "  - {name: aws-sandbox, type: aws, sandbox: true, issuer_tag: keyshift-issuer}\n", ""
    ).replace("  - {name: keyring-local, type: keyring}\n", ""))
    cli = cli_for(inventory, tmp_path / "ks.db")
    synced = cli("sync", "--format", "json")
    assert synced.returncode == 0, synced.stderr
    summary = json.loads(synced.stdout)  # still JSON
    assert summary["sources"][0]["source"] == "vault-sandbox"
    listed = cli("ls", "--format", "json")
    assert any(c["source"] == "vault-sandbox" for c in json.loads(listed.stdout))
    tail = json.loads(cli("audit", "tail", "--format", "json").stdout)
    assert any(e["target"] == "vault-sandbox" for e in tail)
    assert "[redacted]" not in json.dumps(tail)
    assert cli("audit", "verify").returncode == 0


def test_runs_abandon_releases_a_stuck_run(kv: Any) -> None:
    s, cli = kv
    from console.process import Owner, me

    store = Store(s.tmp / "ks.db")
    stuck = store.claim_run(subject=f"rotation:kv-{s.tag}", credential_id=s.cred.id,
                            rotator="generated", plan={}, actor="other",
                            owner=Owner(me().host, 999_999, "boot:1"))
    store.set_run_status(stuck, "rollback-failed", error="rollback failed: denied")
    store.close()
    one_line(cli("rotate", s.cred.id, "--yes"), 10, "could not be rolled back")
    one_line(cli("runs", "abandon", stuck[:10], "--yes"), 2, "--reason")
    gave_up = cli("runs", "abandon", stuck[:10], "--reason", "fixed by hand", "--yes")
    assert gave_up.returncode == 0 and "abandoned" in gave_up.stdout, gave_up.stderr
    assert cli("rotate", s.cred.id, "--yes", "--grace", "0").returncode == 0


def test_unknown_credential_is_one_line(kv: Any) -> None:
    _, cli = kv
    one_line(cli("rotate", "vault-sandbox:kv:secret/nope", "--yes"), 3, "no credential")


def test_a_vault_that_is_down_is_refused_before_any_run_exists(tmp_path: Path) -> None:
    from console import secret_refs
    from console.model import Credential

    secret_refs.put("keyshift-test", "down-vault-token", "token-for-a-closed-port")
    inventory = {
        "version": 1,
        "sources": [
            {
                "name": "vault-down",
                "type": "vault",
                "address": "http://127.0.0.1:1",
                "token": "keyring:keyshift-test/down-vault-token",
                "issuer_tag": "keyshift-issuer",
            }
        ],
    }
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(inventory))
    db = tmp_path / "ks.db"
    store = Store(db)
    cred_id = "vault-down:kv:secret/app"
    store.bulk_insert_credentials([Credential(
        id=cred_id, source="vault-down", kind="kv", native_id="secret/app", name="app",
        tags={"keyshift-issuer": "generated"})])
    store.close()
    cli = cli_for(tmp_path / "inventory.yaml", db)
    for _ in range(2):  # twice: a refused attempt must not leave a run that blocks the next
        one_line(cli("rotate", cred_id, "--yes"), 10, "cannot reach")
    store = Store(db)
    try:
        assert store.rotation_runs(credential_id=cred_id) == []
    finally:
        store.close()
    assert sb  # the sandbox module: the fixtures above start its servers
