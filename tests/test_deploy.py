"""The shipped systemd unit: valid for systemd, hardened, and its command line is one this
keyshift accepts."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "keyshift-schedule.service"
SHIPPED_BIN = "/opt/keyshift/bin/keyshift"


def _local_unit(tmp_path: Path) -> Path:
    """The unit with its ExecStart pointed at this checkout's keyshift (systemd checks that
    the program exists)."""
    keyshift = Path(sys.executable).parent / "keyshift"
    assert keyshift.exists(), keyshift
    local = tmp_path / UNIT.name
    local.write_text(UNIT.read_text().replace(SHIPPED_BIN, str(keyshift)))
    return local


def _exec_start() -> list[str]:
    line = next(x for x in UNIT.read_text().splitlines() if x.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", str(_local_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "keyshift-schedule.service" not in done.stderr  # no warning about our unit


def test_the_unit_is_hardened(tmp_path: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(_local_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", done.stdout)
    assert match, done.stdout[-2000:] + done.stderr
    # systemd's scale runs from 0 (locked down) to 10 (exposed); "OK" is below 2.0
    assert float(match[1]) < 2.0 and match[2] == "OK", match[0]


def test_the_units_command_line_is_accepted_by_keyshift() -> None:
    argv = _exec_start()
    assert argv[0] == SHIPPED_BIN
    # every option the unit passes is one `schedule run` knows (--help parses the options
    # first, so an unknown one fails here)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "keyshift"), *argv[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "--log-format" in done.stdout and "--metrics-port" in done.stdout


def test_the_unit_names_keyshifts_own_keys_by_systemd_credential() -> None:
    text = UNIT.read_text()
    loaded = set(re.findall(r"^LoadCredential=([\w.-]+):", text, flags=re.M))
    referenced = set(re.findall(r"=credential:([\w.-]+)$", text, flags=re.M))
    assert referenced and referenced <= loaded, (referenced, loaded)
