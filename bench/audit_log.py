"""Reading a Vault audit log: keyshift's reader against a competent script, same log.

The log is OpenBao's own: a fresh dev server with a file audit device (HMAC'd accessors, its
default) serves real traffic (KV writes and reads, tokens created, each token's lookups and
reads), and that file is then repeated ``--copies`` times to reach a size where a sync's
incremental read matters (a busy server writes hundreds of thousands of lines between two
syncs). Both sides read the same bytes and must give the same answer: every KV read's path
and time, and each token's (logged accessor's) latest successful request and count.

keyshift: ``console.sources.vault_audit.read_audit_log`` from offset 0.
baseline: what a competent user writes with the best public tool: every line decoded with
orjson, responses without an error kept, the same fields picked.

Prints lines/s on each side and ends with ``RESULT audit-log ...``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from _bench import timed_rounds
from _openbao import Raw, running_bao

from console.sources.vault_audit import parse_vault_time, read_audit_log

Answer = tuple[frozenset[tuple[str, datetime]], int, dict[str, tuple[datetime, int]]]


def make_traffic(raw: Raw, address: str, secrets: int, tokens: int, reads: int) -> None:
    """Real requests for the device to log: KV writes, tokens made, each token reading."""
    paths = [f"bench/s{i:04d}" for i in range(secrets)]
    raw.call("POST", "sys/policies/acl/reader",
             {"policy": 'path "secret/data/bench/*" { capabilities = ["read"] }'})
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda p: raw.call("POST", f"secret/data/{p}", {"data": {"v": "x"}}),
                      paths))
        made = list(pool.map(
            lambda _i: raw.call("POST", "auth/token/create",
                                {"policies": ["reader"], "ttl": "1h"})["auth"]["client_token"],
            range(tokens),
        ))

        def use(i: int) -> None:
            agent = Raw(address, made[i % tokens])
            agent.call("GET", "auth/token/lookup-self")
            agent.call("GET", f"secret/data/{paths[i % secrets]}")

        list(pool.map(use, range(reads)))


def keyshift_side(path: Path) -> Answer:
    batch = read_audit_log(path)
    kv = frozenset((r.path, r.at) for r in batch.reads if r.path.startswith("secret/data/"))
    tokens = {a: (u.at, u.count) for a, u in batch.tokens.items()}
    return kv, batch.malformed, tokens


def baseline_side(path: Path) -> Answer:
    kv: set[tuple[str, datetime]] = set()
    tokens: dict[str, tuple[datetime, int]] = {}
    malformed = 0
    with path.open("rb") as fh:
        for line in fh:
            try:
                entry: Any = orjson.loads(line)
            except orjson.JSONDecodeError:
                malformed += 1
                continue
            if entry.get("type") != "response" or entry.get("error"):
                continue
            at = parse_vault_time(entry.get("time"))
            request = entry.get("request") or {}
            if request.get("operation") == "read" and str(request.get("path", "")).startswith(
                "secret/data/"
            ):
                kv.add((request["path"], at))
            accessor = request.get("client_token_accessor")
            made = bool((entry.get("response") or {}).get("auth"))
            if not accessor and not made and request.get("client_token"):
                accessor = (entry.get("auth") or {}).get("accessor")
            if accessor:
                seen = tokens.get(accessor)
                tokens[accessor] = (
                    (max(seen[0], at), seen[1] + 1) if seen else (at, 1)  # type: ignore[type-var]
                )
    return frozenset(kv), malformed, tokens


def disagreement(answers: dict[str, Answer]) -> str | None:
    ks, base = answers["keyshift"], answers["baseline"]
    if ks[0] != base[0]:
        return f"KV reads differ: {len(ks[0] ^ base[0])} not in both"
    if ks[1] != base[1]:
        return f"malformed lines differ: keyshift {ks[1]}, baseline {base[1]}"
    if ks[2] != base[2]:
        differ = [a for a in set(ks[2]) | set(base[2]) if ks[2].get(a) != base[2].get(a)]
        return f"token uses differ for {len(differ)} accessors, e.g. {differ[:2]}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=500)
    parser.add_argument("--tokens", type=int, default=1_000)
    parser.add_argument("--reads", type=int, default=10_000, help="requests per token kind")
    parser.add_argument("--copies", type=int, default=5, help="the served log, repeated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="copy the log here (to profile it)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="keyshift-bench-audit-") as tmp:
        served = Path(tmp) / "served.log"
        with running_bao(served) as (address, token):
            make_traffic(Raw(address, token), address, args.secrets, args.tokens, args.reads)
        # the server is stopped: the log is complete, no line half-written
        log = Path(tmp) / "audit.log"
        body = served.read_bytes()
        log.write_bytes(body * args.copies)
        served_lines = body.count(b"\n")
        lines = served_lines * args.copies
        if args.keep:
            args.keep.write_bytes(body)
        print(f"log: {lines:,} lines ({log.stat().st_size / 1e6:.0f} MB), OpenBao's own "
              f"({served_lines:,} lines of real traffic) repeated {args.copies}x")

        answers, times = timed_rounds(
            {"keyshift": lambda: keyshift_side(log), "baseline": lambda: baseline_side(log)},
            args.rounds,
            disagreement,
        )
        kv, malformed, tokens = answers["keyshift"]
        print(f"both sides: {len(kv):,} KV reads, {len(tokens):,} tokens' latest use, "
              f"{malformed} malformed lines")
        best = {name: min(t) for name, t in times.items()}
        rate = {name: lines / t for name, t in best.items()}
        for name in ("keyshift", "baseline"):
            rounds = ", ".join(f"{t:.2f}" for t in times[name])
            print(f"{name:<9} {best[name]:.3f} s = {rate[name]:,.0f} lines/s "
                  f"({best[name] / lines * 1e6:.2f} us/line)  [rounds {rounds} s]")
        ratio = rate["keyshift"] / rate["baseline"]
        print(f"keyshift vs the orjson script: {ratio:.2f}x")
        print(f"RESULT audit-log keyshift={rate['keyshift']:.0f} "
              f"baseline={rate['baseline']:.0f} ratio={ratio:.2f} unit=lines/s")


if __name__ == "__main__":
    sys.exit(main())
