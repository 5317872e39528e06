"""`keyshift rotate` as a script drives it, against the sandbox's real OpenBao."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from console import sandbox as sb

KEYSHIFT = str(Path(sys.executable).parent / "keyshift")

INVENTORY = {
    "version": 1,
    "sources": [{"name": "sandbox-vault", "type": "openbao", "sandbox": True}],
    "policies": {"grace_period_hours": 24},
}


@pytest.fixture
def cli(sandbox, tmp_path: Path):
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(INVENTORY))
    environ = dict(os.environ, KEYSHIFT_ACTOR="rotator-test")

    def run(*args: str):
        return subprocess.run(
            [
                KEYSHIFT,
                "--inventory",
                str(tmp_path / "inventory.yaml"),
                "--db",
                str(tmp_path / "ks.db"),
                *args,
            ],
            env=environ,
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
        )

    return run


@pytest.fixture
def secret():
    """A KV secret of this test's own (the seeded ones are shared with other tests)."""
    client = sb.vault_client()
    path = f"cli-rotate/{uuid.uuid4().hex[:8]}"
    old = "old-value-" + uuid.uuid4().hex
    client.secrets.kv.v2.create_or_update_secret(
        path=path, secret={"value": old}, mount_point="secret"
    )
    client.secrets.kv.v2.update_metadata(
        path=path,
        mount_point="secret",
        custom_metadata={"owner": "team-test", "environment": "dev"},
    )
    return client, path, old


def current(client, path: str) -> tuple[int, str]:
    data = client.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True
    )["data"]
    return data["metadata"]["version"], data["data"]["value"]


def test_dry_run_confirmation_and_a_full_rotation(cli, secret):
    client, path, old = secret
    assert cli("sync").returncode == 0
    cred_id = f"sandbox-vault:kv:secret/{path}"

    dry = cli("rotate", cred_id, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "vault-kv" in dry.stdout and "dry run: nothing changed" in dry.stdout
    for number, step in enumerate(("create", "verify", "promote", "revoke"), 1):
        assert f" {number}. {step}" in dry.stdout
    assert current(client, path) == (1, old)

    unconfirmed = cli("rotate", cred_id)
    assert unconfirmed.returncode == 1
    assert "needs confirmation" in unconfirmed.stderr and "--yes" in unconfirmed.stderr
    assert current(client, path) == (1, old)

    done = cli("rotate", cred_id, "--yes", "--grace", "0")
    assert done.returncode == 0, done.stderr
    for step in ("create", "verify", "promote", "revoke"):
        assert f"  {step}" in done.stdout
    assert ": completed" in done.stdout
    version, new = current(client, path)
    assert version == 2 and new != old
    # --grace 0 revoked at once: the old version is destroyed
    versions = client.secrets.kv.v2.read_secret_metadata(path=path, mount_point="secret")
    assert versions["data"]["versions"]["1"]["destroyed"] is True
    for proc in (dry, unconfirmed, done):
        assert old not in proc.stdout + proc.stderr and new not in proc.stdout + proc.stderr

    show = cli("show", cred_id)
    assert "version" in show.stdout and " 2" in show.stdout
    audit = cli("audit", "tail", "-n", "50").stdout
    assert "rotation.start" in audit and "rotation.outcome" in audit
    assert cli("audit", "verify").returncode == 0


def test_rotate_with_grace_leaves_old_version_until_finish_due(cli, secret):
    client, path, old = secret
    cli("sync")
    cred_id = f"sandbox-vault:kv:secret/{path}"
    done = cli("rotate", cred_id, "--yes")
    assert done.returncode == 0, done.stderr
    assert "awaiting-revoke" in done.stdout
    old_version = client.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", version=1
    )
    assert old_version["data"]["data"]["value"] == old  # still valid through the grace period
    finish = cli("rotate", "--finish-due")
    assert finish.returncode == 0
    assert "0 runs finished" in finish.stdout  # grace (24 h) has not passed


def test_unknown_credential_is_one_line(cli, sandbox):
    proc = cli("rotate", "sandbox-vault:kv:secret/nope", "--yes")
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1 and "no credential" in proc.stderr


def test_a_vault_that_is_down_is_refused_before_any_run_exists(tmp_path: Path):
    from console import secret_refs
    from console.model import Credential
    from console.store import Store

    secret_refs.put("keyshift-test", "down-vault-token", "token-for-a-closed-port")
    inventory = {
        "version": 1,
        "sources": [
            {
                "name": "vault-down",
                "type": "vault",
                "address": "http://127.0.0.1:1",
                "token": "keyring:keyshift-test/down-vault-token",
            }
        ],
    }
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(inventory))
    db = tmp_path / "ks.db"
    store = Store(db)
    cred_id = "vault-down:kv:secret/app"
    store.bulk_insert_credentials(
        [Credential(id=cred_id, source="vault-down", kind="kv", native_id="secret/app", name="app")]
    )
    store.close()
    args = [KEYSHIFT, "--inventory", str(tmp_path / "inventory.yaml"), "--db", str(db)]
    for _ in range(2):  # twice: a refused attempt must not leave a run that blocks the next
        proc = subprocess.run(
            [*args, "rotate", cred_id, "--yes"],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 10, proc.stderr
        assert "cannot reach Vault" in proc.stderr and proc.stderr.count("\n") == 1
    store = Store(db)
    try:
        assert store.rotation_runs(credential_id=cred_id) == []
    finally:
        store.close()
