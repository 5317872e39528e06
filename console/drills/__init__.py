"""Drills: incidents rehearsed against the keyshift sandbox, verified and scored.

A scenario (model.py, YAML: built-ins in scenarios/, users' in ``<config dir>/drills``,
loader.py) builds its own world in the sandbox (world.py), injects a fault or an attacker's
theft (injections.py), opens an incident and works it (responders.py, and helper A's incident
runner for automated tasks), verifies the outcome against the real servers (checks.py), scores
it (scoring.py) and records it in the user's store (runner.py, report.py).
"""

from __future__ import annotations

from console.drills.loader import all_scenarios, get_scenario, skippable
from console.drills.runner import (
    cleanup_drill,
    mark_interrupted,
    resolve_run,
    run_drill,
    verify_drill,
)

__all__ = [
    "all_scenarios",
    "cleanup_drill",
    "get_scenario",
    "mark_interrupted",
    "resolve_run",
    "run_drill",
    "skippable",
    "verify_drill",
]
