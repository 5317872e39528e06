"""Bench: "agent X is compromised" — contain, rotate everything it could reach, verify.

Work, built afresh for each side and round in a sandbox of the bench's own: one agent with 50
credentials across OpenBao and moto —

- 30 ``generated`` KV v2 secrets it reads through its AppRole's policy,
- 10 Secrets Manager secrets and 7 SSM SecureStrings its IAM user's policy lets it read
  (tagged ``generated``),
- its AppRole secret-id, a Vault token from a token role and its IAM access key, each
  delivered to the agent's ``.env`` file (declared rotations).

The inventory is synced before the clock starts (a scheduler keeps it synced), so both sides
start from the same knowledge: the baseline is even handed the list keyshift computes (the
credential names, the token's and the secret-id's accessors, the key's id) for free.

- keyshift: ``keyshift incident open --agent X`` then ``keyshift incident run ID --yes``
  (contain, review, eradicate through the rotate-agent playbook, verify).
- baseline: what a responder without keyshift runs: a shell script of ``bao`` and ``aws``
  command-line calls: revoke the token and the secret-id by accessor and deactivate the key;
  a new random value per secret (``bao kv put`` and destroy the old version,
  ``aws secretsmanager put-secret-value``, ``aws ssm put-parameter --overwrite``); a new
  secret-id, token and access key written into the ``.env`` file and the old key deleted;
  then look up each revoked accessor and list the user's keys to verify.

A consumer reads all 47 secrets in a loop while a side runs; a failed read is a consumer
error. It is another service that uses the same secrets with access of its own (here the
sandbox's admin credentials), not the compromised agent: the agent is cut off on purpose
between contain and the delivery of its new values, on both sides alike.

Afterwards the bench checks, the same way for both sides, that every one of the 50 credentials
holds a new value, that the attacker's copies (taken at setup, kept in memory) are refused by
their issuers (the token and the secret-id by OpenBao, the key by STS) or are no longer any
secret's value, and that the agent's new values in ``.env`` work. Both sides must answer (50
rotated, 50 old refused, 0 consumer errors).

    .venv/bin/python bench/incident.py [--rounds 1]

The baseline pays a Python start-up for each of its 20 ``aws`` calls and runs everything one
after another, as a person's script does; keyshift rotates on the playbook's worker threads.

Runs inside the private keyring session (``make bench``); starts a sandbox of its own. The
aws command-line tool is installed into a venv of the bench's own on first use
(``.venv/bench-tools``), so its botocore never meets keyshift's.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets as pysecrets
import shlex
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _bench import ROOT, with_own_sandbox

KEYSHIFT = str(Path(sys.executable).parent / "keyshift")
BAO = str(Path(sys.executable).parent / "bao")
TOOLS = ROOT / ".venv" / "bench-tools"
N_KV, N_SM, N_SSM = 30, 10, 7
REGION = "us-east-1"


def aws_cli() -> str:
    aws = TOOLS / "bin" / "aws"
    if not aws.exists():
        print("installing the aws command-line tool into .venv/bench-tools ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(TOOLS)], check=True)
        subprocess.run([str(TOOLS / "bin" / "pip"), "install", "-q", "awscli"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return str(aws)


def env_vars(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        name, _, value = line.partition("=")
        if name and not name.startswith("#"):
            out[name.strip()] = value.strip().strip('"')
    return out


class World:
    """One side's round: an agent and its 50 credentials, an inventory, a synced store."""

    def __init__(self, home: Path, state: Any, label: str) -> None:
        from console.audit import AuditLog
        from console.config import load_inventory
        from console.sandbox import aws_client, vault_client
        from console.store import Store
        from console.sync import run_sync

        self.tag = f"{label}-{uuid.uuid4().hex[:4]}"
        self.state = state
        self.dir = home / self.tag
        self.dir.mkdir()
        self.vault = vault_client(state)
        self.sm = aws_client(state, "secretsmanager", REGION)
        self.ssm = aws_client(state, "ssm", REGION)
        self.iam = aws_client(state, "iam", REGION)
        self.agent = f"agent-{self.tag}"
        self.mount = f"inc-{self.tag}"
        self.user = f"inc-{self.tag}"
        tags = {"keyshift-issuer": "generated", "owner": "team-x", "environment": "prod",
                "sensitivity": "high"}

        vault, mount = self.vault, self.mount
        vault.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
        self.kv_paths = [f"app/s{i:02d}" for i in range(N_KV)]

        def kv(path: str) -> None:
            vault.secrets.kv.v2.create_or_update_secret(
                path, {"value": pysecrets.token_urlsafe(30)}, mount_point=mount)
            vault.secrets.kv.v2.update_metadata(path, mount_point=mount, custom_metadata=tags)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(kv, self.kv_paths))
        policy = f"inc-{self.tag}"
        vault.sys.create_or_update_policy(
            policy, f'path "{mount}/data/app/*" {{ capabilities = ["read"] }}')
        if "approle/" not in vault.sys.list_auth_methods()["data"]:
            vault.sys.enable_auth_method("approle")
        self.role = f"inc-{self.tag}"
        vault.auth.approle.create_or_update_approle(self.role, token_policies=[policy])
        role_id = vault.auth.approle.read_role_id(self.role)["data"]["role_id"]
        made = vault.auth.approle.generate_secret_id(self.role)["data"]
        self.token_role = f"inc-{self.tag}-tok"
        vault.adapter.post(f"/v1/auth/token/roles/{self.token_role}",
                           json={"allowed_policies": [policy], "orphan": True})
        token = vault.adapter.post(f"/v1/auth/token/create/{self.token_role}",
                                   json={"policies": [policy], "ttl": "24h"})["auth"]

        self.iam.create_user(UserName=self.user)
        self.iam.put_user_policy(UserName=self.user, PolicyName="reads", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                 "Resource": f"arn:aws:secretsmanager:*:*:secret:inc-{self.tag}/*"},
                {"Effect": "Allow", "Action": ["ssm:GetParameter", "ssm:GetParameters"],
                 "Resource": f"arn:aws:ssm:*:*:parameter/inc-{self.tag}/*"},
            ]}))
        key = self.iam.create_access_key(UserName=self.user)["AccessKey"]
        aws_tags = [{"Key": k, "Value": v} for k, v in tags.items()]
        self.sm_names = [f"inc-{self.tag}/s{i:02d}" for i in range(N_SM)]
        for name in self.sm_names:
            self.sm.create_secret(Name=name, SecretString=pysecrets.token_urlsafe(30),
                                  Tags=aws_tags)
        self.ssm_names = [f"/inc-{self.tag}/p{i:02d}" for i in range(N_SSM)]
        for name in self.ssm_names:
            self.ssm.put_parameter(Name=name, Value=pysecrets.token_urlsafe(30),
                                   Type="SecureString", Tags=aws_tags)

        self.env_file = self.dir / "agent" / ".env"
        self.env_file.parent.mkdir()
        self.env_file.touch(0o600)
        self.env_file.write_text(
            f"VAULT_ROLE_ID={role_id}\nVAULT_SECRET_ID={made['secret_id']}\n"
            f"VAULT_TOKEN={token['client_token']}\n"
            f"AWS_ACCESS_KEY_ID={key['AccessKeyId']}\n"
            f"AWS_SECRET_ACCESS_KEY={key['SecretAccessKey']}\n")
        # what the attacker took (memory only), and what the baseline is handed for free
        self.stolen = {
            "secret_id": made["secret_id"], "token": token["client_token"],
            "key": (key["AccessKeyId"], key["SecretAccessKey"]),
            "kv": {p: self.kv_value(p) for p in self.kv_paths},
            "sm": {n: self.sm.get_secret_value(SecretId=n)["SecretString"]
                   for n in self.sm_names},
            "ssm": {n: self.ssm_value(n) for n in self.ssm_names},
        }
        self.known = {"secret_id_accessor": made["secret_id_accessor"],
                      "token_accessor": token["accessor"], "key_id": key["AccessKeyId"]}

        self.inventory = self.dir / "inventory.yaml"
        self.inventory.write_text(f"""\
version: 1
sources:
  - {{name: v, type: openbao, sandbox: true, kv_mounts: [{mount}], leases: false,
     issuer_tag: keyshift-issuer}}
  - {{name: a, type: aws, sandbox: true, regions: [{REGION}], issuer_tag: keyshift-issuer}}
  - {{name: d, type: declared}}
agents:
  - name: {self.agent}
    owner: team-x
    environment: prod
    identities:
      - {{type: vault-approle, source: v, role: {self.role}}}
      - {{type: aws-iam-user, source: a, name: {self.user}}}
policies:
  grace_period_hours: 0
rotations:
  - name: login-{self.tag}
    issuer: {{type: vault-approle, source: v, role: {self.role}}}
    targets: [{{type: env-file, path: agent/.env, var: VAULT_SECRET_ID}}]
    agents: [{self.agent}]
    owner: team-x
    environment: prod
  - name: token-{self.tag}
    issuer: {{type: vault-token, source: v, role: {self.token_role}}}
    targets: [{{type: env-file, path: agent/.env, var: VAULT_TOKEN}}]
    agents: [{self.agent}]
    owner: team-x
    environment: prod
  - name: key-{self.tag}
    issuer: {{type: aws-iam, source: a, user: {self.user}}}
    targets:
      - type: env-file
        path: agent/.env
        vars: {{access_key_id: AWS_ACCESS_KEY_ID, secret_access_key: AWS_SECRET_ACCESS_KEY}}
    agents: [{self.agent}]
    owner: team-x
    environment: prod
""")
        self.db = self.dir / "ks.db"
        store = Store(self.db)
        summary = run_sync(load_inventory(self.inventory), store, AuditLog(store),
                           actor="bench")
        store.close()
        if summary.status != "ok":
            sys.exit(f"bench: the setup sync did not finish cleanly: {summary.as_dict()}")
        # the compromise begins now, for the incident's --since: the agent's own key and
        # everything else of the setup are older (a key made after --since on a declared user
        # is what the persistence hunt looks for)
        self.since = datetime.now(UTC).isoformat()

    def kv_value(self, path: str) -> str | None:
        import hvac.exceptions

        try:
            got = self.vault.secrets.kv.v2.read_secret_version(
                path, mount_point=self.mount, raise_on_deleted_version=True)
        except hvac.exceptions.InvalidPath:
            return None
        return str(got["data"]["data"]["value"])

    def ssm_value(self, name: str) -> str:
        return str(self.ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])

    def consume_once(self) -> int:
        """One pass of the consumer over all 47 secrets: how many reads failed."""
        errors = 0
        for path in self.kv_paths:
            try:
                errors += self.kv_value(path) is None
            except Exception:  # any failed read is a consumer error
                errors += 1
        for name in self.sm_names:
            try:
                self.sm.get_secret_value(SecretId=name)
            except Exception:
                errors += 1
        for name in self.ssm_names:
            try:
                self.ssm_value(name)
            except Exception:
                errors += 1
        return errors

    # the same verification for both sides -----------------------------------------------

    def _vault_refuses_token(self, token: str) -> bool:
        import hvac

        client = hvac.Client(url=self.state.vault.address, token=token, timeout=10)
        try:
            client.auth.token.lookup_self()
        except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
            return True
        return False

    def _vault_refuses_secret_id(self, role_id: str, secret_id: str) -> bool:
        import hvac

        client = hvac.Client(url=self.state.vault.address, timeout=10)
        try:
            got = client.auth.approle.login(role_id, secret_id)
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
            return True
        client.token = got["auth"]["client_token"]
        client.auth.token.revoke_self()
        return False

    def _sts_refuses(self, key_id: str, secret: str) -> bool:
        import boto3
        import botocore.exceptions

        sts = boto3.client("sts", region_name=REGION, endpoint_url=self.state.moto.address,
                           aws_access_key_id=key_id, aws_secret_access_key=secret)
        try:
            sts.get_caller_identity()
        except botocore.exceptions.ClientError:
            return True
        return False

    def answer(self, consumer_errors: int) -> tuple[int, int, int]:
        """(credentials holding a new value, attacker copies refused, consumer errors)."""
        env = env_vars(self.env_file)
        new_token, new_sid = env["VAULT_TOKEN"], env["VAULT_SECRET_ID"]
        new_key = (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
        s = self.stolen
        rotated = refused = 0
        for path, old in s["kv"].items():
            now = self.kv_value(path)
            rotated += now is not None and now != old
            refused += now != old and not self._kv_version_readable(path, old)
        for name, old in s["sm"].items():
            same = self.sm.get_secret_value(SecretId=name)["SecretString"] == old
            rotated += not same
            refused += not same
        for name, old in s["ssm"].items():
            same = self.ssm_value(name) == old
            rotated += not same
            refused += not same
        works = (not self._vault_refuses_token(new_token)
                 and not self._vault_refuses_secret_id(env["VAULT_ROLE_ID"], new_sid)
                 and not self._sts_refuses(*new_key))
        rotated += works and new_token != s["token"]
        rotated += works and new_sid != s["secret_id"]
        rotated += works and new_key[0] != s["key"][0]
        refused += self._vault_refuses_token(s["token"])
        refused += self._vault_refuses_secret_id(env["VAULT_ROLE_ID"], s["secret_id"])
        refused += self._sts_refuses(*s["key"])
        return rotated, refused, consumer_errors

    def _kv_version_readable(self, path: str, old: str) -> bool:
        """Whether any version still readable holds the attacker's copy."""
        meta = self.vault.secrets.kv.v2.read_secret_metadata(path, mount_point=self.mount)
        for number, info in meta["data"]["versions"].items():
            if info.get("destroyed") or info.get("deletion_time"):
                continue
            got = self.vault.secrets.kv.v2.read_secret_version(
                path, version=int(number), mount_point=self.mount,
                raise_on_deleted_version=True)
            if got["data"]["data"].get("value") == old:
                return True
        return False

    # the two sides ----------------------------------------------------------------------

    def keyshift(self, env: dict[str, str]) -> None:
        base = [KEYSHIFT, "--inventory", str(self.inventory), "--db", str(self.db)]
        opened = run([*base, "incident", "open", "--agent", self.agent, "--since", self.since,
                      "--format", "json"], env)
        incident = json.loads(opened)["id"]
        run([*base, "incident", "run", incident, "--yes"], env)

    def script(self) -> str:
        """The responder's shell script: one CLI call per action, as a person would."""
        q = shlex.quote
        lines = ["set -eu", f"cd {q(str(self.dir))}"]
        k = self.known
        lines += [
            "# contain",
            f"bao token revoke -accessor {q(k['token_accessor'])} >/dev/null",
            f"bao write auth/approle/role/{self.role}/secret-id-accessor/destroy "
            f"secret_id_accessor={q(k['secret_id_accessor'])} >/dev/null",
            f"aws iam update-access-key --user-name {self.user} --access-key-id "
            f"{q(k['key_id'])} --status Inactive",
            "# eradicate: every secret it could read",
        ]
        for path in self.kv_paths:
            lines.append(f"bao kv put -mount={self.mount} {path} "
                         "value=\"$(openssl rand -base64 30)\" >/dev/null")
            lines.append(f"bao kv destroy -mount={self.mount} -versions=1 {path} >/dev/null")
        for name in self.sm_names:
            lines.append(f"aws secretsmanager put-secret-value --secret-id {name} "
                         "--secret-string \"$(openssl rand -base64 30)\" >/dev/null")
        for name in self.ssm_names:
            lines.append(f"aws ssm put-parameter --name {name} --type SecureString --overwrite "
                         "--value \"$(openssl rand -base64 30)\" >/dev/null")
        env = "agent/.env"
        lines += [
            "# its own credentials: new ones into its .env, the old key deleted",
            f"sid=$(bao write -f -field=secret_id auth/approle/role/{self.role}/secret-id)",
            f"tok=$(bao token create -role={self.token_role} -field=token)",
            f"set -- $(aws iam create-access-key --user-name {self.user} --query "
            "'AccessKey.[AccessKeyId,SecretAccessKey]' --output text)",
            f"sed -i -e \"s|^VAULT_SECRET_ID=.*|VAULT_SECRET_ID=$sid|\" "
            f"-e \"s|^VAULT_TOKEN=.*|VAULT_TOKEN=$tok|\" "
            f"-e \"s|^AWS_ACCESS_KEY_ID=.*|AWS_ACCESS_KEY_ID=$1|\" "
            f"-e \"s|^AWS_SECRET_ACCESS_KEY=.*|AWS_SECRET_ACCESS_KEY=$2|\" {env}",
            f"aws iam delete-access-key --user-name {self.user} --access-key-id {q(k['key_id'])}",
            "# verify: the revoked accessors are gone, the old key is gone",
            f"! bao token lookup -accessor {q(k['token_accessor'])} >/dev/null 2>&1",
            f"! bao write auth/approle/role/{self.role}/secret-id-accessor/lookup "
            f"secret_id_accessor={q(k['secret_id_accessor'])} >/dev/null 2>&1",
            f"! aws iam list-access-keys --user-name {self.user} --output text "
            f"| grep -q {q(k['key_id'])}",
        ]
        return "\n".join(lines) + "\n"


def run(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"bench: {argv[0]} ... {argv[-3:]} exited {done.returncode}: "
                 f"{done.stderr[-2000:]}{done.stdout[-3000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    aws = aws_cli()
    with_own_sandbox("keyshift-bench-incident-", lambda home, state: bench(args, home, state,
                                                                           aws))


def bench(args: argparse.Namespace, home: Path, state: Any, aws: str) -> None:
    from console.sandbox import sandbox_aws, sandbox_vault

    address, token = sandbox_vault()
    endpoint, region, key_id, secret = sandbox_aws()
    ks_env = dict(os.environ, KEYSHIFT_ACTOR="bench")
    bin_dir = home / "bin"
    bin_dir.mkdir()
    (bin_dir / "bao").symlink_to(BAO)
    (bin_dir / "aws").write_text(
        f"#!/bin/sh\nexec {shlex.quote(aws)} --endpoint-url {shlex.quote(endpoint)} \"$@\"\n")
    (bin_dir / "aws").chmod(0o700)
    shell_env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", BAO_ADDR=address,
                     BAO_TOKEN=token, AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret,
                     AWS_DEFAULT_REGION=region)

    def side(world: World, name: str) -> None:
        if name == "keyshift":
            world.keyshift(ks_env)
        else:
            done = subprocess.run(["bash", "-c", world.script()], env=shell_env,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"bench: the baseline script exited {done.returncode}: "
                         f"{done.stderr[-2000:]}")

    expected = (50, 50, 0)
    times: dict[str, list[float]] = {"keyshift": [], "baseline": []}
    print("50 credentials (30 KV, 10 Secrets Manager, 7 SSM, a secret-id, a token, an access "
          "key); building a world per side and round", file=sys.stderr)
    for round_no in range(args.rounds + 1):  # the first is the warm-up
        for name in times:
            world = World(home, state, f"{name[:2]}{round_no}")
            stop = threading.Event()
            errors, passes = [0], [0]

            def consume(w: World = world, stop: threading.Event = stop,
                        errors: list[int] = errors, passes: list[int] = passes) -> None:
                while not stop.is_set():
                    errors[0] += w.consume_once()
                    passes[0] += 1

            probe = threading.Thread(target=consume, daemon=True)
            probe.start()
            started = time.perf_counter()
            side(world, name)
            took = time.perf_counter() - started
            stop.set()
            probe.join()
            got = world.answer(errors[0])
            if got != expected:
                sys.exit(f"bench: {name} left (rotated, old refused, consumer errors) = {got}; "
                         f"expected {expected}")
            if round_no:
                times[name].append(took)
            print(f"  round {round_no}{' (warm-up)' if not round_no else ''}: {name} "
                  f"{took:.2f} s; the consumer read all 47 secrets {passes[0]} times, "
                  f"{errors[0]} failed reads", file=sys.stderr)
    ks, base = min(times["keyshift"]), min(times["baseline"])
    print(f"agent compromised, 50 credentials: keyshift incident open + run {ks:.2f} s; "
          f"shell script of bao and aws calls {base:.2f} s; consumer errors 0 on both",
          file=sys.stderr)
    print(f"RESULT incident-compromised-agent keyshift={ks:.2f} baseline={base:.2f} "
          f"ratio={base / ks:.2f} unit=s")


if __name__ == "__main__":
    main()
