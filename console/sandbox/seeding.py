"""``keyshift sandbox seed``: plant an inventory's ``sandbox:`` section in the running sandbox.

Idempotent: whatever already exists is left exactly as it is (value, metadata, tags), so a
second run creates nothing and says so. Generated values live in memory only; the summary is
counts.

Value keys (``same_value_as``)
------------------------------
Every seeded thing that holds a value has a key; ``same_value_as: <key>`` makes an entry take
the value of another instead of a fresh one (to demonstrate reuse detection):

- ``vault:<mount>/<path>`` a KV v2 secret's *primary* value, the one under its first ``keys``
  entry; ``vault:<mount>/<path>#<key>`` names another of its keys. Every other key of a secret
  gets its own fresh value; ``same_value_as`` on a vault secret sets its primary value.
- ``aws:<name>`` a Secrets Manager secret (``aws_secrets``).
- ``ssm:<name>`` an SSM parameter (``aws_parameters``), e.g. ``ssm:/prod/support/db-password``.
- ``keyring:<service>/<name>`` a keyring entry (``keyring_entries``).
- ``declared:<name>`` a declared credential listed in ``declared_values``. In
  ``declared_values`` itself the value may be a bare declared name (``openai-prod``) or any key.

When the referenced thing already exists, its current value is read back (in memory) and
shared, so sharing survives re-seeding; chains are followed; a cycle or an unknown key is an
error before anything is written.

What is created
---------------
- KV v2 secrets with custom metadata owner, environment, scope, sensitivity, rotator,
  created (today minus ``age_days``), keys (comma-separated).
- ACL policies, one ``path "<p>" { capabilities = [...] }`` block per rule entry (a rule maps
  path -> capabilities); AppRole enabled at the vault source's ``approle_mount``; one role per
  agent identity of type ``vault-approle`` on the sandbox vault source, with its ``policies``.
- Reads as each agent, for roles created in this run: log in as the role (role-id plus a
  fresh secret-id marked ``keyshift_sandbox=seed``, both kept in memory) and read every
  seeded secret with ``seed_reads`` that the server says the role may read
  (``sys/capabilities-self``). The audit log shows them, marked; sync does not count them as
  the agent's use (they are the seed's). A re-seed creates no roles and so reads nothing.
- Secrets Manager secrets and SSM SecureString parameters, tagged owner, environment (and
  scope, sensitivity and the entry's own ``tags`` for secrets); IAM users tagged owner,
  environment, with ``keys`` access keys (topped up to that number, never removed), attached
  ``policy_arns`` and ``inline_policy`` (a policy document, named ``<user>-inline``, or a map
  name -> document).
- Keyring entries.
- Declared credential values, delivered to each ``delivered_to`` target: env-file targets
  (``path`` relative to ``base_dir``; a ``VAR=value`` line added, or filled in when present and
  empty; an existing non-empty line is left alone; files created 0600) and keyring targets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from console import secret_refs
from console.errors import KeyshiftError, SandboxError
from console.inventory import (
    AwsSource,
    DeclaredCredential,
    EnvFileTarget,
    Generator,
    Inventory,
    KeyringTarget,
    SandboxSeed,
    SeedVaultSecret,
    VaultIdentity,
    VaultSource,
    issuer_parts,
    target_fields,
)
from console.redaction import ValueScope, redact_active
from console.sandbox import SandboxState, SeedSummary, aws_client, vault_client
from rotators.targets.env_file import read_vars, write_vars
from rotators.values import generate


@dataclass
class _Entry:
    """One value holder: how to read its current value and how to make a fresh one."""

    key: str
    same_value_as: str | None
    generator: Generator
    read_existing: Callable[[], str | None]


class _Values:
    """Resolves each key's value once: existing value, else shared, else generated."""

    def __init__(self, scope: ValueScope) -> None:
        self.scope = scope
        self.entries: dict[str, _Entry] = {}
        self._cache: dict[str, str] = {}

    def add(self, entry: _Entry) -> None:
        if entry.key in self.entries:
            raise SandboxError(f"seed: {entry.key} is declared twice")
        self.entries[entry.key] = entry

    def check(self) -> None:
        """Unknown targets and cycles, before anything is written."""
        for key in self.entries:
            seen = [key]
            cur = self.entries[key]
            while cur.same_value_as:
                target = cur.same_value_as
                if target not in self.entries:
                    raise SandboxError(
                        f"seed: {cur.key} has same_value_as {target!r}, which is not seeded",
                        hint="use vault:<mount>/<path>[#key], aws:<name>, ssm:<name>, "
                        "keyring:<service>/<name> or declared:<name>",
                    )
                if target in seen:
                    raise SandboxError(f"seed: same_value_as cycle: {' -> '.join([*seen, target])}")
                seen.append(target)
                cur = self.entries[target]

    def value(self, key: str) -> str:
        if key in self._cache:
            return self._cache[key]
        entry = self.entries[key]
        value = entry.read_existing()
        if value is None:
            if entry.same_value_as:
                value = self.value(entry.same_value_as)
            else:
                g = entry.generator
                value = generate(g.length, g.alphabet, g.prefix).reveal()
        self.scope.add(value)
        self._cache[key] = value
        return value


def _shaped(shape: str) -> str:
    """A made-up secret of a well-known shape (random: it opens nothing anywhere)."""
    import secrets
    import string

    if shape == "github-token":
        return "ghp_" + "".join(secrets.choice(string.ascii_letters + string.digits)
                                for _ in range(36))
    if shape == "aws-access-key":
        return "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits)
                                for _ in range(16))
    raise SandboxError(f"seed: unknown leak shape {shape!r}")


def _vault_key(secret: SeedVaultSecret, key: str | None = None) -> str:
    base = f"vault:{secret.mount}/{secret.path}"
    return base if key is None or key == secret.keys[0] else f"{base}#{key}"


def _tags(**pairs: str | None) -> list[dict[str, str]]:
    return [{"Key": k, "Value": str(v)} for k, v in pairs.items() if v not in (None, "")]


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class _Seeder:
    def __init__(
        self, state: SandboxState, inventory: Inventory, base_dir: Path, scope: ValueScope
    ) -> None:
        self.state = state
        self.inv = inventory
        self.seed: SandboxSeed = inventory.sandbox or SandboxSeed()
        self.base_dir = base_dir
        self.summary = SeedSummary()
        self.values = _Values(scope)
        self._vault: Any = None
        self._aws: dict[tuple[str, str], Any] = {}
        self._declared = {c.name: c for c in inventory.credentials}
        self.new_keys: dict[str, list[tuple[str, str]]] = {}

    # --- clients ------------------------------------------------------------------------

    @property
    def vault(self) -> Any:
        if self._vault is None:
            self._vault = vault_client(self.state)
        return self._vault

    def aws(self, service: str, region: str) -> Any:
        if (service, region) not in self._aws:
            self._aws[service, region] = aws_client(self.state, service, region)
        return self._aws[service, region]

    # --- sources ------------------------------------------------------------------------

    def _vault_source(self) -> VaultSource | None:
        vaults = [s for s in self.inv.sources if isinstance(s, VaultSource)]
        if self.seed.vault_source:
            named = [s for s in vaults if s.name == self.seed.vault_source]
            if not named:
                raise SandboxError(f"seed: vault_source {self.seed.vault_source!r} is not a source")
            if not named[0].sandbox:
                raise SandboxError(
                    f"seed: vault source {named[0].name!r} is not the sandbox",
                    hint="seeding only writes to the sandbox: give that source sandbox: true",
                )
            return named[0]
        sandboxed = [s for s in vaults if s.sandbox]
        return sandboxed[0] if sandboxed else None

    def _check_aws_source(self) -> None:
        if not self.seed.aws_source:
            return
        named = [
            s
            for s in self.inv.sources
            if isinstance(s, AwsSource) and s.name == self.seed.aws_source
        ]
        if not named:
            raise SandboxError(f"seed: aws_source {self.seed.aws_source!r} is not a source")
        if not named[0].sandbox:
            raise SandboxError(
                f"seed: aws source {named[0].name!r} is not the sandbox",
                hint="seeding only writes to the sandbox: give that source sandbox: true",
            )

    # --- registration of value holders --------------------------------------------------

    def register(self) -> None:
        for s in self.seed.vault_secrets:
            reader = self._vault_reader(s, s.keys[0])
            self.values.add(_Entry(_vault_key(s), s.same_value_as, s.generator, reader))
            for extra in s.keys[1:]:
                self.values.add(
                    _Entry(_vault_key(s, extra), None, s.generator, self._vault_reader(s, extra))
                )
        for a in self.seed.aws_secrets:
            self.values.add(
                _Entry(
                    f"aws:{a.name}", a.same_value_as, a.generator, self._sm_reader(a.name, a.region)
                )
            )
        for p in self.seed.aws_parameters:
            self.values.add(
                _Entry(
                    f"ssm:{p.name}",
                    p.same_value_as,
                    p.generator,
                    self._ssm_reader(p.name, p.region),
                )
            )
        for k in self.seed.keyring_entries:
            self.values.add(
                _Entry(
                    f"keyring:{k.service}/{k.name}",
                    k.same_value_as,
                    k.generator,
                    lambda k=k: secret_refs.get(k.service, k.name, own=False),
                )
            )
        for name, shares in self.seed.declared_values.items():
            cred = self._declared.get(name)
            if cred is None:
                raise SandboxError(
                    f"seed: declared_values names {name!r}, which is not a declared credential"
                )
            target = None
            if shares:
                target = shares if ":" in shares else f"declared:{shares}"
            self.values.add(
                _Entry(
                    f"declared:{name}",
                    target,
                    Generator(),
                    lambda cred=cred: self._declared_existing(cred),
                )
            )
        self.values.check()

    def _vault_reader(self, s: SeedVaultSecret, key: str) -> Callable[[], str | None]:
        def read() -> str | None:
            import hvac.exceptions

            try:
                got = self.vault.secrets.kv.v2.read_secret_version(
                    path=s.path, mount_point=s.mount, raise_on_deleted_version=True
                )
            except hvac.exceptions.InvalidPath:
                return None
            value = got["data"]["data"].get(key)
            return None if value is None else str(value)

        return read

    def _sm_reader(self, name: str, region: str) -> Callable[[], str | None]:
        def read() -> str | None:
            from botocore.exceptions import ClientError

            try:
                return self.aws("secretsmanager", region).get_secret_value(SecretId=name)[
                    "SecretString"
                ]
            except ClientError as exc:
                if _error_code(exc) == "ResourceNotFoundException":
                    return None
                raise

        return read

    def _ssm_reader(self, name: str, region: str) -> Callable[[], str | None]:
        def read() -> str | None:
            from botocore.exceptions import ClientError

            try:
                return self.aws("ssm", region).get_parameter(Name=name, WithDecryption=True)[
                    "Parameter"
                ]["Value"]
            except ClientError as exc:
                if _error_code(exc) == "ParameterNotFound":
                    return None
                raise

        return read

    # --- declared deliveries ------------------------------------------------------------

    def _env_path(self, target: EnvFileTarget) -> Path:
        return (self.base_dir / target.path).resolve()

    def _target_value(self, target: EnvFileTarget | KeyringTarget) -> str | None:
        if isinstance(target, KeyringTarget):
            service, name = secret_refs.parse_ref(target.ref)
            return secret_refs.get(service, name, own=False)
        return read_vars(self._env_path(target)).get(str(target.var)) or None

    def _declared_existing(self, cred: DeclaredCredential) -> str | None:
        for target in cred.delivered_to:
            value = self._target_value(target)
            if value:
                return value
        return None

    def seed_declared(self) -> None:
        for name in self.seed.declared_values:
            cred = self._declared[name]
            if not cred.delivered_to:
                raise SandboxError(
                    f"seed: declared credential {name!r} has no delivered_to target",
                    hint="give it an env-file or keyring target, or drop it from declared_values",
                )
            value = self.values.value(f"declared:{name}")
            for target in cred.delivered_to:
                if self._target_value(target):
                    self.summary.add("declared-delivery", created=False)
                    continue
                if isinstance(target, KeyringTarget):
                    service, key = secret_refs.parse_ref(target.ref)
                    secret_refs.put(service, key, value, own=False)
                else:
                    write_vars(self._env_path(target), {str(target.var): value})
                self.summary.add("declared-delivery", created=True)

    def seed_leaks(self) -> None:
        """Leave the inventory's planted leaks in the workspaces (once: a file that already
        has the line's text before the value is left alone)."""
        for leak in self.seed.leaks:
            if leak.value_of is not None:
                name = leak.value_of.split(":", 1)[1]
                if name not in self.seed.declared_values:
                    raise SandboxError(
                        f"seed: leak {leak.path}: {leak.value_of} is not in declared_values",
                        hint="a leak can only repeat a value the seed itself generates",
                    )
                value = self.values.value(leak.value_of)
            else:
                value = _shaped(leak.shape or "")
                self.values.scope.add(value)
            path = (self.base_dir / leak.path).resolve()
            prefix = leak.text.split("{value}", 1)[0]
            existing = path.read_text(encoding="utf-8") if path.is_file() else ""
            if prefix and any(line.startswith(prefix) for line in existing.splitlines()):
                self.summary.add("workspace-leak", created=False)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tail = "" if not existing or existing.endswith("\n") else "\n"
            with path.open("a", encoding="utf-8") as fh:
                fh.write(tail + leak.text.replace("{value}", value) + "\n")
            self.summary.add("workspace-leak", created=True)

    # --- vault --------------------------------------------------------------------------

    def seed_vault(self) -> None:
        import hvac.exceptions

        today = datetime.now(UTC).date()
        kv = self.vault.secrets.kv.v2
        new_secrets: list[SeedVaultSecret] = []
        for s in self.seed.vault_secrets:
            try:
                kv.read_secret_metadata(path=s.path, mount_point=s.mount)
                self.summary.add("vault-secret", created=False)
                continue
            except hvac.exceptions.InvalidPath:
                pass
            data = {k: self.values.value(_vault_key(s, k)) for k in s.keys}
            # cas=0: write only if the path is still absent
            kv.create_or_update_secret(path=s.path, secret=data, mount_point=s.mount, cas=0)
            meta = {
                "owner": s.owner,
                "environment": str(s.environment),
                "scope": s.scope,
                "sensitivity": str(s.sensitivity),
                "rotator": s.rotator,
                "created": (today - timedelta(days=s.age_days)).isoformat(),
                "keys": ",".join(s.keys),
            }
            tag = self._issuer_tag(self.seed.vault_source)
            if tag and s.issuer:
                meta[tag] = s.issuer
            kv.update_metadata(
                path=s.path,
                mount_point=s.mount,
                custom_metadata={k: v for k, v in meta.items() if v not in (None, "")},
            )
            new_secrets.append(s)
            self.summary.add("vault-secret", created=True)

        existing = set(self.vault.sys.list_policies()["data"]["policies"])
        for p in self.seed.vault_policies:
            if p.name in existing:
                self.summary.add("vault-policy", created=False)
                continue
            self.vault.sys.create_or_update_policy(name=p.name, policy=policy_hcl(p.rules))
            self.summary.add("vault-policy", created=True)

        roles = self._approle_identities()
        if not roles:
            return
        source = self._vault_source()
        mount = source.approle_mount if source else "approle"
        methods = self.vault.sys.list_auth_methods()["data"]
        if f"{mount}/" in methods:
            self.summary.add("vault-auth", created=False)
        else:
            self.vault.sys.enable_auth_method("approle", path=mount)
            self.summary.add("vault-auth", created=True)
        approle = self.vault.auth.approle
        for ident in roles:
            try:
                approle.read_role(role_name=ident.role, mount_point=mount)
                self.summary.add("approle-role", created=False)
                continue
            except hvac.exceptions.InvalidPath:
                pass
            approle.create_or_update_approle(
                role_name=ident.role,
                token_policies=ident.policies,
                token_ttl="1h",
                # a secret-id that never expires is a finding (hygiene.no-expiry): the demo's
                # agents have 30-day ones
                secret_id_ttl="720h",
                mount_point=mount,
            )
            self.summary.add("approle-role", created=True)
            self._use_as(ident, mount)

    def _approle_identities(self) -> list[VaultIdentity]:
        source = self._vault_source()
        names = {source.name} if source else set()
        seen: set[str] = set()
        out = []
        for agent in self.inv.agents:
            for ident in agent.identities:
                if (
                    isinstance(ident, VaultIdentity)
                    and ident.type == "vault-approle"
                    and ident.source in names
                    and ident.role not in seen
                ):
                    seen.add(ident.role)
                    out.append(ident)
        return out

    def _use_as(self, ident: VaultIdentity, mount: str) -> None:
        """Log in as the role and read what it may read, as the agent would (the reads are
        marked as the seed's: they show in the audit log, and sync does not count them)."""
        import hvac

        from console.sources.vault_audit import SEED_MARK

        approle = self.vault.auth.approle
        role_id = approle.read_role_id(role_name=ident.role, mount_point=mount)["data"]["role_id"]
        # marked, so the sync does not take the seed's reads for the agent's own use
        secret_id = approle.generate_secret_id(
            role_name=ident.role, mount_point=mount, metadata=dict([SEED_MARK])
        )["data"]["secret_id"]
        self.values.scope.add(secret_id)
        agent = hvac.Client(
            url=self.state.vault.address, timeout=30, session=self.vault.adapter.session
        )
        agent.auth.approle.login(role_id=role_id, secret_id=secret_id, mount_point=mount)
        self.values.scope.add(agent.token)
        self.summary.used("approle-login")
        readable = [s for s in self.seed.vault_secrets if s.seed_reads]
        if not readable:
            return
        api_paths = [f"{s.mount}/data/{s.path}" for s in readable]
        caps = agent.adapter.post("/v1/sys/capabilities-self", json={"paths": api_paths})
        caps = caps.get("data", caps) if isinstance(caps, dict) else {}
        for s, api_path in zip(readable, api_paths, strict=True):
            granted = set(caps.get(api_path, []))
            if granted & {"read", "root"} and "deny" not in granted:
                agent.secrets.kv.v2.read_secret_version(
                    path=s.path, mount_point=s.mount, raise_on_deleted_version=True
                )
                self.summary.used("secret-read")

    # --- aws ----------------------------------------------------------------------------

    def seed_aws(self) -> None:
        from botocore.exceptions import ClientError

        for a in self.seed.aws_secrets:
            sm = self.aws("secretsmanager", a.region)
            try:
                sm.describe_secret(SecretId=a.name)
                self.summary.add("aws-secret", created=False)
                continue
            except ClientError as exc:
                if _error_code(exc) != "ResourceNotFoundException":
                    raise
            extra = [{"Key": k, "Value": v} for k, v in getattr(a, "tags", {}).items()]
            tag = self._issuer_tag(self.seed.aws_source)
            if tag and a.issuer:
                extra.append({"Key": tag, "Value": a.issuer})
            sm.create_secret(
                Name=a.name,
                SecretString=self.values.value(f"aws:{a.name}"),
                Tags=_tags(
                    owner=a.owner,
                    environment=str(a.environment),
                    scope=a.scope,
                    sensitivity=str(a.sensitivity),
                )
                + extra,
            )
            self.summary.add("aws-secret", created=True)

        for p in self.seed.aws_parameters:
            ssm = self.aws("ssm", p.region)
            try:
                ssm.get_parameter(Name=p.name)
                self.summary.add("ssm-parameter", created=False)
                continue
            except ClientError as exc:
                if _error_code(exc) != "ParameterNotFound":
                    raise
            tags = _tags(owner=p.owner, environment=str(p.environment))
            tag = self._issuer_tag(self.seed.aws_source)
            if tag and p.issuer:
                tags.append({"Key": tag, "Value": p.issuer})
            ssm.put_parameter(
                Name=p.name,
                Value=self.values.value(f"ssm:{p.name}"),
                Type="SecureString",
                **({"Tags": tags} if tags else {}),
            )
            self.summary.add("ssm-parameter", created=True)

        for u in self.seed.iam_users:
            self._seed_iam_user(u)

    def _seed_iam_user(self, u: Any) -> None:
        from botocore.exceptions import ClientError

        iam = self.aws("iam", self.state.region)
        try:
            iam.get_user(UserName=u.name)
            self.summary.add("iam-user", created=False)
        except ClientError as exc:
            if _error_code(exc) != "NoSuchEntity":
                raise
            iam.create_user(
                UserName=u.name, Tags=_tags(owner=u.owner, environment=str(u.environment))
            )
            self.summary.add("iam-user", created=True)
        have = len(iam.list_access_keys(UserName=u.name)["AccessKeyMetadata"])
        if min(have, u.keys):
            self.summary.add("iam-access-key", created=False, n=min(have, u.keys))
        for _ in range(max(0, u.keys - have)):
            made = iam.create_access_key(UserName=u.name)["AccessKey"]
            # kept in memory only, for a declared rotation that delivers this user's key
            self.new_keys.setdefault(u.name, []).append(
                (made["AccessKeyId"], made["SecretAccessKey"])
            )
            self.values.scope.add(made["SecretAccessKey"])
            self.summary.add("iam-access-key", created=True)
        attached = {
            p["PolicyArn"]
            for p in iam.list_attached_user_policies(UserName=u.name)["AttachedPolicies"]
        }
        for arn in u.policy_arns:
            if arn in attached:
                self.summary.add("iam-policy", created=False)
                continue
            try:
                iam.attach_user_policy(UserName=u.name, PolicyArn=arn)
            except ClientError as exc:
                if _error_code(exc) == "NoSuchEntity":
                    raise SandboxError(
                        f"seed: IAM user {u.name}: policy {arn} does not exist in the sandbox",
                        hint="use an AWS managed policy ARN (arn:aws:iam::aws:policy/...)",
                    ) from None
                raise
            self.summary.add("iam-policy", created=True)
        if u.inline_policy:
            docs = (
                {f"{u.name}-inline": u.inline_policy}
                if "Statement" in u.inline_policy
                else dict(u.inline_policy)
            )
            have_inline = set(iam.list_user_policies(UserName=u.name)["PolicyNames"])
            for name, doc in docs.items():
                if name in have_inline:
                    self.summary.add("iam-policy", created=False)
                    continue
                iam.put_user_policy(
                    UserName=u.name, PolicyName=name, PolicyDocument=json.dumps(doc)
                )
                self.summary.add("iam-policy", created=True)

    # --- keyring ------------------------------------------------------------------------

    def seed_keyring(self) -> None:
        for k in self.seed.keyring_entries:
            if secret_refs.get(k.service, k.name, own=False) is not None:
                self.summary.add("keyring-entry", created=False)
                continue
            secret_refs.put(
                k.service, k.name, self.values.value(f"keyring:{k.service}/{k.name}"), own=False
            )
            self.summary.add("keyring-entry", created=True)

    def run(self) -> SeedSummary:
        self._vault_source()
        self._check_aws_source()
        self.register()
        if self.seed.vault_secrets or self.seed.vault_policies or self._approle_identities():
            self.seed_vault()
        if self.seed.aws_secrets or self.seed.aws_parameters or self.seed.iam_users:
            self.seed_aws()
        self.seed_keyring()
        self.seed_declared()
        self.seed_leaks()
        self.seed_rotations()
        self.register_provider_keys()
        return self.summary

    def _issuer_tag(self, source: str | None) -> str | None:
        src = next((x for x in self.inv.sources if x.name == source), None)
        return getattr(src, "issuer_tag", None)

    # --- declared rotations: agents' own login material ---------------------------------

    def seed_rotations(self) -> None:
        """Give each declared rotation delivered only to env files and keyring entries a first
        value (an AppRole secret-id, a Vault token, an IAM key, a generated value), so the
        demo's agents have something real to rotate. Targets that hold a value are left."""
        for rot in self.inv.rotations:
            if any(t.type in ("vault-kv", "secretsmanager", "ssm") for t in rot.targets):
                continue
            parts = issuer_parts(rot.issuer)
            held = self._held(rot, parts)
            if held and not self._stale(rot, held):
                self.summary.add("rotation-value", created=False)
                continue
            value = self._first_value(rot)
            if value is None:
                continue
            for target in rot.targets:
                fields = target_fields(target, parts)
                if isinstance(target, EnvFileTarget):
                    write_vars(
                        self.base_dir / target.path, {v: value[p] for p, v in fields.items()}
                    )
                else:
                    for part, ref in fields.items():
                        service, key = secret_refs.parse_ref(ref)
                        secret_refs.put(service, key, value[part], own=False)
            self.summary.add("rotation-value", created=True)

    def _held(self, rot: Any, parts: tuple[str, ...]) -> dict[str, str]:
        """What the rotation's first target holding anything holds, by part."""
        for target in rot.targets:
            fields = target_fields(target, parts)
            if isinstance(target, EnvFileTarget):
                current = read_vars(self.base_dir / target.path)
                held = {p: current[v] for p, v in fields.items() if current.get(v)}
            else:
                held = {}
                for part, ref in fields.items():
                    service, key = secret_refs.parse_ref(ref)
                    value = secret_refs.get(service, key, own=False)
                    if value:
                        held[part] = value
            if held:
                for value in held.values():
                    self.values.scope.add(value)
                return held  # type: ignore[return-value]
        return {}

    def _stale(self, rot: Any, held: dict[str, str]) -> bool:
        """A value left by an earlier sandbox that this one's servers do not know (the
        sandbox's servers start empty): replaced, so the demo's agents can log in."""
        import hvac.exceptions
        from botocore.exceptions import ClientError

        issuer = rot.issuer
        if issuer.type == "vault-approle":
            mount = issuer.mount or getattr(self._vault_source(), "approle_mount", "approle")
            try:
                got = self.vault.adapter.post(
                    f"/v1/auth/{mount}/role/{issuer.role}/secret-id/lookup",
                    json={"secret_id": held.get("secret_id", "")},
                )
            except hvac.exceptions.VaultError:
                return True
            return not (isinstance(got, dict) and got.get("data"))
        if issuer.type == "vault-token":
            try:
                self.vault.adapter.post(
                    "/v1/auth/token/lookup", json={"token": held.get("token", "")}
                )
            except hvac.exceptions.VaultError:
                return True
            return False
        if issuer.type == "aws-iam":
            iam = self.aws("iam", self.state.region)
            try:
                keys = iam.list_access_keys(UserName=issuer.user)["AccessKeyMetadata"]
            except ClientError:
                return True
            return held.get("access_key_id") not in {k["AccessKeyId"] for k in keys}
        return False

    def _first_value(self, rot: Any) -> dict[str, str] | None:
        issuer = rot.issuer
        if issuer.type == "vault-approle":
            mount = issuer.mount or getattr(self._vault_source(), "approle_mount", "approle")
            got = self.vault.adapter.post(
                f"/v1/auth/{mount}/role/{issuer.role}/secret-id", json={}
            )["data"]
            self.values.scope.add(got["secret_id"])
            self.summary.used("approle-secret-id")
            return {"secret_id": got["secret_id"]}
        if issuer.type == "vault-token":
            policies = sorted({
                pol
                for agent in self.inv.agents
                if agent.name in rot.agents
                for ident in agent.identities
                if isinstance(ident, VaultIdentity) and ident.source == issuer.source
                for pol in ident.policies
            })
            role = issuer.role
            if role:
                self.vault.adapter.post(
                    f"/v1/auth/token/roles/{role}",
                    json={"allowed_policies": policies, "orphan": True},
                )
            path = f"/v1/auth/token/create/{role}" if role else "/v1/auth/token/create-orphan"
            auth = self.vault.adapter.post(
                path, json={"policies": policies, "ttl": "768h", "display_name": rot.name}
            )["auth"]
            self.values.scope.add(auth["client_token"])
            self.summary.used("vault-token")
            return {"token": auth["client_token"]}
        if issuer.type == "aws-iam":
            made = self.new_keys.get(issuer.user) or []
            if made:
                key_id, secret = made.pop(0)
            else:
                iam = self.aws("iam", self.state.region)
                have = iam.list_access_keys(UserName=issuer.user)["AccessKeyMetadata"]
                if len(have) >= 2:
                    self.summary.used("iam-key-not-delivered")
                    return None
                key = iam.create_access_key(UserName=issuer.user)["AccessKey"]
                key_id, secret = key["AccessKeyId"], key["SecretAccessKey"]
                self.values.scope.add(secret)
            return {"access_key_id": key_id, "secret_access_key": secret}
        gen = getattr(issuer, "generator", None) or Generator()
        prefix = "sk-" if issuer.type == "provider" else gen.prefix
        return {
            part: generate(gen.length, gen.alphabet, prefix).reveal()
            for part in issuer_parts(issuer)
        }

    # --- the provider stand-in ----------------------------------------------------------

    def register_provider_keys(self) -> None:
        """The stand-in of each ``sandbox: true`` provider learns the keys the seed planted as
        that provider's: a key the provider never issued would be refused by its hook."""
        standins = {p.name for p in self.inv.providers if p.sandbox}
        if not standins or self.state.provider is None:
            return
        from console.rotation.specs import parse_issuer_tag

        planted: list[tuple[str, str]] = []
        for cred in self.inv.credentials:
            if cred.provider in standins and f"declared:{cred.name}" in self.values.entries:
                planted.append((cred.provider, self.values.value(f"declared:{cred.name}")))
        for s in self.seed.vault_secrets:
            for key, issuer in parse_issuer_tag(s.issuer).items() if s.issuer else ():
                if issuer and issuer.get("provider") in standins:
                    field = key or s.keys[0]
                    planted.append((issuer["provider"], self.values.value(_vault_key(s, field))))
        for entries, prefix in ((self.seed.aws_secrets, "aws"), (self.seed.aws_parameters, "ssm")):
            for e in entries:
                for key, issuer in parse_issuer_tag(e.issuer).items() if e.issuer else ():
                    if issuer and issuer.get("provider") in standins and not key:
                        value = self.values.value(f"{prefix}:{e.name}")
                        planted.append((issuer["provider"], value))
        for rot in self.inv.rotations:
            if rot.issuer.type == "provider" and rot.issuer.provider in standins:
                for target in rot.targets:
                    if isinstance(target, EnvFileTarget):
                        fields = target_fields(target, issuer_parts(rot.issuer))
                        found = read_vars(self.base_dir / target.path)
                        planted += [(rot.issuer.provider, found[v]) for v in fields.values()
                                    if found.get(v)]
        import requests

        session = requests.Session()
        session.trust_env = False  # loopback
        for provider, value in planted:
            session.post(
                f"{self.state.provider.address}/{provider}/console/register",
                json={"key": value, "name": "planted by the sandbox seed"},
                timeout=10,
            ).raise_for_status()
            self.summary.used("provider-key")


def policy_hcl(rules: list[dict[str, list[str]]]) -> str:
    """ACL policy HCL: each rule maps path -> capabilities."""
    blocks = []
    for rule in rules:
        for path, capabilities in rule.items():
            caps = ", ".join(json.dumps(c) for c in capabilities)
            blocks.append(f"path {json.dumps(path)} {{\n  capabilities = [{caps}]\n}}\n")
    return "\n".join(blocks)


def seed_inventory(state: SandboxState, inventory: Inventory, base_dir: Path) -> SeedSummary:
    """Seed ``inventory.sandbox`` into the sandbox recorded in ``state``; see the module doc."""
    import hvac.exceptions
    import requests
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        with ValueScope("sandbox seed") as scope:
            return _Seeder(state, inventory, base_dir, scope).run()
    except KeyshiftError:
        raise
    except hvac.exceptions.VaultError as exc:
        raise SandboxError(
            f"seed: OpenBao refused a request ({type(exc).__name__}: {_first_line(exc)})",
            hint="check the sandbox with: keyshift sandbox status",
        ) from None
    except ClientError as exc:
        op = exc.operation_name
        raise SandboxError(
            f"seed: AWS {op} failed ({_error_code(exc)})",
            hint="check the sandbox with: keyshift sandbox status",
        ) from None
    except (BotoCoreError, requests.RequestException) as exc:
        raise SandboxError(
            f"seed: the sandbox did not answer ({type(exc).__name__})",
            hint="check the sandbox with: keyshift sandbox status",
        ) from None


def _first_line(exc: Exception) -> str:
    # vault error texts name paths and reasons, never values; redact anyway, to be sure
    return redact_active(str(exc).splitlines()[0] if str(exc) else "")[:200]
