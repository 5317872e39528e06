"""`keyshift tui` in a real terminal: tmux on a private socket, keys typed, the pane read.

Bounded polling only (no fixed sleeps as assertions); the tmux server is killed at the end
whatever happens, and the TUI's exit status is read from the dead pane (remain-on-exit).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from console.model import Credential
from console.store import Store

KEYSHIFT = Path(sys.executable).with_name("keyshift")
WAIT = 30.0  # seconds: an upper bound for the app to start or react, never a measurement

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

INVENTORY = """\
version: 1
agents:
  - name: support-bot
    owner: team-support
    environment: prod
sources:
  - name: declared
    type: declared
"""

NAMES = ("smoke-alpha-openai", "smoke-bravo-stripe", "smoke-charlie-github", "smoke-alpha-slack")


class Tmux:
    def __init__(self, socket: str) -> None:
        self.socket = socket
        self.env: dict[str, str] | None = None  # the server's environment, once started

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=check,
            timeout=WAIT, env=self.env,
        )

    def pane(self) -> str:
        return self.run("capture-pane", "-p", "-t", "smoke", check=False).stdout

    def wait_for(self, what: str, ok: Callable[[str], bool]) -> str:
        deadline = time.monotonic() + WAIT
        text = ""
        while time.monotonic() < deadline:
            text = self.pane()
            if ok(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; the pane shows:\n{text}")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(f"keyshift-smoke-{uuid.uuid4().hex[:10]}")
    try:
        yield t
    finally:
        t.run("kill-server", check=False)


def test_tui_in_a_real_terminal(tmux: Tmux, tmp_path: Path, keyshift_home: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY)
    db = tmp_path / "keyshift.db"
    store = Store(db)
    store.bulk_insert_credentials(
        Credential(
            id=f"declared:api-key:{name}", source="declared", kind="api-key", native_id=name,
            name=name, owner="team-support", environment="prod", agents=["support-bot"],
        )
        for name in NAMES
    )
    store.close()
    conf = tmp_path / "tmux.conf"
    conf.write_text("set -g remain-on-exit on\nset -g status off\nset -g default-size 160x45\n")
    env = {
        k: v for k, v in os.environ.items()
        if k in ("PATH", "HOME", "LANG", "LC_ALL", "DBUS_SESSION_BUS_ADDRESS", "XDG_DATA_HOME",
                 "KEYSHIFT_HOME", "KEYSHIFT_SANDBOX_DIR", "KEYSHIFT_TEST_KEYRING")
    }
    env["KEYSHIFT_HOME"] = str(keyshift_home)
    env.setdefault("LANG", "C.UTF-8")
    # the server's own environment too: a COLUMNS/LINES inherited from the test runner would
    # make the app ignore the real terminal's size
    tmux.env = env
    # sh waits for keyshift and prints its exit status into the pane (kept by remain-on-exit):
    # tmux 3.3 now and then leaves a dead pane's process unreaped, with no #{pane_dead_status}
    command = [
        "sh", "-c", '"$@"; echo "keyshift exited with $?"', "sh",
        str(KEYSHIFT), "--inventory", str(inventory), "--db", str(db), "tui",
    ]
    tmux.run(
        "-f", str(conf), "new-session", "-d", "-s", "smoke", "-x", "160", "-y", "45",
        *(arg for k, v in env.items() for arg in ("-e", f"{k}={v}")),
        *command,
    )
    text = tmux.wait_for("the inventory", lambda t: "smoke-charlie-github" in t)
    assert all(name in text for name in NAMES)
    assert "1-4 of 4" in text

    tmux.run("send-keys", "-t", "smoke", "/")
    tmux.run("send-keys", "-t", "smoke", "-l", "alpha")
    text = tmux.wait_for(
        "the filter to apply", lambda t: "1-2 of 2" in t and "smoke-bravo-stripe" not in t
    )
    assert "smoke-alpha-openai" in text and "smoke-alpha-slack" in text
    assert "smoke-charlie-github" not in text

    tmux.run("send-keys", "-t", "smoke", "Enter")  # leave the filter box: q is a key again
    tmux.run("send-keys", "-t", "smoke", "q")
    text = tmux.wait_for("the TUI to exit", lambda t: exit_status(t) is not None)
    assert exit_status(text) == 0, text
    assert "Traceback" not in text


def exit_status(pane: str) -> int | None:
    """The exit status the pane shows: sh's echo, or tmux's own remain-on-exit line (tmux now
    and then drops a process's last output, or leaves it unreaped, so either may be missing)."""
    found = re.search(r"keyshift exited with (\d+)", pane) or re.search(
        r"Pane is dead \(status (\d+)", pane
    )
    return int(found.group(1)) if found else None
