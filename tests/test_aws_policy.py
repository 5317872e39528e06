"""keyshift's AWS policy evaluation against a table of cases from AWS's documented evaluation
logic (the "Policy evaluation logic" and IAM JSON element pages): explicit deny wins, allows
are united, a permission boundary limits identity allows, NotAction / NotResource, wildcards,
case rules, conditions (never evaluated: conditional, never certain, never dropped)."""

from __future__ import annotations

from typing import Any

import pytest

from console.sources.aws_policy import (
    Decision,
    PolicyDocumentError,
    UserPolicies,
    parse_policy_document,
)

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/support/stripe-AbCdEf"
OTHER = "arn:aws:secretsmanager:us-east-1:123456789012:secret:dev/tools/key-XyZ123"
GET = "secretsmanager:GetSecretValue"
PUT = "secretsmanager:PutSecretValue"


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def user(*statements: dict[str, Any], boundary: list[dict[str, Any]] | None = None) -> UserPolicies:
    found = UserPolicies("u", "arn:aws:iam::123456789012:user/u")
    found.statements = parse_policy_document("p", {"Statement": list(statements)})
    if boundary is not None:
        found.boundary = parse_policy_document("b", {"Statement": boundary})
    return found


WHEN = {"Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}}

CASES: list[tuple[str, UserPolicies, str, str, Decision]] = [
    ("no statement: implicit deny", user(), GET, SECRET, Decision(False)),
    ("an allow", user(allow(GET, SECRET)), GET, SECRET, Decision(True, False, ("p",))),
    ("an allow on another resource", user(allow(GET, OTHER)), GET, SECRET, Decision(False)),
    ("explicit deny beats allow", user(allow("secretsmanager:*"), deny(GET, SECRET)),
     GET, SECRET, Decision(False)),
    ("deny elsewhere leaves the allow", user(allow("secretsmanager:*"), deny(GET, OTHER)),
     GET, SECRET, Decision(True, False, ("p",))),
    ("action wildcards", user(allow("secretsmanager:Get*")), GET, SECRET,
     Decision(True, False, ("p",))),
    ("? matches one character", user(allow("secretsmanager:GetSecretValu?")), GET, SECRET,
     Decision(True, False, ("p",))),
    ("actions ignore case", user(allow("SecretsManager:getsecretvalue")), GET, SECRET,
     Decision(True, False, ("p",))),
    ("resources do not ignore case", user(allow(GET, SECRET.upper())), GET, SECRET,
     Decision(False)),
    ("resource wildcard", user(allow(GET, "arn:aws:secretsmanager:*:*:secret:prod/*")),
     GET, SECRET, Decision(True, False, ("p",))),
    ("NotAction allows everything else",
     user({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}), GET, SECRET,
     Decision(True, False, ("p",))),
    ("NotAction excludes what it names",
     user({"Effect": "Allow", "NotAction": "secretsmanager:*", "Resource": "*"}), GET, SECRET,
     Decision(False)),
    ("NotResource deny: all but the one named",
     user(allow(GET), {"Effect": "Deny", "Action": GET, "NotResource": SECRET}), GET, SECRET,
     Decision(True, False, ("p",))),
    ("NotResource deny covers the others",
     user(allow(GET), {"Effect": "Deny", "Action": GET, "NotResource": SECRET}), GET, OTHER,
     Decision(False)),
    ("deny by NotAction",
     user(allow("*"), {"Effect": "Deny", "NotAction": "iam:*", "Resource": "*"}), GET, SECRET,
     Decision(False)),
    ("boundary allows it too", user(allow("secretsmanager:*"), boundary=[allow(GET)]),
     GET, SECRET, Decision(True, False, ("p",))),
    ("boundary does not: denied", user(allow("secretsmanager:*"), boundary=[allow(GET)]),
     PUT, SECRET, Decision(False)),
    ("boundary alone grants nothing", user(boundary=[allow("*")]), GET, SECRET,
     Decision(False)),
    ("deny in the boundary", user(allow("*"), boundary=[allow("*"), deny(GET)]), GET, SECRET,
     Decision(False)),
    ("a conditional allow is conditional", user(allow(GET, SECRET, **WHEN)), GET, SECRET,
     Decision(True, True, ("p",))),
    ("an unconditional allow beside it is certain",
     user(allow(GET, SECRET, **WHEN), allow(GET, SECRET)), GET, SECRET,
     Decision(True, False, ("p",))),
    ("a conditional deny makes it conditional", user(allow(GET), deny(GET, SECRET, **WHEN)),
     GET, SECRET, Decision(True, True, ("p",))),
    ("a conditional boundary makes it conditional",
     user(allow(GET), boundary=[allow(GET, "*", **WHEN)]), GET, SECRET,
     Decision(True, True, ("p",))),
    ("brackets are literal in IAM", user(allow(GET, "arn:aws:secretsmanager:*:*:secret:[ab]*")),
     GET, "arn:aws:secretsmanager:us-east-1:1:secret:a-1", Decision(False)),
]


@pytest.mark.parametrize("what,policies,action,resource,expected", CASES,
                         ids=[c[0] for c in CASES])
def test_aws_evaluation_table(
    what: str, policies: UserPolicies, action: str, resource: str, expected: Decision
) -> None:
    assert policies.decide(action, resource) == expected


def test_a_conditional_grant_says_so_in_its_capabilities() -> None:
    policies = user(allow(GET, SECRET, **WHEN), allow("secretsmanager:DescribeSecret", SECRET))
    allowed, granting = policies.allowed([GET, "secretsmanager:DescribeSecret", PUT], SECRET)
    assert allowed == [f"conditional:{GET}", "secretsmanager:DescribeSecret"]
    assert granting == ["p"]


@pytest.mark.parametrize(
    "document,needle",
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "not a JSON object"),
        ({"Statement": [{"Effect": "Maybe", "Action": "*"}]}, "Effect of 'Maybe'"),
        ({"Statement": [{"Effect": "Allow", "Resource": "*"}]}, "no Action"),
    ],
)
def test_a_document_keyshift_cannot_read_is_an_error_not_an_empty_policy(
    document: Any, needle: str
) -> None:
    with pytest.raises(PolicyDocumentError, match=needle):
        parse_policy_document("p", document)
