"""Bench: collect N Secrets Manager secrets and M IAM users with access keys from moto.

keyshift: ``AwsSource.collect()`` over Secrets Manager and IAM (fingerprints on, as a sync
runs): ListSecrets, the values read 20 a request (BatchGetSecretValue) to fingerprint them, and
every user's tags, access keys and each key's last use, on its thread pool.
baseline: what a competent boto3 script does for the same answer: paginators for ListSecrets
and ListUsers, then GetSecretValue per secret and ListUserTags / ListAccessKeys /
GetAccessKeyLastUsed per user on a ``concurrent.futures.ThreadPoolExecutor`` (``--workers``,
default 8, the pool size keyshift uses), one boto3 client per service shared by the threads
(boto3 clients are thread-safe).
floor: the bare boto3 calls keyshift's path makes (the batch reads included), on the same
pool, with no records built.

Each side gets one untimed warm-up round and then the same number of timed rounds (``--rounds``,
interleaved); the figure is each side's best round, in secrets + access keys per second. The
bench checks that every side finds the same secret names, the same users with the same owner
tag and the same access key ids (the ones it seeded), and exits non-zero when they do not.

Starts its own moto server (``console.sandbox.moto_server``, keyshift's patched moto) on a free
loopback port with throwaway credentials, IAM auth not enforced (both sides pay the same), and
stops it at the end.

keyshift fingerprints under its installation key, kept in the OS keyring: on a box with no
desktop run it inside ``scripts/with-keyring``.

    scripts/with-keyring .venv/bin/python bench/sync_aws.py [--secrets 5000] [--users 500]
        [--rounds 3] [--workers 8]
"""

from __future__ import annotations

import argparse
import os
import secrets as stdlib_secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import yaml
from _bench import ROOT, free_port, stop  # also puts the repository on sys.path

REGION = "us-east-1"
# one answer: secret names, {user: owner tag}, access key ids
Answer = tuple[frozenset[str], dict[str, str | None], frozenset[str]]


def start_moto(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    address = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "console.sandbox.moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env={**os.environ, "HOME": str(workdir)},
        start_new_session=True,
    )
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{address}/moto-api/", timeout=1) as r:
                if r.status == 200:
                    return proc, address
        except OSError:
            time.sleep(0.2)
    stop(proc)
    sys.exit("bench: moto did not start within 45 s")


def client(service: str, address: str, workers: int) -> Any:
    config = botocore.config.Config(max_pool_connections=max(workers, 10))
    return boto3.session.Session().client(
        service, endpoint_url=address, region_name=REGION, config=config
    )


def seed(address: str, n_secrets: int, n_users: int) -> Answer:
    sm, iam = client("secretsmanager", address, 16), client("iam", address, 16)
    names = [f"team-{i // 100:03d}/svc-{i % 100:03d}" for i in range(n_secrets)]
    users = {f"agent-{i:04d}": f"team-{i % 20:02d}" for i in range(n_users)}

    def secret(name: str) -> None:
        sm.create_secret(
            Name=name,
            SecretString=stdlib_secrets.token_hex(16),
            Tags=[{"Key": "owner", "Value": f"team-{name[5:8]}"}],
        )

    def user(item: tuple[str, str]) -> str:
        name, owner = item
        iam.create_user(UserName=name, Tags=[{"Key": "owner", "Value": owner}])
        return str(iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"])

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(secret, names))
        keys = list(pool.map(user, users.items()))
    return frozenset(names), dict(users), frozenset(keys)


def one_user(iam: Any, u: dict[str, Any]) -> tuple[str, str | None, list[str]]:
    """One user's owner tag and keys, each key's last use asked (both sides make these calls
    the same way: ListUserTags, ListAccessKeys, GetAccessKeyLastUsed)."""
    name = u["UserName"]
    tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=name)["Tags"]}
    keys = [
        k["AccessKeyId"]
        for page in iam.get_paginator("list_access_keys").paginate(UserName=name)
        for k in page["AccessKeyMetadata"]
    ]
    for key in keys:
        iam.get_access_key_last_used(AccessKeyId=key)
    return name, tags.get("owner"), keys


def baseline(sm: Any, iam: Any, workers: int) -> Answer:
    """boto3 paginators, then one request per secret / user / key on a thread pool."""
    listed = [
        s for page in sm.get_paginator("list_secrets").paginate() for s in page["SecretList"]
    ]
    users = [u for page in iam.get_paginator("list_users").paginate() for u in page["Users"]]

    def value(item: dict[str, Any]) -> str:
        got = sm.get_secret_value(SecretId=item["ARN"])
        got.clear()  # read to fingerprint, as keyshift does; never kept
        return str(item["Name"])

    with ThreadPoolExecutor(workers) as pool:
        names = frozenset(pool.map(value, listed))
        owners: dict[str, str | None] = {}
        keys: set[str] = set()
        for name, owner, user_keys in pool.map(lambda u: one_user(iam, u), users):
            owners[name] = owner
            keys.update(user_keys)
    return names, owners, frozenset(keys)


def floor(sm: Any, iam: Any, workers: int) -> Answer:
    """The bare calls keyshift's path makes (BatchGetSecretValue 20 at a time), no records."""
    listed = [
        s for page in sm.get_paginator("list_secrets").paginate() for s in page["SecretList"]
    ]
    users = [u for page in iam.get_paginator("list_users").paginate() for u in page["Users"]]

    def batch(items: list[dict[str, Any]]) -> int:
        got = sm.batch_get_secret_value(SecretIdList=[i["ARN"] for i in items])
        count = len(got["SecretValues"])
        got.clear()
        return count

    with ThreadPoolExecutor(workers) as pool:
        chunks = [listed[i : i + 20] for i in range(0, len(listed), 20)]
        read = sum(pool.map(batch, chunks))
        if read != len(listed):
            sys.exit(f"bench: the floor read {read} values of {len(listed)}")
        owners: dict[str, str | None] = {}
        keys: set[str] = set()
        for name, owner, user_keys in pool.map(lambda u: one_user(iam, u), users):
            owners[name] = owner
            keys.update(user_keys)
    return frozenset(s["Name"] for s in listed), owners, frozenset(keys)


def keyshift_side(address: str) -> Any:
    from console.config import loads_inventory
    from console.sources.aws import AwsSource

    inv = {
        "version": 1,
        "sources": [
            {
                "name": "bench",
                "type": "aws",
                "endpoint_url": address,
                "regions": [REGION],
                "services": ["secretsmanager", "iam"],
            }
        ],
    }
    loaded = loads_inventory(yaml.safe_dump(inv), file="bench.yaml", base_dir=ROOT)
    source = AwsSource(loaded.source("bench"), loaded)

    def run() -> Answer:
        result = source.collect()
        if not result.complete:
            sys.exit(f"bench: keyshift's collection was partial: {result.errors[:3]}")
        secrets = [c for c in result.credentials if c.kind == "secretsmanager"]
        if any(c.fingerprint is None for c in secrets):
            sys.exit("bench: keyshift left a secret without its fingerprint")
        keys = [c for c in result.credentials if c.kind == "iam-key"]
        owners = {c.tags["user"]: c.owner for c in keys}
        return frozenset(c.name for c in secrets), owners, frozenset(c.native_id for c in keys)

    return run


def disagreement(answers: dict[str, Answer], seeded: Answer) -> str | None:
    names, owners, keys = seeded
    for side, (got_names, got_owners, got_keys) in answers.items():
        if got_names != names:
            return f"{side} found {len(got_names)} secrets, not the {len(names)} seeded"
        if got_owners != owners:
            return f"{side} found {len(got_owners)} users / owners unlike the {len(owners)} seeded"
        if got_keys != keys:
            return f"{side} found {len(got_keys)} access keys, not the {len(keys)} seeded"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=5000)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, each side (best)")
    parser.add_argument("--workers", type=int, default=8, help="the baseline's thread pool")
    args = parser.parse_args()
    if args.rounds < 1 or args.workers < 1 or args.secrets < 1 or args.users < 1:
        parser.error("--secrets, --users, --rounds and --workers must be at least 1")

    # throwaway credentials for a throwaway server: moto enforces no auth here
    os.environ.update(
        AWS_ACCESS_KEY_ID="AKIABENCHBENCHBENCH0",
        AWS_SECRET_ACCESS_KEY="bench-" + stdlib_secrets.token_hex(16),
        AWS_DEFAULT_REGION=REGION,
    )
    os.environ.pop("AWS_PROFILE", None)
    times: dict[str, list[float]] = {"keyshift": [], "baseline": [], "floor": []}
    answers: dict[str, Answer] = {}
    with tempfile.TemporaryDirectory(prefix="keyshift-bench-") as tmp:
        proc, address = start_moto(Path(tmp))
        try:
            t0 = time.perf_counter()
            seeded = seed(address, args.secrets, args.users)
            print(
                f"seeded {args.secrets} secrets and {args.users} users with a key each in "
                f"{time.perf_counter() - t0:.1f} s"
            )
            sm = client("secretsmanager", address, args.workers)
            iam = client("iam", address, args.workers)
            sides = {
                "keyshift": keyshift_side(address),
                "baseline": lambda: baseline(sm, iam, args.workers),
                "floor": lambda: floor(sm, iam, args.workers),
            }
            for name, fn in sides.items():  # one untimed warm-up round each
                answers[name] = fn()
            problem = disagreement(answers, seeded)
            if problem:
                sys.exit(f"bench: {problem}")
            for _ in range(args.rounds):  # the same timed rounds, interleaved
                for name, fn in sides.items():
                    t0 = time.perf_counter()
                    if fn() != answers[name]:
                        sys.exit(f"bench: {name} answered differently from one round to the next")
                    times[name].append(time.perf_counter() - t0)
        finally:
            stop(proc)
    n = args.secrets + args.users  # secrets + access keys (one a user)
    best = {k: min(v) for k, v in times.items()}
    rate = {k: n / t for k, t in best.items()}
    print(
        f"{args.rounds} timed rounds each after 1 warm-up; best round shown; all three found "
        f"the same {args.secrets} secrets, {args.users} users (owners) and access keys"
    )
    print(
        "keyshift collect (ListSecrets, BatchGetSecretValue, IAM; its pool of 8 threads): "
        f"{n} in {best['keyshift']:.3f} s = {rate['keyshift']:,.0f} credentials/s"
    )
    print(
        f"baseline boto3 paginators + a request per secret / user / key, {args.workers} "
        f"threads: {n} in {best['baseline']:.3f} s = {rate['baseline']:,.0f} credentials/s"
    )
    print(
        f"floor: the bare calls of keyshift's path, {args.workers} threads: {n} in "
        f"{best['floor']:.3f} s = {rate['floor']:,.0f} credentials/s "
        f"(keyshift at {best['keyshift'] / best['floor']:.2f}x the floor's time)"
    )
    print(
        f"RESULT sync-aws keyshift={rate['keyshift']:.0f} baseline={rate['baseline']:.0f} "
        f"ratio={rate['keyshift'] / rate['baseline']:.1f} unit=credentials/s"
    )


if __name__ == "__main__":
    main()
