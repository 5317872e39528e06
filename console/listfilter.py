"""The `/` filter of the console's smaller lists (agents, runs, sources), in the grammar of the
credential filter (console/query.py) where it fits:

- a word matches any field (substring, ASCII case ignored);
- ``field:value`` is the field exactly (``*`` is a wildcard; ``field:none`` an empty field);
- ``field~value`` is a substring of the field;
- ``!`` before a word inverts it; every word must hold.

The rows are dicts of text fields; each list says which fields it has. A field a list does
not have is an error naming the ones it has.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from console.errors import UsageError
from console.query import nocase

MAX_FILTER_CHARS = 4096
_FIELD = re.compile(r"^(?P<name>[a-z_][a-z0-9_-]*)(?P<op>[:~])(?P<value>.*)$")


@dataclass(frozen=True)
class Word:
    field: str | None  # None: any field
    op: str  # "text" | "eq" | "glob" | "contains" | "none"
    value: str
    negate: bool = False


def parse_list_filter(text: str, fields: Sequence[str]) -> list[Word]:
    if len(text) > MAX_FILTER_CHARS:
        raise UsageError(f"the filter is longer than {MAX_FILTER_CHARS} characters")
    words = []
    for raw in text.split():
        negate = raw.startswith("!")
        raw = raw[1:] if negate else raw
        if not raw:
            raise UsageError("a lone ! inverts nothing", hint="write !word or !field:value")
        match = _FIELD.match(raw)
        if match is None:
            words.append(Word(None, "text", nocase(raw), negate))
            continue
        name, op, value = match["name"], match["op"], match["value"]
        if name not in fields:
            raise UsageError(f"unknown field {name!r}", hint=f"fields here: {', '.join(fields)}")
        if not value:
            raise UsageError(f"{name}{op} needs a value", hint=f"e.g. {name}{op}x")
        if op == "~":
            words.append(Word(name, "contains", nocase(value), negate))
        elif value.lower() == "none":
            words.append(Word(name, "none", "", negate))
        elif "*" in value:
            # only * is a wildcard: brackets and ? are what they say
            literal = nocase(value).replace("[", "[[]").replace("?", "[?]")
            words.append(Word(name, "glob", literal, negate))
        else:
            words.append(Word(name, "eq", nocase(value), negate))
    return words


def _holds(word: Word, row: Mapping[str, Any], fields: Sequence[str]) -> bool:
    if word.field is None:
        return any(word.value in nocase(str(row.get(f) or "")) for f in fields)
    value = row.get(word.field)
    text = nocase(str(value)) if value not in (None, "") else ""
    if word.op == "none":
        return text == ""
    if word.op == "contains":
        return word.value in text
    if word.op == "glob":
        return fnmatch.fnmatchcase(text, word.value)
    return text == word.value


def list_filter(text: str, fields: Sequence[str]) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over rows for the filter ``text`` (raises UsageError when it is bad)."""
    words = parse_list_filter(text, fields)
    return lambda row: all(_holds(w, row, fields) != w.negate for w in words)
