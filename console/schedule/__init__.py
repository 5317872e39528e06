"""The headless schedule (``keyshift schedule run``): periodic sync, due rotations per
sensitivity, expiry warnings, revoke-after-grace, audit verification and the findings
refresh, each at the inventory's cadence, with their next times derived from the store.

- ``timing``  when a job is due (pure: last start, interval, maintenance windows, now)
- ``jobs``    what each job does, and the alerts it raises
- ``runner``  claiming and running jobs once (``--once``) or for as long as the process lives
"""

from __future__ import annotations

from console.schedule.jobs import JobContext, JobOutcome, JobSpec, job_specs
from console.schedule.runner import JobState, Scheduler, job_state, schedule_status
from console.schedule.timing import Due, in_window, next_due, next_opening, window_end

__all__ = [
    "Due",
    "JobContext",
    "JobOutcome",
    "JobSpec",
    "JobState",
    "Scheduler",
    "in_window",
    "job_specs",
    "job_state",
    "next_due",
    "next_opening",
    "schedule_status",
    "window_end",
]
