"""Rotation scenarios against the real sandbox: one per issuer and target, each with a consumer.

A scenario creates its own things in the session sandbox (a KV path, a secret, a parameter,
an AppRole role, a token role, an IAM user, keyring entries, env files: all named with a
random tag, so scenarios never share anything), writes an inventory declaring how they
rotate, and puts the credential row in a fresh store. Its ``consumer()`` reads the value where
the agent reads it and uses it with its issuer (a login, an STS call, the provider stand-in),
returning whether that worked; ``issued()`` counts what the issuer holds, so a test can tell
a value issued twice.

``Person`` is the person at the terminal for provider keys: it mints at the provider
stand-in's console when asked for a key, and revokes there when asked to confirm a revoke.
It is the UI boundary (rotators.base.Interaction), not keyshift code.
"""

from __future__ import annotations

import json
import secrets as pysecrets
import textwrap
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import hvac
import hvac.exceptions
import keyring
import requests
from botocore.exceptions import ClientError

from console.audit import AuditLog
from console.config import load_inventory
from console.model import Credential, credential_id
from console.rotation import RetryPolicy, RotationEngine
from console.sandbox import SandboxState, aws_client, provider_base, vault_client
from console.store import Store
from rotators.targets.env_file import read_vars, write_vars

FAST = RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.05)


def standin(provider: str, path: str, **body: Any) -> dict[str, Any]:
    session = requests.Session()
    session.trust_env = False
    got = session.post(f"{provider_base(provider)}/console/{path}", json=body, timeout=10)
    got.raise_for_status()
    return got.json()


def standin_live(provider: str) -> int:
    """How many of the provider's keys are live at the stand-in."""
    session = requests.Session()
    session.trust_env = False
    got = session.get(f"{provider_base(provider)}/console/keys", timeout=10)
    got.raise_for_status()
    return sum(1 for k in got.json() if not k["revoked"])


def standin_accepts(provider: str, key: str) -> bool:
    session = requests.Session()
    session.trust_env = False
    got = session.get(
        f"{provider_base(provider)}/v1/models",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    return got.status_code == 200


@dataclass
class Person:
    """Mints at the stand-in when asked for a key; revokes there when asked to confirm."""

    provider: str
    minted: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)
    old_key: str | None = None
    answer_revoke: bool = True

    def show(self, text: str) -> None:
        self.shown.append(text)
        if "rolled back" in text:
            # revoke what it minted for the failed rotation (it may have been minted by this
            # person in a process that died: every live key but the one in use)
            session = requests.Session()
            session.trust_env = False
            keys = session.get(f"{provider_base(self.provider)}/console/keys", timeout=10).json()
            for entry in keys:
                if not entry["revoked"] and entry["name"] == "rotated":
                    standin(self.provider, "revoke", id=entry["id"])

    def ask_secret(self, prompt: str) -> str | None:
        key = standin(self.provider, "keys", name="rotated")["key"]
        self.minted.append(key)
        return key

    def confirm(self, prompt: str) -> bool:
        if "Revoke the old key" in prompt and self.answer_revoke and self.old_key:
            standin(self.provider, "revoke", key=self.old_key)
        return self.answer_revoke


@dataclass
class Scenario:
    name: str
    tmp: Path
    state: SandboxState
    inventory: str = ""
    cred: Credential | None = None
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    person: Person | None = None
    consumer: Callable[[], bool] = lambda: True
    current: Callable[[], dict[str, str] | None] = lambda: None
    issued: Callable[[], int] = lambda: 1
    refused: Callable[[dict[str, str]], bool] = lambda old: True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def vault(self) -> hvac.Client:
        return vault_client(self.state)

    def aws(self, service: str) -> Any:
        return aws_client(self.state, service)

    def write_inventory(self, body: str) -> Path:
        text = textwrap.dedent(
            """\
            version: 1
            sources:
              - {name: vault-sandbox, type: openbao, sandbox: true, issuer_tag: keyshift-issuer}
              - {name: aws-sandbox, type: aws, sandbox: true, issuer_tag: keyshift-issuer}
              - {name: keyring-local, type: keyring}
              - {name: declared, type: declared}
            policies:
              grace_period_hours: 24
            """
        ) + textwrap.dedent(body)
        path = self.tmp / "inventory.yaml"
        path.write_text(text)
        self.inventory = text
        return path

    def env(self, **kwargs: Any) -> RotEnv:
        loaded = load_inventory(self.tmp / "inventory.yaml")
        store = Store(self.tmp / "ks.db")
        if self.cred is not None and store.get_credential(self.cred.id) is None:
            store.bulk_insert_credentials([self.cred])
        return RotEnv(store, AuditLog(store), loaded, kwargs)


@dataclass
class RotEnv:
    store: Store
    audit: AuditLog
    loaded: Any
    engine_kwargs: dict[str, Any]

    def engine(self, **kwargs: Any) -> RotationEngine:
        merged = {"retry": FAST, **self.engine_kwargs, **kwargs}
        return RotationEngine(self.store, self.audit, self.loaded, **merged)

    def close(self) -> None:
        self.store.close()


def _row(source: str, kind: str, native: str, name: str | None = None, **extra: Any) -> Credential:
    return Credential(
        id=credential_id(source, kind, native),
        source=source,
        kind=kind,
        native_id=native,
        name=name or native,
        **extra,
    )


# --- scenarios --------------------------------------------------------------------------------


def generated_kv(s: Scenario, version: int = 2) -> Scenario:
    """A shared secret keyshift may generate, in a KV secret (v2, or a v1 mount)."""
    mount = "secret" if version == 2 else f"kv1-{s.tag}"
    if version == 1:
        s.vault.sys.enable_secrets_engine("kv", path=mount, options={"version": "1"})
    path = f"rot/{s.tag}"
    old = "shared-" + pysecrets.token_urlsafe(24)
    if version == 2:
        s.vault.secrets.kv.v2.create_or_update_secret(
            path, {"value": old, "user": "svc"}, mount_point=mount
        )
    else:
        s.vault.secrets.kv.v1.create_or_update_secret(path, {"value": old, "user": "svc"},
                                                      mount_point=mount)
    s.write_inventory(
        f"""\
        rotations:
          - name: kv-{s.tag}
            issuer: {{type: generated, generator: {{length: 32, alphabet: urlsafe}}}}
            targets:
              - {{type: vault-kv, source: vault-sandbox, path: {mount}/{path}, key: value}}
        """
    )
    # as a sync lists it: a KV v1 secret is a row of its own kind
    s.cred = _row("vault-sandbox", "kv" if version == 2 else "kv-v1", f"{mount}/{path}",
                  version="1")
    seen = {old}
    s.extra.update(mount=mount, path=path, version=version, seen=seen)

    def read() -> dict[str, Any]:
        if version == 1:
            return s.vault.secrets.kv.v1.read_secret(path, mount_point=mount)["data"]
        return s.vault.secrets.kv.v2.read_secret_version(
            path, mount_point=mount, raise_on_deleted_version=True
        )["data"]["data"]

    def current() -> dict[str, str]:
        data = read()
        return {"value": data["value"], "user": data["user"]}

    def consumer() -> bool:
        data = current()
        # both sides of a shared secret read it here; "user" must never change
        return bool(data["value"]) and data["user"] == "svc" and len(data["value"]) >= 24

    s.current, s.consumer = current, consumer
    s.issued = lambda: 1
    s.refused = lambda old_value: current()["value"] != old_value["value"]
    return s


def generated_secretsmanager(s: Scenario) -> Scenario:
    name = f"rot/sm-{s.tag}"
    old = "hmac-" + pysecrets.token_urlsafe(24)
    sm = s.aws("secretsmanager")
    arn = sm.create_secret(Name=name, SecretString=json.dumps({"key": old, "alg": "sha256"}))[
        "ARN"
    ]
    s.write_inventory(
        f"""\
        rotations:
          - name: sm-{s.tag}
            issuer: {{type: generated}}
            targets:
              - {{type: secretsmanager, source: aws-sandbox, secret: {name}, json_key: key}}
        """
    )
    s.cred = _row("aws-sandbox", "secretsmanager", arn, name=name, tags={"region": "us-east-1"})

    def current() -> dict[str, str]:
        data = json.loads(s.aws("secretsmanager").get_secret_value(SecretId=name)["SecretString"])
        return {"value": data["key"], "alg": data["alg"]}

    def consumer() -> bool:
        data = current()
        return bool(data["value"]) and data["alg"] == "sha256"

    def issued() -> int:
        stages = s.aws("secretsmanager").describe_secret(SecretId=name)["VersionIdsToStages"]
        return sum(1 for labels in stages.values() if "AWSPENDING" in labels) + 1

    s.current, s.consumer, s.issued = current, consumer, issued
    s.refused = lambda old_value: current()["value"] != old_value["value"]
    s.extra.update(secret=name)
    return s


def generated_ssm(s: Scenario) -> Scenario:
    name = f"/rot/ssm-{s.tag}"
    s.aws("ssm").put_parameter(Name=name, Value="p-" + pysecrets.token_urlsafe(24),
                               Type="SecureString")
    s.write_inventory(
        f"""\
        rotations:
          - name: ssm-{s.tag}
            issuer: {{type: generated}}
            targets:
              - {{type: ssm, source: aws-sandbox, parameter: {name}}}
        """
    )
    s.cred = _row("aws-sandbox", "ssm-parameter", name, tags={"region": "us-east-1"})

    def current() -> dict[str, str]:
        got = s.aws("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]
        return {"value": got["Value"]}

    s.current = current
    s.consumer = lambda: bool(current()["value"])
    s.refused = lambda old_value: current()["value"] != old_value["value"]
    return s


def approle_env_file(s: Scenario) -> Scenario:
    role = f"rot-{s.tag}"
    methods = s.vault.sys.list_auth_methods()["data"]
    if "approle/" not in methods:
        s.vault.sys.enable_auth_method("approle")
    s.vault.auth.approle.create_or_update_approle(role, token_policies=["default"],
                                                  token_ttl="10m")
    role_id = s.vault.auth.approle.read_role_id(role)["data"]["role_id"]
    secret_id = s.vault.auth.approle.generate_secret_id(role)["data"]["secret_id"]
    env_file = s.tmp / "agent" / ".env"
    env_file.parent.mkdir(parents=True, exist_ok=True)
    write_vars(env_file, {"VAULT_ROLE_ID": role_id, "VAULT_SECRET_ID": secret_id})
    s.write_inventory(
        f"""\
        rotations:
          - name: login-{s.tag}
            issuer: {{type: vault-approle, source: vault-sandbox, role: {role}}}
            targets:
              - {{type: env-file, path: agent/.env, var: VAULT_SECRET_ID}}
        """
    )
    s.cred = _row("declared", "approle-secret-id", f"login-{s.tag}", tags={
        "rotation": f"login-{s.tag}"})

    def current() -> dict[str, str]:
        found = read_vars(env_file)
        return {"secret_id": str(found["VAULT_SECRET_ID"]), "role_id": str(found["VAULT_ROLE_ID"])}

    def login(values: dict[str, str]) -> bool:
        client = hvac.Client(url=s.state.vault.address, timeout=10)
        try:
            got = client.auth.approle.login(values["role_id"], values["secret_id"])
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
            return False
        client.token = got["auth"]["client_token"]
        client.auth.token.revoke_self()
        return True

    def issued() -> int:
        try:
            return len(s.vault.adapter.request("LIST", f"/v1/auth/approle/role/{role}/secret-id")[
                "data"]["keys"])
        except hvac.exceptions.InvalidPath:
            return 0

    s.current = current
    s.consumer = lambda: login(current())
    s.issued = issued
    s.refused = lambda old_value: not login({**current(), "secret_id": old_value["secret_id"]})
    s.extra.update(role=role, env_file=env_file)
    return s


def token_keyring(s: Scenario) -> Scenario:
    role = f"rot-{s.tag}"
    s.vault.sys.create_or_update_policy(f"rot-{s.tag}", 'path "secret/data/rot/*" '
                                        '{ capabilities = ["read"] }')
    s.vault.adapter.post(f"/v1/auth/token/roles/{role}",
                         json={"allowed_policies": [f"rot-{s.tag}"], "orphan": True})
    token = s.vault.adapter.post(f"/v1/auth/token/create/{role}",
                                 json={"policies": [f"rot-{s.tag}"], "ttl": "2h"})["auth"][
        "client_token"]
    service = f"keyshift-rot-{s.tag}"
    keyring.set_password(service, "vault-token", token)
    s.write_inventory(
        f"""\
        rotations:
          - name: token-{s.tag}
            issuer: {{type: vault-token, source: vault-sandbox}}
            targets:
              - {{type: keyring, ref: "keyring:{service}/vault-token"}}
        """
    )
    s.cred = _row("declared", "vault-token", f"token-{s.tag}", tags={"rotation": f"token-{s.tag}"})

    def current() -> dict[str, str]:
        return {"token": keyring.get_password(service, "vault-token") or ""}

    def works(token: str) -> bool:
        client = hvac.Client(url=s.state.vault.address, token=token, timeout=10)
        try:
            data = client.auth.token.lookup_self()["data"]
        except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
            return False
        return f"rot-{s.tag}" in data["policies"] and data.get("role") == role

    def issued() -> int:
        keys = s.vault.adapter.request("LIST", "/v1/auth/token/accessors")["data"]["keys"]
        count = 0
        for accessor in keys:
            try:
                data = s.vault.auth.token.lookup_accessor(accessor)["data"]
            except hvac.exceptions.InvalidRequest:
                continue
            if data.get("role") == role:
                count += 1
        return count

    s.current = current
    s.consumer = lambda: works(current()["token"])
    s.issued = issued
    s.refused = lambda old_value: not works(old_value["token"])
    return s


def iam_kv(s: Scenario) -> Scenario:
    user = f"rot-{s.tag}"
    iam = s.aws("iam")
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    path = f"rot/aws-{s.tag}"
    s.vault.secrets.kv.v2.create_or_update_secret(
        path,
        {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
         "region": "us-east-1"},
        mount_point="secret",
    )
    s.write_inventory(
        f"""\
        rotations:
          - name: aws-{s.tag}
            issuer: {{type: aws-iam, source: aws-sandbox, user: {user}}}
            targets:
              - type: vault-kv
                source: vault-sandbox
                path: secret/{path}
                keys: {{access_key_id: AWS_ACCESS_KEY_ID,
                        secret_access_key: AWS_SECRET_ACCESS_KEY}}
        """
    )
    s.cred = _row("aws-sandbox", "iam-key", key["AccessKeyId"], name=f"{user}/{key['AccessKeyId']}",
                  tags={"user": user})

    def current() -> dict[str, str]:
        data = s.vault.secrets.kv.v2.read_secret_version(
            path, mount_point="secret", raise_on_deleted_version=True)["data"]["data"]
        return {"access_key_id": data["AWS_ACCESS_KEY_ID"],
                "secret_access_key": data["AWS_SECRET_ACCESS_KEY"]}

    def works(values: dict[str, str]) -> bool:
        sts = boto3.client("sts", endpoint_url=s.state.moto.address, region_name="us-east-1",
                           aws_access_key_id=values["access_key_id"],
                           aws_secret_access_key=values["secret_access_key"])
        try:
            return sts.get_caller_identity()["Arn"].endswith(f":user/{user}")
        except ClientError:
            return False

    s.current = current
    s.consumer = lambda: works(current())
    s.issued = lambda: len(iam.list_access_keys(UserName=user)["AccessKeyMetadata"])
    s.refused = lambda old_value: not works(old_value)
    s.extra.update(user=user, path=path)
    return s


def provider_env_file(s: Scenario) -> Scenario:
    provider = f"standin-{s.tag}"
    old = standin(provider, "keys", name="old")["key"]
    env_file = s.tmp / "agent" / ".env"
    env_file.parent.mkdir(parents=True, exist_ok=True)
    write_vars(env_file, {"STANDIN_API_KEY": old, "OTHER": "kept"})
    s.write_inventory(
        f"""\
        providers:
          - {{name: {provider}, sandbox: true,
              verify: {{url: "https://api.example.com/v1/models"}}}}
        credentials:
          - name: key-{s.tag}
            source: declared
            kind: api-key
            provider: {provider}
            environment: prod
            delivered_to:
              - {{type: env-file, path: agent/.env, var: STANDIN_API_KEY}}
        """
    )
    s.cred = _row("declared", "api-key", f"key-{s.tag}")
    s.person = Person(provider, old_key=old)

    def current() -> dict[str, str]:
        found = read_vars(env_file)
        return {"value": str(found["STANDIN_API_KEY"]), "other": str(found.get("OTHER"))}

    s.current = current
    s.consumer = lambda: current()["other"] == "kept" and standin_accepts(provider,
                                                                          current()["value"])
    s.issued = lambda: standin_live(provider)
    s.refused = lambda old_value: not standin_accepts(provider, old_value["value"])
    return s


SCENARIOS: dict[str, Callable[[Scenario], Scenario]] = {
    "generated-kv2": generated_kv,
    "generated-kv1": lambda s: generated_kv(s, version=1),
    "generated-secretsmanager": generated_secretsmanager,
    "generated-ssm": generated_ssm,
    "approle-env-file": approle_env_file,
    "token-keyring": token_keyring,
    "iam-kv": iam_kv,
    "provider-env-file": provider_env_file,
}


def build(name: str, tmp: Path, state: SandboxState) -> Scenario:
    tmp.mkdir(parents=True, exist_ok=True)
    return SCENARIOS[name](Scenario(name=name, tmp=tmp, state=state))
