"""Alerts (console/alerts.py): recorded once per dedupe key, delivered to a real loopback HTTP
receiver and a real command, retried while the receiver is down, never carrying a value.

A pass never waits: a failed send stores when the alert is next due. The Alerter's clock is
injected (``Clock``), so a test moves time past that instead of waiting, and asserts no
duration.
"""

from __future__ import annotations

import http.server
import itertools
import json
import logging
import os
import secrets as pysecrets
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import keyring
import pytest

from console.alerts import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    MIN_WAIT_SECONDS,
    POLL_SECONDS,
    Alerter,
    backoff,
)
from console.errors import UsageError
from console.inventory import Alerts
from console.redaction import ValueScope
from console.store import Store
from rotators.values import REDACTED

FIELDS = {
    "credential": "declared:api-key:openai-prod",
    "step": "verify",
    "error": "403 permission denied",
    "run_id": "run-1",
    "agent": "support-bot",
}
SUMMARY = "rotation of openai-prod failed at verify: 403 permission denied"


class Receiver:
    """A real HTTP server on loopback that records each POST and answers with the next
    status of ``statuses`` (the last one repeats). ``release`` cleared makes it hold each
    request until set; ``entered`` is set once a request arrived."""

    def __init__(self, port: int = 0, statuses: tuple[int, ...] = (200,),
                 redirect_to: str | None = None) -> None:
        self.posts: list[dict[str, Any]] = []
        self.statuses = list(statuses)
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver.entered.set()
                receiver.release.wait(60)
                receiver.posts.append(
                    {"path": self.path, "headers": dict(self.headers.items()), "body": body}
                )
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else (
                    receiver.statuses[0]
                )
                self.send_response(status)
                if redirect_to:
                    self.send_header("Location", redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(p["body"]) for p in self.posts]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "ks.db")
    yield s
    s.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_urls = itertools.count(1)


def webhook_ref(url: str) -> str:
    """The URL by reference, as the inventory requires (a webhook URL is a secret)."""
    name = f"KEYSHIFT_TEST_WEBHOOK_{os.getpid()}_{next(_urls)}"
    os.environ[name] = url
    return f"env:{name}"


def config(url: str | None = None, **extra: Any) -> Alerts:
    data: dict[str, Any] = dict(extra)
    if url is not None:
        data["webhook"] = {"url": webhook_ref(url), **data.pop("webhook", {})}
    return Alerts.model_validate(data)


class Clock:
    """The Alerter's injected clock: still until a test moves it."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def to(self, when: datetime) -> None:
        assert when >= self.now, "time only moves forward"
        self.now = when

    def past_due(self, store: Store, key: str) -> None:
        """To the moment the alert is due again (due means not later than now)."""
        self.to(next_attempt(store, key))


def row_of(store: Store, key: str) -> dict[str, Any]:
    row = store.get_alert(key)
    assert row is not None
    return row


def next_attempt(store: Store, key: str) -> datetime:
    at = row_of(store, key)["next_attempt_at"]
    assert at is not None, "a failed send with sends left says when the next is due"
    return datetime.fromisoformat(at)


def wait_until(check: Callable[[], bool], what: str) -> None:
    """Poll for a state another thread reaches (bounded; not a timing assertion)."""
    for _ in range(600):
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def raise_failed(alerter: Alerter, key: str = "rotation-failed:run-1", **fields: Any) -> bool:
    return alerter.raise_alert(
        "rotation-failed", "openai-prod", dedupe_key=key, summary=SUMMARY,
        fields={**FIELDS, **fields},
    )


# --- the webhook --------------------------------------------------------------------------------


def test_one_post_per_alert_with_its_fields_and_no_value(
    store: Store, receivers: list[Receiver], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = Receiver(statuses=(500, 200))
    receivers.append(receiver)
    service = f"keyshift-test-alerts-{uuid.uuid4().hex[:8]}"
    token = "tok-" + pysecrets.token_urlsafe(24)
    keyring.set_password(service, "webhook", token)
    canary = "canary-" + pysecrets.token_urlsafe(24)
    clock = Clock()
    try:
        alerter = Alerter(
            config(receiver.url, webhook={"token": f"keyring:{service}/webhook"}),
            store, clock=clock,
        )
        # as the engine does: the run's values are in its scope while its error is handled
        with ValueScope("rotation openai-prod") as scope:
            scope.add(canary)
            assert raise_failed(alerter, error=f"403 permission denied for {canary}")
            assert not raise_failed(alerter, error="a second report of the same failure")
        assert alerter.deliver_pending() == 0, "the receiver answered 500"
        clock.past_due(store, "rotation-failed:run-1")
        assert alerter.deliver_pending() == 1
        clock.to(clock.now + timedelta(days=1))
        assert alerter.deliver_pending() == 0, "a delivered alert is not sent again"
    finally:
        keyring.delete_password(service, "webhook")

    # the first POST got a 500, the second delivered it: two sends of one alert, no more
    assert len(receiver.posts) == 2
    post = receiver.posts[-1]
    assert post["path"] == "/hook"
    assert post["headers"]["Content-Type"] == "application/json"
    assert post["headers"]["Authorization"] == f"Bearer {token}"
    body = json.loads(post["body"])
    assert body == receiver.bodies()[0], "a retry sends the same body"
    assert body["event"] == "rotation-failed"
    assert body["subject"] == "openai-prod"
    assert body["summary"] == SUMMARY
    assert body["text"] == (
        "keyshift: rotation of openai-prod failed at verify: 403 permission denied"
    )
    assert body["credential"] == FIELDS["credential"]
    assert body["step"] == "verify"
    assert body["run_id"] == "run-1"
    assert body["agent"] == "support-bot"
    assert body["error"] == f"403 permission denied for {REDACTED}"
    assert body["host"] == socket.gethostname()
    assert body["at"].endswith("+00:00")

    row = store.get_alert("rotation-failed:run-1")
    assert row is not None
    assert row["attempts"] == 2
    assert row["delivered_at"] is not None
    assert row["next_attempt_at"] is None
    assert "HTTP 500" in row["last_error"]
    assert row["body"] == body

    # neither the canary nor the token anywhere keyshift wrote: body, log, store file
    store.close()
    written = b"".join(
        p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("ks.db")
    )
    for secret in (canary, token):
        assert secret not in post["body"].decode()
        assert secret not in caplog.text
        assert secret.encode() not in written


def test_events_the_inventory_does_not_ask_for_are_not_recorded(store: Store) -> None:
    alerter = Alerter(config("http://127.0.0.1:9/hook", events=["rotation-failed"]), store)
    assert alerter.raise_alert(
        "overdue", "openai-prod", dedupe_key="overdue:openai-prod", summary="overdue", fields={}
    ) is False
    assert store.get_alert("overdue:openai-prod") is None
    with pytest.raises(UsageError, match="unknown alert event"):
        alerter.raise_alert("rotation-exploded", "x", dedupe_key="k", summary="s", fields={})
    with pytest.raises(UsageError, match="may not be named text"):
        alerter.raise_alert("rotation-failed", "x", dedupe_key="k", summary="s",
                            fields={"text": "mine"})


def test_a_receiver_that_is_down_is_tried_again_once_the_alert_is_due(
    store: Store, receivers: list[Receiver]
) -> None:
    port = free_port()
    clock = Clock()
    alerter = Alerter(config(f"http://127.0.0.1:{port}/hook", retries=5), store, clock=clock)
    assert raise_failed(alerter, key="a")
    assert raise_failed(alerter, key="b", run_id="run-2")
    assert row_of(store, "a")["attempts"] == 0, "raising an alert sends nothing"

    # the receiver is down: one send of each alert, and each is put off
    start = clock.now
    assert alerter.deliver_pending() == 0
    for key in ("a", "b"):
        row = row_of(store, key)
        assert row["attempts"] == 1 and row["delivered_at"] is None
        assert "unreachable" in row["last_error"] and "refused" in row["last_error"]
        assert start < next_attempt(store, key) <= start + timedelta(
            seconds=BACKOFF_BASE_SECONDS)

    # the receiver is up, but neither alert is due yet: a pass sends nothing
    receivers.append(Receiver(port))
    (receiver,) = receivers
    assert alerter.deliver_pending() == 0
    first_due = min(next_attempt(store, "a"), next_attempt(store, "b"))
    clock.to(first_due - timedelta(microseconds=1))
    assert alerter.deliver_pending() == 0
    assert receiver.posts == []
    assert [row_of(store, k)["attempts"] for k in ("a", "b")] == [1, 1]

    # once due, each goes out with its second send
    clock.to(max(next_attempt(store, "a"), next_attempt(store, "b")))
    assert alerter.deliver_pending() == 2
    for key in ("a", "b"):
        row = row_of(store, key)
        assert row["attempts"] == 2 and row["delivered_at"] is not None
    assert [body["run_id"] for body in receiver.bodies()] == ["run-1", "run-2"], "oldest first"


def test_one_pass_makes_one_send_per_alert(
    store: Store, receivers: list[Receiver]
) -> None:
    receiver = Receiver(statuses=(503,))
    receivers.append(receiver)
    alerter = Alerter(config(receiver.url, retries=10), store, clock=Clock())
    for n in range(3):
        assert raise_failed(alerter, key=f"k{n}", run_id=f"run-{n}")
    assert alerter.deliver_pending() == 0
    assert len(receiver.posts) == 3
    assert [row_of(store, f"k{n}")["attempts"] for n in range(3)] == [1, 1, 1]
    assert [b["run_id"] for b in receiver.bodies()] == ["run-0", "run-1", "run-2"]


def test_an_alert_out_of_attempts_is_given_up_and_kept(
    store: Store, receivers: list[Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="keyshift.alerts")
    receiver = Receiver(statuses=(500,))
    receivers.append(receiver)
    clock = Clock()
    alerter = Alerter(config(receiver.url, retries=3), store, clock=clock)
    key = "rotation-failed:run-1"
    assert raise_failed(alerter)
    for attempt in range(1, 4):  # the failures before the last send: each puts it off
        before = clock.now
        assert alerter.deliver_pending() == 0
        assert row_of(store, key)["attempts"] == attempt
        bound = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
        assert before < next_attempt(store, key) <= before + timedelta(seconds=bound)
        assert "giving up" not in caplog.text
        clock.past_due(store, key)
    for _ in range(5):  # the last send, then passes long after: nothing more
        assert alerter.deliver_pending() == 0
        clock.to(clock.now + timedelta(days=1))
    row = row_of(store, key)
    assert row["attempts"] == 4 == len(receiver.posts)
    assert row["delivered_at"] is None and row["next_attempt_at"] is None
    assert "HTTP 500" in row["last_error"]
    assert caplog.text.count("giving up") == 1
    assert store.undelivered_alert_counts(4) == {"pending": 0, "given-up": 1}
    assert alerter.seconds_until_due() == POLL_SECONDS, "a given-up alert wakes nobody"


def test_backoff_is_full_jitter_doubling_from_30s_to_an_hour() -> None:
    for failures, delay in ((1, 30.0), (2, 60.0), (4, 240.0), (8, 3600.0), (20, 3600.0)):
        waits = [backoff(failures) for _ in range(400)]
        assert all(0 <= w <= delay for w in waits)
        # full jitter: spread over the whole range, not only its upper half (a chance of
        # 2**-400 to fail by luck)
        assert min(waits) < delay / 2 < max(waits)


def test_the_thread_sleeps_until_the_earliest_alert_is_due(store: Store) -> None:
    clock = Clock()
    alerter = Alerter(config(f"http://127.0.0.1:{free_port()}/hook"), store, clock=clock)
    assert alerter.seconds_until_due() == POLL_SECONDS, "nothing to send: the poll"
    assert raise_failed(alerter)
    assert alerter.seconds_until_due() == MIN_WAIT_SECONDS, "a new alert is due now"
    assert alerter.deliver_pending() == 0
    due = next_attempt(store, "rotation-failed:run-1")
    until = (due - clock.now).total_seconds()
    assert alerter.seconds_until_due() == pytest.approx(max(MIN_WAIT_SECONDS, until))
    clock.to(due)
    assert alerter.seconds_until_due() == MIN_WAIT_SECONDS


def test_a_stop_ends_the_pass_between_sends(
    store: Store, receivers: list[Receiver]
) -> None:
    receiver = Receiver(statuses=(500,))
    receivers.append(receiver)
    receiver.release.clear()  # the first send is held until the stop is asked for
    stop = threading.Event()
    alerter = Alerter(config(receiver.url), store, clock=Clock())
    assert raise_failed(alerter, key="first")
    assert raise_failed(alerter, key="second", run_id="run-2")
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(alerter.deliver_pending(stop)))
    worker.start()
    assert receiver.entered.wait(30)
    stop.set()
    receiver.release.set()
    worker.join(60)
    assert done == [0]
    assert row_of(store, "first")["attempts"] == 1
    assert row_of(store, "second")["attempts"] == 0
    assert len(receiver.posts) == 1


def test_two_senders_never_make_the_same_attempt(
    store: Store, receivers: list[Receiver], tmp_path: Path
) -> None:
    receiver = Receiver(statuses=(500,))
    receivers.append(receiver)
    receiver.release.clear()
    clock = Clock()
    other = Store(tmp_path / "ks.db")  # a second process's connection to the same store
    try:
        mine = Alerter(config(receiver.url), store, clock=clock)
        theirs = Alerter(config(receiver.url), other, clock=clock)
        assert raise_failed(mine)
        worker = threading.Thread(target=mine.deliver_pending)
        worker.start()
        assert receiver.entered.wait(30)
        # the first send is under way: the other sender finds the alert claimed, not due
        assert theirs.deliver_pending() == 0
        receiver.release.set()
        worker.join(60)
        assert len(receiver.posts) == 1
        row = row_of(store, "rotation-failed:run-1")
        assert row["attempts"] == 1
        # the swap itself: an attempt counted from a stale read is refused
        assert not other.claim_alert_attempt(row["id"], 0, clock.now)
        assert row_of(store, "rotation-failed:run-1")["attempts"] == 1
    finally:
        receiver.release.set()
        other.close()


def test_a_redirect_is_a_failed_send_and_the_token_does_not_follow_it(
    store: Store, receivers: list[Receiver]
) -> None:
    elsewhere = Receiver()
    receivers.append(elsewhere)
    receiver = Receiver(statuses=(302,), redirect_to=elsewhere.url)
    receivers.append(receiver)
    alerter = Alerter(config(receiver.url, retries=0), store)
    assert raise_failed(alerter)
    assert alerter.deliver_pending() == 0
    row = store.get_alert("rotation-failed:run-1")
    assert row is not None and "HTTP 302" in row["last_error"]
    assert len(receiver.posts) == 1
    assert elsewhere.posts == []


def test_the_background_thread_never_holds_up_raise_alert(
    store: Store, receivers: list[Receiver]
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    receiver.release.clear()  # the receiver takes the request and does not answer yet
    alerter = Alerter(config(receiver.url, webhook={"timeout_seconds": 60}), store)
    alerter.start()
    try:
        assert raise_failed(alerter, key="first")
        assert receiver.entered.wait(30), "the thread sent the first alert"
        # the first send hangs in the receiver; raising another returns all the same
        assert raise_failed(alerter, key="second", run_id="run-2")
        first = store.get_alert("first")
        assert first is not None and first["delivered_at"] is None
        receiver.release.set()
        wait_until(
            lambda: all((store.get_alert(k) or {}).get("delivered_at") for k in
                        ("first", "second")),
            "both alerts delivered",
        )
    finally:
        alerter.stop()
    assert [b["run_id"] for b in receiver.bodies()] == ["run-1", "run-2"]

    # after the thread stopped, a last pass (schedule run --once) still delivers
    assert raise_failed(alerter, key="third", run_id="run-3")
    assert alerter.deliver_pending() == 1
    assert [b["run_id"] for b in receiver.bodies()] == ["run-1", "run-2", "run-3"]


# --- the command --------------------------------------------------------------------------------

WRITE_STDIN = (
    "import pathlib, sys\n"
    "out = pathlib.Path(sys.argv[1])\n"
    "flag = pathlib.Path(sys.argv[2]) if len(sys.argv) > 2 else None\n"
    "if flag is not None and not flag.exists():\n"
    "    flag.touch()\n"
    "    sys.stderr.write('receiver busy\\n')\n"
    "    sys.exit(3)\n"
    "with out.open('ab') as f:\n"
    "    f.write(sys.stdin.buffer.read() + b'\\n')\n"
)


def test_the_command_gets_the_json_on_stdin(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "got.jsonl"
    alerter = Alerter(config(command=[sys.executable, "-c", WRITE_STDIN, str(out)]), store)
    assert raise_failed(alerter)
    assert alerter.deliver_pending() == 1
    (line,) = out.read_bytes().splitlines()
    body = json.loads(line)
    row = store.get_alert("rotation-failed:run-1")
    assert row is not None
    assert body == row["body"]
    assert body["text"].startswith("keyshift: rotation of openai-prod failed")


def test_a_failing_command_is_retried_without_resending_the_webhook(
    store: Store, receivers: list[Receiver], tmp_path: Path
) -> None:
    receiver = Receiver()
    receivers.append(receiver)
    out, flag = tmp_path / "got.jsonl", tmp_path / "failed-once"
    clock = Clock()
    alerter = Alerter(
        config(receiver.url, command=[sys.executable, "-c", WRITE_STDIN, str(out), str(flag)]),
        store, clock=clock,
    )
    assert raise_failed(alerter)
    assert alerter.deliver_pending() == 0
    clock.past_due(store, "rotation-failed:run-1")
    assert alerter.deliver_pending() == 1
    row = store.get_alert("rotation-failed:run-1")
    assert row is not None
    assert row["attempts"] == 2
    assert "exited 3: receiver busy" in row["last_error"]
    assert len(receiver.posts) == 1, "the webhook took it the first time"
    assert len(out.read_bytes().splitlines()) == 1


def test_a_command_that_hangs_is_cut_off(store: Store) -> None:
    alerter = Alerter(
        config(command=[sys.executable, "-c", "import time; time.sleep(60)"], retries=0),
        store, command_timeout=0.2,
    )
    assert raise_failed(alerter)
    assert alerter.deliver_pending() == 0
    row = store.get_alert("rotation-failed:run-1")
    assert row is not None and "did not finish" in row["last_error"]


# --- no part of the URL or the token in an error ------------------------------------------------


def fragments(secret: str, size: int = 8) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def assert_nowhere(secret: str, *texts: str) -> None:
    for text in texts:
        leaked = sorted(f for f in fragments(secret) if f in text)
        assert not leaked, f"fragments of the secret in {text!r}: {leaked}"


@pytest.mark.parametrize("where", ["inside", "at the end"])
def test_a_url_with_whitespace_is_refused_by_its_reference_alone(
    store: Store, receivers: list[Receiver], caplog: pytest.LogCaptureFixture, where: str
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = Receiver()
    receivers.append(receiver)
    secret = "services/T0/B0/" + pysecrets.token_urlsafe(24)
    url = f"{receiver.url}/{secret} x" if where == "inside" else f"{receiver.url}/{secret}\n"
    cfg = config(url, retries=0)
    assert cfg.webhook is not None
    alerter = Alerter(cfg, store)
    assert raise_failed(alerter)
    assert alerter.deliver_pending() == 0
    error = row_of(store, "rotation-failed:run-1")["last_error"]
    assert error == (
        f"webhook: {cfg.webhook.url} holds a URL with whitespace or control characters")
    assert receiver.posts == [], "refused before anything is sent"
    assert_nowhere(secret, error, caplog.text)
    assert_nowhere(url, error, caplog.text)


def test_a_token_with_a_newline_is_refused_by_its_reference_alone(
    store: Store, receivers: list[Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = Receiver()
    receivers.append(receiver)
    token = "tok-" + pysecrets.token_urlsafe(24) + "\n"
    name = f"KEYSHIFT_TEST_WEBHOOK_TOKEN_{os.getpid()}"
    os.environ[name] = token
    try:
        alerter = Alerter(config(receiver.url, retries=0, webhook={"token": f"env:{name}"}),
                          store)
        assert raise_failed(alerter)
        assert alerter.deliver_pending() == 0
    finally:
        del os.environ[name]
    error = row_of(store, "rotation-failed:run-1")["last_error"]
    assert error == (
        f"webhook: env:{name} holds a token with whitespace or control characters")
    assert receiver.posts == []
    assert_nowhere(token, error, caplog.text)


def test_a_library_error_about_the_url_is_told_by_its_type_alone(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # http.client refuses a port that is not a number by quoting it; here the quoted part is
    # the secret
    caplog.set_level(logging.DEBUG)
    secret = "S" + pysecrets.token_hex(16)
    url = f"http://127.0.0.1:{secret}/hook"
    alerter = Alerter(config(url, retries=0), store)
    assert raise_failed(alerter)
    assert alerter.deliver_pending() == 0
    error = row_of(store, "rotation-failed:run-1")["last_error"]
    assert error == "webhook: InvalidURL"
    assert_nowhere(secret, error, caplog.text)
