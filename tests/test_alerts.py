"""Alerts (console/alerts.py): recorded once per dedupe key, delivered to a real loopback HTTP
receiver and a real command, retried while the receiver is down, never carrying a value.

Backoff waits go through an injected ``sleep`` that records them (and brings a receiver up, or
stops the work), so nothing here waits on the clock or asserts a duration.
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
from pathlib import Path
from typing import Any

import keyring
import pytest

from console.alerts import BACKOFF_CAP_SECONDS, Alerter
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


class Sleeps:
    """An injected sleep: records each wait and runs ``then(n)`` after the n-th."""

    def __init__(self, then: Callable[[int], None] | None = None) -> None:
        self.waits: list[float] = []
        self.then = then

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.then:
            self.then(len(self.waits))


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
    try:
        alerter = Alerter(
            config(receiver.url, webhook={"token": f"keyring:{service}/webhook"}),
            store, sleep=Sleeps(),
        )
        # as the engine does: the run's values are in its scope while its error is handled
        with ValueScope("rotation openai-prod") as scope:
            scope.add(canary)
            assert raise_failed(alerter, error=f"403 permission denied for {canary}")
            assert not raise_failed(alerter, error="a second report of the same failure")
        assert alerter.deliver_pending() == 1
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


def test_a_receiver_that_is_down_is_retried_until_it_comes_up(
    store: Store, receivers: list[Receiver]
) -> None:
    port = free_port()

    def come_up(n: int) -> None:
        if n == 2:  # after the second failed send
            receivers.append(Receiver(port))

    sleeps = Sleeps(come_up)
    alerter = Alerter(config(f"http://127.0.0.1:{port}/hook", retries=5), store, sleep=sleeps)
    assert raise_failed(alerter, key="a")
    assert raise_failed(alerter, key="b", run_id="run-2")
    first = store.get_alert("a")
    assert first is not None
    assert first["attempts"] == 0, "raising an alert sends nothing"

    assert alerter.deliver_pending() == 2
    a, b = store.get_alert("a"), store.get_alert("b")
    assert a is not None and b is not None
    assert a["attempts"] == 3 and a["delivered_at"] is not None
    assert "unreachable" in a["last_error"] and "refused" in a["last_error"]
    assert b["attempts"] == 1 and b["delivered_at"] is not None
    assert len(sleeps.waits) == 2
    assert all(0 < w <= BACKOFF_CAP_SECONDS for w in sleeps.waits)
    (receiver,) = receivers
    assert [body["run_id"] for body in receiver.bodies()] == ["run-1", "run-2"], "oldest first"


def test_an_alert_out_of_attempts_is_kept_and_not_retried(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    sleeps = Sleeps()
    alerter = Alerter(config(f"http://127.0.0.1:{free_port()}/hook", retries=2), store,
                      sleep=sleeps)
    assert raise_failed(alerter)
    assert alerter.deliver_pending() == 0
    row = store.get_alert("rotation-failed:run-1")
    assert row is not None
    assert row["attempts"] == 3 and row["delivered_at"] is None
    assert len(sleeps.waits) == 2, "a wait between sends, none after the last"
    assert "giving up" in caplog.text
    assert alerter.deliver_pending() == 0
    row = store.get_alert("rotation-failed:run-1")
    assert row is not None and row["attempts"] == 3
    assert store.undelivered_alert_counts(3) == {"pending": 0, "given-up": 1}


def test_a_stop_ends_delivery_between_sends(store: Store) -> None:
    stop = threading.Event()
    alerter = Alerter(config(f"http://127.0.0.1:{free_port()}/hook", retries=10), store,
                      sleep=Sleeps(lambda n: stop.set()))
    assert raise_failed(alerter)
    assert alerter.deliver_pending(stop) == 0
    row = store.get_alert("rotation-failed:run-1")
    assert row is not None and row["attempts"] == 1


def test_a_redirect_is_a_failed_send_and_the_token_does_not_follow_it(
    store: Store, receivers: list[Receiver]
) -> None:
    elsewhere = Receiver()
    receivers.append(elsewhere)
    receiver = Receiver(statuses=(302,), redirect_to=elsewhere.url)
    receivers.append(receiver)
    alerter = Alerter(config(receiver.url, retries=0), store, sleep=Sleeps())
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
    alerter = Alerter(config(receiver.url, webhook={"timeout_seconds": 60}), store,
                      sleep=Sleeps())
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
    alerter = Alerter(
        config(receiver.url, command=[sys.executable, "-c", WRITE_STDIN, str(out), str(flag)]),
        store, sleep=Sleeps(),
    )
    assert raise_failed(alerter)
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
