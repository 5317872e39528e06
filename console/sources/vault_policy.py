"""Vault / OpenBao ACL policies: parse the path rules and decide which rule governs a path.

Vault's semantics (its "Policies" documentation): rules for the *same* pattern from several
policies merge (union of capabilities, ``deny`` wins); among *different* matching patterns only
the most specific one applies. Patterns may end in ``*`` (prefix glob) and contain ``+`` (exactly
one path segment). Only what keyshift needs is parsed: ``path "..." { capabilities = [...] }``
blocks in HCL, or the same in the JSON policy syntax; other attributes are ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

_PATH_BLOCK = re.compile(r'path\s+"(?P<path>[^"]*)"\s*\{(?P<body>[^{}]*)\}', re.S)
_CAPS = re.compile(r"capabilities\s*=\s*\[(?P<list>[^\]]*)\]", re.S)
_QUOTED = re.compile(r'"([^"]*)"')
# comments outside quoted strings: "#..." and "//..." to end of line, "/* ... */"
_COMMENT = re.compile(r'("[^"]*")|#[^\n]*|//[^\n]*|/\*.*?\*/', re.S)


@dataclass(frozen=True)
class Rule:
    policy: str
    path: str  # the pattern as written
    capabilities: tuple[str, ...]


@dataclass
class MergedRule:
    """Every policy's rule for one pattern, merged the way Vault merges them."""

    path: str
    capabilities: set[str] = field(default_factory=set)
    policies: list[str] = field(default_factory=list)

    @property
    def effective(self) -> list[str]:
        if "deny" in self.capabilities:
            return []
        return sorted(self.capabilities)


def parse_policy(name: str, text: str) -> list[Rule]:
    """The path rules of one policy document (HCL or JSON)."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            return _parse_json(name, doc)
    rules = []
    uncommented = _COMMENT.sub(lambda m: m.group(1) or "", text)
    for block in _PATH_BLOCK.finditer(uncommented):
        caps = _CAPS.search(block["body"])
        values = tuple(_QUOTED.findall(caps["list"])) if caps else ()
        rules.append(Rule(name, block["path"], values))
    return rules


def _parse_json(name: str, doc: dict) -> list[Rule]:
    paths = doc.get("path", {})
    # the JSON syntax allows both {"path": {"p": {...}}} and {"path": [{"p": {...}}]}
    items = paths if isinstance(paths, list) else [paths]
    rules = []
    for item in items:
        for pattern, body in (item or {}).items():
            caps = body.get("capabilities", []) if isinstance(body, dict) else []
            rules.append(Rule(name, pattern, tuple(caps)))
    return rules


def matches(pattern: str, path: str) -> bool:
    """Whether a policy path pattern covers a request path (``*`` suffix, ``+`` segment)."""
    glob = pattern.endswith("*")
    body = pattern[:-1] if glob else pattern
    if "+" not in body:
        return path.startswith(body) if glob else path == body
    regex = "".join("[^/]+" if part == "+" else re.escape(part) for part in _split_plus(body))
    return re.fullmatch(regex + (".*" if glob else ""), path, re.S) is not None


def _split_plus(body: str) -> list[str]:
    # "+" only counts as a wildcard when it is a whole segment
    out: list[str] = []
    for i, segment in enumerate(body.split("/")):
        if i:
            out.append("/")
        out.append("+" if segment == "+" else segment)
    return out


def _priority(pattern: str) -> tuple:
    """Sort key: higher is more specific (Vault's documented tie-break order)."""
    glob = pattern.endswith("*")
    segments = pattern.split("/")
    plus_count = sum(1 for s in segments if s == "+")
    positions = [i for i, ch in enumerate(pattern) if ch == "*"]
    plus_positions = [
        len("/".join(segments[:i])) + (1 if i else 0) for i, s in enumerate(segments) if s == "+"
    ]
    first_wild = min(positions + plus_positions, default=len(pattern) + 1)
    exact = not glob and plus_count == 0
    return (exact, first_wild, not glob, -plus_count, len(pattern), pattern)


class Acl:
    """The merged rules of a set of policies, answering "what may this token do on path P"."""

    def __init__(self, rules: list[Rule]) -> None:
        merged: dict[str, MergedRule] = {}
        for rule in rules:
            entry = merged.setdefault(rule.path, MergedRule(rule.path))
            entry.capabilities.update(rule.capabilities)
            if rule.policy not in entry.policies:
                entry.policies.append(rule.policy)
        self._rules = sorted(merged.values(), key=lambda r: _priority(r.path), reverse=True)

    def governing(self, path: str) -> MergedRule | None:
        """The one rule Vault applies to ``path`` (the most specific match), or None."""
        for rule in self._rules:
            if matches(rule.path, path):
                return rule
        return None
