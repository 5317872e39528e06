"""Rotation: what a credential holds (specs), its plan, and the engine that runs it.

See console/rotation/engine.py for the run model and rotators/base.py for the protocol of the
issuers and delivery targets the engine composes.
"""

from console.crashpoints import CRASH_ENV, RECORD_ENV
from console.rotation.engine import (
    ABANDONED,
    AWAITING_REVOKE,
    COMPLETED,
    ROLLBACK_FAILED,
    ROLLED_BACK,
    RUNNING,
    RetryPolicy,
    RotationEngine,
    RotationFailed,
    RunResult,
    credential_info,
)
from console.rotation.plan import RotationPlan

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
