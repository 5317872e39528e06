"""Shared by the TUI tests and bench/tui.py: deterministic credentials and screen text."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from rich.console import Console

from console.model import Credential, Grant

FROZEN = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")
OWNERS = ("team-a", "team-b", "platform", None)
ENVS = ("prod", "staging", "dev")
KINDS = ("kv", "secretsmanager", "iam-key", "api-key", "ssm-parameter")
SOURCES = ("vault-prod", "aws-main", "declared")


def synthetic(i: int, now: datetime = FROZEN, *, marker: str | None = None) -> Credential:
    """Credential number ``i``: every field a function of ``i``, so filters have known answers.
    Names containing ``zulu`` (i % 37 == 5) are the needle set of the filter tests."""
    word = WORDS[i % len(WORDS)]
    needle = "-zulu" if i % 37 == 5 else ""
    source = SOURCES[i % len(SOURCES)]
    kind = KINDS[i % len(KINDS)]
    name = f"svc-{i:06d}-{word}{needle}"
    if marker:
        name = f"{name}-{marker}"
    expires = None if i % 4 == 0 else now + timedelta(days=(i % 60) - 10, hours=1)
    return Credential(
        id=f"{source}:{kind}:{name}",
        source=source,
        kind=kind,
        native_id=name,
        name=name,
        location=f"secret/agents/{word}/{i}",
        owner=OWNERS[i % len(OWNERS)],
        environment=ENVS[i % len(ENVS)],
        scope=f"read {word}",
        sensitivity="high" if i % 3 == 0 else "medium",
        created_at=now - timedelta(days=200 + i % 100),
        rotated_at=now - timedelta(days=i % 120) if i % 5 else None,
        expires_at=expires,
        last_used_at=None if i % 6 == 1 else now - timedelta(days=i % 30, hours=2),
        fingerprint=f"{i:064x}",
        agents=[f"agent-{i % 7}"] if i % 5 != 2 else [],
        tags={"team": f"t{i % 3}"},
        status="gone" if i % 29 == 3 else "active",
        stale_since=now - timedelta(days=1) if i % 31 == 7 else None,
        stale_error="vault-prod: permission denied" if i % 31 == 7 else None,
    )


def grants_for(cred: Credential) -> list[Grant]:
    return [
        Grant(
            agent=agent,
            credential_id=cred.id,
            capabilities=["read"],
            chain=[f"agent:{agent}", f"approle:{agent}-role", "policy:agents-read",
                   f"rule:{cred.location}"],
            used=cred.last_used_at is not None,
        )
        for agent in cred.agents
    ]


def screen_text(app) -> str:  # type: ignore[no-untyped-def]
    """The current screen (with any screens beneath a modal) as plain text, as painted."""
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), force_terminal=True,
        color_system="truecolor", record=True, legacy_windows=False, safe_box=False,
    )
    console.print(
        app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    )
    return console.export_text()
