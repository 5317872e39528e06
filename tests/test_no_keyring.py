"""keyshift on a server with no desktop keyring: no D-Bus session at all, and a keyring backend
that fails on every call. The sources' credentials and keyshift's own keys come by env: and
file: references, and `keyshift sync`, `keyshift rotate` and `keyshift schedule run` still
work against the session sandbox's real OpenBao and moto (nothing new is started). The
values behind the references appear in no output, log or store file."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import hvac

from console import own_keys, secret_refs
from console import sandbox as sb

KEYSHIFT = str(Path(sys.executable).parent / "keyshift")
# what would reach a keyring or the sandbox's settings: none of it may be inherited
DROPPED = ("DBUS_SESSION_BUS_ADDRESS", "GNOME_KEYRING_CONTROL", "KEYSHIFT_SANDBOX_DIR",
           "KEYSHIFT_SANDBOX_KEYRING_SERVICE", "VAULT_TOKEN", "BAO_TOKEN", "VAULT_ADDR",
           "BAO_ADDR", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
           "AWS_PROFILE", "AWS_ENDPOINT_URL", own_keys.FINGERPRINT_ENV, own_keys.AUDIT_ENV)


def private(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def under(key_hex: str, value: str) -> str:
    digest = hmac.new(bytes.fromhex(key_hex), value.encode(), hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest[:32]}"


def test_sync_and_rotate_with_no_dbus_and_a_failing_keyring(seeded_sandbox: Any,
                                                            tmp_path: Path) -> None:
    state = seeded_sandbox.state
    service = state.keyring_service
    # the sandbox's own credentials, read here (the test process has the keyring)
    root_token = secret_refs.get(service, sb.VAULT_TOKEN_NAME) or ""
    key_id = secret_refs.get(service, sb.AWS_KEY_ID_NAME) or ""
    key_secret = secret_refs.get(service, sb.AWS_SECRET_NAME) or ""
    assert root_token and key_id and key_secret

    # a generated KV secret of this test's own (other tests read what the seed planted)
    tag = uuid.uuid4().hex[:10]
    path = f"server-mode/{tag}"
    old_value = "old-" + secrets.token_urlsafe(24)
    vault = hvac.Client(url=state.vault.address, token=root_token)
    vault.secrets.kv.v2.create_or_update_secret(path, {"value": old_value}, mount_point="secret")

    # and one the schedule finds due: high sensitivity, its value older than 30 days
    due_path = f"server-mode/{tag}-due"
    due_old = "due-" + secrets.token_urlsafe(24)
    vault.secrets.kv.v2.create_or_update_secret(due_path, {"value": due_old},
                                                mount_point="secret")
    vault.secrets.kv.v2.update_metadata(
        due_path, mount_point="secret",
        custom_metadata={"sensitivity": "high", "created": "2025-01-01T00:00:00Z"})

    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(mode=0o700)
    key_id_file = private(secrets_dir / "aws-key-id", key_id)
    key_secret_file = private(secrets_dir / "aws-secret", key_secret)
    fingerprint_key = secrets.token_hex(32)
    fingerprint_file = private(secrets_dir / "fingerprint.key", fingerprint_key)
    audit_key = secrets.token_hex(32)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(textwrap.dedent(f"""\
        version: 1
        sources:
          - name: vault-srv
            type: openbao
            address: "{state.vault.address}"
            token: "env:KS_SRV_VAULT_TOKEN"
            kv_mounts: [secret]
          - name: aws-srv
            type: aws
            endpoint_url: "{state.moto.address}"
            regions: [{state.region}]
            access_key_id: "file:{key_id_file}"
            secret_access_key: "file:{key_secret_file}"
        policies:
          grace_period_hours: 0
          by_sensitivity:
            high: {{max_age_days: 30}}
        rotations:
          - name: kv-{tag}
            issuer: {{type: generated, generator: {{length: 32, alphabet: urlsafe}}}}
            targets:
              - {{type: vault-kv, source: vault-srv, path: secret/{path}, key: value}}
          - name: kv-{tag}-due
            issuer: {{type: generated, generator: {{length: 32, alphabet: urlsafe}}}}
            targets:
              - {{type: vault-kv, source: vault-srv, path: secret/{due_path}, key: value}}
        """))
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in DROPPED}
    env.update(
        KEYSHIFT_HOME=str(home),
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        KS_SRV_VAULT_TOKEN=root_token,
        KS_AUDIT_KEY=audit_key,
        **{own_keys.FINGERPRINT_ENV: f"file:{fingerprint_file}",
           own_keys.AUDIT_ENV: "env:KS_AUDIT_KEY"},
    )
    assert "DBUS_SESSION_BUS_ADDRESS" not in env

    def keyshift(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KEYSHIFT, "--inventory", str(inventory), *args], env=env,
                              capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)

    # the failing backend is in force: the old default (the keyring) fails loudly there
    probe = subprocess.run(
        [sys.executable, "-c", "from console import secret_refs; "
         "secret_refs.get('keyshift', 'probe')"],
        env=env, capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0 and "the OS keyring is unavailable" in probe.stderr

    synced = keyshift("sync", "--format", "json")
    assert synced.returncode == 0, (synced.stdout, synced.stderr)
    summary = json.loads(synced.stdout)
    assert summary["status"] == "ok" and summary["errors"] == 0, summary
    outcomes = {o["source"]: o for o in summary["sources"]}
    assert set(outcomes) == {"vault-srv", "aws-srv"}
    for outcome in outcomes.values():
        assert outcome["status"] == "ok" and not outcome["errors"], outcome
    cred_id = f"vault-srv:kv:secret/{path}"
    listed = keyshift("ls", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    ids = {row["id"] for row in json.loads(listed.stdout)}
    assert cred_id in ids
    assert any(i.startswith("aws-srv:iam-key:") for i in ids)  # AWS was read with the file key
    # fingerprinted under the key in the file, not one made in some keyring
    row = json.loads(keyshift("show", cred_id, "--format", "json").stdout)
    assert row["fingerprint"] == under(fingerprint_key, old_value)

    rotated = keyshift("rotate", cred_id, "--yes", "--grace", "0")
    assert rotated.returncode == 0, (rotated.stdout, rotated.stderr)
    assert "completed" in rotated.stdout.splitlines()[-1]
    new_value = vault.secrets.kv.v2.read_secret_version(
        path, mount_point="secret", raise_on_deleted_version=True)["data"]["data"]["value"]
    assert new_value != old_value and len(new_value) >= 32
    shown = keyshift("show", cred_id, "--format", "json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["runs"][0]["status"] == "completed"
    resynced = keyshift("sync", "--source", "vault-srv")  # a KV row's fingerprint is sync's
    assert resynced.returncode == 0, resynced.stderr
    after = json.loads(keyshift("show", cred_id, "--format", "json").stdout)
    assert after["fingerprint"] == under(fingerprint_key, new_value)

    # the headless schedule, once: it syncs, finds the old secret due and rotates it
    due_id = f"vault-srv:kv:secret/{due_path}"
    scheduled = keyshift("schedule", "run", "--once", "--log-format", "json")
    assert scheduled.returncode == 0, (scheduled.stdout, scheduled.stderr)
    status = json.loads(keyshift("schedule", "status", "--format", "json").stdout)
    jobs = {j["job"]: j for j in status["jobs"]}
    assert jobs["sync"]["last_status"] == "ok", jobs["sync"]
    assert jobs["rotate-due:high"]["last_status"] == "ok", jobs["rotate-due:high"]
    due_new = vault.secrets.kv.v2.read_secret_version(
        due_path, mount_point="secret", raise_on_deleted_version=True)["data"]["data"]["value"]
    assert due_new != due_old and len(due_new) >= 32
    assert json.loads(keyshift("show", due_id, "--format", "json").stdout)["runs"][0][
        "status"] == "completed"

    # the audit chain is keyed with the key from the environment
    verified = keyshift("audit", "verify")
    assert verified.returncode == 0 and verified.stdout.startswith("OK "), verified.stderr
    env["KS_AUDIT_KEY"] = secrets.token_hex(32)  # another key: the chain no longer checks out
    assert keyshift("audit", "verify").returncode != 0
    env["KS_AUDIT_KEY"] = audit_key

    # nothing reached for a keyring, and nothing fell back to the sandbox's settings
    outputs = [p.stdout + p.stderr
               for p in (synced, listed, rotated, shown, resynced, scheduled, verified)]
    log_text = (home / "keyshift.log").read_text()
    for text in [*outputs, log_text]:
        assert "keyring" not in text.lower(), text
    assert not (home / "sandbox").exists()

    # the values behind the references, and the rotated values, are nowhere keyshift writes
    canaries = {"vault token": root_token, "aws secret": key_secret,
                "fingerprint key": fingerprint_key, "audit key": audit_key,
                "old value": old_value, "new value": new_value,
                "due secret's old value": due_old, "due secret's new value": due_new}
    files = {p.name: p.read_bytes() for p in home.iterdir() if p.is_file()}
    assert {"keyshift.db", "keyshift.log"} <= set(files)
    for what, value in canaries.items():
        for text in outputs:
            assert value not in text, f"{what} in output"
        for name, data in files.items():
            assert value.encode() not in data, f"{what} in {name}"
    # (the AWS key id is not checked: the sync lists that IAM key as a credential, by its id)
