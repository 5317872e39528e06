"""Short references (`show openai-prod`) and the audit search behind `keyshift audit ls`."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_cli import assert_one_line_error, run
from test_cli import env as env  # the CLI fixture (declared-only inventory, real keyring)
from test_store import apply, mk

from console.audit import AuditLog
from console.audit_query import csv_safe, parse_audit_filter
from console.errors import NotFoundError, UsageError
from console.refs import resolve_credential
from console.store import Store

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/billing/stripe-AbC123"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KEYSHIFT_HOME", str(tmp_path / "home"))
    s = Store(tmp_path / "ks.db")
    yield s
    s.close()


def test_a_reference_is_an_id_a_unique_name_or_an_id_tail(store: Store) -> None:
    apply(
        store,
        [
            mk(1, name="openai-prod"),
            mk(2, name="shared"),
            mk(3, name="shared"),
            mk(
                4,
                source="aws-main",
                id=f"aws-main:secretsmanager:{ARN}",
                kind="secretsmanager",
                name="prod/billing/stripe",
                native_id=ARN,
            ),
            mk(
                5,
                source="aws-main",
                id="aws-main:iam-key:AKIAEXAMPLE0001",
                kind="iam-key",
                name="ci-user",
                native_id="AKIAEXAMPLE0001",
            ),
        ],
        source="vault-prod",
        complete=False,
    )
    assert resolve_credential(store, "vault-prod:kv:secret/app1").name == "openai-prod"
    assert resolve_credential(store, "openai-prod").id == "vault-prod:kv:secret/app1"
    # a tail after "/" or ":" ...
    assert resolve_credential(store, "secret/app1").name == "openai-prod"
    assert resolve_credential(store, "AKIAEXAMPLE0001").name == "ci-user"
    # ... but never the middle of a word: "pp1" is no reference to secret/app1
    with pytest.raises(NotFoundError):
        resolve_credential(store, "pp1")
    # a Secrets Manager secret by its name, without the ARN's random suffix
    assert resolve_credential(store, "prod/billing/stripe").native_id == ARN
    assert resolve_credential(store, "billing/stripe").native_id == ARN
    # two credentials share a name: both listed, exit code 2 (a usage error)
    with pytest.raises(UsageError) as ambiguous:
        resolve_credential(store, "shared")
    message = ambiguous.value.one_line()
    assert "vault-prod:kv:secret/app2" in message and "vault-prod:kv:secret/app3" in message
    assert ambiguous.value.exit_code == 2
    with pytest.raises(NotFoundError) as missing:
        resolve_credential(store, "openai")
    assert "openai-prod" in missing.value.one_line()  # the hint names what is close


def test_show_and_rotate_take_a_short_reference_and_list_candidates(tmp_path, env) -> None:
    assert run(tmp_path, env, "sync").returncode == 0
    show = run(tmp_path, env, "show", "openai-support-prod", "--format", "json")
    assert show.returncode == 0, show.stderr
    assert json.loads(show.stdout)["id"] == "declared:api-key:openai-support-prod"
    dry = run(tmp_path, env, "rotate", "stripe-billing-dev", "--dry-run", "--format", "json")
    assert json.loads(dry.stdout)["credential"] == "declared:payment-key:stripe-billing-dev"
    assert_one_line_error(
        run(tmp_path, env, "show", "openai"), 3, "did you mean openai-support-prod"
    )
    runs = run(tmp_path, env, "runs", "--credential", "openai-support-prod", "--format", "json")
    assert runs.returncode == 0 and json.loads(runs.stdout) == []


def test_audit_filter_grammar() -> None:
    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    terms = parse_audit_filter("actor:Alice !action:sync.* since:2h until:2026-12-02 leak", now)
    assert [(t.field, t.value, t.negate) for t in terms] == [
        ("actor", "alice", False),
        ("action", "sync.*", True),
        ("since", now - timedelta(hours=2), False),
        ("until", datetime(2026, 12, 2, tzinfo=UTC), False),
        ("text", "leak", False),
    ]
    for bad, needle in (
        ("colour:red", "unknown field"),
        ("since:yesterday", "cannot read the time"),
        ("actor:", "needs a value"),
        ("!", "inverts nothing"),
    ):
        with pytest.raises(UsageError, match=needle):
            parse_audit_filter(bad, now)
    assert csv_safe("=HYPERLINK(1)") == "'=HYPERLINK(1)" and csv_safe("plain") == "plain"


def test_audit_search_matches_every_term_newest_first(store: Store) -> None:
    log = AuditLog(store)
    log.append("alice", "rotation.start", "vault-prod:kv:secret/app1", {"run": "r1"})
    log.append("bob", "sync.source", "vault-prod", {"new": 3})
    log.append("alice", "rotation.done", "aws-main:iam-key:AKIA1", {"run": "r2"})
    log.append("carol", "secret.set", "keyring:x", {"note": "rotation[1]?"})
    assert [e.seq for e in log.search("actor:alice")] == [3, 1]
    assert [e.seq for e in log.search("action:rotation.*")] == [3, 1]
    assert [e.seq for e in log.search("!actor:alice")] == [4, 2]
    assert [e.seq for e in log.search("target:iam-key")] == [3]
    assert [e.seq for e in log.search("r2")] == [3]  # free text reads the detail too
    # glob characters a person did not mean as a pattern are taken literally
    assert [e.seq for e in log.search("rotation[1]?")] == [4]
    assert [e.seq for e in log.search("action:ROTATION.START")] == [1]
    assert log.search("since:1h until:1d") == []  # since after until: nothing
    assert [e.seq for e in log.search("since:1h")] == [4, 3, 2, 1]
    assert [e.seq for e in log.search("", limit=2, offset=1)] == [3, 2]


def test_audit_ls_json_csv_and_bad_filter(tmp_path, env) -> None:
    assert run(tmp_path, env, "sync").returncode == 0
    listed = run(tmp_path, env, "audit", "ls", "action:sync.*", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert rows and all(r["action"].startswith("sync.") for r in rows)
    assert [r["seq"] for r in rows] == sorted((r["seq"] for r in rows), reverse=True)
    none = json.loads(run(tmp_path, env, "audit", "ls", "actor:nobody", "--format", "json").stdout)
    assert none == []
    table = list(
        csv.reader(io.StringIO(run(tmp_path, env, "audit", "ls", "--format", "csv").stdout))
    )
    assert table[0] == ["seq", "at", "actor", "action", "target", "detail", "hash"]
    assert (
        len(table)
        == len(
            json.loads(run(tmp_path, env, "audit", "tail", "-n", "999", "--format", "json").stdout)
        )
        + 1
    )
    assert_one_line_error(run(tmp_path, env, "audit", "ls", "when:today"), 2, "unknown field")
