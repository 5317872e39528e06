"""The CLI as scripts see it: output formats, exit codes, read-only, and no secret anywhere.

Runs the installed `keyshift` console script in subprocesses against a declared-only inventory
(no servers needed); the keyring is the real Secret Service of the test session.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import keyring
import pytest

KEYSHIFT = str(Path(sys.executable).parent / "keyshift")
CANARY = "sk-canary-" + uuid.uuid4().hex  # planted in an agent's .env; must never leak

INVENTORY = """\
version: 1
agents:
  - name: support-bot
    owner: team-support
    environment: prod
    identities:
      - type: workspace
        path: ws/support
        env_files: [ws/support/.env]
  - name: billing-agent
    owner: team-billing
    environment: dev
sources:
  - name: declared
    type: declared
policies:
  by_sensitivity:
    high: {max_age_days: 30}
    medium: {max_age_days: 90}
credentials:
  - name: openai-support-prod
    source: declared
    kind: api-key
    provider: openai
    owner: team-support
    environment: prod
    scope: chat completions
    sensitivity: high
    created: 2026-01-10
    expires: 2027-01-10
    last_used: 2026-11-20
    agents: [support-bot]
    delivered_to:
      - {type: env-file, path: ws/support/.env, var: OPENAI_API_KEY}
  - name: stripe-billing-dev
    source: declared
    kind: payment-key
    provider: stripe
    environment: dev
    agents: [billing-agent, support-bot]
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    (tmp_path / "ws/support").mkdir(parents=True)
    (tmp_path / "ws/support/.env").write_text(f"OPENAI_API_KEY={CANARY}\nOTHER=1\n")
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    home = tmp_path / "home"
    environ = dict(os.environ, KEYSHIFT_HOME=str(home), KEYSHIFT_ACTOR="tester")
    environ.pop("KEYSHIFT_READ_ONLY", None)
    return environ


def run(tmp_path: Path, environ: dict[str, str], *args: str, stdin: str | None = None):
    cmd = [
        KEYSHIFT,
        "--inventory",
        str(tmp_path / "inventory.yaml"),
        "--db",
        str(tmp_path / "ks.db"),
        *args,
    ]
    return subprocess.run(
        cmd, env=environ, input=stdin, capture_output=True, text=True, timeout=120
    )


def assert_one_line_error(proc, code: int, *needles: str) -> None:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_sync_ls_show_and_no_canary_anywhere(tmp_path, env):
    sync = run(tmp_path, env, "sync")
    assert sync.returncode == 0, sync.stderr
    assert "new 2, changed 0, gone 0, stale 0, errors 0" in sync.stdout

    ls = run(tmp_path, env, "ls", "--format", "json")
    assert ls.returncode == 0, ls.stderr
    rows = json.loads(ls.stdout)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"openai-support-prod", "stripe-billing-dev"}
    openai = by_name["openai-support-prod"]
    assert openai["id"] == "declared:api-key:openai-support-prod"
    assert (openai["kind"], openai["source"], openai["owner"], openai["environment"]) == (
        "api-key",
        "declared",
        "team-support",
        "prod",
    )
    assert openai["agents"] == ["support-bot"]
    assert openai["fingerprint"].startswith("hmac-sha256:")
    assert openai["expires_at"].startswith("2027-01-10")
    stripe = by_name["stripe-billing-dev"]
    assert stripe["owner"] is None and stripe["expires_at"] is None
    assert sorted(stripe["agents"]) == ["billing-agent", "support-bot"]

    show = run(tmp_path, env, "show", openai["id"])
    assert show.returncode == 0, show.stderr
    assert "team-support" in show.stdout and "support-bot" in show.stdout
    show_json = json.loads(run(tmp_path, env, "show", openai["id"], "--format", "json").stdout)
    assert show_json["grants"][0]["agent"] == "support-bot"
    # a declared last use: a time and its evidence, with no caller named
    assert (openai["used"], stripe["used"]) == ("used", "unknown")
    last = show_json["last_use"]
    assert last["at"].startswith("2026-11-20") and last["evidence"] == "declared"
    assert last["identity"] is None and last["agents"] == []
    assert "last used by" not in show.stdout  # the declared date names nobody

    second = run(tmp_path, env, "sync", "--format", "json")
    summary = json.loads(second.stdout)
    assert (summary["new"], summary["changed"], summary["gone"]) == (0, 0, 0)

    csv_out = run(tmp_path, env, "ls", "--format", "csv").stdout.splitlines()
    assert csv_out[0] == ("id,name,kind,source,owner,environment,agents,expires_at,"
                          "rotated_at,last_used_at,status,used")
    assert all(line.endswith((",used", ",unknown")) for line in csv_out[1:])
    assert len(csv_out) == 3
    table = run(tmp_path, env, "ls", "-vv")
    tail = run(tmp_path, env, "audit", "tail", "-n", "5")

    outputs = [sync, ls, show, second, table, tail]
    for proc in outputs:
        assert CANARY not in proc.stdout and CANARY not in proc.stderr
    for path in (tmp_path / "home").rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    for suffix in ("", "-wal", "-shm"):
        db = tmp_path / f"ks.db{suffix}"
        if db.exists():
            assert CANARY.encode() not in db.read_bytes(), db


def test_ls_filters_and_bad_filter(tmp_path, env):
    run(tmp_path, env, "sync")
    prod = json.loads(run(tmp_path, env, "ls", "env:prod", "--format", "json").stdout)
    assert [r["name"] for r in prod] == ["openai-support-prod"]
    no_owner = json.loads(run(tmp_path, env, "ls", "owner:none", "--format", "json").stdout)
    assert [r["name"] for r in no_owner] == ["stripe-billing-dev"]
    inverted = json.loads(run(tmp_path, env, "ls", "!env:prod", "--format", "json").stdout)
    assert [r["name"] for r in inverted] == ["stripe-billing-dev"]
    assert_one_line_error(run(tmp_path, env, "ls", "colour:red"), 2, "colour")


def test_agent_ls_show_and_who_can(tmp_path, env):
    run(tmp_path, env, "sync")
    agents = json.loads(run(tmp_path, env, "agent", "ls", "--format", "json").stdout)
    assert [(a["name"], a["reach"], a["used"]) for a in agents] == [
        ("billing-agent", 1, 0),
        ("support-bot", 2, 1),  # the declared last use of the OpenAI key is support-bot's
    ]
    assert agents[1]["identities"] == ["workspace:ws/support"]

    shown = run(tmp_path, env, "agent", "show", "support-bot", "--format", "json")
    shown = json.loads(shown.stdout)
    by_name = {g["name"]: g for g in shown["grants"]}
    assert set(by_name) == {"openai-support-prod", "stripe-billing-dev"}
    openai = by_name["openai-support-prod"]
    assert openai["credential"] == "declared:api-key:openai-support-prod"
    assert openai["capabilities"] == ["use"] and openai["used"] is True
    assert openai["chain"][0] == "agent:support-bot"
    assert by_name["stripe-billing-dev"]["used"] is False

    who = json.loads(run(tmp_path, env, "who-can", "stripe-billing-dev", "--format", "json").stdout)
    assert who["credential"] == "declared:payment-key:stripe-billing-dev"
    assert sorted(h["agent"] for h in who["holders"]) == ["billing-agent", "support-bot"]
    assert all(h["chain"] for h in who["holders"])

    text = run(tmp_path, env, "agent", "ls")
    assert text.returncode == 0 and "support-bot" in text.stdout and "2 agents" in text.stdout
    rows = run(tmp_path, env, "agent", "ls", "--format", "csv").stdout.splitlines()
    assert rows[0] == "name,owner,environment,reach,used,identities,in_inventory"
    assert len(rows) == 3
    assert_one_line_error(
        run(tmp_path, env, "agent", "show", "suport-bot"), 3, "no agent 'suport-bot'",
        "did you mean support-bot",
    )
    assert_one_line_error(run(tmp_path, env, "who-can", "nothing-like-it"), 3, "no credential")


def test_show_unknown_id_is_one_line_exit_3(tmp_path, env):
    run(tmp_path, env, "sync")
    assert_one_line_error(run(tmp_path, env, "show", "nope:kv:x"), 3, "no credential 'nope:kv:x'")


def test_read_only_refuses_every_change_and_writes_nothing(tmp_path, env):
    assert_one_line_error(
        run(
            tmp_path,
            env,
            "--read-only",
            "secret",
            "set",
            "keyshift-test/ro",
            "--stdin",
            stdin="ro-value-123456",
        ),
        4,
        "read-only",
    )
    assert_one_line_error(run(tmp_path, env, "--read-only", "sandbox", "up"), 4, "read-only")
    assert_one_line_error(
        run(tmp_path, env, "--read-only", "rotate", "declared:api-key:x", "--yes"), 4, "read-only"
    )
    assert keyring.get_password("keyshift-test", "ro") is None
    # nothing was written: not even a store (a read never creates one either)
    assert not (tmp_path / "ks.db").exists()
    assert_one_line_error(run(tmp_path, env, "audit", "verify"), 3, "no store")
    assert not (tmp_path / "ks.db").exists()
    # sync only reads providers: read-only allows it (it writes keyshift's own store)
    synced = run(tmp_path, env, "--read-only", "sync")
    assert synced.returncode == 0, synced.stderr
    verify = run(tmp_path, env, "--read-only", "audit", "verify")
    assert verify.returncode == 0 and verify.stdout.startswith("OK "), verify.stdout
    tail = json.loads(run(tmp_path, env, "audit", "tail", "--format", "json").stdout)
    # the sync, then the findings refresh that follows every sync
    assert [e["action"] for e in tail[-2:]] == ["sync", "findings.refresh"]
    assert {e["actor"] for e in tail[-2:]} == {"tester"}


def test_reads_never_touch_a_file_that_is_not_a_current_keyshift_store(tmp_path, env):
    foreign = tmp_path / "ks.db"  # the --db every command of this test uses
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    before = foreign.read_bytes()
    for args in (("ls",), ("show", "x:kv:y"), ("audit", "verify"), ("runs",),
                 ("--read-only", "ls")):
        assert_one_line_error(run(tmp_path, env, *args), 6, "not a keyshift store")
    assert foreign.read_bytes() == before
    assert not foreign.with_name("ks.db-wal").exists()


def test_secret_set_stores_in_keyring_audits_and_never_echoes(tmp_path, env):
    name = f"t{uuid.uuid4().hex[:8]}"
    value = "secret-set-value-" + uuid.uuid4().hex
    proc = run(tmp_path, env, "secret", "set", f"keyshift-test/{name}", "--stdin", stdin=value)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"stored keyring:keyshift-test/{name}"
    assert keyring.get_password("keyshift-test", name) == value
    tail = run(tmp_path, env, "audit", "tail", "--format", "json")
    entries = json.loads(tail.stdout)
    assert entries[-1]["action"] == "secret.set"
    assert entries[-1]["target"] == f"keyring:keyshift-test/{name}"
    assert entries[-1]["actor"] == "tester"
    assert value not in tail.stdout
    assert value.encode() not in (tmp_path / "ks.db").read_bytes()
    bad = run(tmp_path, env, "secret", "set", "no-slash", "--stdin", stdin="x")
    assert_one_line_error(bad, 2, "service/name")


def test_audit_verify_names_the_first_bad_entry(tmp_path, env):
    for _ in range(3):
        assert run(tmp_path, env, "sync").returncode == 0
    ok = run(tmp_path, env, "audit", "verify")
    # each sync: one entry per source (committed with its rows), one for the sync's end and
    # one for the findings refresh after it
    tail = json.loads(run(tmp_path, env, "audit", "tail", "--format", "json").stdout)
    sources = len(next(e for e in reversed(tail) if e["action"] == "sync")["detail"]["sources"])
    expected = 3 * (sources + 2)
    assert ok.returncode == 0 and ok.stdout.startswith(f"OK {expected} entries, head "), ok.stdout
    with sqlite3.connect(tmp_path / "ks.db") as db:
        db.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    bad = run(tmp_path, env, "audit", "verify")
    assert_one_line_error(bad, 7, "seq 2", "edited")


def test_unknown_inventory_file_is_one_line(tmp_path, env):
    proc = subprocess.run(
        [
            KEYSHIFT,
            "--inventory",
            str(tmp_path / "missing.yaml"),
            "--db",
            str(tmp_path / "ks.db"),
            "sync",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_line_error(proc, 2, "missing.yaml")


@pytest.mark.parametrize(
    "args, needle",
    [
        (("ls", "age:>99999999999999999d"), "100 years"),
        (("ls", "expires:<9999999d"), "100 years"),
        (("ls", "used:>"), "used"),
        (("audit", "tail", "-n", "99999999999999999999"), "-n"),
        (("rotate", "--finish-due", "--dry-run"), "--dry-run"),
        (("rotate", "--finish-due", "--resume"), "separate"),
        (("rotate", "--resume", "declared:api-key:x"), "credential id"),
    ],
)
def test_odd_arguments_are_one_line_usage_errors(tmp_path, env, args, needle):
    run(tmp_path, env, "sync")
    assert_one_line_error(run(tmp_path, env, *args), 2, needle)


def test_read_only_never_creates_a_store(tmp_path, env):
    proc = run(tmp_path, env, "--read-only", "ls")
    assert_one_line_error(proc, 3, "no store")
    assert not (tmp_path / "ks.db").exists()
    assert not (tmp_path / "ks.db").exists()
    run(tmp_path, env, "sync")
    listed = run(tmp_path, env, "--read-only", "ls", "--format", "json")
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 2


def test_an_exit_code_a_command_sets_reaches_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside click's standalone mode a command's ``ctx.exit(N)`` is returned, not raised: main
    must still exit with N (a drill or an incident run that failed said 1 and exited 0)."""
    import click

    from console import cli as cli_module

    @click.command("exits-three")
    @click.pass_context
    def exits_three(ctx: click.Context) -> None:
        ctx.exit(3)

    @click.command("exits-zero")
    def exits_zero() -> None:
        click.echo("fine")

    monkeypatch.setitem(cli_module.cli.commands, "exits-three", exits_three)
    monkeypatch.setitem(cli_module.cli.commands, "exits-zero", exits_zero)
    with pytest.raises(SystemExit) as got:
        cli_module.main(["exits-three"])
    assert got.value.code == 3
    cli_module.main(["exits-zero"])  # returns: no SystemExit for a clean 0
