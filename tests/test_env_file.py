"""The env-file target's writer: parallel rotations of different variables of one file.

A playbook rotates an agent's secret-id, token and key in parallel, each delivered to the same
.env file; each writer reads, changes and renames the whole file, so without a lock one
rename drops another's new value (seen in bench/incident.py: a rotation then failed its
verify with "does not hold the new value")."""

from __future__ import annotations

import threading
from pathlib import Path

from rotators.targets.env_file import read_vars, write_vars

WRITERS = 8
ROUNDS = 60


def test_parallel_writers_of_different_variables_lose_nothing(tmp_path: Path) -> None:
    env = tmp_path / "agent" / ".env"
    write_vars(env, {"KEEP": "me", **{f"V{i}": "start" for i in range(WRITERS)}})
    env.chmod(0o640)
    start = threading.Barrier(WRITERS)

    def writer(i: int) -> None:
        start.wait()
        for n in range(ROUNDS):
            write_vars(env, {f"V{i}": f"w{i}-{n}"})

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = read_vars(env)
    assert got == {"KEEP": "me", **{f"V{i}": f"w{i}-{ROUNDS - 1}" for i in range(WRITERS)}}
    assert env.stat().st_mode & 0o777 == 0o640  # the mode is kept
    # no temporary file left behind, and no lock file either
    assert sorted(p.name for p in env.parent.iterdir()) == [".env"]
