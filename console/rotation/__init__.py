"""Rotation: what a credential holds (specs), its plan, and the engine that runs it.

engine.py holds the public API (plan, rotate, resume, finish_due, abandon) and phase 1;
journal.py one step and its journal rows; finish.py what follows promote; recovery.py what a
resumed run reads back; run.py the records they share; context.py what plug-ins get.
See docs/design.md for the run model and rotators/base.py for the plug-in protocol.
"""

from console.crashpoints import CRASH_ENV, RECORD_ENV
from console.rotation.engine import RotationEngine
from console.rotation.plan import RotationPlan
from console.rotation.run import (
    ABANDONED,
    AWAITING_REVOKE,
    COMPLETED,
    ROLLBACK_FAILED,
    ROLLED_BACK,
    RUNNING,
    RetryPolicy,
    RotationFailed,
    RunResult,
    credential_info,
)

__all__ = [
    "ABANDONED",
    "AWAITING_REVOKE",
    "COMPLETED",
    "CRASH_ENV",
    "RECORD_ENV",
    "ROLLBACK_FAILED",
    "ROLLED_BACK",
    "RUNNING",
    "RetryPolicy",
    "RotationEngine",
    "RotationFailed",
    "RotationPlan",
    "RunResult",
    "credential_info",
]
