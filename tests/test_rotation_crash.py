"""Crash safety, for every issuer and target: a rotation SIGKILLed at every journal point and
at every checkpoint inside a step, then resumed.

For each scenario of tests/rotation_support.py, one clean run in a child process records the
points it passes (``KEYSHIFT_TEST_CRASH_RECORD``); then, for each point, a fresh copy of the
scenario is rotated in a child process that kills itself there for real
(``KEYSHIFT_TEST_CRASH_AT``: the engine sends itself SIGKILL). Right after the crash the
consumer must still work (a valid current value); after ``resume_unfinished`` the run is
completed or rolled back, the consumer works, the old value is refused exactly when the run
completed, and the issuer holds one live value: nothing was issued twice. The test prints how
many crash points each scenario survived.
"""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rotation_support import SCENARIOS, Scenario, build

from console.rotation import COMPLETED, CRASH_ENV, RECORD_ENV, ROLLED_BACK


def _rotate_in_child(s: Scenario, env_vars: dict[str, str]) -> int:
    """Fork; the child rotates with grace 0 and exits; returns the child's wait status."""
    pid = os.fork()
    if pid == 0:  # the child: its own store connection and clients, nothing of the parent's
        code = 1
        try:
            os.environ.update(env_vars)
            env = s.env()
            result = env.engine().rotate(
                s.cred.id, actor="crash-test", grace=timedelta(0), interaction=s.person
            )
            code = 0 if result.status == COMPLETED else 2
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def _points(name: str, tmp: Path, sandbox: Any) -> list[str]:
    s = build(name, tmp / "discover", sandbox)
    record = tmp / "points.txt"
    status = _rotate_in_child(s, {RECORD_ENV: str(record)})
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "the clean run completes"
    seen: list[str] = []
    for line in record.read_text().splitlines():
        if line and line not in seen:
            seen.append(line)
    return seen


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_rotation_killed_at_any_point_resumes_or_rolls_back(
    name: str, sandbox: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    points = _points(name, tmp_path, sandbox)
    assert any(p.startswith("deliver") for p in points) and "verify:started" in points
    survived, outcomes = 0, {COMPLETED: 0, ROLLED_BACK: 0}
    for n, point in enumerate(points):
        s = build(name, tmp_path / f"p{n}", sandbox)
        old = s.current()
        status = _rotate_in_child(s, {CRASH_ENV: point})
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
            f"{point}: the child did not die there"
        )
        assert s.consumer(), f"{point}: no valid value right after the crash"
        env = s.env()
        results = env.engine().resume_unfinished("crash-test", interaction=s.person)
        runs = env.store.rotation_runs(s.cred.id, limit=5)
        assert len(runs) == 1, f"{point}: one run, resumed, never a second"
        run = runs[0]
        if run["status"] == "awaiting-revoke":
            # killed after promote, before its revoke began: the grace (0) is over now
            results += env.engine().finish_due(actor="crash-test", interaction=s.person)
            run = env.store.get_rotation_run(run["id"])
        assert run["status"] in (COMPLETED, ROLLED_BACK), (point, run["status"], run["error"],
                                                          [r.error for r in results])
        assert s.consumer(), f"{point}: no valid value after the resume"
        if run["status"] == COMPLETED:
            assert s.current() != old and s.refused(old), f"{point}: old value not retired"
        else:
            assert s.current() == old, f"{point}: rolled back, yet the value changed"
        assert s.issued() == 1, f"{point}: {s.issued()} live values at the issuer"
        assert env.audit.verify().ok
        env.close()
        outcomes[run["status"]] += 1
        survived += 1
    with capsys.disabled():
        print(
            f"\n{name}: survived {survived} of {len(points)} crash points "
            f"({outcomes[COMPLETED]} completed, {outcomes[ROLLED_BACK]} rolled back)"
        )
    assert survived == len(points)
