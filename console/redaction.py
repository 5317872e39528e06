"""Redaction where values are handled, not by searching every text for every value ever seen.

A piece of work that holds secret values (a rotation run) opens a ``ValueScope`` and adds the
values it handles; the scope ends with the work and forgets them. While it is open, the log
filter scrubs its values from log records, and the work redacts its own exception texts with
``scope.redact`` before they are journaled or audited. Structured output, store rows and audit
fields are never rewritten: they are built from references (ids, versions, fingerprints) and
cannot hold a value in the first place.

keyshift's own secrets (a token resolved from the keyring, the sandbox's keys) are added to
``OWN`` for the life of the process: they are keyshift's, long and random, never chosen by
someone who can write a KV path.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable

from rotators.values import REDACTED, SecretValue

# Shorter strings would redact ordinary words in a log line; no value keyshift mints is short.
MIN_REDACT_LEN = 8


class ValueScope:
    """The values one piece of work handles, for as long as it runs."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._values: set[str] = set()
        self._lock = threading.Lock()
        with _registry_lock:
            _active.add(self)

    def add(self, value: str | SecretValue | None) -> None:
        raw = value.reveal() if isinstance(value, SecretValue) else value
        if raw and len(raw) >= MIN_REDACT_LEN:
            with self._lock:
                self._values.add(raw)

    def discard(self, value: str | SecretValue | None) -> None:
        """A value that turned out not to be secret (an access key's id)."""
        raw = value.reveal() if isinstance(value, SecretValue) else value
        with self._lock:
            self._values.discard(raw or "")

    def add_all(self, values: Iterable[str | SecretValue | None]) -> None:
        for value in values:
            self.add(value)

    def redact(self, text: str) -> str:
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def __contains__(self, text: str) -> bool:
        with self._lock:
            return any(v in text for v in self._values)

    def close(self) -> None:
        with self._lock:
            self._values.clear()
        with _registry_lock:
            _active.discard(self)

    def __enter__(self) -> ValueScope:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_registry_lock = threading.Lock()
_active: weakref.WeakSet[ValueScope] = weakref.WeakSet()
OWN = ValueScope("keyshift's own secrets")


def redact_active(text: str) -> str:
    """Scrub the values of every open scope (for a log line or an unexpected exception)."""
    with _registry_lock:
        scopes = list(_active)
    for scope in scopes:
        text = scope.redact(text)
    return text


class RedactingFilter(logging.Filter):
    """Scrubs the values of open scopes from log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as usual
            return True
        clean = redact_active(message)
        if clean != message or record.args:
            record.msg = clean
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # a traceback's last line is the exception's own text, which the formatter would
            # print as is: format it here, scrubbed, and hand the formatter only that text
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact_active(text)
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact_active(record.stack_info)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    target = logger or logging.getLogger()
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(RedactingFilter())
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
