"""Fuzzing the inventory loader: whatever the input, it loads or raises ConfigError, nothing else
(no YAML, pydantic, Unicode or recursion error escapes), and the error is one positioned line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console.config import LoadedInventory, loads_inventory
from console.errors import ConfigError

SAMPLE_TEXT = (Path(__file__).resolve().parent.parent / "sample_inventory.yaml").read_text(
    encoding="utf-8"
)
SAMPLE_LINES = SAMPLE_TEXT.splitlines(keepends=True)
# Mutations aim past the comment header: Hypothesis favours small numbers, and a mutated
# comment proves little.
BODY = next(i for i, line in enumerate(SAMPLE_LINES) if line.startswith("version:"))

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,  # keep no example database in the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYSHIFT_HOME", str(tmp_path / "keyshift-home"))


def _check(text: str | bytes) -> LoadedInventory | None:
    try:
        return loads_inventory(text, file="fuzz.yaml", base_dir="/nonexistent")
    except ConfigError as exc:
        line = exc.one_line()
        assert line.startswith("fuzz.yaml")
        assert "\n" not in line
        assert exc.exit_code == 2
        if exc.line is not None:
            assert exc.line >= 1 and (exc.column is None or exc.column >= 1)
        return None


# Text made of YAML's own punctuation and the inventory's words reaches far deeper into the
# loader than arbitrary Unicode does.
_TOKENS = [*" \n\t:-[]{},&*!|>'\"#%@`?~<=0123456789abcxyz",
           "agents", "sources", "name", "type", "environment", "prod", "- ", ": ", "\n  ",
           "<<", "!!str", "!!python/name:os.system", "&a", "*a", "---", "null", "2026-01-01",
           "keyring:svc/name", "\u00e9", "\x00", "\ufeff", "\u2028"]
_YAMLISH = st.lists(st.sampled_from(_TOKENS), max_size=80).map("".join)


@FUZZ
@given(st.one_of(st.text(max_size=300), _YAMLISH))
def test_random_text(text: str) -> None:
    _check(text)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _check(data)


@st.composite
def _mutated_sample(draw: st.DrawFn) -> str:
    lines = list(SAMPLE_LINES)
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "truncate", "insert", "indent"]))
        i = draw(st.integers(min(BODY, len(lines) - 1), len(lines) - 1))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap" and len(lines[i]) > 2:
            j = draw(st.integers(0, len(lines[i]) - 2))
            s = lines[i]
            lines[i] = s[:j] + s[j + 1] + s[j] + s[j + 2:]
        elif op == "truncate":
            text = "".join(lines)
            cut = draw(st.integers(min(len("".join(SAMPLE_LINES[:BODY])), len(text)), len(text)))
            lines = text[:cut].splitlines(keepends=True)
        elif op == "insert":
            s = lines[i]
            j = draw(st.integers(0, len(s)))
            ch = draw(st.sampled_from([*":-[]{}&*!|>'\"# \t\x00", "\u00e9", "  "]))
            lines[i] = s[:j] + ch + s[j:]
        elif op == "indent":
            lines[i] = draw(st.sampled_from(["  ", " ", "\t"])) + lines[i]
    return "".join(lines)


@FUZZ
@given(_mutated_sample())
def test_mutations_of_the_sample(text: str) -> None:
    _check(text)


# Random but well-formed YAML whose keys are the inventory's own field names, so validation
# errors from deep inside the schema are mapped back to positions.
_FIELDS = ["agents", "sources", "credentials", "sandbox", "policies", "name", "type",
           "environment", "identities", "source", "role", "owner", "path", "vault_secrets",
           "same_value_as", "declared_values", "by_sensitivity", "high", "max_age_days",
           "delivered_to", "tags", "agents", "version"]
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from(
        ["dev", "prod", "openbao", "aws", "keyring", "declared", "vault-approle", "workspace",
         "env-file", "a", "vault-sandbox", "keyring:svc/name", "2026-01-01", ""]),
)
_TREES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(_FIELDS), children, max_size=5),
    ),
    max_leaves=30,
)


@FUZZ
@given(st.dictionaries(st.sampled_from(_FIELDS), _TREES, max_size=5),
       st.sampled_from([False, True]))
def test_random_structures(data: dict, flow: bool) -> None:
    text = yaml.safe_dump(data, default_flow_style=flow, sort_keys=False)
    _check(text)


def test_fuzz_harness_sees_both_outcomes() -> None:
    # the harness must be able to tell a good file from a bad one, or the fuzzing proves nothing
    assert _check(SAMPLE_TEXT) is not None
    assert _check(SAMPLE_TEXT.replace("environment: prod", "environment: production", 1)) is None
