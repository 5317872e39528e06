"""The inventory screen at scale: app start to first painted page, and a filter keystroke to a
repainted page, for keyshift's paged table and for Textual's DataTable holding every row.

    .venv/bin/python bench/tui.py [--rows 100000] [--keystrokes 50] [--baseline-keystrokes 5]
                                  [--no-baseline] [--db PATH]

keyshift: KeyshiftApp headless (``run_test``, 160x45) over a store of N synthetic credentials
(bench/store_page.py's generator); the table holds one window of rows from the store.

Baseline, same run, same store: a Textual DataTable given every row with ``add_rows``. Its
first page is timed from app start to painted, with the rows already read from the store and
formatted before the clock starts (the kindest baseline). Its keystroke reads every matching
row from the same store, clears the table and refills it. Baseline keystrokes that match most
rows take seconds each, so only the first ``--baseline-keystrokes`` of the same sequence run.

Keystrokes are typed at a typist's pace (each after the previous one settled, untimed), so every
one takes the filter's leading edge; a burst would be coalesced into fewer queries instead.
At 1,000,000 rows run keyshift alone: ``--rows 1000000 --no-baseline`` (the baseline would take
minutes per keystroke). ``--db`` keeps the filled store for the next run.

Ends with RESULT lines (DESIGN.md): tui-first-page (s) and tui-keystroke-p95 (ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from store_page import percentile, synthetic
from textual.app import App, ComposeResult
from textual.widgets import DataTable, Input

from console.audit import AuditLog
from console.query import parse
from console.store import Store
from screens.app import KeyshiftApp
from screens.format import COLUMNS, row_cells
from screens.inventory import FILTER_SETTLE, InventoryScreen
from screens.widgets.credential_table import CredentialTable

SIZE = (160, 45)
# typed then deleted, one character at a time: broad prefixes first, then narrow ones
WORDS = ("support", "openai", "0012345", "zendesk", "pagerd", "token", "!env:dev", "ml-")


def keystrokes(count: int) -> list[str]:
    """``count`` filter texts, each one keystroke from the previous (typing and deleting)."""
    texts: list[str] = []
    while len(texts) < count:
        for word in WORDS:
            texts += [word[:k] for k in range(1, len(word) + 1)]
            texts += [word[:k] for k in range(len(word) - 1, -1, -1)]
    return texts[:count]


def key_for(previous: str, text: str) -> str:
    if len(text) < len(previous):
        return "backspace"
    char = text[-1]
    return {"!": "exclamation_mark", ":": "colon", "-": "minus"}.get(char, char)


def build_store(path: Path, rows: int) -> Store:
    store = Store(path)
    have = store.count_credentials()
    if have != rows:
        if have:
            raise SystemExit(f"{path} holds {have} credentials, not {rows}: pass another --db")
        start = time.perf_counter()
        store.bulk_insert_credentials(synthetic(rows))
        store.analyze()
        print(f"filled the store with {rows:,} credentials in "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
    return store


# --- keyshift ---------------------------------------------------------------------------------


async def painted(app: App) -> None:
    """Return once the screen has been refreshed (composited) after the changes so far."""
    done = asyncio.get_running_loop().create_future()
    app.call_after_refresh(lambda: done.done() or done.set_result(None))
    await done


def send_key(app: App, key: str) -> None:
    """What the terminal driver does with a key: no test-harness idle detection in the way."""
    from textual import events

    char = {"backspace": None, "exclamation_mark": "!", "colon": ":", "minus": "-"}.get(key, key)
    app._driver.send_message(events.Key(key, char))  # type: ignore[union-attr]


async def keyshift_run(store: Store, count: int) -> tuple[float, list[float], list[float]]:
    start = time.perf_counter()
    app = KeyshiftApp(store, None, AuditLog(store), actor="bench", freeze_heap=True)  # as the CLI
    async with app.run_test(size=SIZE) as pilot:
        while not (isinstance(app.screen, InventoryScreen) and app.screen.table.loaded_rows):
            await asyncio.sleep(0)
        await painted(app)
        first = time.perf_counter() - start
        screen = app.screen
        table = screen.query_one(CredentialTable)
        box = screen.query_one("#filter", Input)
        await pilot.press("slash")
        await pilot.pause(FILTER_SETTLE + 0.02)
        times: list[float] = []
        counted: list[float] = []  # keystroke -> the count in the status line (a worker)
        previous = ""
        for text in keystrokes(count):
            t0 = time.perf_counter()
            send_key(app, key_for(previous, text))
            # applied: the box holds the new text and the table shows its query
            while box.value != text or (
                screen.filter_text != text and screen.filter_error is None
            ):
                await asyncio.sleep(0)
            await painted(app)
            times.append((time.perf_counter() - t0) * 1000)
            while table.counting:
                await asyncio.sleep(0.001)
            counted.append((time.perf_counter() - t0) * 1000)
            previous = text
            await asyncio.sleep(FILTER_SETTLE + 0.01)  # a typist's pace: untimed
        assert table.loaded_rows <= table.page_size * table.max_pages
    return first, times, counted


# --- baseline: Textual's DataTable with every row ---------------------------------------------


class FullTableApp(App):
    """Every credential in one DataTable, the way a table without paging holds them."""

    def __init__(self, rows: list[tuple[str, ...]]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        yield Input(id="filter")
        yield DataTable(cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, width=width, key=key)
        table.add_rows(self.rows)
        table.focus()


def plain_rows(store: Store, text: str, now) -> list[tuple[str, ...]]:  # type: ignore[no-untyped-def]
    return [tuple(c.plain for c in row_cells(cred, now))
            for cred in store.all_credentials(parse(text))]


async def baseline_run(store: Store, count: int) -> tuple[float, list[float]]:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    rows = plain_rows(store, "", now)  # read and formatted before the clock starts
    start = time.perf_counter()
    app = FullTableApp(rows)
    async with app.run_test(size=SIZE):
        table = app.query_one(DataTable)
        while table.row_count < len(rows):
            await asyncio.sleep(0)
        await painted(app)
        first = time.perf_counter() - start
        times: list[float] = []
        for text in keystrokes(count):
            t0 = time.perf_counter()
            table.clear()
            table.add_rows(plain_rows(store, text, now))
            await painted(app)
            times.append((time.perf_counter() - t0) * 1000)
    return first, times


# --- report -----------------------------------------------------------------------------------


def summary(label: str, first: float, times: list[float]) -> str:
    return (f"{label:<34} first page {first:7.3f} s   keystroke p50 "
            f"{statistics.median(times):8.1f} ms  p95 {percentile(times, 95):8.1f} ms  "
            f"max {max(times):8.1f} ms  (n={len(times)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--keystrokes", type=int, default=50)
    parser.add_argument("--baseline-keystrokes", type=int, default=5)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--db", type=Path, default=None, help="reuse (or keep) this store")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="keyshift-bench-tui-"))
    os.environ.setdefault("KEYSHIFT_HOME", str(tmp / "home"))
    try:
        store = build_store(args.db or tmp / "bench.db", args.rows)
        first, times, counted = asyncio.run(keyshift_run(store, args.keystrokes))
        print(summary(f"keyshift   {args.rows:>9,} rows", first, times), flush=True)
        print(f"{'':34} count in the status line (worker) p50 "
              f"{statistics.median(counted):.1f} ms  p95 {percentile(counted, 95):.1f} ms",
              flush=True)
        if args.no_baseline:
            base_first, base_times = float("nan"), [float("nan")]
        else:
            base_first, base_times = asyncio.run(baseline_run(store, args.baseline_keystrokes))
            print(summary(f"DataTable  {args.rows:>9,} rows", base_first, base_times),
                  flush=True)
        store.close()
    finally:
        if args.db is None:
            for f in tmp.glob("*.db*"):
                f.unlink()
    p95 = percentile(times, 95)
    base_p95 = percentile(base_times, 95)
    print()
    print(f"RESULT tui-first-page keyshift={first:.3f} baseline={base_first:.3f} "
          f"ratio={base_first / first:.1f} unit=s")
    print(f"RESULT tui-keystroke-p95 keyshift={p95:.1f} baseline={base_p95:.1f} "
          f"ratio={base_p95 / p95:.1f} unit=ms")


if __name__ == "__main__":
    main()
