"""Vault / OpenBao ACL policies: parse them and answer "what may a token with these policies do
on path P", the way the server's ACL does (``sys/capabilities`` is the oracle the tests compare
with, case by case).

How the server decides, and so how this module decides:

- A rule's pattern is *exact*, a *prefix* (ends in ``*``, no ``+`` segment) or a *segment
  wildcard* pattern (holds ``+`` as a whole segment, maybe also ending in ``*``).
- Rules for the same pattern from several policies merge: capabilities are united, and
  ``deny`` anywhere leaves only ``deny``.
- An exact rule for the path wins outright (capability checks also try the path without one
  trailing ``/``). Otherwise the longest prefix rule and every matching segment-wildcard rule
  compete, and the most specific wins: the first ``+`` or ``*`` later in the pattern; then
  not a prefix; then fewer ``+`` segments; then longer; then the greater string. When none
  covers a path ending in ``/``, the path without it is tried the same way.
- ``root`` alone grants everything; a path no rule covers is denied.

A pattern with ``{{ ... }}`` is templated: the server fills it from the token's entity, which
keyshift does not resolve. Such a rule that could cover a path makes the answer *unknown* for
that path, never a guess either way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# what ``sys/capabilities`` can answer besides deny and root, in the server's order
CAPABILITIES = ("sudo", "read", "list", "update", "delete", "create", "patch", "scan")
# the old ``policy = "..."`` form of a path rule
_OLD_POLICY = {
    "deny": ("deny",),
    "read": ("read", "list"),
    "write": ("create", "read", "update", "delete", "list"),
    "sudo": ("create", "read", "update", "delete", "list", "sudo"),
}
_TEMPLATE = re.compile(r"\{\{.*?\}\}")


class PolicyError(ValueError):
    """A policy keyshift cannot read: its grants are unknown, never taken as none."""


@dataclass(frozen=True)
class Rule:
    policy: str
    path: str  # the pattern as written (leading "/" dropped)
    capabilities: tuple[str, ...]

    @property
    def templated(self) -> bool:
        return "{{" in self.path


@dataclass
class MergedRule:
    """Every policy's rule for one pattern, merged the way the server merges them."""

    path: str
    capabilities: set[str] = field(default_factory=set)
    policies: list[str] = field(default_factory=list)

    @property
    def denied(self) -> bool:
        return "deny" in self.capabilities

    @property
    def effective(self) -> list[str]:
        """The capabilities ``sys/capabilities`` would name (``[]`` for deny)."""
        if self.denied:
            return []
        return [c for c in CAPABILITIES if c in self.capabilities]


@dataclass(frozen=True)
class Answer:
    """What a set of policies allows on one path."""

    capabilities: tuple[str, ...]  # () when denied, or when unknown
    rule: MergedRule | None = None  # the rule that decided; None: no rule covers the path
    root: bool = False
    unknown: str | None = None  # why keyshift cannot tell (a templated rule may apply)

    @property
    def server_form(self) -> list[str]:
        """As ``sys/capabilities`` answers: ``["root"]``, ``["deny"]`` or the capabilities."""
        if self.root:
            return ["root"]
        return list(self.capabilities) or ["deny"]


# --- parsing ----------------------------------------------------------------------------


def parse_policy(name: str, text: str, *, now: datetime | None = None) -> list[Rule]:
    """The path rules of one policy document (HCL or JSON). Rules whose ``expiration`` has
    passed are left out, as the server leaves them out. Raises PolicyError when the text
    cannot be read."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except ValueError as exc:
            raise PolicyError(f"policy {name!r}: not valid JSON ({exc})") from None
        blocks = _json_blocks(name, doc)
    else:
        blocks = _hcl_blocks(name, text)
    moment = now or datetime.now(UTC)
    rules: list[Rule] = []
    for pattern, body in blocks:
        if not isinstance(body, dict):
            raise PolicyError(f"policy {name!r}: path {pattern!r} is not a block")
        if _expired(name, pattern, body.get("expiration"), moment):
            continue
        caps = body.get("capabilities") or []
        if isinstance(caps, str):
            caps = [caps]
        old = body.get("policy")
        if old:
            if old not in _OLD_POLICY:
                raise PolicyError(f"policy {name!r}: path {pattern!r}: unknown policy {old!r}")
            caps = [*caps, *_OLD_POLICY[old]]
        rules.append(Rule(name, pattern.lstrip("/"), tuple(str(c) for c in caps)))
    return rules


def _hcl_blocks(name: str, text: str) -> list[tuple[str, Any]]:
    import hcl2  # imported here: only a sync that reads policies needs the parser
    from hcl2.utils import SerializationOptions

    options = SerializationOptions(
        with_comments=False, explicit_blocks=False, strip_string_quotes=True
    )
    try:
        doc = hcl2.loads(text if text.endswith("\n") else text + "\n",
                         serialization_options=options)
    except Exception as exc:  # the parser raises its own (lark) error types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PolicyError(f"policy {name!r}: cannot parse its HCL: {first}") from None
    return _json_blocks(name, doc)


def _json_blocks(name: str, doc: Any) -> list[tuple[str, Any]]:
    if not isinstance(doc, dict):
        raise PolicyError(f"policy {name!r}: the JSON is not an object")
    paths = doc.get("path") or {}
    # the JSON syntax allows both {"path": {"p": {...}}} and {"path": [{"p": {...}}]}
    items = paths if isinstance(paths, list) else [paths]
    blocks: list[tuple[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            raise PolicyError(f"policy {name!r}: a path rule without a pattern")
        blocks.extend(item.items())
    return blocks


def _expired(name: str, pattern: str, raw: Any, now: datetime) -> bool:
    if not raw:
        return False
    try:
        when = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise PolicyError(
            f"policy {name!r}: path {pattern!r}: expiration {raw!r} is not a time"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return now > when


# --- matching ---------------------------------------------------------------------------


def _has_segment_wildcard(pattern: str) -> bool:
    return pattern == "+" or "/+" in pattern or pattern.startswith("+/")


@dataclass(frozen=True)
class _Candidate:
    first_wild: int
    prefix: bool
    wildcards: int
    body: str  # the pattern without its trailing "*"
    rule: MergedRule

    def key(self) -> tuple[int, bool, int, int, str]:
        return (self.first_wild, not self.prefix, -self.wildcards, len(self.body), self.body)


def _segment_match(pattern: str, path: str) -> _Candidate | None:
    """How a segment-wildcard pattern covers ``path`` (None when it does not)."""
    prefix = pattern.endswith("*")
    body = pattern[:-1] if prefix else pattern
    want, parts = body.split("/"), path.split("/")
    if len(parts) < len(want) or (not prefix and len(parts) != len(want)):
        return None
    wildcards = 0
    for i, segment in enumerate(want):
        if segment == "+":
            wildcards += 1
        elif segment != parts[i] and not (
            prefix and i == len(want) - 1 and parts[i].startswith(segment)
        ):
            return None
    return _Candidate(pattern.index("+"), prefix, wildcards, body, MergedRule(pattern))


def matches(pattern: str, path: str) -> bool:
    """Whether a policy pattern covers a request path (``*`` suffix, ``+`` segment)."""
    if _has_segment_wildcard(pattern):
        return _segment_match(pattern, path) is not None
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    return path == pattern


def _template_regex(pattern: str) -> re.Pattern[str]:
    """A templated pattern with every ``{{ ... }}`` free to be any text: if this does not
    cover a path, no filling of the template can."""
    prefix = pattern.endswith("*")
    body = pattern[:-1] if prefix else pattern
    out = []
    for i, piece in enumerate(_TEMPLATE.split(body)):
        if i:
            out.append(".*")
        segments = piece.split("/")
        out.append("/".join("[^/]*" if s == "+" else re.escape(s) for s in segments))
    return re.compile("".join(out) + (".*" if prefix else ""), re.S)


class Acl:
    """The merged rules of a set of policies."""

    def __init__(self, rules: Iterable[Rule], *, root: bool = False) -> None:
        self.root = root  # the token holds the ``root`` policy
        self._exact: dict[str, MergedRule] = {}
        self._prefix: dict[str, MergedRule] = {}
        self._segment: dict[str, MergedRule] = {}
        self._templated: list[tuple[Rule, re.Pattern[str]]] = []
        for rule in rules:
            if rule.templated:
                self._templated.append((rule, _template_regex(rule.path)))
                continue
            if _has_segment_wildcard(rule.path):
                table, key = self._segment, rule.path
            elif rule.path.endswith("*"):
                table, key = self._prefix, rule.path[:-1]
            else:
                table, key = self._exact, rule.path
            merged = table.setdefault(key, MergedRule(rule.path))
            merged.capabilities.update(rule.capabilities)
            if rule.policy not in merged.policies:
                merged.policies.append(rule.policy)

    def capabilities(self, path: str) -> Answer:
        """What ``sys/capabilities`` would answer for ``path``, with the rule that decides."""
        if self.root:
            return Answer((), root=True)
        path = path.lstrip("/")
        for template, regex in self._templated:
            if regex.fullmatch(path) or (path.endswith("/") and regex.fullmatch(path[:-1])):
                return Answer(
                    (),
                    unknown=f"templated rule {template.path!r} in policy "
                    f"{template.policy!r} may cover it",
                )
        rule = self.governing(path)
        if rule is None:
            return Answer(())
        return Answer(tuple(rule.effective), rule=rule)

    def governing(self, path: str) -> MergedRule | None:
        """The one rule the server applies to ``path``, or None. Templated rules are not
        considered here: ``capabilities`` says when one may apply."""
        path = path.lstrip("/")
        exact = self._exact.get(path)
        if exact is None and path.endswith("/"):
            exact = self._exact.get(path[:-1])
        if exact is not None:
            return exact
        found = self._non_exact(path)
        if found is None and path.endswith("/"):
            found = self._non_exact(path[:-1])  # a listing's trailing "/", as the server tries
        return found

    def _non_exact(self, path: str) -> MergedRule | None:
        candidates: list[_Candidate] = []
        longest = max((p for p in self._prefix if path.startswith(p)), key=len, default=None)
        if longest is not None:
            rule = self._prefix[longest]
            if not self._segment:
                return rule
            candidates.append(_Candidate(len(longest), True, 0, longest, rule))
        for pattern, rule in self._segment.items():
            found = _segment_match(pattern, path)
            if found is not None:
                candidates.append(
                    _Candidate(found.first_wild, found.prefix, found.wildcards, found.body, rule)
                )
        if not candidates:
            return None
        return max(candidates, key=_Candidate.key).rule
