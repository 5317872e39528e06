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


def start(
    tmux: Tmux, tmp_path: Path, home: Path, size: tuple[int, int], **extra_env: str
) -> None:
    """keyshift tui in a detached tmux session of ``size``, on the store at tmp_path."""
    conf = tmp_path / "tmux.conf"
    width, height = size
    conf.write_text(
        f"set -g remain-on-exit on\nset -g status off\nset -g default-size {width}x{height}\n"
    )
    env = {
        k: v for k, v in os.environ.items()
        if k in ("PATH", "HOME", "LANG", "LC_ALL", "DBUS_SESSION_BUS_ADDRESS", "XDG_DATA_HOME",
                 "KEYSHIFT_HOME", "KEYSHIFT_SANDBOX_DIR", "KEYSHIFT_TEST_KEYRING")
    }
    env["KEYSHIFT_HOME"] = str(home)
    env.setdefault("LANG", "C.UTF-8")
    env.update(extra_env)
    # the server's own environment too: a COLUMNS/LINES inherited from the test runner would
    # make the app ignore the real terminal's size
    tmux.env = env
    # sh waits for keyshift and prints its exit status into the pane (kept by remain-on-exit):
    # tmux 3.3 now and then leaves a dead pane's process unreaped, with no #{pane_dead_status}
    command = [
        "sh", "-c", '"$@"; echo "keyshift exited with $?"', "sh",
        str(KEYSHIFT), "--inventory", str(tmp_path / "inventory.yaml"),
        "--db", str(tmp_path / "keyshift.db"), "tui",
    ]
    tmux.run(
        "-f", str(conf), "new-session", "-d", "-s", "smoke", "-x", str(width), "-y", str(height),
        *(arg for k, v in env.items() for arg in ("-e", f"{k}={v}")),
        *command,
    )


def quit_cleanly(tmux: Tmux) -> None:
    tmux.run("send-keys", "-t", "smoke", "q")
    text = tmux.wait_for("the TUI to exit", lambda t: exit_status(t) is not None)
    assert exit_status(text) == 0, text
    assert "Traceback" not in text


def test_tui_in_a_real_terminal(tmux: Tmux, tmp_path: Path, keyshift_home: Path) -> None:
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    store = Store(tmp_path / "keyshift.db")
    store.bulk_insert_credentials(
        Credential(
            id=f"declared:api-key:{name}", source="declared", kind="api-key", native_id=name,
            name=name, owner="team-support", environment="prod", agents=["support-bot"],
        )
        for name in NAMES
    )
    store.close()
    start(tmux, tmp_path, keyshift_home, (160, 45))
    # the status line follows the rows by a message, so it may paint a frame later
    text = tmux.wait_for(
        "the inventory and its count", lambda t: "smoke-charlie-github" in t and "1-4 of 4" in t
    )
    assert all(name in text for name in NAMES)

    tmux.run("send-keys", "-t", "smoke", "/")
    tmux.run("send-keys", "-t", "smoke", "-l", "alpha")
    text = tmux.wait_for(
        "the filter to apply", lambda t: "1-2 of 2" in t and "smoke-bravo-stripe" not in t
    )
    assert "smoke-alpha-openai" in text and "smoke-alpha-slack" in text
    assert "smoke-charlie-github" not in text

    tmux.run("send-keys", "-t", "smoke", "Enter")  # leave the filter box: q is a key again
    quit_cleanly(tmux)


WALK_INVENTORY = """\
version: 1
agents:
  - name: support-bot
    owner: team-support
    environment: prod
    identities:
      - {type: workspace, path: ws/support}
sources:
  - name: declared
    type: declared
"""


def _walk_store(tmp_path: Path) -> None:
    from console.audit import AuditLog
    from console.model import Grant
    from console.process import me

    (tmp_path / "inventory.yaml").write_text(WALK_INVENTORY)
    store = Store(tmp_path / "keyshift.db")
    cred = Credential(
        id="vault-prod:kv:secret/support/openai", source="vault-prod", kind="kv",
        native_id="secret/support/openai", name="support-openai", owner="team-support",
        environment="prod", location="secret/data/support/openai",
    )
    sync = store.begin_sync(["vault-prod"], "tester")
    store.apply_source(
        sync, "vault-prod", [cred],
        [Grant(agent="support-bot", credential_id=cred.id, capabilities=["read"], used=True,
               chain=["agent:support-bot", "approle:support-role", "policy:support-read",
                      "rule:secret/data/support/*"])],
        [], [], True,
    )
    store.finish_sync(sync, "ok", {})
    store.bulk_insert_credentials(
        Credential(id=f"declared:api-key:{n}", source="declared", kind="api-key", native_id=n,
                   name=n, environment="prod")
        for n in NAMES
    )
    run = store.claim_run(subject=cred.id, credential_id=cred.id, rotator="generated", plan={},
                          actor="tester", owner=me())
    store.finish_step(store.start_step(run, "identify"), "done")
    store.set_run_status(run, "awaiting-revoke", owner_pid=None)
    AuditLog(store).append("tester", "walk.test", cred.id, {})
    store.close()


@pytest.mark.parametrize("size", [(100, 30), (200, 50)])
def test_walk_the_views_and_quit(
    tmux: Tmux, tmp_path: Path, keyshift_home: Path, size: tuple[int, int]
) -> None:
    """:agents -> an agent -> a credential -> :runs -> :audit, then q, in a real terminal of
    each size; nothing is cut off that the walk needs."""
    _walk_store(tmp_path)
    start(tmux, tmp_path, keyshift_home, size)
    text = tmux.wait_for("the inventory", lambda t: "support-openai" in t)
    for column in ("NAME", "AGENTS", "OWNER", "EXPIRES", "STATUS"):
        assert column in text, (size, column)

    def keys(*sent: str) -> None:
        for key in sent:
            tmux.run("send-keys", "-t", "smoke", key)

    keys(":")
    tmux.run("send-keys", "-t", "smoke", "-l", "agents")
    keys("Enter")
    text = tmux.wait_for("the agents", lambda t: "CAN REACH" in t and "support-bot" in t)
    assert "creds › agents" in text  # noqa: RUF001
    keys("Enter")
    text = tmux.wait_for("the reach tree", lambda t: "policy:support-read" in t)
    assert "approle:support-role" in text and "✓ used" in text
    keys("Down", "Down", "Down", "Down", "Enter")
    text = tmux.wait_for("the credential", lambda t: "credential support-openai" in t)
    assert "vault-prod:kv:secret/support/openai" in text
    keys(":")
    tmux.run("send-keys", "-t", "smoke", "-l", "runs")
    keys("Enter")  # typed as fast as tmux sends: the command bar keeps what came early
    text = tmux.wait_for("the runs", lambda t: "awaiting-revoke" in t and "STATUS" in t)
    keys(":")
    tmux.run("send-keys", "-t", "smoke", "-l", "audit")
    keys("Enter")
    text = tmux.wait_for("the audit log", lambda t: "walk.test" in t and "chain OK" in t)
    quit_cleanly(tmux)


def _colours(pane: str) -> list[tuple[int, int, int]]:
    """Every foreground and background colour the pane's escapes carry, as RGB."""
    found = []
    for _kind, rest in re.findall(r"\x1b\[(?:[0-9;]*;)?([34]8);([0-9;]+)m", pane):
        parts = [int(p) for p in rest.split(";") if p]
        if parts[0] == 2 and len(parts) >= 4:
            found.append((parts[1], parts[2], parts[3]))
        elif parts[0] == 5 and len(parts) >= 2:
            n = parts[1]
            if n >= 232:
                level = 8 + (n - 232) * 10
                found.append((level, level, level))
            elif n >= 16:
                steps = (0, 95, 135, 175, 215, 255)
                n -= 16
                found.append((steps[n // 36], steps[(n // 6) % 6], steps[n % 6]))
            else:
                found.append({0: (0, 0, 0), 7: (192, 192, 192), 8: (128, 128, 128),
                              15: (255, 255, 255)}.get(n, (n, -1, -1)))
    return found


def test_no_color_paints_in_greys_only(tmux: Tmux, tmp_path: Path, keyshift_home: Path) -> None:
    _walk_store(tmp_path)
    seen = {}
    for no_color in (False, True):
        tmux.run("kill-session", "-t", "smoke", check=False)
        start(tmux, tmp_path, keyshift_home, (120, 30), **({"NO_COLOR": "1"} if no_color else {}))
        tmux.wait_for("the inventory", lambda t: "support-openai" in t)
        painted = tmux.run("capture-pane", "-p", "-e", "-t", "smoke").stdout
        seen[no_color] = _colours(painted)
        quit_cleanly(tmux)
    assert any(r != g or g != b for r, g, b in seen[False]), "in colour without NO_COLOR"
    assert seen[True], "the pane carries its (grey) colours"
    assert all(r == g == b for r, g, b in seen[True]), sorted(set(seen[True]))


def exit_status(pane: str) -> int | None:
    """The exit status the pane shows: sh's echo, or tmux's own remain-on-exit line (tmux now
    and then drops a process's last output, or leaves it unreaped, so either may be missing)."""
    found = re.search(r"keyshift exited with (\d+)", pane) or re.search(
        r"Pane is dead \(status (\d+)", pane
    )
    return int(found.group(1)) if found else None
