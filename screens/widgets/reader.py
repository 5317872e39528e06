"""A reader thread: store reads for a widget, off the UI thread.

A widget submits jobs (a page, a count, a list of runs) and gets each result back through a
callback that runs on the reader's thread; callbacks hand it to the UI with ``post_message``
(thread-safe), so the UI thread never runs SQL, counts or waits on the store's lock.

One long-lived thread per reader, not a Textual worker per job: the store keeps one SQLite
connection per thread, and a warm connection (its page cache, its prepared statements) is
what makes a page cost a millisecond. Jobs run best priority first, newest first within a
priority; a job whose ``wanted()`` has turned false by the time its turn comes is dropped.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Deliver = Callable[[Any, BaseException | None], None]


def _always() -> bool:
    return True


@dataclass(order=True)
class _Job:
    priority: int
    order: int  # negative sequence: newest first among equals
    run: Callable[[], Any] = field(compare=False)
    deliver: Deliver = field(compare=False)
    wanted: Callable[[], bool] = field(compare=False, default=_always)


class Reader:
    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: list[_Job] = []
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.busy = False

    def submit(
        self,
        run: Callable[[], Any],
        deliver: Deliver,
        *,
        priority: int = 0,
        wanted: Callable[[], bool] = _always,
    ) -> None:
        with self._cv:
            if self._closed:
                return
            heapq.heappush(self._jobs, _Job(priority, -next(self._seq), run, deliver, wanted))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name=f"keyshift-{self.name}", daemon=True
                )
                self._thread.start()
            self._cv.notify()

    def pending(self) -> int:
        with self._cv:
            return len(self._jobs) + (1 if self.busy else 0)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._jobs.clear()
            self._cv.notify()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                job = heapq.heappop(self._jobs)
                self.busy = True
            try:
                if not job.wanted():
                    continue
                try:
                    result = job.run()
                except BaseException as exc:  # handed to the widget, which says what failed
                    job.deliver(None, exc)
                else:
                    job.deliver(result, None)
            finally:
                with self._cv:
                    self.busy = False
