"""The sandbox against the real thing: OpenBao and moto processes on loopback, the real keyring.

Lifecycle (up, status, replace a dead sandbox, seed twice, down, nothing left running), moto's
enforced auth, the seed's contents and usage evidence, and that no secret reaches the state
file or the logs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import BUILTIN_SEED_COUNTS, Seeded, builtin_inventory

from console import sandbox as sb
from console import secret_refs as ks_secrets
from console.connections import aws_connection, hvac_client, vault_connection
from console.errors import SandboxError, SecretError, SourceError
from console.inventory import AwsSource, Inventory, VaultSource


def _procs_mentioning(needle: str) -> list[int]:
    """Pids whose command line contains ``needle`` (zombies have none, so are not counted)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if needle in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def _still_runs(pid: int, cmdline: list[str]) -> bool:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return bool(raw) and raw.rstrip(b"\0").split(b"\0") == [c.encode() for c in cmdline]


def _iam(endpoint: str, key_id: str, secret: str):
    return boto3.client(
        "iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key_id,
        aws_secret_access_key=secret, config=Config(retries={"total_max_attempts": 1}),
    )


def _code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


# --- without servers --------------------------------------------------------------------


def test_nothing_recorded_means_not_running(keyshift_home, monkeypatch):
    monkeypatch.setenv("KEYSHIFT_SANDBOX_DIR", str(keyshift_home / "sandbox"))
    assert sb.load_state() is None
    status = sb.status()
    assert not status.recorded and not status.healthy
    assert "not running" in status.lines()[0]
    assert sb.down() == []
    with pytest.raises(SandboxError, match="not running"):
        sb.env_exports()
    with pytest.raises(SandboxError, match="not running"):
        vault_connection(VaultSource(name="v", type="openbao", sandbox=True))


def test_missing_bao_is_a_clear_error_and_starts_nothing(private_sandbox_env, monkeypatch):
    monkeypatch.setenv("PATH", str(private_sandbox_env))   # no bao there
    monkeypatch.setattr("sys.executable", str(private_sandbox_env / "python"))
    with pytest.raises(SandboxError) as err:
        sb.up()
    assert "bao" in err.value.message and err.value.hint
    assert sb.load_state() is None
    assert _procs_mentioning(str(private_sandbox_env)) == []


def test_down_only_stops_pids_that_still_run_the_recorded_command(private_sandbox_env):
    sdir = private_sandbox_env
    ours = subprocess.Popen(["sleep", "300"], start_new_session=True)
    foreign = subprocess.Popen(["sleep", "301"], start_new_session=True)
    try:
        def svc(name: str, pid: int, cmdline: list[str]) -> dict:
            return {"name": name, "pid": pid, "port": 1, "address": "http://127.0.0.1:1",
                    "cmdline": cmdline, "log_path": str(sdir / f"{name}.log")}

        state = {
            "started_at": "2026-01-01T00:00:00+00:00",
            "sandbox_dir": str(sdir), "data_dir": str(sdir),
            "keyring_service": os.environ["KEYSHIFT_SANDBOX_KEYRING_SERVICE"],
            # the pid now runs `sleep 301`, not the bao that was recorded: a reused pid
            "vault": svc("vault", foreign.pid, ["/opt/bao", "server", f"-config={sdir}/vault.hcl"]),
            # control: this one still runs exactly what is recorded, so down() must stop it
            "moto": svc("moto", ours.pid, ["sleep", "300"]),
            "vault_audit_log": str(sdir / "vault-audit.log"),
            "vault_config": str(sdir / "vault.hcl"),
        }
        (sdir / "state.json").write_text(json.dumps(state))

        stopped = sb.down()

        assert [s.split(" ")[0] for s in stopped] == ["moto"]
        ours.wait(timeout=10)   # down() may have reaped it already (it was our child)
        assert not Path(f"/proc/{ours.pid}").exists()
        assert foreign.poll() is None, "down() killed a process that was not its own"
        assert _still_runs(foreign.pid, ["sleep", "301"])
        assert not (sdir / "state.json").exists()
    finally:
        for proc in (ours, foreign):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# --- a private sandbox: the whole lifecycle ---------------------------------------------


def test_lifecycle_up_status_replace_seed_twice_down(private_sandbox_env, tmp_path):
    sdir = private_sandbox_env
    service = os.environ["KEYSHIFT_SANDBOX_KEYRING_SERVICE"]

    first = sb.up()
    status = sb.status()
    assert status.healthy, status.lines()
    assert [s.name for s in status.services] == ["vault", "moto", "provider"]
    assert all(s.alive and s.healthy for s in status.services)
    assert first.vault_addr.startswith("http://127.0.0.1:")
    assert first.moto_endpoint.startswith("http://127.0.0.1:")
    assert sb.load_state() == first
    assert sb.up() == first, "a healthy sandbox is reused, not restarted"

    # the servers are detached: their own session, not ours
    assert first.provider is not None
    for pid in (first.vault_pid, first.moto_pid, first.provider.pid):
        assert os.getsid(pid) == pid

    # a dead recorded sandbox is cleaned up and replaced
    os.kill(first.moto_pid, signal.SIGKILL)
    status = sb.status()
    moto = next(s for s in status.services if s.name == "moto")
    assert not moto.alive and not moto.healthy and not status.healthy
    state = sb.up()
    assert state.moto_pid != first.moto_pid and state.vault_pid != first.vault_pid
    assert not _still_runs(first.vault_pid, first.vault.cmdline)
    assert sb.status().healthy

    base = tmp_path / "base"
    # its own keyring names: the keyring is shared with the session's seeded sandbox
    inventory = builtin_inventory(agent_keyring_service=f"{service}-agent")
    summary = sb.seed(inventory, base)
    assert summary.created == BUILTIN_SEED_COUNTS
    assert summary.unchanged == {}
    assert summary.usage == {"approle-login": 2, "secret-read": 3}
    again = sb.seed(inventory, base)
    assert again.total_created == 0 and again.created == {}
    assert again.unchanged == BUILTIN_SEED_COUNTS
    assert again.usage == {}
    assert again.as_dict()["created"] == 0

    stopped = sb.down()
    assert sorted(s.split(" ")[0] for s in stopped) == ["moto", "provider", "vault"]
    assert state.provider is not None
    for svc in (state.vault, state.moto, state.provider):
        assert not _still_runs(svc.pid, svc.cmdline)
        assert not Path(f"/proc/{svc.pid}").exists() or not _still_runs(svc.pid, svc.cmdline)
    assert _procs_mentioning(str(sdir)) == []           # bao's -config path is in the sandbox
    assert _procs_mentioning(f"-p {state.moto.port}") == []
    assert not (sdir / "state.json").exists()
    assert ks_secrets.get(service, sb.VAULT_TOKEN_NAME) is None
    assert ks_secrets.get(service, sb.VAULT_UNSEAL_NAME) is None
    assert ks_secrets.get(service, sb.AWS_SECRET_NAME) is None
    assert not sb.status().recorded
    assert sb.down() == []


# --- the session sandbox ----------------------------------------------------------------


def test_moto_enforces_auth_and_refuses_inactive_keys(sandbox):
    key_id, secret = sb._aws_keys(sandbox)
    endpoint = sandbox.moto_endpoint

    with pytest.raises(ClientError) as err:
        _iam(endpoint, "AKIAKEYSHIFTNOTAKEY0", "x" * 40).list_users()
    assert _code(err.value) == "InvalidClientTokenId"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as err:
        _iam(endpoint, key_id, "y" * 40).list_users()   # right id, wrong secret
    assert _code(err.value) == "SignatureDoesNotMatch"

    admin = _iam(endpoint, key_id, secret)
    user = f"auth-probe-{uuid.uuid4().hex[:6]}"
    admin.create_user(UserName=user)
    allow_all = {"Version": "2012-10-17",
                 "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    admin.put_user_policy(UserName=user, PolicyName="all", PolicyDocument=json.dumps(allow_all))
    key = admin.create_access_key(UserName=user)["AccessKey"]
    probe = _iam(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    try:
        assert any(u["UserName"] == user for u in probe.list_users()["Users"])

        admin.update_access_key(UserName=user, AccessKeyId=key["AccessKeyId"], Status="Inactive")
        with pytest.raises(ClientError) as err:
            probe.list_users()
        assert _code(err.value) == "InvalidClientTokenId"

        # the status is what decides: active again, accepted again
        admin.update_access_key(UserName=user, AccessKeyId=key["AccessKeyId"], Status="Active")
        probe.list_users()

        admin.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
        with pytest.raises(ClientError) as err:
            probe.list_users()
        assert _code(err.value) == "InvalidClientTokenId"
    finally:
        admin.delete_user_policy(UserName=user, PolicyName="all")
        admin.delete_user(UserName=user)


def test_a_user_without_permission_is_denied(sandbox):
    admin = _iam(sandbox.moto_endpoint, *sb._aws_keys(sandbox))
    user = f"no-perm-{uuid.uuid4().hex[:6]}"
    admin.create_user(UserName=user)
    key = admin.create_access_key(UserName=user)["AccessKey"]
    try:
        with pytest.raises(ClientError) as err:
            _iam(sandbox.moto_endpoint, key["AccessKeyId"], key["SecretAccessKey"]).list_users()
        assert _code(err.value) == "AccessDenied"
    finally:
        admin.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
        admin.delete_user(UserName=user)


def test_no_secret_in_the_state_file_or_the_logs(seeded_sandbox: Seeded):
    state = seeded_sandbox.state
    token = sb._vault_token(state)
    key_id, aws_secret = sb._aws_keys(state)
    vault = sb.vault_client(state)
    seeded_value = vault.secrets.kv.v2.read_secret_version(
        path="agents/support/openai", mount_point="secret", raise_on_deleted_version=True
    )["data"]["data"]["value"]
    canaries = {"vault root token": token, "aws admin secret": aws_secret,
                "a seeded value": seeded_value}

    sdir = Path(state.sandbox_dir)
    files = [p for p in sdir.iterdir() if p.is_file()]
    names = {p.name for p in files}
    assert {"state.json", "vault.log", "moto.log", "vault.hcl", "vault-audit.log"} <= names
    for path in files:
        text = path.read_bytes().decode(errors="replace")
        for what, value in canaries.items():
            assert value not in text, f"{what} found in {path.name}"
    raw_state = json.loads((sdir / "state.json").read_text())
    assert key_id not in json.dumps(raw_state)
    assert oct((sdir / "state.json").stat().st_mode & 0o777) == oct(0o600)
    # the token is handed to no command line either
    for svc in (state.vault, state.moto):
        assert token not in " ".join(svc.cmdline) and aws_secret not in " ".join(svc.cmdline)
    vault_token_file = Path.home() / ".vault-token"
    assert not vault_token_file.exists() or token not in vault_token_file.read_text()


def test_env_exports_evaluate_in_a_shell(sandbox):
    exports = sb.env_exports()
    token = sb._vault_token(sandbox)
    key_id, secret = sb._aws_keys(sandbox)
    script = (
        'eval "$EXPORTS"; '
        '[ "$VAULT_TOKEN" = "$WANT_TOKEN" ] && [ "$BAO_TOKEN" = "$WANT_TOKEN" ] '
        '&& [ "$AWS_SECRET_ACCESS_KEY" = "$WANT_SECRET" ] && [ "$AWS_ACCESS_KEY_ID" = "$WANT_ID" ] '
        '&& echo "$VAULT_ADDR $BAO_ADDR $AWS_ENDPOINT_URL $AWS_DEFAULT_REGION"'
    )
    env = {"PATH": os.environ["PATH"], "EXPORTS": exports, "WANT_TOKEN": token,
           "WANT_SECRET": secret, "WANT_ID": key_id}
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [sandbox.vault_addr, sandbox.vault_addr, sandbox.moto_endpoint, "us-east-1"]


def test_connections_for_sandbox_and_real_sources(sandbox, monkeypatch):
    conn = vault_connection(VaultSource(name="v", type="openbao", sandbox=True))
    assert conn.address == sandbox.vault_addr
    assert hvac_client(conn).auth.token.lookup_self()["data"]["policies"] == ["root"]
    aws = aws_connection(AwsSource(name="a", type="aws", sandbox=True))
    assert aws.endpoint_url == sandbox.moto_endpoint
    arn = aws.client("sts").get_caller_identity()["Arn"]
    assert arn.endswith(":user/keyshift-admin")

    ref_name = f"vault-{uuid.uuid4().hex[:6]}"
    real = VaultSource(name="real", type="vault", address="https://vault.example:8200",
                       token=f"keyring:keyshift-test/{ref_name}")
    with pytest.raises(SecretError, match=ref_name):
        vault_connection(real)
    ks_secrets.put("keyshift-test", ref_name, "s.realtoken-" + ref_name)
    conn = vault_connection(real)
    assert (conn.address, conn.token) == ("https://vault.example:8200", "s.realtoken-" + ref_name)

    # plain http to another host would send the token in clear: refused unless allowed
    clear = VaultSource(name="clear", type="vault", address="http://vault.example:8200",
                        token=f"keyring:keyshift-test/{ref_name}")
    with pytest.raises(SourceError, match="plain http to another host") as err:
        vault_connection(clear)
    assert "insecure: true" in (err.value.hint or "")
    assert vault_connection(clear.model_copy(update={"insecure": True})).token.startswith("s.")
    loopback = clear.model_copy(update={"address": "http://127.0.0.1:8200"})
    assert vault_connection(loopback).address == "http://127.0.0.1:8200"

    aws_real = AwsSource(name="r", type="aws", regions=["eu-west-1"],
                         endpoint_url="https://aws.example")
    conn_aws = aws_connection(aws_real)
    assert (conn_aws.region, conn_aws.endpoint_url) == ("eu-west-1", "https://aws.example")
    # a profile stays a profile: botocore refreshes its credentials, keyshift copies none out
    config = sandbox_dir_for_profile(monkeypatch)
    profiled = aws_connection(AwsSource(name="p", type="aws", profile="keyshift-test"))
    assert profiled.session.profile_name == "keyshift-test"
    assert profiled.session.get_credentials().method == "shared-credentials-file"
    assert config.exists()


def sandbox_dir_for_profile(monkeypatch) -> Path:  # type: ignore[no-untyped-def]
    """A throwaway shared-credentials file with one profile (no real keys)."""
    import tempfile

    folder = Path(tempfile.mkdtemp())
    creds = folder / "credentials"
    creds.write_text(
        "[keyshift-test]\naws_access_key_id = AKIATESTTESTTEST\n"
        "aws_secret_access_key = not-a-real-secret\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(folder / "config"))
    return creds


def _kv(vault, path: str) -> dict:
    return vault.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True
    )["data"]


def test_seeded_vault_secrets_values_and_metadata(seeded_sandbox: Seeded):
    vault = sb.vault_client(seeded_sandbox.state)
    openai = _kv(vault, "agents/support/openai")
    meta = openai["metadata"]["custom_metadata"]
    assert meta["owner"] == "team-support" and meta["environment"] == "prod"
    assert meta["sensitivity"] == "high" and meta["scope"] == "chat completions"
    # who issues the value is declared by the seed's issuer, never assumed: none here
    assert "rotator" not in meta and meta["keys"] == "value"
    assert meta["created"] == (datetime.now(UTC).date() - timedelta(days=200)).isoformat()
    date.fromisoformat(meta["created"])

    value = openai["data"]["value"]
    assert len(value) == 40 and value.isalnum()
    assert _kv(vault, "agents/ci/deploy")["data"]["value"] == value       # same_value_as
    assert _kv(vault, "agents/ci/unused")["data"]["value"] != value
    db = _kv(vault, "agents/support/db")["data"]
    assert set(db) == {"username", "password"} and db["username"] != db["password"]
    assert len(db["password"]) == 24

    ssm = sb.aws_client(seeded_sandbox.state, "ssm")
    param = ssm.get_parameter(Name="/prod/support/db-password", WithDecryption=True)["Parameter"]
    assert param["Type"] == "SecureString" and param["Value"] == db["password"]
    tags = ssm.list_tags_for_resource(ResourceType="Parameter",
                                      ResourceId="/prod/support/db-password")["TagList"]
    assert {t["Key"]: t["Value"] for t in tags} == {"owner": "team-support", "environment": "prod"}


def test_seeded_policies_roles_and_usage_evidence(seeded_sandbox: Seeded):
    vault = sb.vault_client(seeded_sandbox.state)
    policy = vault.sys.read_policy("support-read")["data"]["rules"]
    assert 'path "secret/data/agents/support/*"' in policy and '"read"' in policy
    role = vault.auth.approle.read_role(role_name="ci-runner")["data"]
    assert role["token_policies"] == ["ci-read"]

    # the audit log, as the vault source will read it: who (AppRole role) read which path
    reads: dict[str, set[str]] = {}
    logins: dict[str, list[str]] = {}
    for line in Path(seeded_sandbox.state.vault_audit_log).read_text().splitlines():
        entry = json.loads(line)
        if entry.get("type") != "response" or entry.get("error"):
            continue
        req, auth = entry["request"], entry.get("auth") or {}
        role = (auth.get("metadata") or {}).get("role_name")
        if req["path"] == "auth/approle/login":
            logins[role] = sorted(auth["token_policies"])
        elif role and req["operation"] == "read" and req["path"].startswith("secret/data/"):
            reads.setdefault(role, set()).add(req["path"])
    # (other tests log in with roles of their own on the same sandbox: only the seed's count)
    logins = {k: v for k, v in logins.items() if k in ("support-bot", "ci-runner")}
    assert logins == {"support-bot": ["default", "support-read"],
                      "ci-runner": ["ci-read", "default"]}
    assert reads == {
        "support-bot": {"secret/data/agents/support/openai", "secret/data/agents/support/db"},
        "ci-runner": {"secret/data/agents/ci/deploy"},   # agents/ci/unused: seed_reads false
    }


def test_seeded_aws_and_keyring_and_declared(seeded_sandbox: Seeded):
    state = seeded_sandbox.state
    sm = sb.aws_client(state, "secretsmanager")
    desc = sm.describe_secret(SecretId="prod/support/stripe")
    assert {t["Key"]: t["Value"] for t in desc["Tags"]} == {
        "owner": "team-support", "environment": "prod", "scope": "refunds", "sensitivity": "high"
    }
    stripe = sm.get_secret_value(SecretId="prod/support/stripe")["SecretString"]
    assert stripe.startswith("sk_test_") and len(stripe) == len("sk_test_") + 32

    iam = sb.aws_client(state, "iam")
    assert len(iam.list_access_keys(UserName="support-bot")["AccessKeyMetadata"]) == 2
    attached = iam.list_attached_user_policies(UserName="support-bot")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
    assert iam.list_user_policies(UserName="ci-runner")["PolicyNames"] == ["ci-runner-inline"]
    tags = iam.list_user_tags(UserName="ci-runner")["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"owner": "team-platform", "environment": "dev"}

    slack = ks_secrets.get("keyshift-agent-support", "slack-token")
    assert slack is not None and slack.startswith("xoxb-")

    base = seeded_sandbox.base_dir
    support_env = base / "workspaces" / "support" / ".env"
    ci_env = base / "workspaces" / "ci" / ".env"
    lines = support_env.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("OPENAI_API_KEY=")
    value = lines[0].split("=", 1)[1]
    assert len(value) == 40
    assert ks_secrets.get("keyshift-agent-support", "openai") == value
    assert ci_env.read_text() == f"OPENAI_API_KEY={value}\n"     # openai-ci shares it
    assert support_env.stat().st_mode & 0o777 == 0o600


# --- seed rules -------------------------------------------------------------------------


def _inv(seed: dict, **extra) -> Inventory:
    return Inventory.model_validate({
        "sources": [{"name": "sv", "type": "openbao", "sandbox": True},
                    {"name": "real", "type": "vault", "address": "https://v.example"}],
        "sandbox": seed, **extra,
    })


def test_reseed_shares_the_existing_value_and_keeps_the_rest(sandbox, tmp_path):
    tag = uuid.uuid4().hex[:6]
    first = {"vault_secrets": [{"path": f"t/{tag}/a", "environment": "dev"}]}
    summary = sb.seed(_inv(first), tmp_path)
    assert summary.created == {"vault-secret": 1}
    vault = sb.vault_client(sandbox)
    a_value = _kv(vault, f"t/{tag}/a")["data"]["value"]

    second = {"vault_secrets": [
        {"path": f"t/{tag}/a", "environment": "dev"},
        {"path": f"t/{tag}/b", "environment": "prod", "same_value_as": f"vault:secret/t/{tag}/a"},
    ], "keyring_entries": [{"service": f"ks-{tag}", "name": "k", "environment": "dev",
                            "same_value_as": f"vault:secret/t/{tag}/b"}]}
    summary = sb.seed(_inv(second), tmp_path)
    assert summary.created == {"vault-secret": 1, "keyring-entry": 1}
    assert summary.unchanged == {"vault-secret": 1}
    assert _kv(vault, f"t/{tag}/a")["data"]["value"] == a_value
    assert _kv(vault, f"t/{tag}/b")["data"]["value"] == a_value
    assert ks_secrets.get(f"ks-{tag}", "k") == a_value


def test_env_file_keeps_other_lines_and_fills_an_empty_var(sandbox, tmp_path):
    env = tmp_path / "ws" / ".env"
    env.parent.mkdir()
    env.write_text("# agent config\nLOG_LEVEL=debug\nOPENAI_API_KEY=\n")
    env.chmod(0o640)
    inv = _inv({"declared_values": {"key-a": None}}, credentials=[{
        "name": "key-a", "source": "declared", "kind": "api-key", "provider": "openai",
        "environment": "dev",
        "delivered_to": [{"type": "env-file", "path": "ws/.env", "var": "OPENAI_API_KEY"}],
    }])
    assert sb.seed(inv, tmp_path).created == {"declared-delivery": 1}
    lines = env.read_text().splitlines()
    assert lines[:2] == ["# agent config", "LOG_LEVEL=debug"]
    assert lines[2].startswith("OPENAI_API_KEY=") and len(lines[2]) > len("OPENAI_API_KEY=") + 30
    assert env.stat().st_mode & 0o777 == 0o640
    before = env.read_text()
    assert sb.seed(inv, tmp_path).unchanged == {"declared-delivery": 1}
    assert env.read_text() == before


@pytest.mark.parametrize(
    ("seed", "needle"),
    [
        ({"vault_secrets": [{"path": "x/{tag}", "environment": "dev",
                             "same_value_as": "aws:missing-{tag}"}]}, "not seeded"),
        ({"vault_secrets": [
            {"path": "x/{tag}/1", "environment": "dev", "same_value_as": "vault:secret/x/{tag}/2"},
            {"path": "x/{tag}/2", "environment": "dev", "same_value_as": "vault:secret/x/{tag}/1"},
        ]}, "cycle"),
        ({"vault_source": "real", "vault_secrets": [{"path": "x/{tag}", "environment": "dev"}]},
         "not the sandbox"),
    ],
    ids=["unknown-key", "cycle", "real-source"],
)
def test_bad_seed_is_refused_before_anything_is_written(sandbox, tmp_path, seed, needle):
    tag = uuid.uuid4().hex[:6]
    seed = json.loads(json.dumps(seed).replace("{tag}", tag))
    with pytest.raises(SandboxError, match=needle):
        sb.seed(_inv(seed), tmp_path)
    listed = sb.vault_client(sandbox).adapter.request(
        "LIST", "/v1/secret/metadata/x/", raise_exception=False
    )
    keys = listed.get("data", {}).get("keys", []) if isinstance(listed, dict) else []
    assert not any(tag in k for k in keys)


def test_the_state_records_what_runs(sandbox):
    state = sb.load_state()
    assert state == sandbox
    assert state.vault.cmdline[1:] == ["server", f"-config={state.vault_config}"]
    assert state.moto.cmdline[1:3] == ["-m", "console.sandbox.moto_server"]
    assert str(state.moto.port) in state.moto.cmdline
    assert Path(state.vault_audit_log).exists()
    assert datetime.fromisoformat(state.started_at) <= datetime.now(UTC)
