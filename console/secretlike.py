"""Does a string look like a secret value? (DESIGN.md invariant 3: no literal secret in the YAML.)

Used by the inventory loader to refuse literal secrets, and usable by anything that scans text
for exposed secrets. Every answer names *what kind* of secret it looks like, never the value, so
callers can build messages that do not echo it.

Heuristics, in order of confidence:
- known token formats (provider prefixes, PEM private-key headers, credentials inside URLs);
- long high-entropy tokens (random-looking, mixed character classes);
- a key whose name says it holds a secret (password, token, api_key, ...) with a value that is
  not a reference (``keyring:``, ``env:``, ``file:``, ``credential:``).
Ordinary inventory text (descriptions, ARNs, paths, URLs, dates, kebab-case names) must not match.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from dataclasses import dataclass

from console.inventory import SECRET_REF

# (compiled pattern, what it looks like). Boundaries keep e.g. "task-..." from matching "sk-".
_KNOWN: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"), "a PEM private key"),
    (re.compile(r"(?<![A-Za-z0-9])sk-ant-[A-Za-z0-9_-]{16,}"), "an Anthropic API key"),
    (
        re.compile(
            r"(?<![A-Za-z0-9_-])sk-(?:proj-|svcacct-|admin-)?(?=[A-Za-z0-9_-]*\d)"
            r"[A-Za-z0-9_-]{20,}"
        ),
        "an OpenAI-style API key",
    ),
    (re.compile(r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{30,}"), "a GitHub token"),
    (re.compile(r"(?<![A-Za-z0-9])github_pat_[A-Za-z0-9_]{30,}"), "a GitHub fine-grained token"),
    (re.compile(r"(?<![A-Za-z0-9])glpat-[A-Za-z0-9_-]{20,}"), "a GitLab token"),
    (re.compile(r"(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9-]{10,}"), "a Slack token"),
    (
        re.compile(r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{16,}"),
        "a Slack webhook URL",
    ),
    (
        re.compile(r"discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_-]{20,}"),
        "a Discord webhook URL",
    ),
    (
        re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}(?![A-Z0-9])"),
        "an AWS access key id",
    ),
    (re.compile(r"(?<![A-Za-z0-9])[rsp]k_(?:live|test)_[A-Za-z0-9]{10,}"), "a Stripe key"),
    (re.compile(r"(?<![A-Za-z0-9])whsec_[A-Za-z0-9]{16,}"), "a webhook signing secret"),
    (re.compile(r"(?<![A-Za-z0-9.])hv[sbr]\.[A-Za-z0-9_-]{20,}"), "a Vault token"),
    (re.compile(r"(?<![A-Za-z0-9.])s\.[A-Za-z0-9]{24}(?![A-Za-z0-9])"), "a Vault token"),
    (re.compile(r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_-]{35}"), "a Google API key"),
    (re.compile(r"(?<![A-Za-z0-9])eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\."), "a JWT"),
    (re.compile(r"(?<![A-Za-z0-9])npm_[A-Za-z0-9]{36}"), "an npm token"),
    (re.compile(r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{30,}"), "a Hugging Face token"),
    # scheme://user:password@host -- a password inside a URL
    (re.compile(r"[a-z][a-z0-9+.-]*://[^\s/:@]+:[^\s/@]{3,}@[^\s/]"), "a URL with a password"),
]

# Names of keys that hold secrets; normalised to lower snake case before matching.
_SECRET_KEY = re.compile(
    r"(?:^|_)(?:password|passwd|passphrase|secret|secret_key|secret_access_key|client_secret|"
    r"secret_id|token|access_token|auth_token|refresh_token|api_key|apikey|private_key|"
    r"access_key|bearer)$"
)

# Random-looking tokens: runs of token characters, split on the characters that separate
# path parts, URL parts, ARN fields and words.
_TOKEN = re.compile(r"[A-Za-z0-9+=_.~-]{24,}")
_HEX = re.compile(r"^[0-9a-fA-F]{32,}$")
# UUIDs name things (entities, accounts, requests) far more often than they are secrets; one
# that is a secret (an AppRole secret_id) sits under a secret-named key, which is caught anyway.
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_MIN_TOKEN = 24


@dataclass(frozen=True)
class Match:
    """What a secret-looking string looks like, and where in the string (never the value)."""

    kind: str
    offset: int


def shannon_entropy(text: str) -> float:
    """Bits per character of the string's own character distribution."""
    if not text:
        return 0.0
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _class_of(ch: str) -> int:
    if ch.isdigit():
        return 0
    if ch.islower():
        return 1
    if ch.isupper():
        return 2
    return 3


def _looks_random(token: str) -> bool:
    """A random-looking token: no kebab-case name, ARN part, date or CamelCase identifier."""
    core = token.strip("=.-_~")
    if len(core) < _MIN_TOKEN or _UUID.match(core):
        return False
    if _HEX.match(core):
        has_digit = any(c.isdigit() for c in core)
        has_alpha = any(c.isalpha() for c in core)
        return has_digit and has_alpha and shannon_entropy(core) >= 3.0
    alnum = [c for c in core if c.isalnum()]
    if len(alnum) < _MIN_TOKEN * 0.8:
        return False
    if not any(c.isalpha() for c in alnum):
        return False
    digit_runs = len(re.findall(r"\d+", core))
    if digit_runs < 2:
        return False
    # Words and identifiers change character class rarely (CamelCase, "prod-2024"); random
    # strings over letters and digits change class on most characters.
    changes = sum(1 for a, b in itertools.pairwise(alnum) if _class_of(a) != _class_of(b))
    if changes / (len(alnum) - 1) < 0.3:
        return False
    return shannon_entropy(core) >= 3.5


# One alternation of every known format: a single pass per string (the loader scans thousands).
# At one position the first alternative wins, so the more specific formats come first above.
_KNOWN_ANY = re.compile("|".join(f"(?P<k{i}>{p.pattern})" for i, (p, _) in enumerate(_KNOWN)))
_KIND = {f"k{i}": kind for i, (_, kind) in enumerate(_KNOWN)}
_SHORTEST = 11  # no known format or random token is shorter than this


def scan_text(text: str) -> list[Match]:
    """Every secret-looking part of ``text``, by format or by randomness. References are fine."""
    if len(text) < _SHORTEST or SECRET_REF.match(text.strip()):
        return []
    found = [Match(_KIND[m.lastgroup or ""], m.start()) for m in _KNOWN_ANY.finditer(text)]
    if not found:
        for m in _TOKEN.finditer(text):
            if _looks_random(m.group()):
                found.append(Match("a long random-looking token", m.start()))
    found.sort(key=lambda m: m.offset)
    return found


def looks_like_secret(text: str) -> Match | None:
    """The first secret-looking part of ``text``, or None."""
    hits = scan_text(text)
    return hits[0] if hits else None


def is_secret_key_name(key: str) -> bool:
    """Whether a mapping key's name says its value is a secret (password, api_key, token ...)."""
    norm = re.sub(r"[^a-z0-9]+", "_", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower())
    return bool(_SECRET_KEY.search(norm.strip("_")))


def is_reference(text: str) -> bool:
    return bool(SECRET_REF.match(text))
