"""Sync end to end: the real sandbox (OpenBao + moto) -> collectors -> store, and the CLI.

Tests add their own KV mounts / secrets / tokens to the session sandbox and never change what
the seed planted.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import os
import re
import socket
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import BUILTIN_INVENTORY

from console import secret_refs
from console.audit import AuditLog
from console.config import LoadedInventory, loads_inventory
from console.fingerprint import fingerprint
from console.store import Store
from console.sync import run_sync
from rotators.values import generate

ROOT = Path(__file__).resolve().parent.parent
KEYSHIFT = ROOT / ".venv" / "bin" / "keyshift"
VAULT, AWS = "sandbox-vault", "sandbox-aws"
SANDBOX_TOKEN_REF = "keyring:keyshift-sandbox/vault-token"
SUMMARY = re.compile(r"new (\d+), changed (\d+), gone (\d+), stale (\d+), errors (\d+)")


def base_inventory() -> dict[str, Any]:
    inv = copy.deepcopy(BUILTIN_INVENTORY)
    inv["policies"] = {"by_sensitivity": {"high": {"max_age_days": 90}}}
    return inv


def only_sources(*sources: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "sources": list(sources)}


def kv_only(mount: str) -> dict[str, Any]:
    """The sandbox Vault listing one KV mount only: these tests count KV rows, and the
    server's tokens and secret-ids come and go with other tests."""
    return {"name": "v", "type": "openbao", "sandbox": True, "kv_mounts": [mount], "auth": False,
            "leases": False}


def write_inventory(inv: dict[str, Any], path: Path) -> LoadedInventory:
    path.write_text(yaml.safe_dump(inv))
    return loads_inventory(path.read_text(), file=str(path), base_dir=path.parent)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "keyshift.db")
    yield s
    s.close()


def make_mount(vault: Any, paths: list[str]) -> str:
    name = f"kss-{uuid.uuid4().hex[:8]}"
    vault.sys.enable_secrets_engine("kv", path=name, options={"version": "2"})
    for p in paths:
        vault.secrets.kv.v2.create_or_update_secret(
            path=p, secret={"value": generate(20).reveal()}, mount_point=name
        )
        vault.secrets.kv.v2.update_metadata(
            path=p, mount_point=name, custom_metadata={"owner": "team-x", "environment": "dev"}
        )
    return name


def run_cli(*args: str) -> subprocess.CompletedProcess:
    # inherits KEYSHIFT_HOME / KEYSHIFT_SANDBOX_DIR (set by the session fixture) and the
    # private D-Bus session of scripts/with-keyring
    return subprocess.run(
        [str(KEYSHIFT), *args], capture_output=True, text=True, timeout=180, env=dict(os.environ)
    )


def summary_of(stdout: str) -> tuple[int, ...]:
    match = SUMMARY.search(stdout.strip().splitlines()[-1])
    assert match, stdout
    return tuple(int(x) for x in match.groups())


def own_token_unused(store: Store) -> bool:
    """keyshift's own Vault token has no last use: its requests are keyshift's own."""
    (own,) = [c for c in store.all_credentials()
              if c.kind == "vault-token" and "keyshift" in c.tags]
    return own.last_used_at is None


def closed_port() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    return s, s.getsockname()[1]


# ---------------------------------------------------------------------------------------


def test_sync_stores_what_was_seeded_and_a_resync_is_quiet(
    seeded_sandbox: Any, store: Store, tmp_path: Path
) -> None:
    inv_path = tmp_path / "inventory.yaml"
    loaded = write_inventory(base_inventory(), inv_path)
    audit = AuditLog(store)
    first = run_sync(loaded, store, audit, actor="test", only=[VAULT, AWS])
    assert first.status == "ok", first.as_dict()
    assert first.total("new") > 0 and first.total("gone") == 0

    openai = store.get_credential(f"{VAULT}:kv:secret/agents/support/openai")
    deploy = store.get_credential(f"{VAULT}:kv:secret/agents/ci/deploy")
    db = store.get_credential(f"{VAULT}:kv:secret/agents/support/db")
    assert openai and deploy and db
    assert (openai.owner, openai.environment, openai.sensitivity) == (
        "team-support",
        "prod",
        "high",
    )
    assert openai.created_at is not None
    assert (datetime.now(UTC).date() - openai.created_at.date()).days in (200, 201)
    assert openai.max_age_days == 90
    # reuse across environments: dev's deploy key is prod's openai key
    assert openai.fingerprint == deploy.fingerprint and openai.fingerprint != db.fingerprint
    # and across sources: the SSM parameter holds the vault db secret's password
    param = store.get_credential(f"{AWS}:ssm-parameter:/prod/support/db-password")
    assert param and param.fingerprint == db.tags["fingerprint:password"]
    assert param.fingerprint != db.tags["fingerprint:username"]

    # grants and usage, as the store keeps them
    support = {g.credential_id: g for g in store.grants_for_agent("support-bot")}
    assert support[openai.id].chain[-1] == "rule:secret/data/agents/support/*"
    assert param.id in support
    ci = {g.credential_id: g for g in store.grants_for_agent("ci-runner")}
    unused = f"{VAULT}:kv:secret/agents/ci/unused"
    # the seed read db and deploy as the agents: the audit log shows it, marked as the
    # seed's, and it is not taken for their use (a real read is: test_sources_vault.py)
    assert not support[db.id].used and not ci[deploy.id].used and not ci[unused].used
    assert store.get_credential(deploy.id).last_used_at is None
    assert store.get_credential(unused).last_used_at is None
    assert set(openai.agents) == {"support-bot"}

    # IAM keys: counts per user, ages from CreateDate
    keys = [c for c in store.all_credentials() if c.kind == "iam-key"]
    per_user: dict[str, int] = {}
    for k in keys:
        per_user[k.tags["user"]] = per_user.get(k.tags["user"], 0) + 1
    assert per_user["support-bot"] == 2 and per_user["ci-runner"] == 1
    started = datetime.fromisoformat(seeded_sandbox.state.started_at)
    seeded_keys = [k for k in keys if k.tags["user"] in ("support-bot", "ci-runner")]
    assert all(k.created_at and k.created_at >= started.replace(microsecond=0) for k in seeded_keys)
    stripe = [c for c in store.all_credentials() if c.name == "prod/support/stripe"]
    assert len(stripe) == 1 and stripe[0].owner == "team-support"

    second = run_sync(loaded, store, audit, actor="test", only=[VAULT, AWS])
    assert second.status == "ok"
    assert (
        second.total("new"),
        second.total("changed"),
        second.total("gone"),
        second.total("stale"),
    ) == (0, 0, 0, 0), second.as_dict()
    assert own_token_unused(store)

    # and once more through the CLI, in its own process
    proc = run_cli(
        "--inventory",
        str(inv_path),
        "--db",
        str(tmp_path / "keyshift.db"),
        "sync",
        "--source",
        VAULT,
        "--source",
        AWS,
    )
    assert proc.returncode == 0, proc.stderr
    assert summary_of(proc.stdout) == (0, 0, 0, 0, 0)


def test_deleted_secret_is_marked_gone_and_kept(
    seeded_sandbox: Any, vault: Any, store: Store, tmp_path: Path
) -> None:
    mount = make_mount(vault, ["keep/a", "keep/b", "drop/c"])
    loaded = write_inventory(
        only_sources(kv_only(mount)),
        tmp_path / "inv.yaml",
    )
    audit = AuditLog(store)
    first = run_sync(loaded, store, audit, actor="test")
    assert first.total("new") == 3
    vault.secrets.kv.v2.delete_metadata_and_all_versions(path="drop/c", mount_point=mount)
    second = run_sync(loaded, store, audit, actor="test")
    assert (second.total("new"), second.total("changed"), second.total("gone")) == (0, 0, 1)
    gone = store.get_credential(f"v:kv:{mount}/drop/c")
    assert gone is not None and gone.status == "gone" and gone.gone_at is not None
    assert gone.owner == "team-x"  # the row keeps what was known
    kept = store.get_credential(f"v:kv:{mount}/keep/a")
    assert kept and kept.status == "active" and kept.gone_at is None


def test_unreachable_vault_marks_rows_stale_and_the_cli_exits_1(
    seeded_sandbox: Any, vault: Any, store: Store, tmp_path: Path
) -> None:
    mount = make_mount(vault, ["x/one", "x/two"])
    up = write_inventory(
        only_sources(kv_only(mount)),
        tmp_path / "up.yaml",
    )
    audit = AuditLog(store)
    assert run_sync(up, store, audit, actor="test").total("new") == 2

    sock, port = closed_port()
    with sock:
        down_path = tmp_path / "down.yaml"
        down = write_inventory(
            only_sources(
                {
                    "name": "v",
                    "type": "openbao",
                    "kv_mounts": [mount],
                    "auth": False,
                    "leases": False,
                    "address": f"http://127.0.0.1:{port}",
                    "token": SANDBOX_TOKEN_REF,
                }
            ),
            down_path,
        )
        failed = run_sync(down, store, audit, actor="test")
        (outcome,) = failed.outcomes
        assert outcome.status == "failed" and outcome.stale == 2
        assert outcome.errors == [
            f"v: cannot reach http://127.0.0.1:{port} (connection refused) (hint: is the server "
            "running? `keyshift sandbox up` starts the sandbox one)"
        ]
        for path in ("x/one", "x/two"):
            row = store.get_credential(f"v:kv:{mount}/{path}")
            assert row and row.gone_at is None and row.owner == "team-x"
            assert row.stale_since is not None and "cannot reach" in (row.stale_error or "")

        proc = run_cli("--inventory", str(down_path), "--db", str(tmp_path / "keyshift.db"), "sync")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    failed_lines = [ln for ln in proc.stdout.splitlines() if "cannot reach" in ln]
    assert len(failed_lines) == 1 and f"127.0.0.1:{port}" in failed_lines[0]
    assert summary_of(proc.stdout) == (0, 0, 0, 2, 1)
    # what the store knew is still there
    assert store.get_credential(f"v:kv:{mount}/x/one").gone_at is None


def _kept_stale(store: Store, mount: str, paths: list[str], why: str) -> None:
    for path in paths:
        row = store.get_credential(f"v:kv:{mount}/{path}")
        assert row and row.gone_at is None and row.owner == "team-x", path
        assert row.stale_since is not None and why in (row.stale_error or ""), row.stale_error


def test_a_sealed_vault_is_one_clear_message_and_keeps_the_rows(
    seeded_sandbox: Any, vault: Any, store: Store, tmp_path: Path
) -> None:
    from console import sandbox as sb

    mount = make_mount(vault, ["s/one", "s/two"])
    path = tmp_path / "inv.yaml"
    loaded = write_inventory(only_sources(kv_only(mount)), path)
    audit = AuditLog(store)
    assert run_sync(loaded, store, audit, actor="test").total("new") == 2
    sb.seal()
    try:
        (outcome,) = run_sync(loaded, store, audit, actor="test").outcomes
        proc = run_cli("--inventory", str(path), "--db", str(tmp_path / "keyshift.db"), "sync")
    finally:
        sb.unseal()
    assert outcome.status == "failed" and outcome.stale == 2 and outcome.gone == 0
    assert len(outcome.errors) == 1 and "is sealed" in outcome.errors[0]
    assert "unseal it" in outcome.errors[0]
    _kept_stale(store, mount, ["s/one", "s/two"], "is sealed")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    assert len([ln for ln in proc.stdout.splitlines() if "is sealed" in ln]) == 1
    # unsealed, the next sync clears the stale marks
    (again,) = run_sync(loaded, store, audit, actor="test").outcomes
    assert again.status == "ok" and store.get_credential(f"v:kv:{mount}/s/one").stale_since is None


def test_an_expired_keyshift_token_is_one_clear_message_and_keeps_the_rows(
    seeded_sandbox: Any, vault: Any, store: Store, tmp_path: Path
) -> None:
    import time

    mount = make_mount(vault, ["t/one"])
    audit = AuditLog(store)
    assert run_sync(
        write_inventory(only_sources(kv_only(mount)), tmp_path / "up.yaml"), store, audit,
        actor="test",
    ).total("new") == 1
    token = vault.auth.token.create(policies=["root"], ttl="2s")["auth"]["client_token"]
    service = f"keyshift-test-{uuid.uuid4().hex[:6]}"
    secret_refs.put(service, "token", token)
    source = {"name": "v", "type": "openbao", "kv_mounts": [mount], "auth": False, "leases": False,
              "address": seeded_sandbox.state.vault_addr, "token": f"keyring:{service}/token"}
    expiring = write_inventory(only_sources(source), tmp_path / "expiring.yaml")
    for _ in range(100):  # until the server itself says the token is gone
        try:
            vault.auth.token.lookup(token)
        except Exception:  # hvac raises Forbidden or InvalidRequest: the token is gone
            break
        time.sleep(0.1)
    (outcome,) = run_sync(expiring, store, audit, actor="test").outcomes
    assert outcome.status == "failed" and outcome.stale == 1 and outcome.gone == 0
    assert len(outcome.errors) == 1 and "refused keyshift's token" in outcome.errors[0]
    assert "expired or was revoked" in outcome.errors[0]
    assert token not in str(outcome.errors)
    _kept_stale(store, mount, ["t/one"], "refused keyshift's token")


@pytest.mark.parametrize("scan", [False, True], ids=["folder-walk", "scan"])
def test_denied_folder_is_a_partial_sync_that_marks_nothing_gone(
    seeded_sandbox: Any, vault: Any, store: Store, tmp_path: Path, scan: bool
) -> None:
    mount = make_mount(vault, ["open/a", "open/b", "closed/c", "closed/d"])
    full = write_inventory(
        only_sources(kv_only(mount)),
        tmp_path / "full.yaml",
    )
    audit = AuditLog(store)
    assert run_sync(full, store, audit, actor="test").total("new") == 4

    list_caps = '["read", "list", "scan"]' if scan else '["read", "list"]'
    policy = f"ks-partial-{uuid.uuid4().hex[:6]}"
    vault.sys.create_or_update_policy(
        policy,
        f"""
path "{mount}/metadata/*" {{ capabilities = {list_caps} }}
path "{mount}/detailed-metadata/*" {{ capabilities = {list_caps} }}
path "{mount}/metadata/" {{ capabilities = {list_caps} }}
path "{mount}/detailed-metadata/" {{ capabilities = {list_caps} }}
path "{mount}/data/*" {{ capabilities = ["read"] }}
path "{mount}/metadata/closed/*" {{ capabilities = ["deny"] }}
path "{mount}/detailed-metadata/closed/*" {{ capabilities = ["deny"] }}
path "{mount}/data/closed/*" {{ capabilities = ["deny"] }}
""",
    )
    token = vault.auth.token.create(policies=[policy], ttl="10m")["auth"]["client_token"]
    service = f"keyshift-test-{uuid.uuid4().hex[:6]}"
    secret_refs.put(service, "token", token)
    partial = write_inventory(
        only_sources(
            {
                "name": "v",
                "type": "openbao",
                "kv_mounts": [mount],
                "auth": False,
                "leases": False,
                "address": seeded_sandbox.state.vault_addr,
                "token": f"keyring:{service}/token",
            }
        ),
        tmp_path / "partial.yaml",
    )
    result = run_sync(partial, store, audit, actor="test")
    (outcome,) = result.outcomes
    assert outcome.status == "partial"
    assert outcome.gone == 0
    assert outcome.errors and all("closed" in e for e in outcome.errors)
    assert all("permission denied" in e for e in outcome.errors)
    for path in ("closed/c", "closed/d", "open/a", "open/b"):
        row = store.get_credential(f"v:kv:{mount}/{path}")
        assert row and row.gone_at is None and row.status != "gone", path
    if not scan:
        # the folder could not be listed: its rows are kept, marked stale
        assert outcome.stale == 2
    assert token not in str(result.as_dict())


def test_canary_value_never_reaches_disk_output_or_logs(
    seeded_sandbox: Any, vault: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from console.sandbox import aws_client

    canary = f"CANARY-{uuid.uuid4().hex}-do-not-store"
    mount = make_mount(vault, [])
    vault.secrets.kv.v2.create_or_update_secret(
        path="canary/kv", secret={"value": canary}, mount_point=mount
    )
    sm = aws_client(seeded_sandbox.state, "secretsmanager")
    sm_name = f"canary/{uuid.uuid4().hex[:8]}"
    arn = sm.create_secret(Name=sm_name, SecretString=canary)["ARN"]
    inv = {
        "version": 1,
        "sources": [
            {"name": "v", "type": "openbao", "sandbox": True, "kv_mounts": [mount]},
            {"name": "a", "type": "aws", "sandbox": True, "services": ["secretsmanager"]},
        ],
    }
    inv_path = tmp_path / "canary.yaml"
    loaded = write_inventory(inv, inv_path)
    db_path = tmp_path / "canary.db"
    caplog.set_level(logging.DEBUG)
    store = Store(db_path)
    try:
        summary = run_sync(loaded, store, AuditLog(store), actor="test")
        assert summary.status == "ok", summary.as_dict()
        kv = store.get_credential(f"v:kv:{mount}/canary/kv")
        aws = store.get_credential(f"a:secretsmanager:{arn}")
        assert kv and aws and kv.fingerprint == aws.fingerprint == fingerprint(canary)
    finally:
        store.close()
    needle = canary.encode()
    for path in tmp_path.iterdir():
        if path.name.startswith("canary.db"):
            assert needle not in path.read_bytes(), path.name
    assert canary not in caplog.text

    outputs = []
    for args in (
        ["-vvv", "sync"],
        ["ls", "--format", "json"],
        ["show", f"v:kv:{mount}/canary/kv"],
        ["show", f"a:secretsmanager:{arn}", "--format", "json"],
    ):
        proc = run_cli("--inventory", str(inv_path), "--db", str(db_path), *args)
        assert proc.returncode == 0, (args, proc.stderr)
        outputs.append(proc.stdout + proc.stderr)
    assert "canary/kv" in outputs[1] and sm_name in outputs[1]
    assert all(canary not in out for out in outputs)
    for path in tmp_path.iterdir():
        if path.name.startswith("canary.db"):
            assert needle not in path.read_bytes(), path.name
    # keyshift's own data dir (logs, state) holds nothing of it either
    home = Path(os.environ["KEYSHIFT_HOME"])
    for path in home.rglob("*"):
        if path.is_file() and "sandbox" not in path.parts and path.stat().st_size < 50_000_000:
            assert needle not in path.read_bytes(), path


def test_keyring_entries_of_agents_services(
    seeded_sandbox: Any, store: Store, tmp_path: Path
) -> None:
    """The seeded keyring entries (real Secret Service), and reuse with a declared key."""
    loaded = loads_inventory(
        yaml.safe_dump(base_inventory()), file="inventory.yaml", base_dir=seeded_sandbox.base_dir
    )
    summary = run_sync(
        loaded, store, AuditLog(store), actor="test", only=["local-keyring", "declared"]
    )
    assert summary.status == "ok", summary.as_dict()
    slack = store.get_credential("local-keyring:keyring:keyshift-agent-support/slack-token")
    openai = store.get_credential("local-keyring:keyring:keyshift-agent-support/openai")
    assert slack and openai
    assert (slack.owner, slack.environment, slack.kind) == ("team-support", "prod", "keyring")
    assert slack.created_at is not None and slack.fingerprint
    assert slack.fingerprint == fingerprint(
        secret_refs.get("keyshift-agent-support", "slack-token") or ""
    )
    declared = store.get_credential("declared:api-key:openai-support")
    assert declared and openai.fingerprint == declared.fingerprint
    assert openai.fingerprint != slack.fingerprint
    grants = {g.credential_id: g for g in store.grants_for_agent("support-bot")}
    assert grants[slack.id].chain == [
        "agent:support-bot",
        "keyring:keyshift-agent-support",
        "entry:slack-token",
    ]
    # keyshift's own entries (installation key, sandbox tokens) are not any agent's service
    ids = {c.id for c in store.all_credentials()}
    assert not any("keyshift-sandbox" in i or "installation" in i for i in ids)


# The day the sample inventory's dates were written for: its ages (created, last used,
# expires) are as its comments say on this day. The test moves every date by the days since,
# so the same entries are wrong on any day the suite runs.
SAMPLE_AS_OF = date(2026, 11, 26)


def as_of_today(text: str) -> str:
    shift = date.today() - SAMPLE_AS_OF
    return re.sub(
        r"\b(created|expires|last_used): (20[0-9]{2}-[0-9]{2}-[0-9]{2})\b",
        lambda m: f"{m[1]}: {(date.fromisoformat(m[2]) + shift).isoformat()}",
        text,
    )


def _subject(store: Store, row: dict) -> str:
    if row["credential_id"]:
        cred = store.get_credential(row["credential_id"])
        name = cred.name if cred else row["credential_id"]
        return f"{cred.kind}:{name}" if cred else name
    return f"agent:{row['agent']}"


# What the sample is wrong about, on purpose (see its header comment), as (rule, subject).
SAMPLE_FINDINGS: list[tuple[str, str]] = sorted([
    ("exposure.known", "api-key:openai-prod"),  # in the support bot's debug log
    ("exposure.unknown", "agent:code-reviewer"),  # a GitHub token in its .env
    ("hygiene.no-expiry", "api-key:serpapi-key"),
    ("hygiene.no-expiry", "payment-key:stripe-live"),
    ("hygiene.no-expiry", "vault-token:token/root/*"),  # the sandbox's own root token
    ("hygiene.no-owner", "api-key:openai-sales"),
    ("hygiene.no-owner", "approle-secret-id:approle/sales-assistant/*"),
    ("hygiene.no-owner", "bot-token:slack-bot-token"),
    ("hygiene.no-owner", "kv:agents/sales-assistant/crm"),
    ("hygiene.no-owner", "kv:agents/sales-assistant/openai"),
    ("hygiene.no-owner", "secretsmanager:staging/sales/crm-api"),
    ("hygiene.no-owner", "vault-token:token/approle/*"),  # sales-assistant's login
    ("hygiene.no-owner", "vault-token:token/root/*"),
    ("hygiene.over-age", "api-key:openai-sales"),
    ("hygiene.over-age", "api-key:serpapi-key"),
    ("hygiene.over-age", "bot-token:slack-bot-token"),
    ("hygiene.over-age", "kv:agents/data-pipeline/warehouse"),
    ("hygiene.over-age", "kv:agents/ops-runbook/ssh-deploy-key"),
    ("hygiene.over-age", "payment-key:stripe-live"),
    ("hygiene.ttl-above-max", "code-host-token:github-reviewer-token"),
    ("scope.wildcard", "agent:data-pipeline"),  # secret/data/*
    ("scope.wildcard", "agent:data-pipeline"),  # secretsmanager:* on *
    ("sharing.agents", "api-key:anthropic-prod"),
    ("sharing.agents", "bot-token:slack-bot-token"),
    ("sharing.agents", "iam-key:ops-shared/*"),
    ("sharing.agents", "kv:shared/observability/datadog"),
    ("sharing.agents", "secretsmanager:prod/ops/pagerduty-routing"),
    ("sharing.environments", "api-key:anthropic-dev"),
    ("sharing.environments", "api-key:anthropic-prod"),
    ("sharing.environments", "kv:agents/billing-agent-dev/stripe"),
    ("sharing.environments", "kv:agents/billing-agent/stripe"),
    ("sharing.environments", "kv:agents/sales-assistant/openai"),
    ("sharing.environments", "kv:agents/support-bot/openai"),
    ("sharing.value", "keyring:keyshift-demo-research-scraper/proxy-login"),
    ("sharing.value", "kv:agents/research-scraper/proxy"),
    ("sharing.value", "kv:agents/sales-assistant/crm"),
    ("sharing.value", "kv:agents/support-bot/zendesk"),
    ("sharing.value", "secretsmanager:prod/support/zendesk-api"),
    ("sharing.value", "secretsmanager:staging/data/warehouse"),
    ("sharing.value", "secretsmanager:staging/sales/crm-api"),
    ("sharing.value", "ssm-parameter:/staging/data-pipeline/warehouse-password"),
    ("use.stale", "api-key:serpapi-key"),
    ("use.stale", "webhook:ops-webhook"),
])


def test_full_sample_inventory_in_a_private_sandbox(
    private_sandbox_env: Path, tmp_path: Path
) -> None:
    """sample_inventory.yaml, seeded into a sandbox of its own, so counts are exact."""
    from console import sandbox as sb
    from console.config import load_inventory

    inv_path = tmp_path / "sample_inventory.yaml"
    inv_path.write_text(as_of_today((ROOT / "sample_inventory.yaml").read_text()))
    loaded = load_inventory(inv_path)  # base_dir is tmp_path: env files land there
    seed = loaded.inventory.sandbox
    assert seed is not None
    sb.up()
    sb.seed(loaded.inventory, loaded.base_dir)
    store = Store(tmp_path / "sample.db")
    try:
        audit = AuditLog(store)
        first = run_sync(loaded, store, audit, actor="test")
        outcomes = {o.source: o for o in first.outcomes}
        for name in ("aws-sandbox", "keyring-local"):
            assert outcomes[name].status == "ok", outcomes[name]
        # ops-runbook's token role is declared but the seed creates only AppRole roles
        assert all("ops-runbook" in e for e in outcomes["vault-sandbox"].errors), outcomes
        creds = list(store.all_credentials())
        by_kind: dict[str, list] = {}
        for c in creds:
            by_kind.setdefault(c.kind, []).append(c)
        assert len(by_kind["kv"]) == len(seed.vault_secrets)
        assert len(by_kind["secretsmanager"]) == len(seed.aws_secrets)
        assert len(by_kind["ssm-parameter"]) == len(seed.aws_parameters)
        # the seeded users' keys plus the sandbox's own admin key
        assert len(by_kind["iam-key"]) == sum(u.keys for u in seed.iam_users) + 1
        for s in seed.vault_secrets:
            row = store.get_credential(f"vault-sandbox:kv:{s.mount}/{s.path}")
            assert row and row.owner == s.owner and row.environment == str(s.environment)
            assert row.sensitivity == str(s.sensitivity)
        # the over-broad policy (secret/data/*) gives data-pipeline every KV secret
        pipeline = {g.credential_id for g in store.grants_for_agent("data-pipeline")}
        assert {c.id for c in by_kind["kv"]} <= pipeline
        # ... and its secretsmanager:* on "*" every Secrets Manager secret
        assert {c.id for c in by_kind["secretsmanager"]} <= pipeline
        # dev = prod reuse is visible
        dev = store.get_credential("vault-sandbox:kv:secret/agents/billing-agent-dev/stripe")
        prod = store.get_credential("vault-sandbox:kv:secret/agents/billing-agent/stripe")
        assert dev and prod and dev.fingerprint == prod.fingerprint
        second = run_sync(loaded, store, audit, actor="test")
        assert (second.total("new"), second.total("changed"), second.total("gone")) == (0, 0, 0)
        assert own_token_unused(store)
        # every deliberately wrong entry of the sample is found, and nothing else
        found = sorted((r["rule"], _subject(store, r)) for r in store.findings())
        assert len(found) == len(SAMPLE_FINDINGS), found
        for (rule, subject), (want_rule, want) in zip(found, SAMPLE_FINDINGS, strict=True):
            assert rule == want_rule and fnmatch.fnmatchcase(subject, want), (found, want)
        assert second.findings and not second.findings_error
        # the leaked value (the seed wrote it in the debug log) is nowhere keyshift writes
        leaked = next(
            line.split("=", 1)[1] for line in
            (tmp_path / "demo/workspaces/support-bot/.env").read_text().splitlines()
            if line.startswith("OPENAI_API_KEY=")
        )
        assert leaked in (tmp_path / "demo/workspaces/support-bot/agent.log").read_text()
        db = tmp_path / "sample.db"
        for fmt in ("table", "json", "csv", "sarif"):
            out = run_cli("--db", str(db), "findings", "--all", "--format", fmt)
            assert out.returncode == 0 and leaked not in out.stdout + out.stderr
        store.close()
        for path in tmp_path.glob("sample.db*"):
            assert leaked.encode() not in path.read_bytes()
    finally:
        store.close()


def test_a_watcher_that_goes_away_does_not_fail_a_source(store: Store, tmp_path: Path) -> None:
    # the TUI's progress callback raises once its app has quit: the source must still land
    inv = {
        "version": 1,
        "agents": [{"name": "bot", "environment": "dev"}],
        "sources": [{"name": "declared", "type": "declared"}],
        "credentials": [
            {
                "name": f"key-{i}",
                "source": "declared",
                "kind": "api-key",
                "provider": "x",
                "environment": "dev",
                "agents": ["bot"],
            }
            for i in range(3)
        ],
    }
    loaded = write_inventory(inv, tmp_path / "inventory.yaml")
    calls: list[str] = []

    def gone(source: str, phase: str, message: str) -> None:
        calls.append(phase)
        raise RuntimeError("no active app")

    summary = run_sync(loaded, store, AuditLog(store), actor="test", progress=gone)
    assert summary.status == "ok" and summary.total("new") == 3
    assert calls == ["start"]
    assert all(
        store.get_credential(f"declared:api-key:key-{i}").stale_since is None for i in range(3)
    )


def test_an_agent_reaches_what_is_delivered_into_its_workspace(
    store: Store, tmp_path: Path
) -> None:
    """A workspace identity is resolved: a value delivered to a file in an agent's workspace
    is in that agent's reach even when the credential does not name the agent."""
    (tmp_path / "ws" / "bot").mkdir(parents=True)
    (tmp_path / "ws" / "other").mkdir(parents=True)
    inv = {
        "version": 1,
        "agents": [
            {"name": "bot", "environment": "dev",
             "identities": [{"type": "workspace", "path": "ws/bot", "env_files": [".env"]}]},
            {"name": "named", "environment": "dev"},
            {"name": "other", "environment": "dev",
             "identities": [{"type": "workspace", "path": "ws/other"}]},
        ],
        "sources": [{"name": "declared", "type": "declared"}],
        "credentials": [
            {
                "name": "key", "source": "declared", "kind": "api-key", "provider": "x",
                "environment": "dev", "agents": ["named"],
                "delivered_to": [{"type": "env-file", "path": "ws/bot/.env", "var": "KEY"}],
            },
        ],
    }
    loaded = write_inventory(inv, tmp_path / "inventory.yaml")
    run_sync(loaded, store, AuditLog(store), actor="test")
    holders = {g.agent: g for g in store.grants_for_credential("declared:api-key:key")}
    assert set(holders) == {"named", "bot"}  # not "other": the file is not in its workspace
    assert holders["bot"].chain == ["agent:bot", "workspace:ws/bot", "file:ws/bot/.env"]
    assert holders["bot"].used is False  # a declared last use does not say which agent


def test_a_sync_killed_between_sources_leaves_every_row_audited_and_is_closed_out(
    seeded_sandbox: Any, tmp_path: Path
) -> None:
    """SIGKILL right after the first source committed: its rows are there with their audit
    entry (they commit together); the next sync closes the killed one out as interrupted."""
    from console.crashpoints import CRASH_ENV

    inv = base_inventory()
    inventory = tmp_path / "inventory.yaml"
    write_inventory(inv, inventory)
    db = tmp_path / "ks.db"
    first_source = inv["sources"][0]["name"]
    proc = subprocess.run(
        [str(KEYSHIFT), "--inventory", str(inventory), "--db", str(db), "sync"],
        capture_output=True, text=True, timeout=180,
        env={**os.environ, CRASH_ENV: f"sync:{first_source}"},
    )
    assert proc.returncode == -9, proc.stderr
    with Store(db) as store:
        (killed,) = store.running_syncs()
        rows = [c for c in store.all_credentials() if c.source == first_source]
        assert rows, "the committed source's rows are there"
        audit = AuditLog(store)
        entries = [e for e in audit.entries() if e.action == "sync.source"]
        assert [e.target for e in entries] == [first_source]
        assert entries[0].detail["sync_id"] == killed["id"]
        assert entries[0].detail["new"] == len(rows)
        loaded = loads_inventory(inventory.read_text(), file=str(inventory),
                                 base_dir=tmp_path)
        run_sync(loaded, store, audit, actor="tester")
        closed = next(s for s in store.sync_runs(10) if s["id"] == killed["id"])
        assert closed["status"] == "interrupted"
        assert store.running_syncs() == []
        assert any(e.action == "sync.interrupted" and e.detail["sync_id"] == killed["id"]
                   for e in audit.entries())
        assert audit.verify().ok
