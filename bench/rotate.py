"""Bench: rotations through the engine, against the same rotations as bare plug-in calls.

Work: 1,000 ``generated`` KV v2 secrets in a real OpenBao, rotated at concurrency 8 with a
zero grace period (issue, deliver, verify, promote, retire) while a consumer keeps reading
them; and 100 IAM access keys in moto (a second key, delivered to KV, verified with STS,
the old one deactivated, deleted and checked refused).

- keyshift: ``RotationEngine.rotate`` per credential from a pool of 8 threads: claims, the
  journal (a row before and after each step), the audit chain, retries.
- baseline: the same issuer and target plug-ins called bare, from a pool of 8 threads, with
  no claim, no journal and no audit: the floor the engine adds its bookkeeping to.

The consumer is an agent in a process of its own, reading random secrets of the set with
its own token the whole time. Both sides get the same warm-up and the same number of rounds
over the same secrets; the
bench checks both left every secret with a new value and its previous version destroyed, and
that the consumer saw no error. Overhead = the engine's time over the bare calls' time.

    .venv/bin/python bench/rotate.py [--secrets 1000] [--keys 100] [--rounds 2] [--threads 8]

Runs inside the private keyring session (``make bench``); starts a sandbox of its own.
"""

from __future__ import annotations

import argparse
import random
import secrets as pysecrets
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from _bench import with_own_sandbox

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bare_rotation(engine: Any, cred_id: str) -> None:
    """One rotation as bare plug-in calls: what the engine does, minus its bookkeeping."""
    from console.redaction import ValueScope
    from console.rotation import credential_info
    from console.rotation.context import RunContext
    from rotators import registry

    spec = engine.spec_for(cred_id)
    cred = credential_info(engine.store.get_credential(cred_id))
    with ValueScope("bare") as scope:
        ctx = RunContext(engine.clients, uuid.uuid4().hex, engine.clock, None, scope)
        issuer = registry.of_role(spec.issuer["type"], "issuer")(spec.issuer, ctx)
        targets = [registry.of_role(t.type, "target")(t.spec, t.fields, ctx)
                   for t in spec.targets]
        old_value: dict[str, Any] = {}
        for target in targets:
            old_value.update(target.read() or {})
        old = issuer.identify(cred, old_value)
        issued = issuer.issue(cred, old)
        handles = [target.deliver({p: v for p, v in issued.value.items() if p in target.fields})
                   for target in targets]
        issuer.verify(cred, issued)
        for target, handle in zip(targets, handles, strict=True):
            got = target.read_delivered(handle)
            assert got and all(got[p] == issued.value[p] for p in target.fields)
        for target, handle in zip(targets, handles, strict=True):
            target.promote(handle)
        for stage in issuer.revoke_stages():
            issuer.revoke(cred, stage, {**old, "new": issued.handle})
        if issuer.revoke_stages() and old_value:
            assert issuer.still_valid(cred, old_value) is not True
        for target, handle in zip(targets, handles, strict=True):
            target.retire(handle)


def consume(address: str, token: str, mount: str, paths: list[str], stop: Any, reads: Any,
            errors: Any) -> None:
    """An agent in a process of its own: reads random secrets of the set, counting any read
    that fails or finds no value."""
    import hvac
    import requests

    session = requests.Session()
    session.trust_env = False
    client = hvac.Client(url=address, token=token, session=session, timeout=10)
    while not stop.is_set():
        try:
            data = client.secrets.kv.v2.read_secret_version(
                random.choice(paths), mount_point=mount, raise_on_deleted_version=True
            )["data"]["data"]
            ok = bool(data.get("value"))
        except Exception:
            ok = False
        with reads.get_lock():
            reads.value += 1
        if not ok:
            with errors.get_lock():
                errors.value += 1


def timed(fn: Callable[[str], None], ids: list[str], threads: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(fn, ids):
            pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    with_own_sandbox("keyshift-bench-rotate-", lambda home, state: run(args, home, state))


def run(args: argparse.Namespace, home: Path, state: Any) -> None:
    from console.audit import AuditLog
    from console.config import load_inventory
    from console.model import Credential
    from console.rotation import RotationEngine
    from console.sandbox import aws_client, vault_client
    from console.store import Store

    vault = vault_client(state)
    mount = f"bench-{uuid.uuid4().hex[:6]}"
    vault.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    warm = 20
    paths = [f"s/{i:05d}" for i in range(args.secrets + warm)]
    print(f"seeding {len(paths)} KV secrets and {args.keys} IAM users ...", file=sys.stderr)

    def seed_kv(path: str) -> None:
        vault.secrets.kv.v2.create_or_update_secret(
            path, {"value": pysecrets.token_urlsafe(30)}, mount_point=mount
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(seed_kv, paths))
    iam = aws_client(state, "iam")
    users = [f"bench-{i:04d}" for i in range(args.keys * 2)]  # half per side
    rotations = []
    for user in users:
        iam.create_user(UserName=user)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        vault.secrets.kv.v2.create_or_update_secret(
            f"aws/{user}", {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]},
            mount_point=mount,
        )
        rotations.append(
            f"  - {{name: {user}, issuer: {{type: aws-iam, source: aws, user: {user}}}, "
            f"targets: [{{type: vault-kv, source: vault, path: {mount}/aws/{user}, "
            "keys: {access_key_id: id, secret_access_key: secret}}]}"
        )
    inventory = home / "inventory.yaml"
    inventory.write_text(
        "version: 1\nsources:\n"
        "  - {name: vault, type: openbao, sandbox: true, issuer_tag: keyshift-issuer}\n"
        "  - {name: aws, type: aws, sandbox: true}\n"
        "rotations:\n" + "\n".join(rotations) + "\n"
    )
    loaded = load_inventory(inventory)
    store = Store(home / "bench.db")
    creds = [
        Credential(id=f"vault:kv:{mount}/{p}", source="vault", kind="kv",
                   native_id=f"{mount}/{p}", name=p, tags={"keyshift-issuer": "generated"})
        for p in paths
    ]
    key_rows = []
    for user in users:
        for meta in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
            key_rows.append(Credential(
                id=f"aws:iam-key:{meta['AccessKeyId']}", source="aws", kind="iam-key",
                native_id=meta["AccessKeyId"], name=user, tags={"user": user}))
    store.bulk_insert_credentials(creds + key_rows)
    engine = RotationEngine(store, AuditLog(store), loaded)
    ids = [c.id for c in creds]
    warm_ids, ids = ids[:warm], ids[warm:]

    def keyshift(cred_id: str) -> None:
        result = engine.rotate(cred_id, actor="bench", grace=timedelta(0))
        assert result.status == "completed", result

    def bare(cred_id: str) -> None:
        bare_rotation(engine, cred_id)

    import multiprocessing

    mp = multiprocessing.get_context("spawn")
    stop, reads, errors = mp.Event(), mp.Value("q", 0), mp.Value("q", 0)
    consumer = mp.Process(
        target=consume, args=(state.vault.address, vault.token, mount, paths, stop, reads, errors),
        daemon=True,
    )
    consumer.start()
    # the same warm-up for both sides: connection pools, imports, the installation key
    timed(keyshift, warm_ids[: warm // 2], args.threads)
    timed(bare, warm_ids[warm // 2 :], args.threads)
    ks_times, bare_times = [], []
    for round_no in range(args.rounds):
        order = [("keyshift", keyshift, ks_times), ("bare", bare, bare_times)]
        if round_no % 2:
            order.reverse()  # neither side always runs on a warmer server
        for label, fn, times in order:
            elapsed = timed(fn, ids, args.threads)
            times.append(elapsed)
            check_rotated(vault, mount, paths[warm:], round_no, label)
            print(f"round {round_no + 1} {label:<8} {len(ids) / elapsed:8.1f} rotations/s",
                  file=sys.stderr)
    stop.set()
    consumer.join(30)

    # IAM keys: each side rotates its own half of the users (a key rotated twice would need
    # its first rotation's delete to have happened: it has, with a zero grace period)
    by_user = {c.name: c.id for c in key_rows}
    ks_keys = [by_user[u] for u in users[: args.keys]]
    bare_keys = [by_user[u] for u in users[args.keys :]]
    iam_ks = timed(keyshift, ks_keys, args.threads)
    iam_bare = timed(bare, bare_keys, args.threads)
    for user in users:
        assert len(iam.list_access_keys(UserName=user)["AccessKeyMetadata"]) == 1, user

    ks_rate = len(ids) / statistics.median(ks_times)
    bare_rate = len(ids) / statistics.median(bare_times)
    overhead = (statistics.median(ks_times) - statistics.median(bare_times)) / statistics.median(
        bare_times
    )
    print(f"kv:   keyshift {ks_rate:.1f}/s, bare calls {bare_rate:.1f}/s, engine overhead "
          f"{overhead * 100:+.1f} % (target: within 10 %)")
    print(f"iam:  keyshift {args.keys / iam_ks:.1f}/s, bare calls {args.keys / iam_bare:.1f}/s, "
          f"engine overhead {(iam_ks - iam_bare) / iam_bare * 100:+.1f} %")
    print(f"consumer: {reads.value} reads, {errors.value} errors (must be 0)")
    if errors.value or not reads.value:
        sys.exit("bench: the consumer saw errors")
    print(f"RESULT rotate-kv keyshift={ks_rate:.1f} baseline={bare_rate:.1f} "
          f"ratio={ks_rate / bare_rate:.2f} unit=rotations/s")
    print(f"RESULT rotate-iam keyshift={args.keys / iam_ks:.1f} "
          f"baseline={args.keys / iam_bare:.1f} ratio={iam_bare / iam_ks:.2f} unit=rotations/s")
    store.close()


def check_rotated(vault: Any, mount: str, paths: list[str], round_no: int, label: str) -> None:
    """Every secret has a new value and its previous version destroyed (both sides must)."""
    for path in paths[:: max(1, len(paths) // 50)]:
        meta = vault.secrets.kv.v2.read_secret_metadata(path, mount_point=mount)["data"]
        current = int(meta["current_version"])
        previous = meta["versions"].get(str(current - 1)) or {}
        assert current >= 2 and previous.get("destroyed"), (label, path, meta["versions"])


if __name__ == "__main__":
    main()
