"""A vocabulary: named functions a scenario may call, each with the options it takes.

World parts, injections, responder actions and checks are each one Vocabulary; a module adds a
word with ``@VOCAB.word("name", options=(...))``, so a new scenario part is one function. The
loader checks a scenario's words and options against these before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Word:
    name: str
    fn: Callable[..., Any]
    options: frozenset[str]
    help: str
    extra: dict[str, Any] = field(default_factory=dict)


class Vocabulary:
    def __init__(self, what: str) -> None:
        self.what = what
        self._words: dict[str, Word] = {}

    def word(self, name: str, *, options: tuple[str, ...] = (), help: str = "",
             **extra: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._words[name] = Word(name, fn, frozenset(options), help or (fn.__doc__ or "")
                                     .strip().split("\n")[0], dict(extra))
            return fn

        return add

    def get(self, name: str) -> Word:
        return self._words[name]

    def __contains__(self, name: object) -> bool:
        return name in self._words

    def names(self) -> list[str]:
        return sorted(self._words)
