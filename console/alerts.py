"""Alerts for unattended work: recorded once in the store, delivered from there.

``Alerter.raise_alert`` writes the alert (one row per dedupe key) and returns: it never talks
to a receiver, so a webhook that is down cannot hold up a rotation. ``deliver_pending`` (or the
background thread ``start`` runs) is one pass: one send of each alert that is due, oldest
first, to the webhook and/or the command. A failed send sets when the alert is next due (full
jitter backoff, 30 s doubling, capped at an hour), so a receiver that is down for hours misses
nothing and a pass never waits; at most ``1 + retries`` sends per alert, and an alert that
used them all stays in the store with its last error (the metrics count it as given up).

What an alert carries is references only: the credential id, step, run id, agent, and error
text passed through ``redact_active`` (every value an open scope holds is scrubbed, as for a
log line). The webhook's bearer token is resolved by reference at each send and lives only in
the request header. A failed send is described in keyshift's own words (or by the exception's
type name alone): library messages quote or escape the URL and header they refused, which
exact-substring redaction does not catch.

Delivery is at least once: within a process a channel that took an alert is not sent it
again, but after a restart an alert that one channel took and the other did not is sent to
both.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import ssl
import subprocess
import threading
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from console import secret_refs
from console.errors import KeyshiftError, UsageError
from console.inventory import ALERT_EVENTS, Alerts
from console.redaction import redact_active

if TYPE_CHECKING:
    from console.store import Store

log = logging.getLogger("keyshift.alerts")

# backoff after a failed send: doubling from BASE, never above CAP, so the default 1 + 10 sends
# span hours (a receiver down for an afternoon misses nothing) yet one down for a day is still
# tried hourly until the alert is given up
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 3600.0
# how often the background thread looks for alerts another process recorded
POLL_SECONDS = 30.0
# the thread never spins: even an alert that stays due (its claim lost) waits this long
MIN_WAIT_SECONDS = 1.0
COMMAND_TIMEOUT_SECONDS = 30.0
# beyond the channels' own timeouts: an attempt claimed longer ago than that died with its
# sender, and the alert is due again
CLAIM_SLACK_SECONDS = 60.0
# a summary or an error is one readable line, not a stack dump
SUMMARY_MAX = 300
# keys of the body keyshift sets itself; a field may not shadow them
RESERVED = frozenset({"event", "subject", "summary", "at", "host", "text"})


def backoff(failures: int) -> float:
    """Seconds before the next send of an alert whose last ``failures`` sends failed: full
    jitter over the doubled delay, so alerts raised together while a receiver was down do not
    all come back to it at once."""
    delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, failures - 1))
    return random.uniform(0, delay)


def _unsafe(text: str) -> bool:
    # urllib refuses these with an error that quotes (or repr-escapes) the value around them
    return any(c.isspace() or unicodedata.category(c).startswith("C") for c in text)


def one_line(text: str, limit: int = SUMMARY_MAX) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clean(value: Any) -> Any:
    """A field as it may leave keyshift: strings redacted, anything else JSON or its text."""
    if isinstance(value, str):
        return redact_active(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    return redact_active(str(value))


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # a redirect would carry the bearer token to wherever the receiver points; treat it as
    # a failed send instead
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Alerter:
    def __init__(
        self,
        config: Alerts,
        store: Store,
        *,
        clock: Callable[[], datetime] | None = None,
        command_timeout: float = COMMAND_TIMEOUT_SECONDS,
    ) -> None:
        self.config = config
        self.store = store
        self._clock = clock or (lambda: datetime.now(UTC))
        self._command_timeout = command_timeout
        self._host = socket.gethostname()
        self._opener = urllib.request.build_opener(_NoRedirects())
        self._deliver_lock = threading.Lock()
        # alert id -> channels that took it (so a failing command does not resend the webhook)
        self._took: dict[int, set[str]] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def max_attempts(self) -> int:
        return 1 + self.config.retries

    def channels(self) -> list[str]:
        out = []
        if self.config.webhook is not None:
            out.append("webhook")
        if self.config.command:
            out.append("command")
        return out

    # recording --------------------------------------------------------------------------

    def raise_alert(
        self,
        event: str,
        subject: str,
        *,
        dedupe_key: str,
        summary: str,
        fields: dict[str, Any],
    ) -> bool:
        """Record an alert once per ``dedupe_key``; False when one was recorded before or the
        inventory does not ask for this event. Never sends: delivery is another thread's
        (or a later ``deliver_pending``'s) work."""
        if event not in ALERT_EVENTS:
            raise UsageError(
                f"unknown alert event {event!r}", hint=f"events: {', '.join(ALERT_EVENTS)}"
            )
        if not dedupe_key:
            raise UsageError("an alert needs a dedupe key")
        clash = RESERVED & set(fields)
        if clash:
            raise UsageError(f"alert fields may not be named {', '.join(sorted(clash))}")
        if event not in self.config.events:
            return False
        now = self._clock()
        line = one_line(redact_active(summary))
        body: dict[str, Any] = {
            "event": event,
            "subject": redact_active(subject),
            "summary": line,
            **{k: _clean(v) for k, v in fields.items()},
            "at": now.astimezone(UTC).isoformat(timespec="seconds"),
            "host": self._host,
            "text": f"keyshift: {line}",
        }
        new = self.store.add_alert(
            event=event,
            dedupe_key=dedupe_key,
            subject=body["subject"],
            body=body,
            created_at=now,
        )
        if new:
            self._wake.set()
        return new

    # delivery ---------------------------------------------------------------------------

    def deliver_pending(self, stop: threading.Event | None = None) -> int:
        """One pass: a single send of each alert that is due (oldest first); returns how many
        were delivered. A failed send is recorded (attempts, last_error) with when the alert
        is next due; nothing here waits for that, and nothing a receiver does raises out of
        here. ``stop`` ends the pass between sends."""
        if not self.channels():
            return 0
        with self._deliver_lock:
            return self._deliver(stop)

    def _deliver(self, stop: threading.Event | None) -> int:
        delivered = 0
        now = self._clock()
        after_id = 0  # paging by id: each alert is met once per pass, however many failed
        while not self._stopped(stop):
            rows = self.store.pending_alerts(self.max_attempts, now, after_id=after_id)
            if not rows:
                break
            for row in rows:
                if self._stopped(stop):
                    break
                after_id = row["id"]
                if self._attempt(row):
                    delivered += 1
        return delivered

    def _attempt(self, row: dict) -> bool:
        busy_until = self._clock() + timedelta(seconds=self._send_bound())
        if not self.store.claim_alert_attempt(row["id"], row["attempts"], busy_until):
            return False  # another sender made this attempt
        error = self._send(row)
        if error is None:
            self.store.mark_alert_delivered(row["id"], self._clock())
            self._took.pop(row["id"], None)
            return True
        error = one_line(redact_active(error))
        attempt = row["attempts"] + 1
        if attempt >= self.max_attempts:
            self.store.record_alert_failure(row["id"], error, None)
            self._took.pop(row["id"], None)
            log.warning(
                "alert %s (%s) not delivered after %d attempts, giving up: %s",
                row["id"], row["event"], attempt, error,
            )
            return False
        wait = backoff(attempt)
        self.store.record_alert_failure(
            row["id"], error, self._clock() + timedelta(seconds=wait)
        )
        log.info(
            "alert %s (%s) attempt %d of %d failed, next in %.0fs: %s",
            row["id"], row["event"], attempt, self.max_attempts, wait, error,
        )
        return False

    def _send_bound(self) -> float:
        hook = self.config.webhook
        bound = CLAIM_SLACK_SECONDS
        if hook is not None:
            # connect, then read: each may take the whole timeout
            bound += 2 * hook.timeout_seconds
        if self.config.command:
            bound += self._command_timeout
        return bound

    def seconds_until_due(self) -> float:
        """How long the thread may sleep: until the earliest alert is due, at most
        POLL_SECONDS (another process may record one), at least MIN_WAIT_SECONDS."""
        if not self.channels():
            return POLL_SECONDS
        due = self.store.next_alert_attempt_at(self.max_attempts)
        if due is None:
            return POLL_SECONDS
        until = (due - self._clock()).total_seconds()
        return max(MIN_WAIT_SECONDS, min(POLL_SECONDS, until))

    @staticmethod
    def _stopped(stop: threading.Event | None) -> bool:
        # only the caller's event: after stop() ends the thread, a final deliver_pending
        # (a --once pass) still sends
        return stop is not None and stop.is_set()

    def _send(self, row: dict) -> str | None:
        """Send one alert to each channel that has not taken it; None when all have, else
        what failed (one line, no value)."""
        payload = json.dumps(row["body"], sort_keys=True, ensure_ascii=False).encode()
        took = self._took.setdefault(row["id"], set())
        errors = []
        for channel in self.channels():
            if channel in took:
                continue
            try:
                if channel == "webhook":
                    self._post(payload)
                else:
                    self._run_command(payload)
            except Exception as exc:  # a receiver's failure is recorded, never raised
                errors.append(f"{channel}: {_describe(exc)}")
            else:
                took.add(channel)
        return "; ".join(errors) or None

    def _post(self, payload: bytes) -> None:
        hook = self.config.webhook
        assert hook is not None
        headers = {"Content-Type": "application/json", "User-Agent": "keyshift-alerts"}
        if hook.token:
            token = secret_refs.resolve(hook.token)
            if _unsafe(token):
                raise _SendFailed(
                    f"{hook.token} holds a token with whitespace or control characters"
                )
            headers["Authorization"] = f"Bearer {token}"
        url = secret_refs.resolve(hook.url)
        if _unsafe(url):
            raise _SendFailed(f"{hook.url} holds a URL with whitespace or control characters")
        if not url.startswith(("http://", "https://")):
            raise _SendFailed(f"{hook.url} does not hold an http(s) URL")
        try:
            request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
            with self._opener.open(request, timeout=hook.timeout_seconds) as response:
                response.read(65536)
                status = response.status
        except urllib.error.HTTPError as exc:
            exc.close()
            raise _SendFailed(f"the webhook answered HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            raise _SendFailed(f"the webhook is unreachable ({_reason(exc.reason)})") from None
        except TimeoutError:
            raise _SendFailed(
                f"the webhook did not answer within {hook.timeout_seconds:g}s"
            ) from None
        if not 200 <= status < 300:
            raise _SendFailed(f"the webhook answered HTTP {status}")

    def _run_command(self, payload: bytes) -> None:
        argv = list(self.config.command or [])
        try:
            done = subprocess.run(
                argv,
                input=payload,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=self._command_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise _SendFailed(
                f"{argv[0]} did not finish within {self._command_timeout:g}s"
            ) from None
        except OSError as exc:
            raise _SendFailed(f"{argv[0]} could not be run ({exc.strerror or exc})") from None
        if done.returncode != 0:
            last = done.stderr.decode(errors="replace").strip().splitlines()
            said = f": {last[-1]}" if last else ""
            raise _SendFailed(f"{argv[0]} exited {done.returncode}{said}")

    # the background thread ----------------------------------------------------------------

    def start(self) -> None:
        """Deliver from a daemon thread: at once when an alert is raised here, when the
        earliest failed one falls due again, and at least every POLL_SECONDS for alerts other
        processes recorded."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="keyshift-alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        """Stop the thread between sends; a send under way finishes (each is bounded by its
        own timeout). Undelivered alerts stay in the store for the next start."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            wait = POLL_SECONDS
            try:
                self.deliver_pending(self._stopping)
                wait = self.seconds_until_due()
            except Exception as exc:  # the store busy or closed: try again at the next tick
                log.warning("alert delivery failed: %s", redact_active(_describe(exc)))
            self._wake.wait(wait)


class _SendFailed(Exception):
    pass


def _reason(reason: object) -> str:
    """Why a webhook was unreachable, in words that cannot quote the URL: an OS error's own
    text, a TLS error's code (its message names the host), otherwise the type's name."""
    if isinstance(reason, ssl.SSLError):
        return f"TLS {reason.reason or type(reason).__name__}"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    if reason == "no host given":  # urllib's own words, no part of the URL
        return reason
    return type(reason).__name__


def _describe(exc: BaseException) -> str:
    """A failure as it may be stored and logged. Keyshift's own errors name references only;
    anything else (urllib's InvalidURL, http.client's header ValueError, ...) may quote the
    resolved URL or token, so only its type is told."""
    if isinstance(exc, KeyshiftError):
        return exc.one_line()
    if isinstance(exc, _SendFailed):
        return str(exc)
    return type(exc).__name__
