"""The filter language: parsing, Python semantics, and SQL (both store plans) == matches()."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console.errors import UsageError
from console.model import Credential, Grant
from console.query import FIELDS, Term, parse
from console.store import Store, ts
from console.vocabulary import NO_USE_RECORDED

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def cred(**kw) -> Credential:
    base = {
        "id": "vault-prod:kv:secret/a",
        "source": "vault-prod",
        "kind": "kv",
        "native_id": "secret/a",
        "name": "support-openai",
        "location": "secret/agents/support/openai",
    }
    base.update(kw)
    return Credential(**base)


# --- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sup", [Term("text", "text", "sup")]),
        ("SuP", [Term("text", "text", "sup")]),
        ("name:Foo", [Term("name", "eq", "Foo")]),
        ("name=foo", [Term("name", "eq", "foo")]),
        ("name~Fo", [Term("name", "contains", "fo")]),
        ("name:prod-*", [Term("name", "glob", "prod-*")]),
        ("env:prod", [Term("environment", "eq", "prod")]),
        ("environment:prod", [Term("environment", "eq", "prod")]),
        ("!env:dev", [Term("environment", "eq", "dev", negate=True)]),
        ("!sup", [Term("text", "text", "sup", negate=True)]),
        ("owner:none", [Term("owner", "none")]),
        ("owner:None", [Term("owner", "none")]),
        ("agent:none", [Term("agent", "none")]),
        ("agent:bot", [Term("agent", "eq", "bot")]),
        ("tag:team", [Term("tag", "has", key="team")]),
        ("tag:team=pay", [Term("tag", "eq", "pay", key="team")]),
        ("tag=team=pay", [Term("tag", "eq", "pay", key="team")]),
        ("tag~pay", [Term("tag", "contains", "pay")]),
        ("tag:none", [Term("tag", "none")]),
        ("expires:never", [Term("expires", "never")]),
        ("expires:<30d", [Term("expires", "within", 30 * 86400)]),
        ("expires:>2w", [Term("expires", "beyond", 14 * 86400)]),
        ("age:>90d", [Term("age", "beyond", 90 * 86400)]),
        ("age:<12h", [Term("age", "within", 12 * 3600)]),
        ("used:unknown", [Term("used", "unknown")]),
        ("used:never", [Term("used", "never")]),
        ("used:>90", [Term("used", "beyond", 90 * 86400)]),
        ('"two words"', [Term("text", "text", "two words")]),
        ('name:"two words"', [Term("name", "eq", "two words")]),
        ('"a:b"', [Term("text", "text", "a:b")]),
        ('!"x y"', [Term("text", "text", "x y", negate=True)]),
        ("status:stale", [Term("status", "eq", "stale")]),
        ("rotator:manual", [Term("rotator", "eq", "manual")]),
        ("id:aws-main:iam-key:AKIA1", [Term("id", "eq", "aws-main:iam-key:AKIA1")]),
        (
            "env:prod  sup !kind:kv",
            [
                Term("environment", "eq", "prod"),
                Term("text", "text", "sup"),
                Term("kind", "eq", "kv", negate=True),
            ],
        ),
        ("", []),
    ],
)
def test_parse_table(text: str, expected: list[Term]) -> None:
    assert parse(text).terms == expected


def test_unknown_field_names_it_and_lists_valid_ones() -> None:
    with pytest.raises(UsageError) as err:
        parse("env:prod colour:blue")
    assert "'colour'" in err.value.message
    assert err.value.hint is not None
    for name in ("owner", "env", "tag", "agent", "expires"):
        assert name in err.value.hint
    assert set(err.value.hint.removeprefix("fields: ").split(", ")) == set(FIELDS)


@pytest.mark.parametrize(
    "text",
    ["age~3d", "expires:soon", "used:<d", 'name:"open', "name:", "!", "age:never", "used:none"],
)
def test_invalid_expressions_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse(text)


def test_sort_is_validated_and_aliases_resolve() -> None:
    assert parse("", sort="expires").sort_column == "expires_at"
    assert parse("", sort="env").sort_column == "environment"
    with pytest.raises(UsageError) as err:
        parse("", sort="colour")
    assert "colour" in err.value.message and "name" in (err.value.hint or "")
    q = parse("x")
    q.sort = "bogus"  # the CLI assigns after parsing; the store must still refuse it
    with pytest.raises(UsageError):
        _ = q.sort_column


# --- Python semantics ---------------------------------------------------------------------


def test_inversion_is_exact_complement() -> None:
    creds = [
        cred(id="a", owner=None),
        cred(id="b", owner="team-a"),
        cred(id="c", owner="TEAM-A"),
        cred(id="d", owner=""),
    ]
    pos, neg = parse("owner:team-a"), parse("!owner:team-a")
    assert [c.id for c in creds if pos.matches(c)] == ["b", "c"]
    assert [c.id for c in creds if neg.matches(c)] == ["a", "d"]
    assert [c.id for c in creds if parse("owner:none").matches(c)] == ["a", "d"]
    assert [c.id for c in creds if parse("!owner:none").matches(c)] == ["b", "c"]


def test_free_text_searches_every_listed_column_case_insensitively() -> None:
    c = cred(owner="Payments", tags={"cost": "CC-9"}, agents=["Support-Bot"], scope="kv read")
    for word in ("OPENAI", "agents/sup", "paym", "cc-9", "cost=cc", "support-b", "kv rea", "prod"):
        assert parse(f'"{word}"').matches(c), word
    assert not parse("zzz").matches(c)
    assert not parse("!openai").matches(c)


def test_time_terms() -> None:
    c = cred(
        expires_at=NOW + timedelta(days=10),
        created_at=NOW - timedelta(days=200),
        rotated_at=NOW - timedelta(days=40),
        last_used_at=NOW - timedelta(days=100),
    )
    yes = ["expires:<30d", "age:>30d", "age:<41d", "used:>90d", "used:<101d"]
    no = ["expires:never", "expires:>30d", "age:>90d", "used:unknown", "used:<90d"]
    for text in yes:
        assert parse(text).matches(c, now=NOW), text
    for text in no:
        assert not parse(text).matches(c, now=NOW), text
    empty = cred()
    assert parse("expires:never").matches(empty, now=NOW)
    assert parse("used:unknown").matches(empty, now=NOW)
    assert not parse("age:>1d").matches(empty, now=NOW)
    assert parse("!age:>1d").matches(empty, now=NOW)  # unknown age: inverted term matches


def test_tags_agents_status_glob() -> None:
    c = cred(tags={"Team": "Payments"}, agents=["bot-a", "bot-b"], stale_since=NOW)
    assert parse("tag:team=payments").matches(c)
    assert parse("tag:TEAM").matches(c)
    assert not parse("tag:team=pay").matches(c)
    assert parse("tag:team=pay*").matches(c)
    assert parse("agent:BOT-B").matches(c)
    assert not parse("agent:bot").matches(c)
    assert parse("agent~bot").matches(c)
    assert parse("agent:bot-*").matches(c)
    assert parse("status:stale").matches(c)
    assert parse("status:active").matches(c)
    assert parse("name:support-*").matches(c)
    assert not parse("name:*-openai-*").matches(c)
    assert parse("name:*OPENAI").matches(c)


# --- SQL == matches(): property test over random data, both store plans ----------------------

WORDS = ["support", "payments", "search", "openai", "stripe", "github", "Slack", "data"]
AGENTS = ["bot-a", "bot-b", "Crawler", "helper"]


def _random_creds(n: int, seed: int = 11) -> list[Credential]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        team, svc = rnd.choice(WORDS), rnd.choice(WORDS)
        source = rnd.choice(["vault-prod", "aws-main", "declared"])

        def maybe(value, p=0.3):  # type: ignore[no-untyped-def]
            return None if rnd.random() < p else value

        def when(days: int):  # type: ignore[no-untyped-def]
            return maybe(
                NOW + timedelta(days=rnd.randint(-days, days), minutes=rnd.randint(0, 999))
            )

        tags = {
            k: rnd.choice(WORDS) for k in rnd.sample(["team", "Cost", "tier"], rnd.randint(0, 2))
        }
        kind = rnd.choice(["kv", "iam-key", "api-key", "vault-token"])
        if kind == "iam-key" and rnd.random() < 0.5:
            tags["last_used"] = NO_USE_RECORDED  # AWS's word: no use in the key's life
        if kind == "vault-token" and rnd.random() < 0.3:
            tags["keyshift"] = "own"  # keyshift's own token: its requests are no use
        out.append(
            Credential(
                id=f"{source}:kv:{i:04d}",
                source=source,
                kind=kind,
                native_id=f"{i:04d}",
                name=rnd.choice([f"{team}-{svc}-{i}", f"{team.upper()}_{svc}", f"{svc} {team}"]),
                location=rnd.choice([f"secret/agents/{team}/{svc}", f"arn:aws:{svc}:{i}", ""]),
                owner=rnd.choice([None, "", team, team.title()]),
                environment=maybe(rnd.choice(["dev", "staging", "prod"])),
                scope=maybe(rnd.choice(["read", "read write", "admin *"])),
                sensitivity=maybe(rnd.choice(["high", "medium", "low"])),
                created_at=when(400),
                rotated_at=when(100),
                expires_at=when(60),
                last_used_at=when(200),
                rotator=maybe(rnd.choice(["vault-kv", "manual"])),
                tags=tags,
                agents=sorted(set(rnd.sample(AGENTS, rnd.randint(0, 2)))),
                status=rnd.choice(["active", "active", "inactive", "gone"]),
                stale_since=NOW if rnd.random() < 0.1 else None,
            )
        )
    return out


def cover(path: Path, since: datetime) -> None:
    """vault-prod's audit log read without a gap since ``since`` (a sync's read position)."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO read_positions(source, log, inode, offset, head, malformed, "
            "covers_since, updated_at) VALUES ('vault-prod', '/var/log/audit.log', 1, 0, '', "
            "0, ?1, ?1)",
            (ts(since),),
        )


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("query") / "k.db"
    store = Store(path)
    creds = _random_creds(400)
    store.bulk_insert_credentials(creds)
    # vault-prod's audit log read without a gap since 100 days ago: what makes used:never
    # (its KV secrets and tokens made since, with no use) tell from used:unknown
    cover(path, NOW - timedelta(days=100))
    yield store, {c.id: c for c in creds}
    store.close()


def test_bulk_insert_derives_grants_for_agents(loaded) -> None:  # type: ignore[no-untyped-def]
    store, creds = loaded
    some = next(c for c in creds.values() if c.agents)
    assert sorted(g.agent for g in store.grants_for_credential(some.id)) == some.agents
    assert store.get_credential(some.id).agents == some.agents


_values = st.sampled_from(WORDS + AGENTS + ["sup", "ai", "a", "read", "kv", "prod", "x y", "0"])
_field_terms = st.one_of(
    st.builds(
        lambda f, op, v: f"{f}{op}{v}",
        st.sampled_from(
            [
                "name",
                "kind",
                "source",
                "owner",
                "env",
                "scope",
                "sensitivity",
                "status",
                "rotator",
                "location",
                "agent",
            ]
        ),
        st.sampled_from([":", "~"]),
        st.sampled_from(
            WORDS
            + AGENTS
            + [
                "dev",
                "prod",
                "high",
                "kv",
                "iam-key",
                "none",
                "stale",
                "read",
                "manual",
                "active",
                "gone",
                "sup*",
                "*-*",
                "aws-main",
                "bot-*",
            ]
        ),
    ),
    st.sampled_from(
        [
            "tag:team",
            "tag:cost",
            "tag:none",
            "tag:team=support",
            "tag:TEAM=Data",
            "tag~team=s",
            "tag:tier=s*",
            "expires:never",
            "expires:<30d",
            "expires:>10d",
            "age:>90d",
            "age:<30d",
            "used:unknown",
            "used:never",
            "used:>60d",
            "used:<20d",
            "owner:none",
            "agent:none",
        ]
    ),
    _values.map(lambda v: f'"{v}"'),
)
_terms = st.builds(lambda neg, t: ("!" if neg else "") + t, st.booleans(), _field_terms)
_queries = st.tuples(
    st.lists(_terms, min_size=0, max_size=3),
    st.sampled_from(
        [
            "name",
            "id",
            "owner",
            "expires",
            "last_used",
            "age",
            "agents",
            "env",
            "created",
            "sensitivity",
            "location",
        ]
    ),
    st.booleans(),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_queries)
def test_sql_matches_python_for_both_plans(loaded, spec) -> None:  # type: ignore[no-untyped-def]
    store, _ = loaded
    terms, sort, desc = spec
    query = parse(" ".join(terms), sort=sort, descending=desc)
    with time_machine.travel(NOW, tick=False):
        stored = {c.id: c for c in store.all_credentials(None)}
        expected = sorted(
            (c for c in stored.values() if query.matches(c)), key=query.sort_key, reverse=desc
        )
        want = [c.id for c in expected]
        for plan in ("walk", "drive"):
            got = [c.id for c in store.page_credentials(query, 0, 1000, plan=plan)]
            assert got == want, (plan, query.text, sort, desc)
            page = [c.id for c in store.page_credentials(query, 7, 13, plan=plan)]
            assert page == want[7:20]
            assert store.count_credentials(query, plan=plan) == len(want)
        assert [c.id for c in store.all_credentials(query)] == want
        assert store.count_credentials(query) == len(want)
        assert store.count_credentials(query, cap=5) == min(5, len(want))
        assert [c.id for c in store.page_credentials(query, 0, 60)] == want[:60]


def test_records_round_trip_through_the_store(loaded) -> None:  # type: ignore[no-untyped-def]
    store, creds = loaded
    for cid in list(creds)[:50]:
        got = store.get_credential(cid)
        assert got is not None
        want = creds[cid]
        for field in ("name", "location", "owner", "tags", "agents", "status", "expires_at",
                      "created_at", "stale_since", "scope"):  # fmt: skip
            assert getattr(got, field) == getattr(want, field), (cid, field)


def test_grants_feed_agent_filter(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "k.db")
    sync = store.begin_sync(["s"], "t")
    creds = [cred(id=f"s:kv:{i}", source="s", native_id=str(i), name=f"n{i}") for i in range(3)]
    grants = [
        Grant(agent="Bot-A", credential_id="s:kv:1"),
        Grant(agent="x", credential_id="s:kv:2"),
    ]
    store.apply_source(sync, "s", creds, grants, [], [], True)
    for plan in ("walk", "drive"):
        assert [c.id for c in store.page_credentials(parse("agent:bot-a"), plan=plan)] == ["s:kv:1"]
        assert [c.id for c in store.page_credentials(parse("agent:none"), plan=plan)] == ["s:kv:0"]
        assert [c.id for c in store.page_credentials(parse("!agent:x"), plan=plan)] == [
            "s:kv:0",
            "s:kv:1",
        ]
    store.close()


def test_used_never_only_where_evidence_covers_the_whole_life(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``never`` is no use under evidence that covers the credential's whole life: Vault's
    audit log read without a gap since before a KV secret or token was made (not keyshift's
    own token), AWS's record of an access key. Everything else without a use is
    ``unknown``. The filters, the rows' ``no_use_evidence`` and ``matches()`` agree."""
    since = NOW - timedelta(days=100)
    made = NOW - timedelta(days=30)

    def c(name: str, kind: str, source: str = "vault-prod", **kw) -> Credential:  # type: ignore[no-untyped-def]
        return cred(id=f"{source}:{kind}:{name}", source=source, kind=kind, native_id=name,
                    name=name, **{"created_at": made, **kw})

    creds = [
        c("kv-covered", "kv"),
        c("kv1-covered", "kv-v1"),
        c("kv-before-the-log", "kv", created_at=NOW - timedelta(days=200)),
        c("kv-used", "kv", last_used_at=NOW - timedelta(days=1)),
        c("kv-no-birth", "kv", created_at=None),
        c("token-covered", "vault-token"),
        c("token-keyshift", "vault-token", tags={"keyshift": "own"}),
        c("lease", "vault-lease"),
        c("kv-elsewhere", "kv", source="vault-dev"),
        c("key-no-use", "iam-key", source="aws", tags={"last_used": NO_USE_RECORDED}),
        c("key-unasked", "iam-key", source="aws"),
        c("secret", "secretsmanager", source="aws"),
    ]
    store = Store(tmp_path / "k.db")
    store.bulk_insert_credentials(creds)
    cover(tmp_path / "k.db", since)
    never = {"kv-covered", "kv1-covered", "token-covered", "key-no-use"}
    unknown = {x.name for x in creds if x.last_used_at is None} - never
    with time_machine.travel(NOW, tick=False):
        rows = {x.name: x for x in store.all_credentials()}
        assert {n for n, x in rows.items() if x.no_use_evidence} == never
        assert rows["kv-covered"].no_use_evidence == "vault:audit"
        assert rows["key-no-use"].no_use_evidence == "aws:GetAccessKeyLastUsed"
        for text, want in [("used:never", never), ("used:unknown", unknown),
                           ("!used:never", set(rows) - never), ("used:never kind:kv", {
                               "kv-covered"})]:
            query = parse(text)
            assert {x.name for x in rows.values() if query.matches(x)} == want, text
            for plan in ("walk", "drive"):
                got = {x.name for x in store.page_credentials(query, 0, 100, plan=plan)}
                assert got == want, (text, plan)
            assert store.count_credentials(query) == len(want)
        # the log's coverage restarting later turns its "never" into "unknown"
        with sqlite3.connect(tmp_path / "k.db") as conn:
            conn.execute("UPDATE read_positions SET covers_since = ?", (ts(NOW),))
        assert {x.name for x in store.all_credentials(parse("used:never"))} == {"key-no-use"}
    store.close()
