"""The inventory loader: every kind of bad input becomes one ConfigError with file:line:col, the
field path and a plain message (never a traceback, never a secret value); the sample loads."""

from __future__ import annotations

import random
import string
import subprocess
import sys
import textwrap
import traceback
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from console import secretlike
from console.config import (
    DEFAULT_INVENTORY,
    InventoryError,
    LoadedInventory,
    load_inventory,
    loads_inventory,
    value_keys,
)
from console.errors import ConfigError, NotFoundError

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_inventory.yaml"


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "keyshift-home"
    home.mkdir()
    monkeypatch.setenv("KEYSHIFT_HOME", str(home))


def _y(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def _fake(prefix: str, n: int, alphabet: str = string.ascii_letters + string.digits,
          seed: int = 7) -> str:
    """A secret-shaped string made at run time, so no secret-looking literal sits in the repo."""
    rng = random.Random(seed)
    return prefix + "".join(rng.choice(alphabet) for _ in range(n))


# A small valid header the reference cases build on (lines 1-9).
HEAD = _y("""
    sources:
      - {name: vault-sandbox, type: openbao, sandbox: true}
      - {name: aws-sandbox, type: aws, sandbox: true}
      - {name: keyring-local, type: keyring}
      - {name: declared, type: declared}
      - {name: vault-prod, type: vault, address: "https://vault.example.com:8200"}
    agents:
      - name: support-bot
        environment: prod
""")
assert HEAD.count("\n") == 9


@dataclass
class Case:
    id: str
    text: str | bytes
    where: str              # "line:col" after the file name, or "" for no position
    field: str | None       # the field path shown, or None
    phrase: str             # a key phrase of the message
    hint: str | None = None  # a phrase of the hint, when one matters


CASES = [
    # --- YAML syntax ----------------------------------------------------------------------
    Case("syntax-indent", "agents:\n  - name: a\n   bad: [\n", "3:4", None,
         "YAML syntax error", "indentation"),
    Case("syntax-tab", "agents:\n\t- name: a\n", "2:1", None, "YAML syntax error", "tabs"),
    Case("syntax-unclosed-quote", 'agents:\n  - name: "a\n', "3:1", None,
         "YAML syntax error"),
    Case("syntax-two-documents", "agents: []\n---\nsources: []\n", "2:1", None,
         "expected a single document"),
    Case("syntax-undefined-alias", "agents: *nope\n", "1:9", None, "undefined alias"),
    Case("control-character", "agents: []\x00\n", "1:11", None, "control character U+0000"),
    # --- shape ----------------------------------------------------------------------------
    Case("empty-file", "", "1:1", None, "the inventory is empty"),
    Case("only-comments", "# nothing yet\n\n", "1:1", None, "the inventory is empty"),
    Case("top-level-list", "- agents\n- sources\n", "1:1", None,
         "top level must be a mapping", "sample_inventory.yaml"),
    Case("top-level-scalar", "just some words\n", "1:1", None, "top level must be a mapping"),
    Case("duplicate-key", "agents: []\nsources: []\nagents: []\n", "3:1", "agents",
         "duplicate key 'agents' (first given on line 1)", "silently"),
    Case("duplicate-nested-key",
         "agents:\n  - name: a\n    environment: dev\n    name: b\n", "4:5", "agents[0].name",
         "duplicate key 'name'"),
    Case("complex-key", "? [a, b]\n: c\n", "1:3", None, "mapping keys must be plain"),
    Case("empty-key", "agents: []\n~: x\n", "2:1", None, "a mapping key is empty"),
    Case("alias-cycle", "agents: &a [*a]\n", "1:9", "agents[0]", "cycle"),
    Case("too-deep", "agents: " + "[" * 100 + "]" * 100 + "\n", "1:72", None,
         "nested more than 64 levels"),
    # --- tags -----------------------------------------------------------------------------
    Case("tag-python-object", "agents: !!python/object/apply:os.system ['true']\n", "1:9",
         "agents", "YAML tag '!!python/object/apply:os.system' is not allowed"),
    Case("tag-custom", "agents:\n  - !agent {name: a}\n", "2:5", "agents[0]",
         "YAML tag '!agent' is not allowed"),
    Case("tag-binary", "version: !!binary aGVsbG8=\n", "1:10", "version",
         "YAML tag '!!binary' is not allowed"),
    Case("tag-set", "agents: !!set {a: null}\n", "1:9", "agents", "YAML tag '!!set'"),
    # --- scalars --------------------------------------------------------------------------
    Case("bad-date", HEAD + "credentials:\n  - {name: c, source: declared, kind: api-key, "
         "provider: x, environment: dev, expires: 2026-13-45}\n", "11:88",
         "credentials[0].expires", "not a valid date"),
    Case("huge-number", "version: " + "9" * 5000 + "\n", "1:10", "version",
         "not a valid whole number"),
    # --- schema: unknown keys point at the key ----------------------------------------------
    Case("unknown-key", "agents:\n  - name: a\n    environment: dev\n    ownr: team\n", "4:5",
         "agents[0].ownr", "unknown field 'ownr'", "did you mean 'owner'?"),
    Case("unknown-top-key", "version: 1\nagent: []\n", "2:1", "agent", "unknown field 'agent'",
         "did you mean 'agents'?"),
    Case("unknown-key-in-identity",
         HEAD + "    identities:\n      - {type: aws-iam-user, source: aws-sandbox, name: x, "
         "region: eu-west-1}\n", "11:60", "agents[0].identities[0].region",
         "unknown field 'region'", "allowed here: type, source, name"),
    # --- schema: wrong types point at the value ---------------------------------------------
    Case("wrong-type-number", "agents:\n  - name: a\n    environment: dev\n    owner: 12\n",
         "4:12", "agents[0].owner", "expected a string, got a number", "quote it"),
    Case("wrong-type-list", "agents: support-bot\n", "1:9", "agents",
         "expected a list, got a string"),
    Case("wrong-type-mapping", "policies: [high]\n", "1:11", "policies",
         "expected a mapping"),
    Case("wrong-enum", "agents:\n  - name: a\n    environment: qa\n", "3:18",
         "agents[0].environment", "must be 'dev', 'staging' or 'prod', not 'qa'"),
    Case("wrong-version", "version: 2\n", "1:10", "version", "must be 1, not 2"),
    Case("wrong-source-type", "sources:\n  - name: v\n    type: hashicorp\n", "3:11",
         "sources[0].type", "unknown type 'hashicorp'"),
    Case("bad-name", "agents:\n  - name: Support Bot\n    environment: dev\n", "2:11",
         "agents[0].name", "not a valid name", "lowercase"),
    Case("bad-number-bound", "policies:\n  by_sensitivity:\n    high: {max_age_days: 0}\n",
         "3:26", "policies.by_sensitivity.high.max_age_days", "must be greater than 0"),
    Case("bad-dict-key", "policies:\n  by_sensitivity:\n    critical: {max_age_days: 3}\n",
         "3:5", "policies.by_sensitivity.critical", "key must be 'high', 'medium' or 'low'"),
    Case("model-rule", "sources:\n  - name: v\n    type: vault\n", "2:5", "sources[0]",
         "give an address, or sandbox: true"),
    # --- schema: missing fields point at the enclosing mapping -------------------------------
    Case("missing-field", "agents:\n  - name: a\n    owner: team\n", "2:5", "agents[0]",
         "missing required field 'environment'"),
    Case("missing-type", HEAD + "    identities:\n      - {source: vault-sandbox, role: r}\n",
         "11:9", "agents[0].identities[0]", "missing required field 'type'"),
    # --- references -----------------------------------------------------------------------
    Case("unknown-identity-source",
         HEAD + "    identities:\n      - {type: vault-approle, source: vault-stg, role: r}\n",
         "11:39", "agents[0].identities[0].source", "unknown source 'vault-stg'",
         "did you mean"),
    Case("identity-source-wrong-type",
         HEAD + "    identities:\n      - {type: vault-approle, source: aws-sandbox, role: r}\n",
         "11:39", "agents[0].identities[0].source",
         "source 'aws-sandbox' is of type aws", "openbao"),
    Case("aws-role-identity-wrong-source",
         HEAD + "    identities:\n      - {type: aws-iam-role, source: vault-sandbox, name: r}\n",
         "11:38", "agents[0].identities[0].source",
         "an aws-iam-role identity needs an aws source", "name a source of type aws"),
    Case("keyring-identity-wrong-source",
         HEAD + "    identities:\n      - {type: keyring, source: declared, service: s}\n",
         "11:33", "agents[0].identities[0].source", "source 'declared' is of type declared"),
    Case("credential-source-not-declared",
         HEAD + "credentials:\n  - {name: c, source: vault-sandbox, kind: api-key, provider: x, "
         "environment: dev}\n", "11:23", "credentials[0].source",
         "source 'vault-sandbox' is of type openbao"),
    Case("credential-unknown-agent",
         HEAD + "credentials:\n  - name: c\n    source: declared\n    kind: api-key\n"
         "    provider: x\n    environment: dev\n    agents: [support-bot, billing]\n",
         "16:27", "credentials[0].agents[1]", "unknown agent 'billing'"),
    Case("sandbox-vault-source-unknown", HEAD + "sandbox:\n  vault_source: vault-sbx\n",
         "11:17", "sandbox.vault_source", "unknown source 'vault-sbx'"),
    Case("sandbox-aws-source-wrong-type", HEAD + "sandbox:\n  aws_source: keyring-local\n",
         "11:15", "sandbox.aws_source", "source 'keyring-local' is of type keyring"),
    Case("sandbox-source-not-sandbox", HEAD + "sandbox:\n  vault_source: vault-prod\n",
         "11:17", "sandbox.vault_source", "not a sandbox source", "sandbox: true"),
    Case("same-value-as-unknown",
         HEAD + "sandbox:\n  vault_secrets:\n    - {path: a/b, environment: dev}\n"
         "    - {path: a/c, environment: prod, same_value_as: \"vault:secret/a/x\"}\n",
         "13:53", "sandbox.vault_secrets[1].same_value_as", "no seeded value 'vault:secret/a/x'",
         "did you mean"),
    Case("same-value-as-cycle",
         HEAD + "sandbox:\n  aws_secrets:\n"
         "    - {name: a, environment: dev, same_value_as: \"aws:b\"}\n"
         "    - {name: b, environment: dev, same_value_as: \"aws:a\"}\n",
         "12:50", "sandbox.aws_secrets[0].same_value_as", "form a cycle"),
    Case("declared-values-unknown-key",
         HEAD + "sandbox:\n  declared_values:\n    openai: null\n", "12:5",
         "sandbox.declared_values.openai", "unknown declared credential 'openai'"),
    Case("declared-values-target-without-value",
         HEAD + "credentials:\n"
         "  - {name: a, source: declared, kind: api-key, provider: x, environment: dev}\n"
         "  - {name: b, source: declared, kind: api-key, provider: x, environment: prod}\n"
         "sandbox:\n  declared_values:\n    a: b\n", "15:8", "sandbox.declared_values.a",
         "'b' gets no value at seed time", "b: null"),
    Case("vault-policy-not-seeded",
         HEAD + "    identities:\n      - {type: vault-approle, source: vault-sandbox, role: r,"
         " policies: [readr]}\n"
         "sandbox:\n  vault_source: vault-sandbox\n  vault_policies:\n"
         "    - {name: reader, rules: []}\n", "11:74", "agents[0].identities[0].policies[0]",
         "policy 'readr' is not in sandbox.vault_policies"),
    Case("duplicate-agent-name",
         HEAD + "  - {name: support-bot, environment: dev}\n", "10:12", "agents[1].name",
         "duplicate agent name 'support-bot' (also at agents[0].name)"),
    Case("duplicate-source-name",
         HEAD.replace("  - {name: declared, type: declared}\n",
                      "  - {name: declared, type: declared}\n"
                      "  - {name: aws-sandbox, type: aws, sandbox: true}\n"),
         "6:12", "sources[4].name", "duplicate source name 'aws-sandbox'"),
    Case("duplicate-credential-name",
         HEAD + "credentials:\n"
         "  - {name: a, source: declared, kind: api-key, provider: x, environment: dev}\n"
         "  - {name: a, source: declared, kind: webhook, provider: y, environment: dev}\n",
         "12:12", "credentials[1].name", "duplicate credential name 'a'"),
    # --- bytes ----------------------------------------------------------------------------
    Case("not-utf8", b"agents: []\nsources: [\xff\xfe]\n", "2:11", None,
         "not valid UTF-8: byte 0xff at byte offset 21", "UTF-8"),
    Case("latin1-in-description", "agents:\n  - name: a\n    description: caf\xe9\n"
         .encode("latin-1"), "3:21", None, "not valid UTF-8"),
]


def _write(tmp_path: Path, content: str | bytes, name: str = "inv.yaml") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _load_bad(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | bytes,
              name: str = "inv.yaml") -> ConfigError:
    _write(tmp_path, content, name)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_inventory(name)
    return info.value


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_positioned_line(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    err = _load_bad(tmp_path, monkeypatch, case.text)
    line = err.one_line()
    prefix = f"inv.yaml:{case.where}: " if case.where else "inv.yaml: "
    if case.field:
        prefix += f"{case.field}: "
    assert line.startswith(prefix), line
    assert case.phrase in line, line
    if case.hint:
        assert err.hint and case.hint in err.hint, line
    assert err.field == case.field
    assert "\n" not in line
    assert err.exit_code == ConfigError.exit_code == 2
    # the person never sees pydantic's or PyYAML's own exception text
    assert err.__cause__ is None and err.__context__ is None
    assert "pydantic" not in line and "validation error" not in line.lower()


@pytest.mark.parametrize("case", [c for c in CASES if c.id in {
    "syntax-indent", "syntax-unclosed-quote", "control-character", "too-deep", "alias-cycle",
    "duplicate-key", "tag-python-object", "wrong-enum"}], ids=lambda c: c.id)
def test_pure_python_composer_gives_the_same_answers(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # without libyaml the loader composes with PyYAML's Python code; positions must not change
    from console import yamlsafe

    monkeypatch.setattr(yamlsafe, "_CLoader", None)
    err = _load_bad(tmp_path, monkeypatch, case.text)
    assert err.one_line().startswith(f"inv.yaml:{case.where}: "), err.one_line()
    assert case.phrase in err.one_line()


def test_missing_file_and_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_inventory("nope.yaml")
    assert info.value.one_line().startswith("nope.yaml: no such file (hint: pass --inventory")
    (tmp_path / "adir").mkdir()
    with pytest.raises(ConfigError) as info:
        load_inventory("adir")
    assert info.value.one_line().startswith("adir: is a directory, not an inventory file")
    assert info.value.exit_code == 2


def test_default_path_is_sample_in_current_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_inventory()
    assert info.value.file == DEFAULT_INVENTORY == "sample_inventory.yaml"
    (tmp_path / DEFAULT_INVENTORY).write_text("agents: []\n")
    loaded = load_inventory()
    assert loaded.path == (tmp_path / DEFAULT_INVENTORY).resolve()
    assert loaded.inventory.agents == []


@pytest.mark.timeout(10)
def test_billion_laughs_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    err = _load_bad(tmp_path, monkeypatch, "\n".join(lines) + "\n")
    assert "alias bomb" in err.message
    assert "200,000 nodes" in err.message
    assert err.line is not None and err.column is not None


def test_secret_like_is_refused_without_echoing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = _fake("gh" + "p_", 36)
    text = HEAD + f"    description: uses {token} for pushes\n"
    err = _load_bad(tmp_path, monkeypatch, text)
    line = err.one_line()
    assert line.startswith("inv.yaml:10:18: agents[0].description: looks like a literal secret")
    assert "keyring:<service>/<name>" in line
    shown = line + repr(err) + "".join(traceback.format_exception(err))
    assert token not in shown and token[4:20] not in shown


SECRETS = [
    ("openai", lambda: _fake("sk" + "-proj-", 48), "an OpenAI-style API key"),
    ("anthropic", lambda: _fake("sk" + "-ant-api03-", 80), "an Anthropic API key"),
    ("github-classic", lambda: _fake("gh" + "p_", 36), "a GitHub token"),
    ("github-pat", lambda: _fake("github" + "_pat_", 70), "GitHub fine-grained token"),
    ("slack-bot", lambda: "xox" + "b-1234567890-" + _fake("", 24), "a Slack token"),
    ("slack-user", lambda: "xox" + "p-1234567890-" + _fake("", 24), "a Slack token"),
    ("aws-akia", lambda: "AK" + "IA" + _fake("", 16, string.ascii_uppercase + string.digits),
     "an AWS access key id"),
    ("aws-asia", lambda: "AS" + "IA" + _fake("", 16, string.ascii_uppercase + string.digits),
     "an AWS access key id"),
    ("stripe-restricted", lambda: _fake("rk" + "_live_", 32), "a Stripe key"),
    ("stripe-secret", lambda: _fake("sk" + "_live_", 32), "a Stripe key"),
    ("vault-hvs", lambda: _fake("hv" + "s.", 90), "a Vault token"),
    ("vault-legacy", lambda: _fake("s" + ".", 24), "a Vault token"),
    ("pem", lambda: "-----BEGIN RSA " + "PRIVATE KEY-----", "a PEM private key"),
    ("random-token", lambda: _fake("", 40), "a long random-looking token"),
    ("hex-token", lambda: _fake("", 40, "0123456789abcdef"), "a long random-looking token"),
    ("url-password", lambda: "postgres://loader:" + _fake("", 12) + "@db.internal:5432/app",
     "a URL with a password"),
]


@pytest.mark.parametrize(("make", "kind"), [(m, k) for _, m, k in SECRETS],
                         ids=[i for i, _, _ in SECRETS])
def test_each_secret_format_is_refused(
    make, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    value = make()
    text = HEAD + "    owner: team-x\n    description: " + f'"{value}"' + "\n"
    err = _load_bad(tmp_path, monkeypatch, text)
    assert err.one_line().startswith("inv.yaml:11:18: agents[0].description: "), err.one_line()
    assert kind in err.message
    assert value not in err.one_line()


@pytest.mark.parametrize("key", ["password", "secret_access_key", "api_key", "client_secret",
                                 "token", "authToken", "secret-id"])
def test_secret_named_key_needs_a_reference(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = HEAD + _y(f"""
        credentials:
          - name: c
            tags:
              {key}: hunter2-but-longer
    """)
    err = _load_bad(tmp_path, monkeypatch, text)
    assert err.one_line().startswith(f"inv.yaml:13:{len(key) + 9}: credentials[0].tags.{key}: "
                                     "a field named like a secret holds a literal value")
    assert "hunter2" not in err.one_line()


def test_secret_named_field_accepts_a_keyring_reference(tmp_path: Path) -> None:
    text = HEAD.replace('address: "https://vault.example.com:8200"}',
                        'address: "https://vault.example.com:8200", '
                        'token: "keyring:keyshift/vault-prod-token"}')
    loaded = loads_inventory(text, base_dir=tmp_path)
    src = loaded.source("vault-prod")
    assert src.token == "keyring:keyshift/vault-prod-token"  # type: ignore[union-attr]


def test_secret_in_a_comment_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = _fake("xox" + "b-", 40)
    err = _load_bad(tmp_path, monkeypatch, HEAD + f"    # old token: {token}\n")
    assert err.one_line().startswith("inv.yaml:10:18: a comment looks like it holds a literal")
    assert token not in err.one_line()


def test_secret_like_key_is_not_repeated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = _fake("gh" + "p_", 36, seed=3)
    cases = [
        (HEAD + f"    {token}: x\n", 10, "a key here looks like a literal secret"),
        (HEAD + f"    {token}: x\n    {token}: y\n", 11, "duplicate key '<secret-like key>'"),
    ]
    for text, line, phrase in cases:
        err = _load_bad(tmp_path, monkeypatch, text)
        shown = err.one_line() + "".join(traceback.format_exception(err))
        assert token not in shown, shown
        assert err.line == line and phrase in err.message


def test_secrets_are_checked_before_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an unknown key AND a secret: the secret is reported, and the schema's message (which could
    # quote input) never runs
    token = _fake("sk" + "_live_", 30)
    err = _load_bad(tmp_path, monkeypatch, f"agentz: []\nstripe: {token}\n")
    assert "looks like a literal secret" in err.message
    assert err.line == 2


def test_first_problem_in_file_order_and_all_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _y("""
        agents:
          - name: a
            environment: qa
          - name: b
            environment: dev
            ownr: x
          - name: c
    """)
    err = _load_bad(tmp_path, monkeypatch, text)
    assert isinstance(err, InventoryError)
    assert err.line == 3 and "agents[0].environment" in err.one_line()
    lines = err.report().splitlines()
    assert [p.line for p in err.problems] == [3, 6, 7]
    assert lines[1].startswith("inv.yaml:6:5: agents[1].ownr: unknown field 'ownr'")
    assert lines[2].startswith("inv.yaml:7:5: agents[2]: missing required field 'environment'")


def test_dates_timestamps_merge_keys_and_yaml11_words(tmp_path: Path) -> None:
    text = HEAD + _y("""
            owner: "yes"
        credentials:
          - &base
            name: a
            source: declared
            kind: api-key
            provider: openai
            environment: prod
            created: 2026-01-31
            last_used: 2026-02-01T00:00:00Z
          - <<: *base
            name: b
            environment: dev
        policies:
          owners_by_environment: {prod: team-sre}
    """)
    loaded = loads_inventory(text, base_dir=tmp_path)
    a, b = loaded.inventory.credentials
    assert a.created == date(2026, 1, 31)
    assert a.last_used == date(2026, 2, 1)
    assert (b.name, b.environment, b.provider, b.created) == ("b", "dev", "openai", a.created)
    agent = loaded.agent("support-bot")
    assert agent.owner == "yes"


def test_loaded_inventory_lookups(tmp_path: Path) -> None:
    inv = tmp_path / "conf" / "inv.yaml"
    inv.parent.mkdir()
    inv.write_text(HEAD + "    identities:\n      - {type: workspace, path: ws/support}\n")
    loaded = load_inventory(inv)
    assert isinstance(loaded, LoadedInventory)
    assert loaded.path == inv.resolve()
    assert loaded.base_dir == inv.parent.resolve()
    assert loaded.resolve_path("ws/support") == (inv.parent / "ws" / "support").resolve()
    assert loaded.agent("support-bot").environment == "prod"
    assert loaded.source("vault-prod").type == "vault"
    assert [s.name for s in loaded.sources_of_type("openbao", "vault")] == [
        "vault-sandbox", "vault-prod"]
    assert loaded.location(("agents", 0, "name")) == f"{inv}:8:11"
    with pytest.raises(NotFoundError) as info:
        loaded.agent("support-bt")
    assert info.value.hint == "did you mean 'support-bot'?"
    with pytest.raises(NotFoundError):
        loaded.credential("openai")
    err = loaded.error(("agents", 0, "environment"), "not allowed here")
    assert err.one_line() == f"{inv}:9:18: agents[0].environment: not allowed here"


# --- the sample ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample() -> LoadedInventory:
    return load_inventory(SAMPLE)


def test_sample_loads_with_the_promised_shape(sample: LoadedInventory) -> None:
    inv = sample.inventory
    assert len(inv.agents) >= 8
    assert sample.environments == ["dev", "prod", "staging"]
    assert {s.name: s.type for s in inv.sources} == {
        "vault-sandbox": "openbao", "aws-sandbox": "aws", "keyring-local": "keyring",
        "declared": "declared",
    }
    sb = inv.sandbox
    assert sb is not None and sb.vault_source == "vault-sandbox" and sb.aws_source == "aws-sandbox"
    counts = {
        "vault_secrets": len(sb.vault_secrets), "vault_policies": len(sb.vault_policies),
        "aws_secrets": len(sb.aws_secrets), "aws_parameters": len(sb.aws_parameters),
        "iam_users": len(sb.iam_users), "keyring_entries": len(sb.keyring_entries),
        "declared": len(inv.credentials),
    }
    assert all(n > 0 for n in counts.values()), counts
    assert sum(counts.values()) >= 40, counts
    assert counts["vault_policies"] == len(inv.agents)  # one per agent
    assert inv.policies.default_owner is None
    assert {str(k): v.max_age_days for k, v in inv.policies.by_sensitivity.items()} == {
        "high": 90, "medium": 180, "low": 365}


def test_sample_identities_and_paths(sample: LoadedInventory) -> None:
    types = {i.type for a in sample.inventory.agents for i in a.identities}
    assert {"vault-approle", "aws-iam-user", "keyring", "workspace"} <= types
    for agent in sample.inventory.agents:
        assert agent.identities, agent.name
        for ident in agent.identities:
            if ident.type == "workspace":
                ws = sample.resolve_path(ident.path)
                assert ws == (REPO / "demo" / "workspaces" / agent.name).resolve()
    for cred in sample.inventory.credentials:
        for target in cred.delivered_to:
            if target.type == "env-file":
                assert target.path.startswith("demo/workspaces/")


def test_sample_has_its_deliberate_problems(sample: LoadedInventory) -> None:
    inv = sample.inventory
    sb = inv.sandbox
    assert sb is not None
    assert any(a.owner is None for a in inv.agents)
    assert any(c.owner is None for c in inv.credentials)
    assert any(s.owner is None for s in sb.vault_secrets)
    assert any(c.expires is None for c in inv.credentials)                # never expires
    assert any(len(c.agents) >= 2 for c in inv.credentials)               # shared by agents
    iam_users = [i.name for a in inv.agents for i in a.identities if i.type == "aws-iam-user"]
    assert any(iam_users.count(u) >= 2 for u in iam_users)                 # shared IAM user
    last_used = [c.last_used for c in inv.credentials if c.last_used]
    assert (max(last_used) - min(last_used)).days > 90                     # one gone stale
    assert any(  # over-broad policy
        "secret/data/*" in rule and {"create", "delete"} <= set(rule["secret/data/*"])
        for p in sb.vault_policies for rule in p.rules
    )
    # the same value in different environments, through same_value_as and declared_values
    keys = value_keys(inv)
    envs = {}
    for s in sb.vault_secrets:
        envs[f"vault:{s.mount}/{s.path}"] = s.environment
    cross = [k for k, (_, target) in keys.items()
             if target in envs and k in envs and envs[k] != envs[target]]
    assert cross, "no same_value_as across environments"
    assert sample.value_root("declared:anthropic-dev") == "declared:anthropic-prod"
    assert sample.credential("anthropic-dev").environment != sample.credential(
        "anthropic-prod").environment
    assert any(s.age_days > 90 for s in sb.vault_secrets)


def test_sample_has_no_secret_looking_text() -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), start=1):
        assert secretlike.scan_text(line) == [], f"line {number}"


@pytest.mark.parametrize("text", [
    "Answers customer tickets in the help desk and drafts refunds for review.",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/billing/*",
    "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
    "demo/workspaces/research-scraper/.env",
    "https://vault.staging.internal.example.com:8200/v1/secret/data/agents/support-bot",
    "2026-02-01T00:00:00.123456+00:00",
    "customer-support-bot-prod-2024-v2-openai-key",
    "MyAgentServiceRole2024Prod",
    "OPENAI_API_KEY_FOR_SUPPORT_BOT_PRODUCTION",
    "3f2b8a4e-9c1d-4f6a-8b7e-2d5c9a1f0e3b",
    "vault:secret/agents/research-scraper/proxy#password",
    "keyring:keyshift-demo/ops-webhook",
    "task-runner-for-agents-in-production",
    "sk-learn pipelines",
])
def test_ordinary_text_is_not_a_secret(text: str) -> None:
    assert secretlike.scan_text(text) == []


# --- the CLI ------------------------------------------------------------------------------


@pytest.mark.skipif(not (REPO / "console" / "cli.py").exists(), reason="CLI not written yet")
def test_cli_reports_one_line_and_exit_2(tmp_path: Path) -> None:
    # `sync` is a command that must load the inventory before doing anything else.
    (tmp_path / "inv.yaml").write_text("agents:\n  - name: a\n    environment: qa\n")
    home = tmp_path / "home"
    home.mkdir()
    keyshift = Path(sys.executable).parent / "keyshift"
    proc = subprocess.run(
        [str(keyshift), "--inventory", "inv.yaml", "sync"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"KEYSHIFT_HOME": str(home), "PATH": "/usr/bin:/bin", "HOME": str(home)},
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "inv.yaml:3:18: agents[0].environment: must be 'dev', 'staging' or 'prod'" in lines[0]
