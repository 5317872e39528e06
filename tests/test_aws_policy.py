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
    Statement,
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


# --- resource-based policies (a secret's), same account ------------------------------------

ACCOUNT = "123456789012"
USER = "arn:aws:iam::123456789012:user/u"
ROLE = "arn:aws:iam::123456789012:role/r"


def role(*statements: dict[str, Any], boundary: list[dict[str, Any]] | None = None) -> UserPolicies:
    found = user(*statements, boundary=boundary)
    found.user, found.arn, found.kind = "r", ROLE, "role"
    return found


def resource(*statements: dict[str, Any]) -> list[Any]:
    return parse_policy_document("resource", {"Statement": list(statements)})


def to(principal: Any, effect: str = "Allow", action: Any = GET, **extra: Any) -> dict[str, Any]:
    return {"Effect": effect, "Principal": principal, "Action": action, "Resource": "*", **extra}


RESOURCE_CASES: list[tuple[str, UserPolicies, list[Any], Decision]] = [
    ("no resource policy: identity decides", user(allow(GET)), [], Decision(True, False, ("p",))),
    ("resource policy naming the user grants with no identity policy", user(),
     resource(to({"AWS": USER})), Decision(True, False, ("resource-policy",))),
    ("naming the account only delegates: nothing by itself", user(),
     resource(to({"AWS": f"arn:aws:iam::{ACCOUNT}:root"})), Decision(False)),
    ("the bare account id delegates too", user(), resource(to({"AWS": ACCOUNT})),
     Decision(False)),
    ("account named and identity allows", user(allow(GET)),
     resource(to({"AWS": ACCOUNT})), Decision(True, False, ("p",))),
    ("Principal * grants", user(), resource(to("*")), Decision(True, False, ("resource-policy",))),
    ("another user named: nothing", user(),
     resource(to({"AWS": "arn:aws:iam::123456789012:user/other"})), Decision(False)),
    ("resource deny beats identity allow", user(allow(GET)),
     resource(to({"AWS": ACCOUNT}, "Deny")), Decision(False)),
    ("resource deny for another principal leaves it", user(allow(GET)),
     resource(to({"AWS": "arn:aws:iam::123456789012:user/other"}, "Deny")),
     Decision(True, False, ("p",))),
    ("identity deny beats resource allow", user(deny(GET)), resource(to({"AWS": USER})),
     Decision(False)),
    ("a user's boundary does not limit a resource policy naming it",
     user(boundary=[allow("s3:*")]), resource(to({"AWS": USER})),
     Decision(True, False, ("resource-policy",))),
    ("a deny in the user's boundary still wins", user(boundary=[allow("*"), deny(GET)]),
     resource(to({"AWS": USER})), Decision(False)),
    ("a role's boundary limits a resource policy naming the role",
     role(boundary=[allow("s3:*")]), resource(to({"AWS": ROLE})), Decision(False)),
    ("a role's boundary that allows it lets the resource policy grant",
     role(boundary=[allow(GET)]), resource(to({"AWS": ROLE})),
     Decision(True, False, ("resource-policy",))),
    ("NotPrincipal deny spares only whom it names", user(allow(GET)),
     resource({"Effect": "Deny", "NotPrincipal": {"AWS": "arn:aws:iam::1:user/x"},
               "Action": GET, "Resource": "*"}), Decision(False)),
    ("a conditional resource allow is conditional", user(),
     resource(to({"AWS": USER}, **WHEN)), Decision(True, True, ("resource-policy",))),
    ("a certain identity allow beside a conditional resource allow is certain",
     user(allow(GET)), resource(to({"AWS": USER}, **WHEN)), Decision(True, False, ("p",))),
    ("a conditional resource deny makes it conditional", user(allow(GET)),
     resource(to({"AWS": USER}, "Deny", **WHEN)), Decision(True, True, ("p",))),
    ("a resource statement for another action: identity decides", user(),
     resource(to({"AWS": USER}, action=PUT)), Decision(False)),
]


@pytest.mark.parametrize("what,policies,statements,expected", RESOURCE_CASES,
                         ids=[c[0] for c in RESOURCE_CASES])
def test_resource_policy_table(
    what: str, policies: UserPolicies, statements: list[Any], expected: Decision
) -> None:
    assert policies.decide_with(GET, SECRET, statements) == expected


# --- role trust policies --------------------------------------------------------------------

TARGET = "arn:aws:iam::123456789012:role/target"
ASSUME = "sts:AssumeRole"


def trust(*statements: dict[str, Any]) -> list[Any]:
    return parse_policy_document("trust", {"Statement": list(statements)})


def trusts(principal: Any, effect: str = "Allow", **extra: Any) -> dict[str, Any]:
    return {"Effect": effect, "Principal": principal, "Action": ASSUME, **extra}


TRUST_CASES: list[tuple[str, UserPolicies, list[Any], Decision]] = [
    ("trust names the user: no identity policy needed", user(), trust(trusts({"AWS": USER})),
     Decision(True, False, ("trust",))),
    ("trust names the account, no identity allow: no", user(),
     trust(trusts({"AWS": f"arn:aws:iam::{ACCOUNT}:root"})), Decision(False)),
    ("trust names the account and identity allows", user(allow(ASSUME, TARGET)),
     trust(trusts({"AWS": f"arn:aws:iam::{ACCOUNT}:root"})), Decision(True, False, ("p", "trust"))),
    ("identity allows but trust names someone else", user(allow(ASSUME, TARGET)),
     trust(trusts({"AWS": "arn:aws:iam::123456789012:user/other"})), Decision(False)),
    ("identity allows another role only", user(allow(ASSUME, "arn:aws:iam::*:role/other")),
     trust(trusts({"AWS": ACCOUNT})), Decision(False)),
    ("a service principal is not the user", user(allow(ASSUME)),
     trust(trusts({"Service": "ec2.amazonaws.com"})), Decision(False)),
    ("identity deny beats a trust naming the user", user(deny(ASSUME)),
     trust(trusts({"AWS": USER})), Decision(False)),
    ("trust deny beats identity allow", user(allow(ASSUME)),
     trust(trusts({"AWS": ACCOUNT}), trusts({"AWS": USER}, "Deny")), Decision(False)),
    ("named directly, the user's boundary must allow it", user(boundary=[allow("s3:*")]),
     trust(trusts({"AWS": USER})), Decision(False)),
    ("named directly, a boundary allowing it", user(boundary=[allow(ASSUME)]),
     trust(trusts({"AWS": USER})), Decision(True, False, ("trust",))),
    ("a role may be trusted too", role(), trust(trusts({"AWS": ROLE})),
     Decision(True, False, ("trust",))),
    ("a trust condition (external id, MFA) makes it conditional", user(),
     trust(trusts({"AWS": USER}, Condition={"StringEquals": {"sts:ExternalId": "x"}})),
     Decision(True, True, ("trust",))),
    ("a wrong action in the trust", user(allow(ASSUME)),
     trust({"Effect": "Allow", "Principal": {"AWS": USER}, "Action": "sts:TagSession"}),
     Decision(False)),
]


@pytest.mark.parametrize("what,policies,statements,expected", TRUST_CASES,
                         ids=[c[0] for c in TRUST_CASES])
def test_trust_policy_table(
    what: str, policies: UserPolicies, statements: list[Any], expected: Decision
) -> None:
    assert policies.can_assume(TARGET, statements) == expected


@pytest.mark.parametrize(
    ("actions", "resources", "wide"),
    [
        (["secretsmanager:GetSecretValue"], ["arn:aws:secretsmanager:us-east-1:1:secret:a/*"],
         None),
        (["secretsmanager:*"], ["*"], "secretsmanager:* on *"),
        (["secretsmanager:GetSecretValue"], ["*"], "secretsmanager:GetSecretValue on *"),
        (["secretsmanager:*"], ["arn:aws:secretsmanager:us-east-1:1:secret:a/*"],
         "secretsmanager:* on arn:aws:secretsmanager:us-east-1:1:secret:a/*"),
        (["ssm:GetParameter"], ["arn:aws:ssm:us-east-1:1:*"],
         "ssm:GetParameter on arn:aws:ssm:us-east-1:1:*"),
        (["*"], ["arn:aws:ssm:us-east-1:1:parameter/x"],
         "* on arn:aws:ssm:us-east-1:1:parameter/x"),
    ],
)
def test_wide_statements_are_named(
    actions: list[str], resources: list[str], wide: str | None
) -> None:
    st = Statement(policy="p", effect="Allow", actions=actions, resources=resources)
    assert st.wide == wide
    policies = UserPolicies(user="u", arn="arn:aws:iam::1:user/u", statements=[st])
    target = "arn:aws:secretsmanager:us-east-1:1:secret:a/b-XyZ12"
    reaches = st.applies("secretsmanager:GetSecretValue", target)
    expected = [f"p: {wide}"] if wide and reaches else []
    assert policies.wide_rules(["secretsmanager:GetSecretValue"], target) == expected
