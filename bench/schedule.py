"""Bench: the schedule's due tick against a shell loop of `keyshift rotate`.

Work: a store of ``--total`` credentials (10,000 by default) of which ``--due`` are past their
maximum age, each a ``generated`` KV v2 secret in a real OpenBao, declared in the inventory
with a zero grace period (issue, deliver, verify, promote, revoke and retire).

- keyshift: ``keyshift schedule run --once`` with only the high-sensitivity rotation job
  due (the other jobs recorded as just run): from the process start (the due tick) to the
  last rotation done, at the inventory's ``schedule.concurrency`` (8).
- baseline: what a person scripts without the schedule: the same due ids, already known,
  ``for id in $ids; do keyshift rotate "$id" --yes --grace 0; done`` in ``sh``.

Each side and round gets a store and due set of its own (rotated credentials are not due
again), built the same way; one untimed warm-up round of each, then ``--rounds`` timed rounds,
interleaved. Both sides must leave every due secret at exactly one new version and one
completed run per due credential, and nothing else rotated.

    .venv/bin/python bench/schedule.py [--total 10000] [--due 100] [--rounds 1]

Runs inside the private keyring session (``make bench``); starts a sandbox of its own.
"""

from __future__ import annotations

import argparse
import os
import secrets as pysecrets
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _bench import ROOT, with_own_sandbox

KEYSHIFT = str(Path(sys.executable).parent / "keyshift")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=10_000)
    parser.add_argument("--due", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with_own_sandbox("keyshift-bench-schedule-", lambda home, state: run(args, home, state))


class Workload:
    """One side's round: its own directory, store, inventory and due secrets."""

    def __init__(self, args: argparse.Namespace, home: Path, vault: Any, mount: str,
                 label: str) -> None:
        from console.model import Credential, credential_id
        from console.process import me
        from console.schedule import job_specs
        from console.store import Store

        self.dir = home / label
        self.dir.mkdir()
        self.vault, self.mount = vault, mount
        self.paths = [f"{label}/s{i:05d}" for i in range(args.due)]

        def seed(path: str) -> None:
            vault.secrets.kv.v2.create_or_update_secret(
                path, {"value": pysecrets.token_urlsafe(30)}, mount_point=mount)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(seed, self.paths))
        rotations = "".join(
            f"  - {{name: r-{label}-{i:05d}, issuer: {{type: generated, generator: "
            f"{{length: 32, alphabet: urlsafe}}}}, targets: [{{type: vault-kv, source: vault, "
            f"path: {mount}/{p}, key: value}}]}}\n"
            for i, p in enumerate(self.paths)
        )
        self.inventory = self.dir / "inventory.yaml"
        self.inventory.write_text(
            "version: 1\nsources:\n"
            "  - {name: vault, type: openbao, sandbox: true, issuer_tag: keyshift-issuer}\n"
            "policies:\n  grace_period_hours: 0\n  by_sensitivity:\n"
            "    high: {max_age_days: 30}\n"
            f"schedule: {{concurrency: {args.concurrency}}}\n"
            "rotations:\n" + rotations
        )
        now = datetime.now(UTC)
        old = now - timedelta(days=90)
        self.due_ids = [credential_id("vault", "kv", f"{mount}/{p}") for p in self.paths]
        rows = [
            Credential(id=cid, source="vault", kind="kv", native_id=f"{mount}/{p}",
                       name=p, version="1", sensitivity="high", created_at=old)
            for cid, p in zip(self.due_ids, self.paths, strict=True)
        ]
        # the rest of the store: credentials that are not due (rotated last week)
        rows += [
            Credential(id=credential_id("vault", "kv", f"{mount}/{label}/fresh/{i:05d}"),
                       source="vault", kind="kv", native_id=f"{mount}/{label}/fresh/{i:05d}",
                       name=f"fresh-{i:05d}", version="1", sensitivity="high",
                       created_at=now - timedelta(days=7))
            for i in range(args.total - args.due)
        ]
        self.db = self.dir / "ks.db"
        store = Store(self.db)
        store.bulk_insert_credentials(rows)
        # only the due rotation job is due: the tick this bench times
        from console.config import load_inventory

        for spec in job_specs(load_inventory(self.inventory).inventory.schedule):
            if spec.name != "rotate-due:high":
                assert store.claim_schedule_job(spec.name, None, me(), now)
                store.finish_schedule_job(spec.name, me(), status="ok", error=None,
                                          detail={}, now=now)
        store.close()

    def base(self) -> list[str]:
        return [KEYSHIFT, "--inventory", str(self.inventory), "--db", str(self.db)]

    def answer(self) -> tuple[int, int, int]:
        """(credentials rotated exactly once, secrets at version 2, other rotations)."""
        from console.store import Store

        store = Store(self.db, read_only=True)
        runs = Counter(r["credential_id"] for r in store.rotation_runs(limit=1_000_000)
                       if r["status"] == "completed")
        store.close()
        once = sum(1 for cid in self.due_ids if runs.get(cid) == 1)
        others = sum(n for cid, n in runs.items() if cid not in set(self.due_ids))
        at_two = sum(
            1 for p in self.paths
            if self.vault.secrets.kv.v2.read_secret_metadata(p, mount_point=self.mount)[
                "data"]["current_version"] == 2
        )
        return once, at_two, others


def run(args: argparse.Namespace, home: Path, state: Any) -> None:
    from console.sandbox import vault_client

    vault = vault_client(state)
    mount = f"bench-{uuid.uuid4().hex[:6]}"
    vault.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    env = dict(os.environ, KEYSHIFT_ACTOR="bench")
    counter = Counter[str]()
    print(f"{args.total} credentials, {args.due} due; building a store per side and round",
          file=sys.stderr)

    def side(name: str, command: Callable[[Workload], list[str]]) -> Callable[[], Any]:
        def go() -> tuple[int, int, int]:
            counter[name] += 1
            work = Workload(args, home, vault, mount, f"{name}{counter[name]}")
            started = time.perf_counter()
            done = subprocess.run(command(work), env=env, capture_output=True, text=True,
                                  cwd=ROOT)
            took = time.perf_counter() - started
            if done.returncode != 0:
                sys.exit(f"bench: {name} exited {done.returncode}: {done.stderr[-2000:]}")
            times.setdefault(name, []).append(took)
            return work.answer()

        return go

    def schedule_cmd(work: Workload) -> list[str]:
        return [*work.base(), "schedule", "run", "--once"]

    def loop_cmd(work: Workload) -> list[str]:
        ids = " ".join(work.due_ids)
        rotate = " ".join(work.base())
        return ["sh", "-c", f'for id in {ids}; do {rotate} rotate "$id" --yes --grace 0 '
                ">/dev/null || exit 1; done"]

    times: dict[str, list[float]] = {}
    expected = (args.due, args.due, 0)
    sides = {"keyshift": side("keyshift", schedule_cmd), "loop": side("loop", loop_cmd)}
    for _round in range(args.rounds + 1):  # the first is the warm-up
        for name, fn in sides.items():
            got = fn()
            if got != expected:
                sys.exit(f"bench: {name} rotated {got} (exactly once, at v2, others); "
                         f"expected {expected}")
    ks = min(times["keyshift"][1:])
    loop = min(times["loop"][1:])
    print(f"schedule --once: {ks:.2f} s for {args.due} due of {args.total} "
          f"({args.due / ks:.1f}/s); shell loop of keyshift rotate: {loop:.2f} s "
          f"({args.due / loop:.1f}/s)", file=sys.stderr)
    print(f"RESULT schedule-due-tick keyshift={ks:.2f} baseline={loop:.2f} "
          f"ratio={loop / ks:.2f} unit=s")


if __name__ == "__main__":
    main()
