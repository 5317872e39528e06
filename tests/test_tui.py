"""The Textual TUI against a real store: paging, filter, sort, detail, sync, read-only, no
secret on screen; rotation against the sandbox's OpenBao; snapshots with a frozen clock."""

from __future__ import annotations

import asyncio
import functools
import secrets as pysecrets
from pathlib import Path

import pytest
from tui_support import FROZEN, grants_for, screen_text, synthetic

from console.audit import AuditLog
from console.model import Credential
from console.query import parse
from console.store import Store
from screens.app import KeyshiftApp
from screens.detail import DetailScreen
from screens.help import HelpScreen
from screens.inventory import InventoryScreen
from screens.widgets.credential_table import CredentialTable


def sync_test(fn):  # type: ignore[no-untyped-def]
    """Run an async test in its own event loop (the suite has no async pytest plugin)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


SIZE = (160, 45)
N = 300
MARKER = "zzmarkerzz"


@pytest.fixture(autouse=True)
def _home(keyshift_home: Path) -> Path:
    return keyshift_home  # every test gets its own KEYSHIFT_HOME (tests/conftest.py)


@pytest.fixture
def creds() -> list[Credential]:
    out = [synthetic(i) for i in range(N)]
    out[10] = synthetic(10, marker=MARKER)
    return out


@pytest.fixture
def store(tmp_path: Path, creds: list[Credential]) -> Store:
    s = Store(tmp_path / "keyshift.db")
    # most rows in bulk; a few through a real source apply, so they carry grants with chains
    with_grants = [c for c in creds if c.source == "vault-prod" and c.agents][:20]
    ids = {c.id for c in with_grants}
    sync_id = s.begin_sync(["vault-prod"], "test")
    s.apply_source(
        sync_id,
        "vault-prod",
        with_grants,
        [g for c in with_grants for g in grants_for(c)],
        [],
        [],
        True,
    )
    s.bulk_insert_credentials([c for c in creds if c.id not in ids])
    yield s
    s.close()


def make_app(store: Store, loaded=None, *, read_only: bool = False, **kw) -> KeyshiftApp:  # type: ignore[no-untyped-def]
    kw.setdefault("now", lambda: FROZEN)
    return KeyshiftApp(store, loaded, AuditLog(store), read_only=read_only, actor="tester", **kw)


def table(app: KeyshiftApp) -> CredentialTable:
    return app.screen.query_one(CredentialTable)


def notes(app: KeyshiftApp) -> list[str]:
    return [n.message for n in app._notifications]


def window_names(app: KeyshiftApp) -> list[str]:
    """The names of the credentials on screen, top to bottom."""
    return [c.name for c in table(app).visible()]


def all_names(app: KeyshiftApp) -> list[str]:
    """Every row of the result, read through the table (a page at a time)."""
    t = table(app)
    return [t.row(i).name for i in range(t.total)]  # type: ignore[union-attr]


def expected(creds: list[Credential], text: str) -> list[str]:
    """The reference answer: console.query's Python semantics over the fixture's records."""
    q = parse(text)
    return sorted((c.name for c in creds if q.matches(c, FROZEN)), key=str.lower)


async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
    """Let the count (timer, then worker) land and the screen repaint. Bounded."""
    await pilot.pause()
    for _ in range(250):
        if not any(t.counting for t in pilot.app.screen.query(CredentialTable)):
            break
        await pilot.pause(0.02)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def type_filter(pilot, text: str) -> None:  # type: ignore[no-untyped-def]
    """Open the filter box (if closed) and type ``text`` after what it holds."""
    if not pilot.app.screen.query_one("#filter").has_focus:
        await pilot.press("slash")
    await pilot.press(*text)
    await pilot.pause(0.1)  # let a burst's trailing query run
    await settle(pilot)


# --- inventory ---------------------------------------------------------------------------


def test_columns_share_a_wide_terminal_and_keep_their_base_on_a_narrow_one() -> None:
    from screens.widgets.credential_table import BASE_WIDTHS, ROW_WIDTH, fit_widths, row_width

    assert fit_widths(80) == fit_widths(ROW_WIDTH) == BASE_WIDTHS  # narrower scrolls sideways
    wide = fit_widths(ROW_WIDTH + 41)
    assert row_width(wide) == ROW_WIDTH + 41  # every spare cell is used
    assert wide[0] - BASE_WIDTHS[0] >= 20  # the name grows first
    huge = fit_widths(10_000)
    assert all(w >= b for w, b in zip(huge, BASE_WIDTHS, strict=True))
    assert row_width(huge) < 10_000  # each column has a ceiling


@sync_test
async def test_a_long_name_shows_whole_on_a_wide_terminal(store: Store) -> None:
    long_name = "agents/support-bot/a-rather-long-secret-name"
    store.bulk_insert_credentials(
        [synthetic(0).model_copy(update={"id": "x:kv:long", "name": long_name})]
    )
    async with make_app(store).run_test(size=(120, 20)) as pilot:
        await settle(pilot)
        await pilot.press("/")
        for key in "long":
            await pilot.press(key)
        await settle(pilot)
        assert long_name not in screen_text(pilot.app)  # cut to the base width
        pilot.app.screen.query_one(CredentialTable).focus()
        await pilot.resize_terminal(200, 20)
        await settle(pilot)
        assert long_name in screen_text(pilot.app)


@sync_test
async def test_inventory_pages_from_the_store_and_moves_over_all(store: Store, creds) -> None:
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        t = table(app)
        assert t.total == N
        names = sorted((c.name for c in creds), key=str.lower)
        shown = window_names(app)
        assert shown == names[: len(shown)] and len(shown) > 30
        # only the pages painted were read: never every row
        assert t.loaded_rows == t.page_size < N
        text = screen_text(app)
        assert f"1-{len(shown)} of {N}" in text
        assert shown[-1] in text
        for _ in range(t.page_size + 5):
            await pilot.press("down")
        assert t.cursor == t.page_size + 5
        assert t.current is not None and t.current.name == names[t.page_size + 5]
        assert names[t.page_size + 5] in screen_text(app)  # scrolled into view
        await pilot.press("end")
        assert t.current is not None and t.current.name == names[-1]
        assert names[-1] in screen_text(app)
        assert t.loaded_rows <= t.page_size * t.max_pages
        await pilot.press("pageup")
        assert t.cursor == N - 1 - t.body_height
        await pilot.press("home")
        assert t.cursor == 0 and t.current.name == names[0]
        # the rows read a page at a time agree with the store's whole answer
        assert all_names(app) == names


@sync_test
async def test_first_page_paints_before_the_count_lands(store: Store, creds) -> None:
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        t = table(app)
        names = sorted((c.name for c in creds), key=str.lower)
        with t._count_lock:  # hold the count worker back: the screen must not wait for it
            await pilot.press("N")  # a new query (descending)
            await pilot.pause()
            assert t.counting and t.total == t.page_size
            assert "(counting)" in screen_text(app)
            assert window_names(app)[0] == names[-1]
            for _ in range(3):  # moving on reads the pages it needs, one at a time
                await pilot.press("pagedown")
            assert t.counting and t.total > t.page_size
            assert t.current is not None
            assert t.current.name == names[::-1][3 * t.body_height]
        await settle(pilot)
        assert not t.counting and t.total == N and t.exact
        assert f"of {N}" in screen_text(app)
        # a reload (after sync or rotate) keeps the cursor's place
        place = t.cursor
        t.reload()
        await settle(pilot)
        assert t.cursor == place and t.current.name == names[::-1][place]


@sync_test
async def test_rows_carry_relative_times_and_marks(store: Store) -> None:
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await type_filter(pilot, "svc-00000")
        t = table(app)
        assert [c.name for c in t.visible()][:2] == ["svc-000000-alpha", "svc-000001-bravo"]
        text = screen_text(app)
        # synthetic(1): expired 9 days less an hour ago; no evidence of use
        assert "expired 8d ago" in text
        assert "unknown" in text
        # the second row (not the cursor's) as painted: its segments carry the marks
        styles = [seg.style for seg in t.render_line(2)._segments if seg.text.strip()]
        colours = {s.color.name for s in styles if s and s.color}
        assert "red" in colours  # expired


@sync_test
async def test_filter_narrows_inverts_and_clears(store: Store, creds) -> None:
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await type_filter(pilot, "zulu")
        want = expected(creds, "zulu")
        assert 0 < len(want) < 60
        assert window_names(app) == want and all_names(app) == want
        assert table(app).total == len(want)
        text = screen_text(app)
        assert all(name in text for name in want)
        assert "svc-000000-alpha" not in text
        # ! inverts: everything but the needles
        box = app.screen.query_one("#filter")
        await pilot.press("escape")
        await settle(pilot)
        assert not box.display and table(app).total == N
        await type_filter(pilot, "!zulu")
        assert table(app).total == N - len(want)
        assert all_names(app) == expected(creds, "!zulu")
        # field:value with inversion, checked against the reference semantics
        await pilot.press("escape")
        await type_filter(pilot, "owner:none !env:prod")
        want = expected(creds, "owner:none !env:prod")
        assert table(app).total == len(want)
        assert all_names(app) == want
        # a half-typed term keeps the last good result and says why
        await pilot.press("space", "quotation_mark")
        await pilot.pause(0.1)
        assert table(app).total == len(want)
        assert "unclosed quote" in screen_text(app)
        # esc clears and closes the filter
        await pilot.press("escape")
        await pilot.pause(0.1)
        await settle(pilot)
        assert table(app).total == N
        assert not box.display
        assert app.focused is table(app)


@sync_test
async def test_sort_keys_toggle(store: Store, creds) -> None:
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        names = sorted((c.name for c in creds), key=str.lower)
        await pilot.press("N")  # already by name: toggles to descending
        await settle(pilot)
        assert all_names(app) == names[::-1]
        await pilot.press("N")
        await settle(pilot)
        assert all_names(app) == names
        await pilot.press("E")
        await settle(pilot)  # by expiry: no expiry first, then soonest
        rows = [table(app).row(i) for i in range(N)]
        dated = [c.expires_at for c in rows if c.expires_at]
        assert rows[0].expires_at is None and dated == sorted(dated)
        await pilot.press("U")
        await settle(pilot)
        rows = [table(app).row(i) for i in range(N)]
        used = [c.last_used_at for c in rows if c.last_used_at]
        assert rows[0].last_used_at is None and used == sorted(used)
        assert "sort used" in screen_text(app)


@sync_test
async def test_detail_shows_metadata_agents_chain_and_back(store: Store, creds) -> None:
    granted = next(c for c in creds if c.source == "vault-prod" and c.agents)
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await type_filter(pilot, f"name:{granted.name}")
        await pilot.press("enter")  # closes the filter box
        await pilot.press("enter")  # opens the detail
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        text = screen_text(app)
        assert granted.id in text
        assert granted.agents[0] in text
        assert "policy:agents-read" in text and f"rule:{granted.location}" in text
        assert "never rotated by keyshift" in text
        assert granted.fingerprint[:12] in text
        assert granted.fingerprint not in text  # shown truncated
        await pilot.press("escape")
        assert isinstance(app.screen, InventoryScreen)


@sync_test
async def test_help_lists_bindings_with_ids(store: Store) -> None:
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for ident in (
            "inventory.filter",
            "inventory.sync",
            "inventory.rotate",
            "inventory.sort-expires",
            "app.quit",
            "app.help",
        ):
            assert ident in text
        await pilot.press("escape")
        assert isinstance(app.screen, InventoryScreen)


@sync_test
async def test_command_palette_lists_the_screen_actions(store: Store) -> None:
    for read_only in (False, True):
        app = make_app(store, read_only=read_only)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            titles = {c.title for c in app.get_system_commands(app.screen)}
            assert {"Filter", "Sort expiry", "Keys", "Quit"} <= titles
            assert ("Sync" in titles) is not read_only
            assert ("Rotate" in titles) is not read_only


@sync_test
async def test_every_binding_has_an_id() -> None:
    from screens.rotate import RotateScreen

    for cls in (KeyshiftApp, InventoryScreen, DetailScreen, HelpScreen, RotateScreen):
        for binding in cls.BINDINGS:
            assert binding.id, f"{cls.__name__} binding {binding.key} has no id"


@sync_test
async def test_empty_store_says_how_to_fill_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "empty.db")
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "press s to sync" in screen_text(app)
    store.close()


# --- sync and secrets -------------------------------------------------------------------


def _declared_inventory(tmp_path: Path, canary: str) -> Path:
    (tmp_path / "support.env").write_text(f"OPENAI_API_KEY={canary}\nOTHER=1\n")
    inv = tmp_path / "inventory.yaml"
    inv.write_text(
        f"""version: 1
agents:
  - name: support-bot
    owner: team-support
    environment: prod
sources:
  - name: declared
    type: declared
credentials:
  - name: openai-support-{MARKER}
    source: declared
    kind: api-key
    provider: openai
    owner: team-support
    environment: prod
    agents: [support-bot]
    delivered_to:
      - type: env-file
        path: support.env
        var: OPENAI_API_KEY
  - name: stripe-billing
    source: declared
    kind: payment-key
    provider: stripe
    environment: prod
    agents: [support-bot]
"""
    )
    return inv


@sync_test
async def test_sync_adds_rows_and_no_secret_reaches_the_screen(store: Store, tmp_path) -> None:
    from console.config import load_inventory

    canary = "sk-CANARY" + pysecrets.token_hex(16)
    loaded = load_inventory(_declared_inventory(tmp_path, canary))
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("s")
        await settle(pilot)
        t = table(app)
        assert t.total == N + 2
        texts = [screen_text(app)]
        assert "declared: done" in texts[0]
        await type_filter(pilot, f"openai-support-{MARKER}")
        assert window_names(app) == [f"openai-support-{MARKER}"]
        cred = t.current
        assert cred is not None and cred.fingerprint  # the value was read, fingerprinted
        texts.append(screen_text(app))
        await pilot.press("enter", "enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        texts.append(screen_text(app))
        assert "support-bot" in texts[-1] and "declared in inventory" in texts[-1]
        await pilot.press("question_mark")
        texts.append(screen_text(app))
        svg = app.export_screenshot()
    # the marker in the name is on screen (the export works), the value never is
    assert MARKER in texts[1] and MARKER in texts[2]
    for text in (*texts, svg):
        assert canary not in text
        assert canary[9:] not in text
    audit = AuditLog(store).tail(5)
    assert any(e.action == "sync" and e.actor == "tester" for e in audit)


@sync_test
async def test_read_only_refuses_sync_and_rotate(store: Store, tmp_path) -> None:
    from console.config import load_inventory

    loaded = load_inventory(_declared_inventory(tmp_path, "sk-x" + pysecrets.token_hex(8)))
    app = make_app(store, loaded, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert "READ-ONLY" in text
        assert "Sync" not in text.splitlines()[0] and "Rotate" not in text.splitlines()[0]
        await pilot.press("s")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert table(app).total == N  # nothing synced
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, InventoryScreen)  # no rotate dialog
        refusals = notes(app)
        assert any("refused: sync" in m for m in refusals)
        assert any("refused: rotate" in m for m in refusals)
        await pilot.press("enter")
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        await pilot.press("question_mark")
        help_text = screen_text(app)
        assert "detail.back" in help_text  # the detail screen's keys are listed...
        assert "detail.rotate" not in help_text  # ...but not the one that changes things
    assert not any(e.action == "sync" for e in AuditLog(store).tail(20))


@sync_test
async def test_quit_key(store: Store) -> None:
    app = make_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


# --- rotation against the sandbox's OpenBao ------------------------------------------------

ROTATE_INVENTORY = """\
version: 1
sources:
  - {name: vault-sandbox, type: openbao, sandbox: true, issuer_tag: keyshift-issuer}
  - {name: declared, type: declared}
policies:
  grace_period_hours: 24
providers:
  - {name: openai, sandbox: true, verify: {url: "https://api.openai.com/v1/models"}}
credentials:
  - name: openai-tui
    source: declared
    kind: api-key
    provider: openai
    environment: prod
    delivered_to:
      - {type: env-file, path: agent/.env, var: OPENAI_API_KEY}
"""


@pytest.fixture
def kv_secret(sandbox, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A KV v2 secret of this test's own in the sandbox, a store row for it, and a loaded
    inventory naming the sandbox source. Yields (store, loaded, vault, path, cred, value)."""
    import uuid

    from console.config import load_inventory
    from console.sandbox import vault_client

    vault = vault_client(sandbox)
    path = f"tui-tests/{uuid.uuid4().hex[:12]}"
    value = "canary-" + pysecrets.token_urlsafe(24)
    vault.secrets.kv.v2.create_or_update_secret(path, {"value": value}, mount_point="secret")
    # what it holds, declared the way a sync reads it: a shared secret keyshift may generate
    vault.secrets.kv.v2.update_metadata(
        path, mount_point="secret", custom_metadata={"keyshift-issuer": "generated"}
    )
    native = f"secret/{path}"
    cred = Credential(
        id=f"vault-sandbox:kv:{native}",
        source="vault-sandbox",
        kind="kv",
        native_id=native,
        name=f"rot-{path.split('/')[1]}",
        location=native,
        version="1",
        owner="team-support",
        tags={"keyshift-issuer": "generated"},
    )
    store = Store(tmp_path / "rotate.db")
    store.bulk_insert_credentials([cred, *(synthetic(i) for i in range(40))])
    inv = tmp_path / "rotate.yaml"
    inv.write_text(ROTATE_INVENTORY)
    yield store, load_inventory(inv), vault, path, cred, value
    store.close()


def _kv(vault, path: str) -> dict:  # type: ignore[no-untyped-def]
    return vault.secrets.kv.v2.read_secret_version(
        path, mount_point="secret", raise_on_deleted_version=True
    )["data"]


async def _open_rotate(pilot, app: KeyshiftApp, name: str):  # type: ignore[no-untyped-def]
    from screens.rotate import RotateScreen

    await type_filter(pilot, f"name:{name}")
    await pilot.press("enter")  # close the filter box
    assert table(app).current is not None and table(app).current.name == name
    await pilot.press("r")
    await pilot.pause()
    assert isinstance(app.screen, RotateScreen)
    await app.workers.wait_for_complete()  # the plan
    await pilot.pause()
    return app.screen


@sync_test
async def test_rotate_confirmed_changes_the_value_in_vault(kv_secret) -> None:
    store, loaded, vault, path, cred, old = kv_secret
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await _open_rotate(pilot, app, cred.name)
        text = screen_text(app)
        assert "issuer     generated" in text and "vault-kv: vault-sandbox" in text
        assert "1. issue:" in text and "2. deliver:" in text and "3. verify:" in text
        assert "downtime   none" in text
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        text = screen_text(app)
        for step in ("identify", "issue", "deliver:0", "verify", "promote:0"):
            assert dialog.step_lines[step][0] == "done", dialog.step_lines
        assert "Rotate (y)" not in text  # nothing left to start from a finished dialog
        assert "awaiting-revoke" in text  # the old value stays valid for the grace period
        new = _kv(vault, path)
        assert new["metadata"]["version"] == 2
        new_value = new["data"]["value"]
        assert new_value != old
        assert old not in text and new_value not in text
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, InventoryScreen)
        await pilot.press("enter")
        await pilot.pause()
        text = screen_text(app)
        assert "rotation history (1)" in text and "awaiting-revoke" in text
        assert old not in text and new_value not in text
    runs = store.rotation_runs(credential_id=cred.id)
    assert len(runs) == 1 and runs[0]["actor"] == "tester"


@sync_test
async def test_rotate_cancelled_changes_nothing(kv_secret) -> None:
    store, loaded, vault, path, cred, old = kv_secret
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        await _open_rotate(pilot, app, cred.name)
        assert "downtime   none" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, InventoryScreen)
    current = _kv(vault, path)
    assert current["metadata"]["version"] == 1 and current["data"]["value"] == old
    assert store.rotation_runs(credential_id=cred.id) == []


def _standin(path: str, **body):  # type: ignore[no-untyped-def]
    """The provider stand-in's console: what a person does on the provider's website."""
    import requests

    from console.sandbox import provider_base

    session = requests.Session()
    session.trust_env = False
    got = session.post(f"{provider_base('openai')}/console/{path}", json=body, timeout=10)
    got.raise_for_status()
    return got.json()


def _standin_accepts(key: str) -> bool:
    import requests

    from console.sandbox import provider_base

    session = requests.Session()
    session.trust_env = False
    got = session.get(
        f"{provider_base('openai')}/v1/models", headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    return got.status_code == 200


@sync_test
async def test_a_provider_key_rotates_through_the_checklist_with_a_hidden_prompt(
    kv_secret, tmp_path: Path
) -> None:
    """A person mints the new key at the provider, pastes it into a password field; keyshift
    delivers it, the provider's hook accepts it, and the key is on no screen and in no file of
    keyshift's."""
    from textual.widgets import Input

    from screens.prompts import SecretPrompt

    store, loaded, _vault, _path, _cred, _old = kv_secret
    old_key = _standin("keys", name="old")["key"]
    env_file = tmp_path / "agent" / ".env"
    env_file.parent.mkdir()
    env_file.write_text(f"OTHER=1\nOPENAI_API_KEY={old_key}\n")
    env_file.chmod(0o640)
    row = Credential(
        id="declared:api-key:openai-tui", source="declared", kind="api-key",
        native_id="openai-tui", name="openai-tui", environment="prod",
    )
    store.bulk_insert_credentials([row])
    seen: list[str] = []
    app = make_app(store, loaded)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await _open_rotate(pilot, app, "openai-tui")
        seen.append(screen_text(app))
        assert "a person mints" in seen[-1] and "/openai/console" in seen[-1]
        new_key = _standin("keys", name="new")["key"]  # minted at the provider's console
        await pilot.press("y")
        for _ in range(100):
            await pilot.pause(0.05)
            if isinstance(app.screen, SecretPrompt):
                break
        assert isinstance(app.screen, SecretPrompt)
        seen.append(screen_text(app))
        assert "Mint a new key for openai-tui" in seen[-1]
        field = app.screen.query_one(Input)
        assert field.password
        for ch in new_key:
            await pilot.press(ch if ch != "-" else "minus")
        seen.append(screen_text(app))
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        seen.append(screen_text(app))
        assert dialog.step_lines["verify"][0] == "done", dialog.step_lines
        assert "awaiting-revoke" in seen[-1]
    assert f"OPENAI_API_KEY={new_key}" in env_file.read_text()
    assert "OTHER=1" in env_file.read_text() and env_file.stat().st_mode & 0o777 == 0o640
    assert _standin_accepts(new_key) and _standin_accepts(old_key)  # old one: until revoke
    for text in seen:
        assert new_key not in text and old_key not in text
    for part in ("rotate.db", "rotate.db-wal"):
        path = tmp_path / part
        if path.exists():
            data = path.read_bytes()
            assert new_key.encode() not in data and old_key.encode() not in data
    run = store.rotation_runs(credential_id=row.id)[0]
    assert run["status"] == "awaiting-revoke" and run["rotator"] == "provider"


# --- snapshots (frozen clock) --------------------------------------------------------------


@pytest.fixture
def frozen():  # type: ignore[no-untyped-def]
    """Frozen clock; list it before ``store`` so the store's bookkeeping times are frozen too."""
    import time_machine

    with time_machine.travel(FROZEN, tick=False) as traveller:
        yield traveller


def _snap_app(store: Store, **kw) -> KeyshiftApp:  # type: ignore[no-untyped-def]
    # the default clock (datetime.now), frozen by time-machine
    return KeyshiftApp(store, None, AuditLog(store), actor="tester", **kw)


def _settled(*keys: str):  # type: ignore[no-untyped-def]
    """A run_before for snap_compare: press keys, then let the count worker land."""

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.pause()
        if keys:
            await pilot.press(*keys)
            await pilot.pause(0.1)
        await settle(pilot)

    return run_before


def test_snapshot_inventory(frozen, store: Store, snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(_snap_app(store), terminal_size=SIZE, run_before=_settled())


def test_snapshot_inventory_filtered(frozen, store: Store, snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(
        _snap_app(store),
        terminal_size=SIZE,
        run_before=_settled("slash", *"owner:none", "enter", "E"),
    )


def test_snapshot_read_only(frozen, store: Store, snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(_snap_app(store, read_only=True), terminal_size=SIZE, run_before=_settled())


def test_snapshot_detail(frozen, store: Store, creds, snap_compare) -> None:  # type: ignore[no-untyped-def]
    granted = next(c for c in creds if c.source == "vault-prod" and c.agents)
    assert snap_compare(
        _snap_app(store),
        terminal_size=SIZE,
        run_before=_settled("slash", *f"name:{granted.name}", "enter", "enter"),
    )


# --- quitting while work runs ------------------------------------------------------------


@sync_test
async def test_quit_waits_for_a_running_rotation(kv_secret) -> None:
    """A rotation stopped half-way would leave a pending version nobody verifies: `q` and
    ctrl+q are refused until it has finished, then quit works."""
    import threading

    from rotators import registry
    from rotators.base import Pending, Plan

    store, loaded, _vault, _path, cred, _old = kv_secret
    release = threading.Event()

    class SlowCreate:  # a third-party rotator (keyshift's first protocol) whose provider is slow
        name = "test-slow-create"
        kinds = ("kv",)
        manual = False

        def __init__(self, context):  # type: ignore[no-untyped-def]
            self.context = context

        def plan(self, cred):  # type: ignore[no-untyped-def]
            return Plan(rotator=self.name, summary="slow", steps=["create: slowly"],
                        zero_downtime=True)

        def create(self, cred, run_id):  # type: ignore[no-untyped-def]
            release.wait(30)
            return Pending(version="2", previous_version="1")

        def verify(self, cred, pending):  # type: ignore[no-untyped-def]
            return None

        def promote(self, cred, pending):  # type: ignore[no-untyped-def]
            return None

        def revoke(self, cred, previous_version):  # type: ignore[no-untyped-def]
            return None

        def rollback(self, cred, pending):  # type: ignore[no-untyped-def]
            return None

    registry.register(SlowCreate)
    store.bulk_insert_credentials(
        [cred.model_copy(update={"id": cred.id + "-slow", "rotator": "test-slow-create"})]
    )
    try:
        app = make_app(store, loaded)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("/")
            for key in cred.name:
                await pilot.press(key)
            await pilot.press("enter")
            await settle(pilot)
            slow = [c for c in table(app).visible() if c.rotator == "test-slow-create"]
            assert slow, "the slow credential is listed"
            while table(app).current.rotator != "test-slow-create":
                await pilot.press("down")
            await pilot.press("r")
            for _ in range(100):
                await pilot.pause(0.05)
                if "test-slow-create" in screen_text(app):
                    break
            await pilot.press("y")
            await pilot.pause(0.2)
            assert app.busy_with() == "a rotation"
            await pilot.press("ctrl+q")
            await pilot.press("q")
            await pilot.pause(0.2)
            assert app.is_running
            assert any("a rotation is running" in m for m in notes(app))
            release.set()
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert app.busy_with() is None
            runs = store.rotation_runs(credential_id=cred.id + "-slow")
            assert runs and runs[0]["status"] == "awaiting-revoke"
            await pilot.press("escape")
            await pilot.press("q")
            await pilot.pause()
        assert not app.is_running
    finally:
        release.set()
        registry.unregister("test-slow-create")
