"""The scorecard and `keyshift report`: each property judged on a credential that has it, one
that does not and one keyshift cannot tell about; the cards' numbers worked out by hand; the
findings history from the audit log; and the files: Markdown tables, one HTML page that loads
nothing and runs nothing, store text escaped, no fingerprint."""

from __future__ import annotations

import hashlib
import html
import os
import re
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine

from console import findings, scorecard
from console.audit import AuditLog
from console.cli_report import md, to_html, to_markdown
from console.config import LoadedInventory, loads_inventory
from console.findings.facts import gather
from console.model import Credential, Grant, ReadPosition, UsageEvent
from console.store import Store

KEYSHIFT = str(Path(sys.executable).parent / "keyshift")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
EVIL_NAME = "<script>alert(1)</script>"
EVIL_AGENT = "<img src=x onerror=alert(1)>"

INVENTORY = """\
version: 1
sources:
  - {name: v, type: openbao, sandbox: true, kv_mounts: [secret]}
  - {name: nolog, type: openbao, address: "http://127.0.0.1:8200", kv_mounts: [secret]}
  - {name: declared, type: declared}
policies:
  by_sensitivity:
    high: {max_age_days: 90, max_ttl_days: 30}
  owners_by_environment: {staging: team-staging}
agents:
  - name: alpha
    owner: team-a
    environment: prod
    identities: [{type: vault-approle, source: v, role: alpha}]
  - name: beta
    owner: team-b
    environment: dev
    identities: [{type: vault-approle, source: v, role: beta}]
  - name: idle
    owner: team-c
    environment: dev
"""


def fp(name: str) -> str:
    """A fingerprint as the store holds one: it must never reach a report."""
    return "hmac-sha256:" + hashlib.sha256(name.encode()).hexdigest()


def kv(name: str, source: str = "v", **kw: Any) -> Credential:
    data: dict[str, Any] = {
        "id": f"{source}:kv:secret/{name}", "source": source, "kind": "kv",
        "native_id": f"secret/{name}", "name": name, "location": f"secret/{name}",
        "owner": "team-a", "environment": "prod", "sensitivity": "high",
        "created_at": NOW - timedelta(days=10), "rotated_at": NOW - timedelta(days=10),
        "fingerprint": fp(name),
    }
    data.update(kw)
    return Credential(**data)


def declared(name: str, **kw: Any) -> Credential:
    data: dict[str, Any] = {
        "id": f"declared:api-key:{name}", "source": "declared", "kind": "api-key",
        "native_id": name, "name": name, "owner": "team-b", "environment": "dev",
        "created_at": NOW - timedelta(days=10), "fingerprint": fp(name),
    }
    data.update(kw)
    return Credential(**data)


def grant(agent: str, cred: Credential, rule: str | None, caps: tuple[str, ...] = ("read",)
          ) -> Grant:
    chain = [f"agent:{agent}", f"approle:{agent}", "policy:p"]
    if rule is not None:
        chain.append(f"rule:{rule}")
    return Grant(agent=agent, credential_id=cred.id, capabilities=list(caps), chain=chain)


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "keyshift.db"
        self.store = Store(self.db)
        self.audit = AuditLog(self.store)
        self.loaded: LoadedInventory = loads_inventory(INVENTORY, file="inventory.yaml",
                                                       base_dir=tmp_path)
        (tmp_path / "inventory.yaml").write_text(INVENTORY)

    def put(self, source: str, creds: list[Credential], grants: list[Grant] = (),  # type: ignore[assignment]
            usage: list[UsageEvent] = (),  # type: ignore[assignment]
            covers_since: datetime | None = None) -> None:
        sync = self.store.begin_sync([source], "tester")
        positions = [ReadPosition(log="/var/log/audit.log", inode=1, offset=10, head="h",
                                  covers_since=covers_since)] if covers_since else []
        self.store.apply_source(sync, source, creds, list(grants), list(usage), [], True,
                                positions)
        self.store.finish_sync(sync, "ok", {})

    def refresh(self) -> Any:
        return findings.refresh(self.store, self.loaded, self.audit, "tester",
                                now=datetime.now(UTC))


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KEYSHIFT_HOME", str(tmp_path / "home"))
    w = World(tmp_path)
    yield w
    w.store.close()


# Each credential is built to have, lack, or leave unknown particular properties; the
# comments say which (owner / scope / lifetime / trail), worked out from the definitions in
# console/scorecard.py, not from running it.
OWNED_NARROW = kv("owned-narrow", last_used_at=NOW - timedelta(days=1),
                  last_used_evidence="vault:audit")  # y / y / y (policy max age) / y
WILD = kv("wild", sensitivity=None, created_at=None, rotated_at=None)  # y / n / n / unknown
ORPHAN = kv("orphan", owner=None)  # n / unknown / y / y (a usage event)
DEFAULTED = kv("defaulted", owner=None, environment="staging")  # y (team-staging) / n / y / unk
GONE_PERSON = kv("gone-person", owner="alice", environment="dev", sensitivity=None,
                 expires_at=NOW + timedelta(days=20),
                 rotated_at=NOW - timedelta(days=200))  # n / y / y (expiry) / unknown
PROD_LEAK = kv("prod-leak", last_used_at=NOW - timedelta(days=1),
               last_used_evidence="vault:audit")  # y / n (scope finding) / y / y
NO_LOG = kv("no-log", source="nolog", owner="team-a", environment="prod")  # y / y / y / n
FOREVER = declared("forever-key", sensitivity="high", last_used_at=NOW - timedelta(days=5),
                   last_used_evidence="declared")  # y / y / n (no expiry) / n (declared)
EVIL = declared(EVIL_NAME, owner=EVIL_NAME, expires_at=NOW + timedelta(days=20))  # n / y / y / n


def v_grants(*, without: tuple[Credential, ...] = ()) -> list[Grant]:
    return [g for g in [
        grant("alpha", OWNED_NARROW, "secret/data/owned-narrow"),
        grant("alpha", WILD, "secret/data/*"),
        grant("beta", ORPHAN, "secret/data/orphan", ("unknown",)),
        grant("beta", DEFAULTED, "secret/data/defaulted", ("read", "sudo")),
        grant("beta", GONE_PERSON, "secret/data/gone-person"),
        grant("beta", PROD_LEAK, "secret/data/prod-leak"),  # a dev agent reaching prod
    ] if g.credential_id not in {c.id for c in without}]


def populate(world: World) -> None:
    world.put("v", [OWNED_NARROW, WILD, ORPHAN, DEFAULTED, GONE_PERSON, PROD_LEAK], v_grants(),
              [UsageEvent(credential_id=ORPHAN.id, at=NOW - timedelta(days=2),
                   identity="approle:beta", evidence="vault:audit")])
    world.put("nolog", [NO_LOG])
    world.put("declared", [FOREVER, EVIL], [
        grant("beta", FOREVER, None),
        grant(EVIL_AGENT, EVIL, None),  # an agent only the grants know, with a hostile name
    ], [UsageEvent(credential_id=FOREVER.id, at=NOW - timedelta(days=5), identity="person",
                   evidence="declared")])


def cells(card: scorecard.Card) -> dict[str, tuple[int, int, int]]:
    return {p: (t.yes, t.no, t.unknown) for p, t in card.tallies.items()}


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def build(world: World) -> scorecard.Scorecard:
    return scorecard.build(world.store, world.loaded, NOW)


# -- the properties --------------------------------------------------------------------


def test_each_credential_judged(world: World) -> None:
    populate(world)
    with time_machine.travel(NOW, tick=False):
        world.refresh()
    card = build(world)
    judged = {  # rebuilt the way build() does, to look at single credentials
        j.credential.name: (j.known_owner, j.narrow_scope, j.set_lifetime, j.audit_trail)
        for j in scorecard.judge(
            gather(world.store, world.loaded, NOW),
            world.store.credentials_with_recorded_use(except_evidence=("declared",)),
            {PROD_LEAK.id},
        ).values()
    }
    assert judged == {
        "owned-narrow": ("yes", "yes", "yes", "yes"),
        "wild": ("yes", "no", "no", "unknown"),
        "orphan": ("no", "unknown", "yes", "yes"),
        "defaulted": ("yes", "no", "yes", "unknown"),
        "gone-person": ("no", "yes", "yes", "unknown"),
        "prod-leak": ("yes", "no", "yes", "yes"),
        "no-log": ("yes", "yes", "yes", "no"),
        "forever-key": ("yes", "yes", "no", "no"),
        EVIL_NAME: ("no", "yes", "yes", "no"),
    }
    # the same from the store's findings (scope.prod-from-non-prod names prod-leak)
    assert card.overall.credentials == 9
    assert cells(card.overall) == {
        "known_owner": (6, 3, 0), "narrow_scope": (5, 3, 1),
        "set_lifetime": (7, 2, 0), "audit_trail": (3, 3, 3),
    }
    assert card.overall.tallies["audit_trail"].share == 0.5  # 3 of 6: unknowns left out


def test_a_never_used_credential_has_its_audit_trail(world: World) -> None:
    """An audit log that covers a secret's or a token's whole life and records no use is a
    trail with an answer (never used): yes. Without that coverage: unknown; a token on a
    source whose log keyshift reads is unknown too, not "nothing could show its use"."""
    def made(name: str, kind: str, days: int) -> Credential:
        return Credential(id=f"v:{kind}:{name}", source="v", kind=kind, native_id=name,
                          name=name, owner="team-a", created_at=NOW - timedelta(days=days))

    covered, old, token = made("covered", "kv", 10), made("old", "kv", 90), made(
        "tok", "vault-token", 90)
    world.put("v", [covered, old, token], covers_since=NOW - timedelta(days=30))
    judged = {
        j.credential.name: j.audit_trail
        for j in scorecard.judge(gather(world.store, world.loaded, NOW), set(), set()).values()
    }
    assert judged == {"covered": "yes", "old": "unknown", "tok": "unknown"}


def test_agent_and_owner_cards(world: World) -> None:
    populate(world)
    with time_machine.travel(NOW, tick=False):
        world.refresh()
    card = build(world)
    agents = {c.name: c for c in card.agents}
    assert list(agents) == [EVIL_AGENT, "alpha", "beta", "idle"]
    assert agents[EVIL_AGENT].note == "not in the inventory"

    alpha = agents["alpha"]  # owned-narrow, wild
    assert alpha.credentials == 2
    assert cells(alpha) == {"known_owner": (2, 0, 0), "narrow_scope": (1, 1, 0),
                            "set_lifetime": (1, 1, 0), "audit_trail": (1, 0, 1)}
    assert nonzero(alpha.open_findings) == {"high": 1}  # its wildcard (prod agent: high)

    beta = agents["beta"]  # orphan, defaulted, gone-person, prod-leak, forever-key
    assert beta.credentials == 5
    assert cells(beta) == {"known_owner": (3, 2, 0), "narrow_scope": (2, 2, 1),
                           "set_lifetime": (4, 1, 0), "audit_trail": (2, 1, 2)}
    # root/sudo (critical); prod-leak from a dev agent and orphan's missing owner (high);
    # gone-person's unknown owner and forever-key's missing expiry (medium)
    assert nonzero(beta.open_findings) == {"critical": 1, "high": 2, "medium": 2}

    assert agents["idle"].credentials == 0 and agents["idle"].open_total == 0

    owners = {c.name: c for c in card.owners}
    assert list(owners) == [EVIL_NAME, "alice", "team-a", "team-b", "team-c", "team-staging",
                            None]  # nobody's credentials last
    team_a = owners["team-a"]  # owned-narrow, wild, prod-leak, no-log
    assert team_a.credentials == 4
    assert cells(team_a) == {"known_owner": (4, 0, 0), "narrow_scope": (2, 2, 0),
                             "set_lifetime": (3, 1, 0), "audit_trail": (2, 1, 1)}
    # prod-leak's finding (its credential) and alpha's wildcard (an agent team-a owns)
    assert nonzero(team_a.open_findings) == {"high": 2}
    # forever-key's missing expiry, and beta's root/sudo (an agent team-b owns)
    assert nonzero(owners["team-b"].open_findings) == {"critical": 1, "medium": 1}
    assert owners["team-staging"].credentials == 1  # owners_by_environment
    assert cells(owners[None]) == {"known_owner": (0, 1, 0), "narrow_scope": (0, 0, 1),
                                   "set_lifetime": (1, 0, 0), "audit_trail": (1, 0, 0)}
    assert owners["team-c"].credentials == 0
    assert nonzero(card.overall.open_findings) == {"critical": 1, "high": 3, "medium": 3}


def test_a_finding_naming_another_agent_stays_off_this_card(world: World) -> None:
    populate(world)
    world.put("v", [OWNED_NARROW, WILD, ORPHAN, DEFAULTED, GONE_PERSON, PROD_LEAK],
              [*v_grants(), grant("alpha", PROD_LEAK, "secret/data/prod-leak")])
    with time_machine.travel(NOW, tick=False):
        world.refresh()
    agents = {c.name: c for c in build(world).agents}
    # prod-leak is now alpha's too: its sharing finding (no agent) counts for both, the
    # prod-from-non-prod finding naming beta only for beta
    assert nonzero(agents["alpha"].open_findings) == {"high": 1, "medium": 1}
    assert nonzero(agents["beta"].open_findings) == {"critical": 1, "high": 2, "medium": 3}


def test_accepted_scope_finding_still_wide_and_lapse_reopens(world: World) -> None:
    populate(world)
    with time_machine.travel(NOW, tick=False):
        world.refresh()
    (leak,) = [r for r in world.store.findings() if r["rule"] == "scope.prod-from-non-prod"]
    world.store.accept_finding(leak["id"], NOW + timedelta(days=10), "migrating", "tester")
    card = build(world)
    beta = next(c for c in card.agents if c.name == "beta")
    assert cells(beta)["narrow_scope"] == (2, 2, 1)  # accepting does not narrow the grant
    assert nonzero(beta.open_findings) == {"critical": 1, "high": 1, "medium": 2}
    later = scorecard.build(world.store, world.loaded, NOW + timedelta(days=11))
    beta = next(c for c in later.agents if c.name == "beta")
    assert beta.open_findings["high"] == 2  # the acceptance lapsed: open again


def test_without_an_inventory(world: World) -> None:
    populate(world)
    card = scorecard.build(world.store, None, NOW)
    # owners are not checked against an inventory; a sensitivity's maximum age is unknown;
    # a Vault KV secret's trail is unknown (whether its audit log is read is not known)
    assert cells(card.overall)["known_owner"] == (7, 2, 0)
    owned = next(c for c in card.owners if c.name == "team-a")
    assert cells(owned)["set_lifetime"] == (0, 1, 3)  # wild: no sensitivity, so no
    assert cells(owned)["audit_trail"] == (2, 0, 2)


def test_ages_and_unknown_apart(world: World) -> None:
    populate(world)
    card = build(world)
    assert card.ages == [("0-30 days", 7), ("31-90 days", 0), ("91-180 days", 0),
                         ("181-365 days", 1), ("over 365 days", 0)]
    assert card.age_unknown == 1  # wild: no rotation or creation time, not counted as new


def test_findings_over_time_from_the_audit_log(world: World) -> None:
    populate(world)
    with time_machine.travel(NOW, tick=False):
        first = world.refresh()
    # next day: orphan leaves its source (its no-owner finding resolves); refreshed again
    # later that day after gone-person leaves too (its unknown-owner finding resolves)
    world.put("v", [OWNED_NARROW, WILD, DEFAULTED, GONE_PERSON, PROD_LEAK],
              v_grants(without=(ORPHAN,)))
    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        middle = world.refresh()
    world.put("v", [OWNED_NARROW, WILD, DEFAULTED, PROD_LEAK],
              v_grants(without=(ORPHAN, GONE_PERSON)))
    with time_machine.travel(NOW + timedelta(days=1, hours=2), tick=False):
        world.refresh()
    card = build(world)
    points = card.timeline
    assert to_html(card).count("<polyline") == 2  # open and accepted, over two days
    assert [p.day.isoformat() for p in points] == ["2026-12-01", "2026-12-02"]
    assert (points[0].open, points[0].new, points[0].refreshes) == (first.open, first.open, 1)
    assert (first.open, middle.open) == (7, 6)
    # the day's last refresh gives its counts; its changes add up
    assert (points[1].open, points[1].resolved, points[1].new, points[1].refreshes) == (
        5, 2, 0, 2)


# -- the files -------------------------------------------------------------------------


def test_markdown_has_the_tables_and_escapes(world: World) -> None:
    populate(world)
    with time_machine.travel(NOW, tick=False):
        world.refresh()
    text = to_markdown(build(world))
    assert ("| agent | credentials | known owner | narrow scope | set lifetime | audit trail "
            "| critical | high | medium | low | info |") in text
    assert ("| alpha | 2 | 100% (2 of 2) | 50% (1 of 2) | 50% (1 of 2) | 100% (1 of 1), "
            "1 unknown | 0 | 1 | 0 | 0 | 0 |") in text
    assert ("| beta | 5 | 60% (3 of 5) | 50% (2 of 4), 1 unknown | 80% (4 of 5) | "
            "67% (2 of 3), 2 unknown | 1 | 2 | 2 | 0 | 0 |") in text
    assert "| idle | 0 | - | - | - | - | 0 | 0 | 0 | 0 | 0 |" in text
    assert "| (no owner) | 1 | 0% (0 of 1) | n/a, 1 unknown |" in text
    assert "| unknown | 1 |" in text  # the age table's own row
    assert EVIL_NAME not in text and EVIL_AGENT not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert md("a|b*c_[d](e)`f`\nz") == "a\\|b\\*c\\_\\[d\\](e)\\`f\\` z"


def _self_contained(page: str) -> None:
    assert "<script" not in page.lower()
    assert "http://" not in page and "https://" not in page
    # no attribute that fetches (escaped store text may say "src=", but never inside a tag)
    assert not re.search(r"<[^>]*\b(?:src|href|action|data)\s*=", page, re.IGNORECASE)
    assert "@import" not in page and "url(" not in page and "<link" not in page.lower()
    assert "default-src 'none'" in html.unescape(page)  # the Content-Security-Policy


def test_html_is_self_contained_and_escaped(world: World) -> None:
    populate(world)
    with time_machine.travel(NOW, tick=False):
        world.refresh()
    page = to_html(build(world))
    _self_contained(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert page.count("<svg") == 2 and "<polyline" not in page  # one refresh: a point, no line
    assert "<title>over 365 days: 0</title>" in page


@pytest.mark.parametrize("fmt,files", [("md,html", {"report.md", "report.html"}),
                                       ("html", {"report.html"})])
def test_cli_writes_private_files(world: World, tmp_path: Path, fmt: str,
                                  files: set[str]) -> None:
    populate(world)
    with time_machine.travel(NOW, tick=False):
        world.refresh()
    world.store.close()
    out = tmp_path / "out" / "nested"
    proc = cli(tmp_path, "report", "--out", str(out), "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == files
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    stored = {c.fingerprint for c in Store(world.db, read_only=True).all_credentials()}
    assert len(stored) == 9
    for name in files:
        path = out / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = path.read_text()
        assert not any(f in text for f in stored if f)  # no fingerprint, hence no value
        assert not any(f.split(":", 1)[1][:16] in text for f in stored if f)
        if name.endswith(".html"):
            _self_contained(text)
    if "report.md" in files:
        assert "| beta | 5 |" in (out / "report.md").read_text()


def test_cli_bad_usage(world: World, tmp_path: Path) -> None:
    populate(world)
    world.store.close()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for args in (["--out", str(a_file)], ["--out", str(tmp_path / "o"), "--format", "pdf"],
                 ["--out", str(tmp_path / "o"), "--format", ","]):
        proc = cli(tmp_path, "report", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert a_file.read_text() == "x"
    assert not (tmp_path / "o").exists()


def test_cli_without_an_inventory(world: World, tmp_path: Path) -> None:
    populate(world)
    world.store.close()
    proc = subprocess.run(
        [KEYSHIFT, "--db", str(world.db), "--inventory", str(tmp_path / "missing.yaml"),
         "report", "--out", str(tmp_path / "o"), "--format", "md"],
        capture_output=True, text=True, timeout=120, env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "no inventory at" in proc.stderr
    assert "Inventory: none (owners not checked)." in (tmp_path / "o" / "report.md").read_text()


def _env(tmp_path: Path) -> dict[str, str]:
    return {"KEYSHIFT_HOME": str(tmp_path / "home"), "PATH": os.environ.get("PATH", "/usr/bin"),
            "HOME": str(tmp_path / "home")}


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [KEYSHIFT, "--db", str(tmp_path / "keyshift.db"),
         "--inventory", str(tmp_path / "inventory.yaml"), *args],
        capture_output=True, text=True, timeout=120, env=_env(tmp_path),
    )
