"""Which process holds something (a rotation's claim, a sync): pid, host and start time.

A pid alone is not an identity: after a crash the pid can be reused by an unrelated process,
and a claim checked only by pid would then look held forever. The start time (from
/proc/<pid>/stat, in clock ticks since boot, with the boot id) tells the original process
from a newcomer with the same pid.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_time(pid: int) -> str | None:
    """``<boot id>:<start ticks>`` of ``pid``, or None when it does not exist (or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ")"
    fields = stat.rsplit(")", 1)[-1].split()
    return f"{_boot_id()}:{fields[19]}" if len(fields) > 19 else None


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: str | None

    def as_dict(self) -> dict[str, object]:
        return {"host": self.host, "pid": self.pid, "started": self.started}


def me() -> Owner:
    return Owner(socket.gethostname(), os.getpid(), start_time(os.getpid()))


def alive(host: str | None, pid: int | None, started: str | None) -> bool | None:
    """Whether that process still runs: True, False, or None when it is on another host
    (nothing here can tell)."""
    if not pid:
        return False
    if host and host != socket.gethostname():
        return None
    now = start_time(pid)
    if now is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return started is None
        return started is None  # no /proc: a live pid is all we can check
    return started is None or now == started
