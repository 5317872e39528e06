"""Vault tokens: what a rotation mints after contain revoked the current token, and what
contain may revoke, against the real sandbox.

- A rotation whose current token Vault no longer has mints exactly what that token had when
  keyshift last saw it (an earlier run's handle matched by fingerprint, or the one token of
  the role the last sync listed), within the token role; never root, never the role's whole
  allowed list, never a guess: nothing remembered is refused and nothing is minted.
- A valid token keyshift may not look up is not taken for a revoked one.
- contain revokes only the tokens of a (possibly shared) token role it can attribute to the
  incident's scope: keyshift's run metadata, or a role only the scope uses; the rest is left
  and said so. ``keyshift revoke`` of a declared rotation's row does the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest
from rotation_support import FAST

from console import incidents, secret_refs
from console.audit import AuditLog
from console.config import LoadedInventory, load_inventory
from console.errors import KeyshiftError
from console.incidents.runner import run_incident
from console.rotation import RotationEngine
from console.sandbox import SandboxState, vault_client
from console.store import Store
from console.sync import run_sync
from rotators.targets.env_file import read_vars, write_vars


def _lookup(vault: Any, token: str) -> dict | None:
    """The token's properties asked with the sandbox's root token (None: Vault has it no
    more). Not lookup-self: a token without the default policy cannot use that."""
    try:
        return dict(vault.adapter.post("/v1/auth/token/lookup", json={"token": token})["data"])
    except hvac.exceptions.Forbidden:
        return None


@dataclass
class World:
    tag: str
    vault: Any
    tmp: Path
    role: str
    p1: str
    p2: str
    loaded: LoadedInventory
    store: Store
    audit: AuditLog

    def env(self, who: str) -> str:
        return str(read_vars(self.tmp / who / ".env")["VAULT_TOKEN"])

    def engine(self) -> RotationEngine:
        return RotationEngine(self.store, self.audit, self.loaded, retry=FAST)

    def rotate(self, who: str, **kw: Any) -> Any:
        return self.engine().rotate(f"declared:vault-token:tok-{who}-{self.tag}", actor="lt",
                                    **kw)


def _world(sandbox: SandboxState, tmp: Path, *, role_body: dict, tokens: dict[str, dict],
           identity_of_a: bool = True, extra_source: str = "", issuer_source: str = "v",
           ) -> tuple[World, dict[str, dict]]:
    """A token role shared by rotations tok-a (agent a) and tok-b (agent b); ``tokens``: who
    -> the create body of the token their env file holds (made by hand, not by keyshift)."""
    tag = uuid.uuid4().hex[:8]
    vault = vault_client(sandbox)
    p1, p2 = f"p1-{tag}", f"p2-{tag}"
    for p in (p1, p2):
        vault.sys.create_or_update_policy(p, f'path "secret/data/{p}/*" '
                                          '{ capabilities = ["read"] }')
    role = f"shared-{tag}"
    body = {k: ([p1, p2] if v == "P1P2" else v) for k, v in role_body.items()}
    vault.adapter.post(f"/v1/auth/token/roles/{role}", json=body)
    made = {}
    for who, create in tokens.items():
        create = {k: ([{"P1": p1, "P2": p2}.get(x, x) for x in v] if k == "policies" else v)
                  for k, v in create.items()}
        made[who] = vault.adapter.post(f"/v1/auth/token/create/{role}", json=create)["auth"]
        (tmp / who).mkdir()
        write_vars(tmp / who / ".env", {"VAULT_TOKEN": made[who]["client_token"]})
    ident = f"identities: [{{type: vault-token-role, source: v, role: {role}}}]" \
        if identity_of_a else "identities: []"
    rotations = "".join(f"""
          - name: tok-{who}-{tag}
            issuer: {{type: vault-token, source: {issuer_source}, role: {role}}}
            targets: [{{type: env-file, path: {who}/.env, var: VAULT_TOKEN}}]
            agents: [{who}-{tag}]
            owner: team-{who}""" for who in tokens)
    inv = tmp / "inventory.yaml"
    inv.write_text(textwrap.dedent(f"""\
        version: 1
        sources:
          - {{name: v, type: openbao, sandbox: true, kv_mounts: [], leases: false}}
          - {{name: declared, type: declared}}{extra_source}
        agents:
          - name: a-{tag}
            owner: team-a
            environment: prod
            {ident}
          - name: b-{tag}
            owner: team-b
            environment: prod
        rotations:""") + textwrap.indent(textwrap.dedent(rotations), "  ") + "\n")
    loaded = load_inventory(inv)
    store = Store(tmp / "ks.db")
    audit = AuditLog(store)
    run_sync(loaded, store, audit, actor="lt")
    return World(tag, vault, tmp, role, p1, p2, loaded, store, audit), made


@pytest.fixture
def shared(sandbox: SandboxState, tmp_path: Path) -> Any:
    """Two agents' tokens from one token role that allows both policies."""
    w, made = _world(sandbox, tmp_path, role_body={"orphan": True, "allowed_policies": "P1P2",
                                                   "token_ttl": "7h"},
                     tokens={"a": {"policies": ["P1"], "ttl": "1h"},
                             "b": {"policies": ["P2"], "ttl": "1h"}})
    yield w, made
    w.store.close()


# --- what a rotation mints once the current token is gone ------------------------------------


def test_a_revoked_token_is_replaced_by_exactly_what_keyshift_last_saw_not_the_role(
        shared: Any) -> None:
    """The old code asked the role for all its allowed policies (p1 and p2) and its 7h TTL;
    the token a had p1 and 1h. keyshift's own earlier run remembers that, by fingerprint."""
    w, made = shared
    w.rotate("a", grace=timedelta(0))  # keyshift sees the valid token: its run journals it
    second = w.env("a")
    assert second != made["a"]["client_token"]
    w.vault.auth.token.revoke_accessor(_lookup(w.vault, second)["accessor"])  # contain did it

    got = w.rotate("a")
    third = w.env("a")
    data = _lookup(w.vault, third)
    assert third != second and data is not None
    assert sorted(data["policies"]) == sorted(["default", w.p1])
    assert data["creation_ttl"] == 3600 and data["role"] == w.role and data["orphan"] is True
    assert data["meta"]["keyshift_run"] == got.run_id
    # the plan said where the properties came from: the first run's handle, not the role
    steps = {s["step"]: s for s in w.store.rotation_steps(got.run_id)}
    old = steps["identify"]["detail"]["old"]
    assert old["old_invalid"] is True and old["remembered_from"].startswith("run ")
    assert old["accessor"] is None


def test_a_token_role_with_no_allowed_policies_never_yields_a_root_token(
        sandbox: SandboxState, tmp_path: Path) -> None:
    """A role without allowed_policies: asking it for no policy makes Vault copy keyshift's
    own (root) token's. With one token of the role synced, its policies are asked for by
    name; with two (nothing attributable) the rotation is refused and nothing is minted."""
    w, made = _world(sandbox, tmp_path, role_body={"orphan": True},
                     tokens={"a": {"policies": ["P1"], "ttl": "1h", "num_uses": 40}})
    try:
        w.vault.auth.token.revoke_accessor(made["a"]["accessor"])
        w.rotate("a")
        data = _lookup(w.vault, w.env("a"))
        assert data is not None and "root" not in data["policies"]
        assert sorted(data["policies"]) == sorted(["default", w.p1])
        assert data["creation_ttl"] == 3600 and data["num_uses"] == 40
    finally:
        w.store.close()

    (tmp_path / "two").mkdir()
    w2, made2 = _world(sandbox, tmp_path / "two", role_body={"orphan": True},
                       tokens={"a": {"policies": ["P1"], "ttl": "1h"},
                               "b": {"policies": ["P2"], "ttl": "1h"}})
    try:
        w2.vault.auth.token.revoke_accessor(made2["a"]["accessor"])
        before = _minted_by_keyshift(w2.vault)
        with pytest.raises(KeyshiftError, match="no record of its policies") as err:
            w2.rotate("a")
        assert "\n" not in str(err.value)
        assert w2.env("a") == made2["a"]["client_token"]  # consumers' file untouched
        assert _minted_by_keyshift(w2.vault) == before  # and no token minted at all
        assert _lookup(w2.vault, made2["b"]["client_token"]) is not None
    finally:
        w2.store.close()


def _minted_by_keyshift(vault: Any) -> set[str]:
    keys = vault.adapter.request("LIST", "/v1/auth/token/accessors")["data"]["keys"]
    out = set()
    for accessor in keys:
        try:
            data = vault.auth.token.lookup_accessor(accessor)["data"]
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
            continue
        if "keyshift_run" in (data.get("meta") or {}):
            out.add(accessor)
    return out


def test_a_token_swapped_in_by_hand_is_not_taken_for_the_one_keyshift_minted(
        shared: Any) -> None:
    """The remembered run describes the token it minted (by fingerprint); a token a person put
    in the file since, then revoked, is another token: refused, not given run 1's policies."""
    w, _ = shared
    w.rotate("a", grace=timedelta(0))
    by_hand = w.vault.adapter.post(f"/v1/auth/token/create/{w.role}",
                                   json={"policies": [w.p2], "ttl": "1h"})["auth"]
    write_vars(w.tmp / "a" / ".env", {"VAULT_TOKEN": by_hand["client_token"]})
    w.vault.auth.token.revoke_accessor(by_hand["accessor"])
    with pytest.raises(KeyshiftError, match="no record of its policies"):
        w.rotate("a")
    assert w.env("a") == by_hand["client_token"]


# --- a valid token keyshift may not look up ---------------------------------------------------


def test_a_valid_token_keyshift_may_not_look_up_is_not_taken_for_a_revoked_one(
        sandbox: SandboxState, tmp_path: Path) -> None:
    """keyshift's token lacks auth/token/lookup and the agent's token has no default policy
    (so lookup-self is refused too): the old code took it for revoked, minted a second token
    from the role and never revoked the first. Now: refused, naming the permission."""
    tag = uuid.uuid4().hex[:8]
    vault = vault_client(sandbox)
    vault.sys.create_or_update_policy(f"ks-{tag}", textwrap.dedent("""\
        path "auth/token/create/*" { capabilities = ["create", "update"] }
        path "auth/token/roles/*" { capabilities = ["read"] }
        path "auth/token/revoke-accessor" { capabilities = ["update"] }
        path "auth/token/lookup-accessor" { capabilities = ["update"] }
        path "auth/token/lookup-self" { capabilities = ["read"] }
        """))
    weak = vault.auth.token.create(policies=[f"ks-{tag}"], ttl="1h")["auth"]["client_token"]
    secret_refs.put("keyshift-test", f"weak-{tag}", weak)
    extra = (f"\n          - {{name: w, type: openbao, address: '{vault.url}', "
             f"token: 'keyring:keyshift-test/weak-{tag}', auth: false, kv_mounts: [], "
             "leases: false, fingerprint: false}")
    w, made = _world(sandbox, tmp_path, role_body={"orphan": True, "allowed_policies": "P1P2"},
                     tokens={"a": {"policies": ["P1"], "ttl": "1h", "no_default_policy": True}},
                     extra_source=extra, issuer_source="w")
    try:
        before = _minted_by_keyshift(vault)
        with pytest.raises(KeyshiftError, match="auth/token/lookup") as err:
            w.rotate("a")
        assert "cannot tell whether it was revoked" in str(err.value)
        assert w.env("a") == made["a"]["client_token"]
        assert _lookup(vault, made["a"]["client_token"]) is not None
        assert _minted_by_keyshift(vault) == before
    finally:
        w.store.close()


# --- contain's reach on a shared token role ---------------------------------------------------


def _contain(w: World, **scope: str) -> dict:
    inc = incidents.open_incident(w.store, w.audit, w.loaded, actor="lt", **scope)
    got = run_incident(w.store, w.audit, w.loaded, inc["id"], actor="lt", engine=w.engine(),
                       only=["contain"])
    [task] = got["tasks"]
    return {"task": task, "contain": w.store.get_incident(inc["id"])["detail"]["auto"].get(
        "contain", {})}


def test_contain_revokes_only_the_tokens_of_a_shared_role_it_can_attribute(
        shared: Any) -> None:
    """Rotations tok-a (agent a) and tok-b (agent b) mint from one token role. The old contain
    revoked every token of the role, so containing a's credential left b with no valid token
    (and eradicate rotates only a's). Tokens made by hand cannot be told apart: left, and said
    so; tokens keyshift minted name their run, so a's are revoked and b's are not."""
    w, made = shared
    a, b = made["a"]["client_token"], made["b"]["client_token"]
    done = _contain(w, credential=f"declared:vault-token:tok-a-{w.tag}")
    assert _lookup(w.vault, b) is not None, json.dumps(done, indent=1)
    assert _lookup(w.vault, a) is not None  # not attributable either: left, not guessed
    assert done["task"]["status"] in ("done", "skipped")
    assert "cannot be attributed to rotation tok-a" in done["task"]["note"]
    assert f"b-{w.tag}" in done["task"]["note"]  # who shares it

    w.rotate("a", grace=timedelta(0))
    w.rotate("b", grace=timedelta(0))
    a2, b2 = w.env("a"), w.env("b")
    a2_accessor = _lookup(w.vault, a2)["accessor"]
    done = _contain(w, credential=f"declared:vault-token:tok-a-{w.tag}")
    revoked = {o["credential"] for o in done["contain"]["outcomes"] if o["outcome"] == "revoked"}
    assert revoked == {f"v:vault-token:{a2_accessor}"}
    assert _lookup(w.vault, a2) is None and _lookup(w.vault, b2) is not None

    # a's incident by agent: a's identity is the shared role; only a's own token goes
    w.rotate("a")  # Vault has a2 no more: minted from what run 1 saw (p1, 1h)
    a3 = w.env("a")
    assert sorted(_lookup(w.vault, a3)["policies"]) == sorted(["default", w.p1])
    done = _contain(w, agent=f"a-{w.tag}")
    assert _lookup(w.vault, a3) is None and _lookup(w.vault, b2) is not None
    assert [o["outcome"] for o in done["contain"]["outcomes"]] == ["revoked"]



def test_keyshift_revoke_of_a_declared_token_rotation_revokes_only_its_own_token(
        shared: Any) -> None:
    """`keyshift revoke declared:vault-token:<rotation>` used to fail (exit 8: "source
    'declared' is declared"). Now: nothing attributable is one line with the hint to rotate;
    after keyshift minted a's token, only that one is revoked."""
    w, made = shared
    cid = f"declared:vault-token:tok-a-{w.tag}"

    def revoke() -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(Path(sys.executable).parent / "keyshift"), "--inventory",
             str(w.tmp / "inventory.yaml"), "--db", str(w.tmp / "ks.db"), "revoke", cid, "--yes"],
            env=dict(os.environ, KEYSHIFT_ACTOR="lt"), capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=120)

    w.store.close()
    refused = revoke()
    assert refused.returncode not in (0, 1) and "Traceback" not in refused.stderr
    assert "cannot be attributed" in refused.stderr and f"keyshift rotate {cid}" in \
        refused.stderr
    assert _lookup(w.vault, made["a"]["client_token"]) is not None

    w.store = Store(w.tmp / "ks.db")
    w.audit = AuditLog(w.store)
    w.rotate("a", grace=timedelta(0))
    w.store.close()
    a2 = w.env("a")
    ok = revoke()
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("revoked: v:vault-token:")
    assert _lookup(w.vault, a2) is None
    assert _lookup(w.vault, made["b"]["client_token"]) is not None
    for value in (a2, made["b"]["client_token"]):
        assert value not in ok.stdout + ok.stderr + refused.stdout + refused.stderr
    w.store = Store(w.tmp / "ks.db")
