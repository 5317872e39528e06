"""Shared fixtures: a data dir per test, and one real sandbox (OpenBao + moto) per session.

Run the suite inside the keyring wrapper (a private D-Bus session with gnome-keyring):
``KEYSHIFT_TEST_KEYRING=1 scripts/with-keyring .venv/bin/python -m pytest -q``.

Fixtures
--------
``keyshift_home`` (function)
    A fresh, empty ``KEYSHIFT_HOME`` (tmp dir) for tests that need no servers; returns its
    Path. It changes only ``KEYSHIFT_HOME``: a session sandbox stays reachable (see below).

``sandbox`` (session)
    Starts the sandbox once with ``console.sandbox.up()`` and yields its ``SandboxState``
    (``.vault_addr``, ``.moto_endpoint``, ``.vault_audit_log``, ...). For the session,
    ``KEYSHIFT_HOME`` points at a session tmp dir and ``KEYSHIFT_SANDBOX_DIR`` at its
    ``sandbox/`` folder, so ``load_state()``, ``console.connections`` for
    ``sandbox: true`` sources, ``vault_client()`` and ``aws_client()`` all find it even inside
    ``keyshift_home``. Its credentials are in the keyring under ``keyshift-sandbox``.
    ``down()`` runs at the end of the session, whatever happened. Do not call ``down()`` on
    it; a test that wants its own sandbox uses ``private_sandbox``.

``seeded_sandbox`` (session)
    The ``sandbox`` seeded once with ``BUILTIN_INVENTORY`` (below); yields a ``Seeded`` with
    ``.state``, ``.inventory`` (console.inventory.Inventory), ``.base_dir`` (Path: env files
    of declared credentials land under it, e.g. ``workspaces/support/.env``) and ``.summary``
    (the first seed's SeedSummary). Tests may add to the sandbox but should not delete or
    change what the seed planted: other tests read it.

``private_sandbox_env`` (function)
    A private ``KEYSHIFT_HOME``, ``KEYSHIFT_SANDBOX_DIR`` and keyring service
    (``KEYSHIFT_SANDBOX_KEYRING_SERVICE``) for a test that runs its own ``up()``/``down()``
    (a second sandbox must not overwrite the session one's keyring entries). Teardown calls
    ``down()`` for it, so no server outlives the test even when it fails. Returns its sandbox
    dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from console.inventory import Inventory
from console.sandbox import SandboxState, SeedSummary

_ENV_VARS = ("KEYSHIFT_HOME", "KEYSHIFT_SANDBOX_DIR", "KEYSHIFT_SANDBOX_KEYRING_SERVICE")

# A small inventory exercising every kind the seed plants. Owners, environments and ages are
# chosen so findings have something to find: a reused value across environments (vault
# agents/ci/deploy shares agents/support/openai; declared openai-ci shares openai-support), an
# unused grant (agents/ci/unused is never read), an old high-sensitivity secret.
BUILTIN_INVENTORY: dict = {
    "version": 1,
    "agents": [
        {
            "name": "support-bot",
            "owner": "team-support",
            "environment": "prod",
            "identities": [
                {"type": "vault-approle", "source": "sandbox-vault", "role": "support-bot",
                 "policies": ["support-read"]},
                {"type": "aws-iam-user", "source": "sandbox-aws", "name": "support-bot"},
                {"type": "keyring", "source": "local-keyring", "service": "keyshift-agent-support"},
                {"type": "workspace", "path": "workspaces/support",
                 "env_files": ["workspaces/support/.env"]},
            ],
        },
        {
            "name": "ci-runner",
            "owner": "team-platform",
            "environment": "dev",
            "identities": [
                {"type": "vault-approle", "source": "sandbox-vault", "role": "ci-runner",
                 "policies": ["ci-read"]},
                {"type": "aws-iam-user", "source": "sandbox-aws", "name": "ci-runner"},
            ],
        },
    ],
    "sources": [
        {"name": "sandbox-vault", "type": "openbao", "sandbox": True, "kv_mounts": ["secret"]},
        {"name": "sandbox-aws", "type": "aws", "sandbox": True},
        {"name": "local-keyring", "type": "keyring"},
        {"name": "declared", "type": "declared"},
    ],
    "credentials": [
        {
            "name": "openai-support",
            "source": "declared",
            "kind": "api-key",
            "provider": "openai",
            "owner": "team-support",
            "environment": "prod",
            "sensitivity": "high",
            "agents": ["support-bot"],
            "delivered_to": [
                {"type": "env-file", "path": "workspaces/support/.env", "var": "OPENAI_API_KEY"},
                {"type": "keyring", "ref": "keyring:keyshift-agent-support/openai"},
            ],
        },
        {
            "name": "openai-ci",
            "source": "declared",
            "kind": "api-key",
            "provider": "openai",
            "owner": "team-platform",
            "environment": "dev",
            "agents": ["ci-runner"],
            "delivered_to": [
                {"type": "env-file", "path": "workspaces/ci/.env", "var": "OPENAI_API_KEY"},
            ],
        },
    ],
    "sandbox": {
        "vault_source": "sandbox-vault",
        "aws_source": "sandbox-aws",
        "vault_secrets": [
            {"path": "agents/support/openai", "owner": "team-support", "environment": "prod",
             "scope": "chat completions", "sensitivity": "high", "age_days": 200},
            {"path": "agents/support/db", "owner": "team-support", "environment": "prod",
             "keys": ["username", "password"], "generator": {"length": 24}},
            {"path": "agents/ci/deploy", "owner": "team-platform", "environment": "dev",
             "same_value_as": "vault:secret/agents/support/openai"},
            {"path": "agents/ci/unused", "owner": "team-platform", "environment": "dev",
             "seed_reads": False},
        ],
        "vault_policies": [
            {"name": "support-read", "rules": [
                {"secret/data/agents/support/*": ["read"]},
                {"secret/metadata/agents/support/*": ["read", "list"]},
            ]},
            {"name": "ci-read", "rules": [{"secret/data/agents/ci/*": ["read"]}]},
        ],
        "aws_secrets": [
            {"name": "prod/support/stripe", "owner": "team-support", "environment": "prod",
             "scope": "refunds", "sensitivity": "high",
             "generator": {"prefix": "sk_test_", "length": 32}},
        ],
        "aws_parameters": [
            {"name": "/prod/support/db-password", "owner": "team-support", "environment": "prod",
             "same_value_as": "vault:secret/agents/support/db#password"},
        ],
        "iam_users": [
            {"name": "support-bot", "keys": 2, "owner": "team-support", "environment": "prod",
             "policy_arns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]},
            {"name": "ci-runner", "keys": 1, "owner": "team-platform", "environment": "dev",
             "inline_policy": {"Version": "2012-10-17", "Statement": [
                 {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}},
        ],
        "keyring_entries": [
            {"service": "keyshift-agent-support", "name": "slack-token", "owner": "team-support",
             "environment": "prod", "generator": {"prefix": "xoxb-"}},
        ],
        "declared_values": {"openai-support": None, "openai-ci": "openai-support"},
    },
}

# What the first seed of BUILTIN_INVENTORY creates, per kind (SeedSummary.created).
BUILTIN_SEED_COUNTS = {
    "vault-secret": 4,
    "vault-policy": 2,
    "vault-auth": 1,
    "approle-role": 2,
    "aws-secret": 1,
    "ssm-parameter": 1,
    "iam-user": 2,
    "iam-access-key": 3,
    "iam-policy": 2,
    "keyring-entry": 1,
    "declared-delivery": 3,
}


def builtin_inventory(agent_keyring_service: str = "keyshift-agent-support") -> Inventory:
    """BUILTIN_INVENTORY validated; ``agent_keyring_service`` renames its keyring service, for a
    test that seeds a private sandbox (the keyring is shared by the whole test session)."""
    text = json.dumps(BUILTIN_INVENTORY).replace("keyshift-agent-support", agent_keyring_service)
    return Inventory.model_validate(json.loads(text))


@dataclass
class Seeded:
    state: SandboxState
    inventory: Inventory
    base_dir: Path
    summary: SeedSummary


@contextlib.contextmanager
def _sigterm_tears_down() -> Iterator[None]:
    """The servers are detached, so a SIGTERM'd session (e.g. under `timeout`) would leave them
    running: turn SIGTERM into KeyboardInterrupt, on which pytest still runs teardowns."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def keyshift_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "keyshift-home"
    home.mkdir()
    monkeypatch.setenv("KEYSHIFT_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxState]:
    from console import sandbox as sb

    home = tmp_path_factory.mktemp("sandbox-home")
    with pytest.MonkeyPatch.context() as mp, _sigterm_tears_down():
        mp.setenv("KEYSHIFT_HOME", str(home))
        mp.setenv("KEYSHIFT_SANDBOX_DIR", str(home / "sandbox"))
        mp.delenv("KEYSHIFT_SANDBOX_KEYRING_SERVICE", raising=False)
        try:
            yield sb.up()
        finally:
            # KEYSHIFT_SANDBOX_DIR may have been changed by a test's monkeypatch and restored;
            # set it again so down() finds this sandbox's state
            os.environ["KEYSHIFT_SANDBOX_DIR"] = str(home / "sandbox")
            os.environ["KEYSHIFT_HOME"] = str(home)
            os.environ.pop("KEYSHIFT_SANDBOX_KEYRING_SERVICE", None)
            sb.down()


@pytest.fixture(scope="session")
def seeded_sandbox(
    sandbox: SandboxState, tmp_path_factory: pytest.TempPathFactory
) -> Seeded:
    from console import sandbox as sb

    base_dir = tmp_path_factory.mktemp("seed-base")
    inventory = builtin_inventory()
    summary = sb.seed(inventory, base_dir)
    return Seeded(state=sandbox, inventory=inventory, base_dir=base_dir, summary=summary)


@pytest.fixture
def vault(seeded_sandbox: Seeded) -> Any:
    """An hvac client for the seeded session sandbox, as root."""
    from console.sandbox import vault_client

    return vault_client(seeded_sandbox.state)


@pytest.fixture
def private_sandbox_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from console import sandbox as sb

    home = tmp_path / "private-home"
    sdir = home / "sandbox"
    sdir.mkdir(parents=True)
    monkeypatch.setenv("KEYSHIFT_HOME", str(home))
    monkeypatch.setenv("KEYSHIFT_SANDBOX_DIR", str(sdir))
    service = f"keyshift-sandbox-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("KEYSHIFT_SANDBOX_KEYRING_SERVICE", service)
    try:
        yield sdir
    finally:
        sb.down()


def _svg_lines(svg: str) -> list[str]:
    """The text a snapshot shows, row by row (an SVG screenshot puts each row in one <g>)."""
    import html
    import re

    rows: dict[str, list[str]] = {}
    for y, text in re.findall(r'<text[^>]*\by="([\d.]+)"[^>]*>([^<]*)</text>', svg):
        rows.setdefault(y, []).append(html.unescape(text))
    ordered = sorted(rows.items(), key=lambda row: float(row[0]))
    return ["".join(parts).rstrip() for _y, parts in ordered]


@pytest.fixture
def snap_compare(snap_compare, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """The plugin's snap_compare, but a mismatch says what differs in the log itself.

    CI keeps only the log, not snapshot_report.html, so a mismatch seen only there
    would otherwise be a bare ``assert False``.
    """
    import difflib
    import pickle

    from pytest_textual_snapshot import node_to_report_path

    def compare(app, **kwargs):  # type: ignore[no-untyped-def]
        if snap_compare(app, **kwargs):
            return True
        data = pickle.loads(node_to_report_path(request.node).read_bytes())
        expected, actual = _svg_lines(data[1]), _svg_lines(data[2])
        diff = "\n".join(difflib.unified_diff(expected, actual, "snapshot", "now", lineterm=""))
        raise AssertionError(
            "the screen differs from the snapshot:\n"
            + (diff or "(the same text; colours or styles differ)")
        )

    return compare
