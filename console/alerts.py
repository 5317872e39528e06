"""Alerts for unattended work: recorded once in the store, delivered from there.

``Alerter.raise_alert`` writes the alert (one row per dedupe key) and returns: it never talks
to a receiver, so a webhook that is down cannot hold up a rotation. ``deliver_pending`` (or the
background thread ``start`` runs) sends what is undelivered, oldest first, to the webhook
and/or the command, with bounded jittered backoff between failed sends, at most
``1 + retries`` sends per alert; an alert that used them all stays in the store with its last
error (the metrics count it as given up).

What an alert carries is references only: the credential id, step, run id, agent, and error
text passed through ``redact_active`` (every value an open scope holds is scrubbed, as for a
log line). The webhook's bearer token is resolved by reference at each send and lives only in
the request header. Delivery is at least once: within a process a channel that took an alert is
not sent it again, but after a restart an alert that one channel took and the other did not is
sent to both.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from console import secret_refs
from console.errors import KeyshiftError, UsageError
from console.inventory import ALERT_EVENTS, Alerts
from console.redaction import redact_active

if TYPE_CHECKING:
    from console.store import Store

log = logging.getLogger("keyshift.alerts")

# backoff between failed sends: doubling from BASE, never above CAP (a receiver that is down
# for an hour is tried every minute, not every hour)
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 60.0
# how often the background thread looks for alerts another process recorded
POLL_SECONDS = 30.0
COMMAND_TIMEOUT_SECONDS = 30.0
# a summary or an error is one readable line, not a stack dump
SUMMARY_MAX = 300
# keys of the body keyshift sets itself; a field may not shadow them
RESERVED = frozenset({"event", "subject", "summary", "at", "host", "text"})


def backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` failed sends in a row: jittered within the upper
    half of the doubled delay, so it is never zero and two senders drift apart."""
    delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, failures - 1))
    return random.uniform(delay / 2, delay)


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
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] | None = None,
        command_timeout: float = COMMAND_TIMEOUT_SECONDS,
    ) -> None:
        self.config = config
        self.store = store
        self._sleep = sleep
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
        """Send every undelivered alert that has attempts left, oldest first; returns how many
        were delivered. A failed send is recorded (attempts, last_error) and followed by a
        backoff before the next send; nothing a receiver does raises out of here. ``stop``
        ends the work between sends (and cuts a backoff short)."""
        if not self.channels():
            return 0
        with self._deliver_lock:
            return self._deliver(stop)

    def _deliver(self, stop: threading.Event | None) -> int:
        delivered = 0
        failures = 0  # in a row: the receivers are down, not one alert bad
        skipped: set[int] = set()  # another process holds their current attempt
        while not self._stopped(stop):
            rows = [
                r
                for r in self.store.pending_alerts(self.max_attempts, limit=len(skipped) + 50)
                if r["id"] not in skipped
            ]
            if not rows:
                break
            if failures:
                self._pause(backoff(failures), stop)
                if self._stopped(stop):
                    break
            row = rows[0]
            if not self.store.claim_alert_attempt(row["id"], row["attempts"]):
                skipped.add(row["id"])
                continue
            error = self._send(row)
            if error is None:
                self.store.mark_alert_delivered(row["id"], self._clock())
                self._took.pop(row["id"], None)
                delivered += 1
                failures = 0
                continue
            failures += 1
            error = one_line(redact_active(error))
            self.store.record_alert_failure(row["id"], error)
            attempt = row["attempts"] + 1
            if attempt >= self.max_attempts:
                self._took.pop(row["id"], None)
                log.warning(
                    "alert %s (%s) not delivered after %d attempts, giving up: %s",
                    row["id"], row["event"], attempt, error,
                )
            else:
                log.info(
                    "alert %s (%s) attempt %d failed: %s", row["id"], row["event"], attempt, error
                )
        return delivered

    @staticmethod
    def _stopped(stop: threading.Event | None) -> bool:
        # only the caller's event: after stop() ends the thread, a final deliver_pending
        # (a --once pass) still sends
        return stop is not None and stop.is_set()

    def _pause(self, seconds: float, stop: threading.Event | None) -> None:
        if self._sleep is time.sleep and stop is not None:
            # the real wait ends early when asked to stop; an injected sleep is the caller's
            stop.wait(seconds)
        else:
            self._sleep(seconds)

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
            headers["Authorization"] = f"Bearer {secret_refs.resolve(hook.token)}"
        url = secret_refs.resolve(hook.url)
        if not url.startswith(("http://", "https://")):
            raise _SendFailed(f"{hook.url} does not hold an http(s) URL")
        request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=hook.timeout_seconds) as response:
                response.read(65536)
                status = response.status
        except urllib.error.HTTPError as exc:
            exc.close()
            raise _SendFailed(f"the webhook answered HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            raise _SendFailed(f"the webhook is unreachable ({_reason(exc.reason)})") from None
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
        """Deliver from a daemon thread: at once when an alert is raised here, and every
        POLL_SECONDS for alerts other processes recorded."""
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
            try:
                self.deliver_pending(self._stopping)
            except Exception as exc:  # the store busy or closed: try again at the next tick
                log.warning("alert delivery failed: %s", redact_active(_describe(exc)))
            self._wake.wait(POLL_SECONDS)


class _SendFailed(Exception):
    pass


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyshiftError):
        return exc.one_line()
    if isinstance(exc, _SendFailed):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
