"""Injections: what the drill's attacker (or the fault) does, one function per word.

The attacker copies values the way the scenario's leak would (an agent's env file, a KV read
with the agent's login) into ``Drill.attacker`` in memory; a fault injection breaks something
for real (a rotation killed half way). ``now`` (the injection time) starts the drill's clock.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from console.drills.context import Drill
from console.drills.model import Injection
from console.drills.vocab import Vocabulary
from console.errors import SandboxError

INJECTIONS = Vocabulary("injection")


def _steal(drill: Drill, step: Injection) -> dict[str, Any]:
    items = drill.items_for(step)
    for item in items:
        drill.attacker.stolen[item.name] = item.read()
    return {"stolen": [i.name for i in items]}


@INJECTIONS.word("steal", help="the attacker copies the credential's value where its agent "
                               "reads it (a leaked env file, a pasted log)")
def steal(drill: Drill, step: Injection) -> dict[str, Any]:
    return _steal(drill, step)


@INJECTIONS.word("steal-agent", help="a compromised agent prints its environment: the attacker "
                                     "copies everything the agent holds")
def steal_agent(drill: Drill, step: Injection) -> dict[str, Any]:
    return _steal(drill, step)


@INJECTIONS.word("owner-departs", help="the owner of the agents leaves, keeping copies of "
                                       "what they could read")
def owner_departs(drill: Drill, step: Injection) -> dict[str, Any]:
    if not step.owner:
        raise SandboxError("owner-departs needs owner:")
    drill.notes.setdefault("departed", []).append(step.owner)
    return {"departed": step.owner, **_steal(drill, step)}


@INJECTIONS.word("crash-rotation", options=("at",),
                 help="a rotation of the credential is killed half way (SIGKILL at a named "
                      "crash point, default verify:started) and left unfinished")
def crash_rotation(drill: Drill, step: Injection) -> dict[str, Any]:
    (item,) = drill.items_for(step)
    point = str(step.options.get("at", "verify:started"))
    from console.crashpoints import CRASH_ENV

    env = dict(os.environ, **{CRASH_ENV: point}, KEYSHIFT_ACTOR="drill-fault")
    argv = [sys.executable, "-c", "import sys; from console.cli import main; main(sys.argv[1:])",
            "--inventory", str(drill.world.inventory_path), "--db", str(drill.world.db_path),
            "rotate", item.credential_id, "--yes"]
    got = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    if got.returncode != -9:
        # the point was never reached: nothing is half way, so the drill would rehearse nothing
        raise SandboxError(f"the rotation of {item.name} was not killed at {point} "
                           f"(exit {got.returncode})",
                           hint="name a crash point the rotation passes, e.g. verify:started")
    runs = [r for r in drill.store.unfinished_rotation_runs()
            if r["credential_id"] == item.credential_id]
    drill.notes.setdefault("crashed_runs", []).extend(r["id"] for r in runs)
    return {"crashed_at": point, "credential": item.name, "runs": [r["id"] for r in runs]}
