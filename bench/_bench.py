"""Shared by the benches; not a bench itself: a free loopback port, a server process started
and stopped as a group, and the warm-up and interleaved timed rounds each bench runs.
Importing it puts the repository on ``sys.path``, so a bench imports ``console`` as it is in
the tree.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    argv: list[str], health_url: str, name: str, *, home: Path, timeout: float = 30
) -> subprocess.Popen:
    """Start a server in a session of its own (its output to /dev/null, ``HOME`` in
    ``home``) and wait until ``health_url`` answers 200; exit the bench if it never does."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=home,
        env={**os.environ, "HOME": str(home)},
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(health_url, timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    stop(proc)
    sys.exit(f"bench: {name} did not start within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    """Stop a server started by ``start_server``, and whatever it started."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def timed_rounds(
    sides: dict[str, Callable[[], Any]],
    rounds: int,
    check: Callable[[dict[str, Any]], str | None],
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """One untimed warm-up round of every side, then ``rounds`` timed rounds, interleaved (side
    after side, so a slow spell of the machine falls on all of them alike). ``check`` gets the
    warm-up's answers and says what is wrong with them, or None; every timed round must answer
    as its side's warm-up did. Either failing ends the bench. Returns (answers, times)."""
    answers = {name: fn() for name, fn in sides.items()}
    problem = check(answers)
    if problem:
        sys.exit(f"bench: {problem}")
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            t0 = time.perf_counter()
            got = fn()
            times[name].append(time.perf_counter() - t0)
            if got != answers[name]:
                sys.exit(f"bench: {name} answered differently from one round to the next")
    return answers, times


def with_own_sandbox(prefix: str, run: Callable[[Path, Any], None]) -> None:
    """Start a sandbox of the bench's own (its own data dir and keyring service, so nothing a
    person or the tests run is touched), call ``run(home, state)``, and always stop it."""
    import tempfile
    import uuid

    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["KEYSHIFT_HOME"] = str(home)
    os.environ["KEYSHIFT_SANDBOX_DIR"] = str(home / "sandbox")
    os.environ["KEYSHIFT_SANDBOX_KEYRING_SERVICE"] = f"keyshift-bench-{uuid.uuid4().hex[:8]}"
    from console import sandbox as sb

    state = sb.up()
    try:
        run(home, state)
    finally:
        sb.down()

