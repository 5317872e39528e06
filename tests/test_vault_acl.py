"""keyshift's reading of Vault / OpenBao ACL policies, checked against the server itself.

For each case the policies are written to the sandbox OpenBao, a token holding exactly them is
made, and ``sys/capabilities`` answers for a set of paths; keyshift's ``Acl`` must give the
same answer for every path, or say it cannot know (templated rules) — never a different one.
Cases are hand-picked (overlapping globs, ``+`` segments, deny, list-only, exact against glob,
old-style ``policy =``, JSON policies, trailing slashes) and generated from fixed seeds.
"""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import pytest

from console.sources.vault_policy import Acl, PolicyError, parse_policy

Case = list[list[tuple[str, list[str]]]]  # policies, each a list of (pattern, capabilities)

CAPS = ["read", "list", "create", "update", "delete", "sudo", "patch"]
SEGMENTS = ["a", "b", "ab", "abc"]
PATHS_FROM = ["a", "b", "ab", "abc", "x", ""]


def hcl(rules: list[tuple[str, list[str]]]) -> str:
    return "\n".join(
        f'path "{pattern}" {{\n  capabilities = {json.dumps(caps)}\n}}' for pattern, caps in rules
    )


def server_answers(vault: Any, case: Case, paths: list[str], *, as_json: bool = False) -> tuple[
    dict[str, list[str]], Acl
]:
    """Write the case's policies, make a token with only them, and ask the server."""
    names, rules = [], []
    for rules_of_one in case:
        name = f"kst-acl-{uuid.uuid4().hex[:10]}"
        text = (
            json.dumps({"path": {p: {"capabilities": c} for p, c in rules_of_one}})
            if as_json
            else hcl(rules_of_one)
        )
        vault.sys.create_or_update_policy(name=name, policy=text)
        names.append(name)
        rules += parse_policy(name, text)
    token = vault.auth.token.create(policies=names, no_default_policy=True, ttl="5m")["auth"][
        "client_token"
    ]
    try:
        body = vault.adapter.post(
            "/v1/sys/capabilities", json={"token": token, "paths": paths}
        )
    finally:
        vault.auth.token.revoke(token)
        for name in names:
            vault.sys.delete_policy(name)
    data = body.get("data") or body  # hvac's JSON adapter hands back the parsed body
    return {p: sorted(data[p]) for p in paths}, Acl(rules)


def assert_agrees(vault: Any, case: Case, paths: list[str], **kw: Any) -> None:
    server, acl = server_answers(vault, case, paths, **kw)
    wrong = []
    for path in paths:
        ours = acl.capabilities(path)
        assert ours.unknown is None, (path, ours.unknown)
        if sorted(ours.server_form) != server[path]:
            wrong.append(f"{path!r}: keyshift {sorted(ours.server_form)}, server {server[path]}")
    assert not wrong, f"policies {case}\n" + "\n".join(wrong)


HAND_PICKED: list[tuple[str, Case, list[str]]] = [
    (
        "the longer glob wins and denies; an exact rule beats every glob",
        [
            [("secret/*", ["read"])],
            [("secret/data/private/*", ["deny"])],
            [("secret/data/private/ok", ["read"])],
            [("secret/*", ["update"])],
        ],
        ["secret/data/public/x", "secret/data/private/x", "secret/data/private/ok", "other/x"],
    ),
    (
        "a + segment placed later beats a glob placed earlier, and the reverse",
        [[("secret/+/x/*", ["list"]), ("secret/data/*", ["read"]), ("secret/data/+", ["create"])]],
        ["secret/data/x/y", "secret/meta/x/y", "secret/data/q", "secret/data/q/r", "secret/data"],
    ),
    (
        "fewer + segments win; a non-prefix beats a prefix at the same position",
        [[("k/+/+/c", ["read"]), ("k/+/b/c", ["update"]), ("k/+/b/c*", ["delete"]),
          ("k/+/b/*", ["list"])]],
        ["k/a/b/c", "k/a/b/cd", "k/a/x/c", "k/a/b/", "k/a/b/z/y"],
    ),
    (
        "deny on one policy's pattern removes what another policy grants on the same pattern",
        [[("s/data/app/*", ["read", "list"])], [("s/data/app/*", ["deny"])],
         [("s/data/*", ["read"])]],
        ["s/data/app/x", "s/data/other", "s/data/app"],
    ),
    (
        "list-only rules, trailing slashes and a path no rule covers",
        [[("s/metadata/", ["list"]), ("s/metadata/team/*", ["list"]), ("s/data/team/x", ["read"])]],
        ["s/metadata/", "s/metadata", "s/metadata/team/", "s/metadata/team", "s/data/team/x/",
         "s/data/team/y"],
    ),
    (
        "sudo, patch and a glob on a partial segment",
        [[("sys/pol*", ["sudo", "read"]), ("kv/data/ap*", ["patch", "read"]),
          ("kv/data/a*", ["update"])]],
        ["sys/policy", "sys/policies/acl/x", "kv/data/apple", "kv/data/a", "kv/data/b"],
    ),
]


@pytest.mark.parametrize("what,case,paths", HAND_PICKED, ids=[h[0] for h in HAND_PICKED])
def test_hand_picked_policies_agree_with_the_server(
    vault: Any, what: str, case: Case, paths: list[str]
) -> None:
    assert_agrees(vault, case, paths)


def test_json_policies_agree_with_the_server(vault: Any) -> None:
    case: Case = [[("j/+/x", ["read"]), ("j/a/*", ["list"])], [("j/a/x", ["update"])]]
    assert_agrees(vault, case, ["j/a/x", "j/b/x", "j/a/y"], as_json=True)


def test_old_style_policy_rules_agree_with_the_server(vault: Any) -> None:
    name = f"kst-acl-{uuid.uuid4().hex[:10]}"
    text = 'path "o/r/*" { policy = "read" }\npath "o/w/*" { policy = "write" }\n' \
        'path "o/d/*" { policy = "deny" }\npath "o/*" { policy = "sudo" }\n'
    vault.sys.create_or_update_policy(name=name, policy=text)
    token = vault.auth.token.create(policies=[name], no_default_policy=True, ttl="5m")["auth"][
        "client_token"
    ]
    paths = ["o/r/x", "o/w/x", "o/d/x", "o/x"]
    try:
        body = vault.adapter.post(
            "/v1/sys/capabilities", json={"token": token, "paths": paths}
        )
    finally:
        vault.auth.token.revoke(token)
        vault.sys.delete_policy(name)
    data = body.get("data") or body
    acl = Acl(parse_policy(name, text))
    assert {p: sorted(acl.capabilities(p).server_form) for p in paths} == {
        p: sorted(data[p]) for p in paths
    }


def random_pattern(rng: random.Random) -> str:
    depth = rng.randint(1, 4)
    parts = [rng.choice([*SEGMENTS, "+"]) for _ in range(depth)]
    pattern = "/".join(parts)
    ending = rng.random()
    if ending < 0.3 and parts[-1] != "+":
        pattern += "*"  # a glob on a (maybe partial) last segment
    elif ending < 0.5:
        pattern += "/*"
    elif ending < 0.6 and parts[-1] != "+":
        pattern = pattern[:-1] + "*"  # a glob cutting the last segment short
    return pattern


def random_case(rng: random.Random) -> Case:
    case: Case = []
    for _ in range(rng.randint(1, 3)):
        rules = []
        for _ in range(rng.randint(1, 5)):
            caps = ["deny"] if rng.random() < 0.15 else rng.sample(CAPS, rng.randint(1, 3))
            rules.append((random_pattern(rng), caps))
        case.append(rules)
    # now and then the same pattern in two policies, so merging is exercised
    if len(case) > 1 and rng.random() < 0.5:
        pattern, _ = rng.choice(case[0])
        case[1].append((pattern, rng.choice([["deny"], ["list"], ["update", "read"]])))
    return case


def random_paths(rng: random.Random, case: Case, count: int = 24) -> list[str]:
    paths = set()
    patterns = [p for rules in case for p, _ in rules]
    while len(paths) < count:
        if rng.random() < 0.5:
            # a path near one of the patterns: the interesting ones
            base = rng.choice(patterns).rstrip("*")
            parts = [rng.choice(PATHS_FROM[:-1]) if s == "+" else s for s in base.split("/")]
            path = "/".join(parts)
            if rng.random() < 0.5:
                path += rng.choice(["", "c", "/x", "/x/y", "/"])
        else:
            path = "/".join(rng.choice(PATHS_FROM[:-1]) for _ in range(rng.randint(1, 5)))
            if rng.random() < 0.15:
                path += "/"
        if path and not path.startswith("/"):  # the server refuses an empty path
            paths.add(path)
    return sorted(paths)


@pytest.mark.parametrize("seed", range(40))
def test_generated_policies_agree_with_the_server(vault: Any, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(10):
        case = random_case(rng)
        assert_agrees(vault, case, random_paths(rng, case))


def test_a_templated_rule_is_unknown_where_it_may_apply_and_ignored_where_it_cannot(
    vault: Any,
) -> None:
    case: Case = [[
        ("t/data/{{identity.entity.name}}/*", ["read"]),
        ("t/data/shared/*", ["list"]),
        ("u/*", ["read"]),
    ]]
    covered = ["t/data/alice/x", "t/data/shared/x"]  # a template could fill in "shared"
    clear = ["u/a", "t/metadata/x", "v"]
    server, acl = server_answers(vault, case, clear + covered)
    for path in covered:
        answer = acl.capabilities(path)
        assert answer.unknown and "identity.entity.name" in answer.unknown
        assert answer.capabilities == ()  # nothing claimed either way
    for path in clear:
        assert sorted(acl.capabilities(path).server_form) == server[path], path


def test_root_grants_everything_and_a_token_with_no_rules_is_denied() -> None:
    assert Acl([], root=True).capabilities("any/path").server_form == ["root"]
    assert Acl([]).capabilities("any/path").server_form == ["deny"]


def test_a_policy_keyshift_cannot_read_is_an_error_not_an_empty_policy() -> None:
    with pytest.raises(PolicyError, match=r"policy 'broken'.*line 1, column"):
        parse_policy("broken", 'path "a" { capabilities = ["read" }')
    with pytest.raises(PolicyError, match="not valid JSON"):
        parse_policy("broken", '{"path": ')
    with pytest.raises(PolicyError, match="unknown policy 'admin'"):
        parse_policy("broken", 'path "a" { policy = "admin" }')


def test_nested_blocks_duplicates_comments_and_expired_rules_are_read_as_the_server_does() -> None:
    text = """
    # comment
    path "p/*" { capabilities = ["read"] }
    path "p/*" { capabilities = ["list"] }   // the same pattern again: merged
    path "q" {
      capabilities = ["create"]
      allowed_parameters = { "k" = [] }
      /* nested braces above must not hide this rule */
    }
    path "gone" {
      capabilities = ["read"]
      expiration = "2020-01-01T00:00:00Z"
    }
    """
    acl = Acl(parse_policy("p", text))
    assert acl.capabilities("p/x").capabilities == ("read", "list")
    assert acl.capabilities("q").capabilities == ("create",)
    assert acl.capabilities("gone").server_form == ["deny"]
