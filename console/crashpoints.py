"""Named crash points: test hooks, not mocks.

A process passing a point named in ``KEYSHIFT_TEST_CRASH_AT`` SIGKILLs itself there, so the
crash tests resume work that was killed for real; with ``KEYSHIFT_TEST_CRASH_RECORD`` set to a
file, every point passed is appended to it, so the tests can enumerate them. Both unset (as
always outside the tests), a point costs one environment lookup.

Rotation points: "<step>:started" (journaled as started, not yet run), "<step>@<checkpoint>"
(inside the step, where a plug-in calls ``ctx.checkpoint``), "<step>:ran" (ran, not yet
journaled as done), "<step>" (journaled as done). Sync: "sync:<source>" (a source's rows and
audit entry committed).
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "KEYSHIFT_TEST_CRASH_AT"
RECORD_ENV = "KEYSHIFT_TEST_CRASH_RECORD"


def crash_point(point: str) -> None:
    record = os.environ.get(RECORD_ENV)
    if record:
        with open(record, "a", encoding="utf-8") as fh:
            fh.write(point + "\n")
    if os.environ.get(CRASH_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
