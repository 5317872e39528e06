"""A sync reads its sources side by side and writes them one at a time, in the inventory's order.

The sources are real: the session sandbox's OpenBao, reached through a TCP proxy of the test's
own that holds every connection until its gate opens (so a Vault collect cannot finish before
the test says so), and declared sources. Nothing of keyshift's is replaced.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from test_sync import SANDBOX_TOKEN_REF, closed_port, make_mount, write_inventory

from console.audit import AuditLog
from console.store import Store
from console.sync import run_sync

# How long the proxy holds a connection before it lets it through anyway. Never asserted on:
# a gate opened by its timeout fails the test through ``opened_by_timeout``; it only keeps a
# broken sync from hanging the suite. Below the Vault client's 15 s read timeout.
GATE_WAIT = 10.0


class GateProxy:
    """A TCP proxy to the sandbox Vault that holds each connection until ``gate`` is set."""

    def __init__(self, upstream: str, *, open_: bool = False) -> None:
        parsed = urlparse(upstream)
        self._target = (parsed.hostname or "127.0.0.1", parsed.port or 8200)
        self.gate = threading.Event()
        if open_:
            self.gate.set()
        self.opened_by_timeout = False
        self.connected = threading.Event()
        self.connections = 0
        self._sockets: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.address = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            self._sockets.append(client)
            self.connections += 1
            self.connected.set()
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if not self.gate.wait(GATE_WAIT):
            self.opened_by_timeout = True
            self.gate.set()
        try:
            upstream = socket.create_connection(self._target)
        except OSError:
            client.close()
            return
        self._sockets.append(upstream)
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(src, dst), daemon=True).start()

    def close(self) -> None:
        self.gate.set()
        self._server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.fixture
def proxies(seeded_sandbox: Any) -> Iterator[Any]:
    made: list[GateProxy] = []

    def make(*, open_: bool = False) -> GateProxy:
        proxy = GateProxy(seeded_sandbox.state.vault_addr, open_=open_)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "keyshift.db")
    yield s
    s.close()


def vault_via(name: str, address: str, mount: str) -> dict[str, Any]:
    return {"name": name, "type": "openbao", "address": address, "token": SANDBOX_TOKEN_REF,
            "kv_mounts": [mount], "auth": False, "leases": False}


def declared(*names: str) -> dict[str, Any]:
    """Declared sources with one credential each."""
    return {
        "version": 1,
        "agents": [{"name": "bot", "environment": "dev"}],
        "sources": [{"name": n, "type": "declared"} for n in names],
        "credentials": [
            {"name": f"key-{n}", "source": n, "kind": "api-key", "provider": "x",
             "environment": "dev", "agents": ["bot"]}
            for n in names
        ],
    }


def source_entries(audit: AuditLog, sync_id: int) -> list[str]:
    return [e.target for e in audit.entries()
            if e.action == "sync.source" and e.detail["sync_id"] == sync_id]


def test_sources_are_collected_side_by_side_and_written_in_inventory_order(
    vault: Any, proxies: Any, store: Store, tmp_path: Path
) -> None:
    """Three sources, two collect threads. The Vault source (first in the inventory) is held
    at the proxy until the third source's collect reports an item; the third starts only once
    a thread is free, i.e. once the second has finished. One after another, the Vault collect
    would wait for a source that comes after it: the gate would open by its timeout. And the
    Vault source finishes last, yet is written first."""
    mount = make_mount(vault, ["p/one", "p/two"])
    gated = proxies()
    inv = declared("d1", "d2")
    inv["sources"].insert(0, vault_via("v", gated.address, mount))
    loaded = write_inventory(inv, tmp_path / "inventory.yaml")
    calls: list[tuple[str, str, str]] = []
    depth, depth_lock, overlapped = [0], threading.Lock(), threading.Event()

    def progress(source: str, phase: str, message: str) -> None:
        with depth_lock:
            depth[0] += 1
            if depth[0] > 1:
                overlapped.set()
        try:
            if not calls:
                # the first collect to start lingers here: the other thread's "start", made
                # right then, would come in beside it unless the sync serialises the calls
                overlapped.wait(1.0)
            calls.append((threading.current_thread().name, source, phase))
            if (source, phase) == ("d2", "item"):
                gated.gate.set()
        finally:
            with depth_lock:
                depth[0] -= 1

    audit = AuditLog(store)
    summary = run_sync(loaded, store, audit, actor="test", progress=progress, workers=2)

    assert not gated.opened_by_timeout, "the Vault collect waited for a source after it"
    assert gated.connections >= 1
    assert summary.status == "ok", summary.as_dict()
    assert [o.source for o in summary.outcomes] == ["v", "d1", "d2"]
    assert [o.new for o in summary.outcomes] == [2, 1, 1]
    assert source_entries(audit, summary.sync_id) == ["v", "d1", "d2"]
    (end,) = [e for e in audit.entries() if e.action == "sync"]
    assert end.target == "v,d1,d2" and [s["source"] for s in end.detail["sources"]] == [
        "v", "d1", "d2"]
    assert audit.verify().ok
    # the d-sources finished collecting before the Vault source did, yet "done" (said once a
    # source is written) follows the inventory's order
    assert [s for _, s, p in calls if p == "done"] == ["v", "d1", "d2"]
    ends = [i for i, (_, s, p) in enumerate(calls) if p == "done"]
    d2_item = calls.index(next(c for c in calls if c[1:] == ("d2", "item")))
    assert d2_item < ends[0]
    # collects report from the sync's threads, the writes' "done" from the calling thread
    assert {t for t, _, p in calls if p in ("start", "item")} <= {
        "keyshift-sync-0", "keyshift-sync-1"}
    assert {t for t, _, p in calls if p == "done"} == {threading.current_thread().name}
    assert not overlapped.is_set(), "the progress callback was entered by two threads at once"
    for cred_id in (f"v:kv:{mount}/p/one", "d1:api-key:key-d1", "d2:api-key:key-d2"):
        row = store.get_credential(cred_id)
        assert row and row.stale_since is None and row.status == "active", cred_id


def test_a_failing_source_leaves_the_others_synced(
    vault: Any, seeded_sandbox: Any, store: Store, tmp_path: Path
) -> None:
    mount = make_mount(vault, ["f/one", "f/two"])
    audit = AuditLog(store)
    up = declared("d1", "d2")
    up["sources"].insert(1, vault_via("v", seeded_sandbox.state.vault_addr, mount))
    assert run_sync(write_inventory(up, tmp_path / "up.yaml"), store, audit,
                    actor="test").total("new") == 4

    sock, port = closed_port()
    with sock:
        down = declared("d1", "d2")
        down["sources"].insert(1, vault_via("v", f"http://127.0.0.1:{port}", mount))
        down["credentials"].append({"name": "key-new", "source": "d2", "kind": "api-key",
                                    "provider": "x", "environment": "dev"})
        summary = run_sync(write_inventory(down, tmp_path / "down.yaml"), store, audit,
                           actor="test")
    assert summary.status == "partial"
    assert [(o.source, o.status) for o in summary.outcomes] == [
        ("d1", "ok"), ("v", "failed"), ("d2", "ok")]
    failed = summary.outcomes[1]
    assert failed.stale == 2 and len(failed.errors) == 1 and "cannot reach" in failed.errors[0]
    assert summary.outcomes[2].new == 1  # the source after the failed one was written
    assert store.get_credential("d2:api-key:key-new") is not None
    for path in ("f/one", "f/two"):
        row = store.get_credential(f"v:kv:{mount}/{path}")
        assert row and row.gone_at is None and "cannot reach" in (row.stale_error or "")
    assert source_entries(audit, summary.sync_id) == ["d1", "v", "d2"]
    assert audit.verify().ok


def test_an_interrupted_sync_keeps_what_was_written_and_waits_for_no_running_collect(
    vault: Any, proxies: Any, store: Store, tmp_path: Path
) -> None:
    """Ctrl-C (a real SIGINT to the calling thread) while a Vault collect is held at the
    proxy: the first source stays written, the audit says the sync happened and failed, the
    sync returns without waiting for the held collect, and the source queued behind it never
    starts."""
    mount = make_mount(vault, ["i/one"])
    held, behind = proxies(), proxies(open_=True)
    inv = declared("d1")
    inv["sources"] += [vault_via("v", held.address, mount), vault_via("v2", behind.address,
                                                                       mount)]
    loaded = write_inventory(inv, tmp_path / "inventory.yaml")
    d1_done = threading.Event()
    in_sync = threading.Event()
    gate_at_return: list[bool] = []

    def progress(source: str, phase: str, message: str) -> None:
        if (source, phase) == ("d1", "done"):
            d1_done.set()

    def interrupt() -> None:
        # the calling thread is past d1's write and waiting on the held collect
        if d1_done.wait(GATE_WAIT) and held.connected.wait(GATE_WAIT) and in_sync.is_set():
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    assert threading.current_thread() is threading.main_thread()
    audit = AuditLog(store)
    sender = threading.Thread(target=interrupt)
    in_sync.set()
    sender.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sync(loaded, store, audit, actor="test", progress=progress, workers=1)
    finally:
        in_sync.clear()
        gate_at_return.append(held.gate.is_set())
        sender.join()
    assert gate_at_return == [False], "the sync waited for the held collect"

    held.gate.set()  # the held collect finishes now, in its thread; nothing of it is written
    for thread in threading.enumerate():
        if thread.name.startswith("keyshift-sync-"):
            thread.join(GATE_WAIT * 2)
            assert not thread.is_alive()
    assert behind.connections == 0, "a source queued behind the interrupt was collected"

    (run,) = store.sync_runs(10)
    assert run["status"] == "failed" and store.running_syncs() == []
    assert source_entries(audit, run["id"]) == ["d1"]
    (end,) = [e for e in audit.entries() if e.action == "sync"]
    assert end.detail["status"] == "failed" and end.detail["error"].startswith("KeyboardInterrupt")
    assert store.get_credential("d1:api-key:key-d1") is not None
    assert store.get_credential(f"v:kv:{mount}/i/one") is None
    assert audit.verify().ok
