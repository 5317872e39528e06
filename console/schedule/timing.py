"""When a job is due: a pure function of its last start, its interval, the maintenance
windows and the time now. Nothing here reads a clock or the store, so the schedule's whole
behaviour (missed runs, restarts, windows across midnight and time zones) is testable by
passing times in.

A job's next run is ``last_started + every``. Whatever happened in between (the process was
down for a week, the machine slept), a job past its time runs once, now: there is no list of
missed ticks to replay, only the one last start in ``schedule_jobs``. A job that never ran is
due at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from console.inventory import WEEKDAYS, MaintenanceWindow

# a window is at most a day long and its days repeat weekly: eight days ahead always holds
# the next opening of any window that has one
_LOOKAHEAD_DAYS = 8


@dataclass(frozen=True)
class Due:
    at: datetime  # when the job runs next (UTC)
    waits_for_window: bool  # its time came (or comes) outside every maintenance window
    interval_due: datetime  # when it would run with no windows


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def occurrences(
    window: MaintenanceWindow, around: datetime
) -> list[tuple[datetime, datetime]]:
    """The window's openings (start, end in UTC) whose start day lies from the day before
    ``around`` to a week after it, in the window's own time zone (so a 22:00-04:00 window on
    Friday in Europe/Berlin opens at 22:00 Berlin time, whatever UTC says, summer or winter)."""
    zone = ZoneInfo(window.timezone)
    local_day = around.astimezone(zone).date()
    start_t, end_t = _clock(window.start), _clock(window.end)
    crosses_midnight = end_t <= start_t
    out = []
    for offset in range(-1, _LOOKAHEAD_DAYS):
        day = local_day + timedelta(days=offset)
        if WEEKDAYS[day.weekday()] not in window.days:
            continue
        start = datetime.combine(day, start_t, tzinfo=zone)
        end_day = day + timedelta(days=1) if crosses_midnight else day
        end = datetime.combine(end_day, end_t, tzinfo=zone)
        out.append((start.astimezone(UTC), end.astimezone(UTC)))
    return out


def in_window(windows: Sequence[MaintenanceWindow], when: datetime) -> bool:
    """Inside some window (always, when there are none)."""
    if not windows:
        return True
    return any(
        start <= when < end for w in windows for start, end in occurrences(w, when)
    )


def window_end(windows: Sequence[MaintenanceWindow], when: datetime) -> datetime | None:
    """When the window(s) holding ``when`` close (the latest end among those open), or None
    when no window is open (or none are configured)."""
    ends = [
        end for w in windows for start, end in occurrences(w, when) if start <= when < end
    ]
    return max(ends) if ends else None


def next_opening(windows: Sequence[MaintenanceWindow], after: datetime) -> datetime | None:
    """The first moment at or after ``after`` inside a window."""
    if in_window(windows, after):
        return after
    starts = [
        start for w in windows for start, _end in occurrences(w, after) if start > after
    ]
    return min(starts) if starts else None


def next_due(
    last_started: datetime | None,
    every: timedelta,
    now: datetime,
    windows: Sequence[MaintenanceWindow] = (),
) -> Due:
    """When a job that last started at ``last_started`` runs next.

    ``windows`` are the maintenance windows the job must start inside (pass none for a job
    that runs any time). A job whose time falls outside them waits for the next opening.
    """
    interval_due = now if last_started is None else last_started + every
    at = max(interval_due, now)
    if not windows or in_window(windows, at):
        return Due(at, False, interval_due)
    opening = next_opening(windows, at)
    if opening is None:  # a window with no day in any week cannot be configured
        return Due(at, True, interval_due)
    return Due(opening, True, interval_due)
