"""The rotator registry: built-ins, real entry points from an installed dist-info, broken plugins,
in-process registration, and the manual rotator's refusals."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rotators import registry
from rotators.base import CredentialInfo, Pending, RotatorError
from rotators.manual import ManualRotator
from rotators.vault_kv import VaultKvRotator


@dataclass
class Plugin:
    root: Path
    module: str
    rotator: str  # the good entry point's name
    kind: str


PLUGIN_SOURCE = '''
from rotators.base import Pending, Plan

class EchoRotator:
    name = "{rotator}"
    kinds = ("{kind}",)
    manual = False

    def __init__(self, context):
        self.context = context

    def plan(self, cred):
        return Plan(rotator=self.name, summary="echo", steps=[], zero_downtime=True)

    def create(self, cred, run_id):
        return Pending(version="1")

    def verify(self, cred, pending):
        return None

    def promote(self, cred, pending):
        return None

    def revoke(self, cred, previous_version):
        return None

    def rollback(self, cred, pending):
        return None


class NotARotator:
    name = "nope"
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Plugin]:
    """A third-party distribution installed the way pip would leave it: a module and a
    ``<dist>.dist-info`` with METADATA and entry_points.txt, on sys.path."""
    tag = uuid.uuid4().hex[:8]
    module = f"ks_plugin_{tag}"
    rotator = f"echo-{tag}"
    kind = f"echo-kind-{tag}"
    root = tmp_path / "site"
    root.mkdir()
    (root / f"{module}.py").write_text(PLUGIN_SOURCE.format(rotator=rotator, kind=kind))
    dist = root / f"ks_plugin_{tag}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: ks-plugin-{tag}\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            f"""\
            [keyshift.rotators]
            {rotator} = {module}:EchoRotator
            broken-{tag} = ks_missing_module_{tag}:Whatever
            notarotator-{tag} = {module}:NotARotator
            vault-kv = {module}:EchoRotator
            """
        )
    )
    monkeypatch.syspath_prepend(str(root))
    registry.reload()
    try:
        yield Plugin(root=root, module=module, rotator=rotator, kind=kind)
    finally:
        monkeypatch.undo()
        sys.modules.pop(module, None)
        registry.reload()


def _info(kind: str = "kv") -> CredentialInfo:
    return CredentialInfo(
        id=f"declared:{kind}:thing",
        source="declared",
        kind=kind,
        native_id="thing",
        name="thing",
        metadata={"provider": "openai"},
    )


class _Context:
    """A stand-in RotatorContext: the registry only passes it through to the constructor."""


def test_builtins_are_listed_first_and_found_by_kind() -> None:
    registry.reload()
    assert registry.names()[:2] == ["vault-kv", "manual"]
    assert registry.get("vault-kv") is VaultKvRotator
    assert registry.get("manual") is ManualRotator
    assert registry.for_kind("kv")[0] == "vault-kv"
    assert "manual" in registry.for_kind("api-key")
    assert "vault-kv" not in registry.for_kind("api-key")
    assert registry.for_kind("no-such-kind") == []


def test_unknown_name_is_a_lookup_error_listing_known_names() -> None:
    with pytest.raises(LookupError) as caught:
        registry.get("does-not-exist")
    assert isinstance(caught.value, registry.UnknownRotator)
    message = str(caught.value)
    assert "does-not-exist" in message
    assert "vault-kv" in message and "manual" in message
    with pytest.raises(registry.UnknownRotator):
        registry.create("does-not-exist", _Context())


def test_entry_point_rotator_is_listed_and_created(plugin: Plugin) -> None:
    assert plugin.rotator in registry.names()
    cls = registry.get(plugin.rotator)
    assert cls.__module__ == plugin.module
    context = _Context()
    rotator = registry.create(plugin.rotator, context)
    assert type(rotator) is cls
    assert rotator.context is context
    assert registry.for_kind(plugin.kind) == [plugin.rotator]
    assert rotator.create(_info(plugin.kind), "run-1") == Pending(version="1")


def test_broken_entry_points_are_skipped_and_recorded(plugin: Plugin) -> None:
    names = registry.names()
    tag = plugin.rotator.removeprefix("echo-")
    assert f"broken-{tag}" not in names
    assert f"notarotator-{tag}" not in names
    errors = registry.load_errors()
    assert "failed to load" in errors[f"broken-{tag}"]
    assert "ModuleNotFoundError" in errors[f"broken-{tag}"]
    assert "lacks" in errors[f"notarotator-{tag}"] or "no class attribute" in errors[
        f"notarotator-{tag}"
    ]
    # a plugin cannot replace a built-in
    assert registry.get("vault-kv") is VaultKvRotator
    assert "built-in" in errors["vault-kv"]
    # the good plugin and the built-ins still work
    assert plugin.rotator in names and "manual" in names


def test_plugin_disappears_after_uninstall(plugin: Plugin) -> None:
    assert plugin.rotator in registry.names()
    sys.path.remove(str(plugin.root))  # the fixture's monkeypatch restores sys.path
    registry.reload()
    assert plugin.rotator not in registry.names()
    assert registry.load_errors() == {}


def test_register_in_process() -> None:
    class Shouting(VaultKvRotator):
        name = "test-shouting"

    try:
        assert registry.register(Shouting) == "test-shouting"
        assert registry.get("test-shouting") is Shouting
        assert "test-shouting" in registry.for_kind("kv")
        assert registry.for_kind("kv")[0] == "vault-kv"  # built-ins keep precedence
        with pytest.raises(ValueError, match="already registered"):
            registry.register(Shouting)
        with pytest.raises(ValueError, match="already registered"):
            registry.register(Shouting, name="manual")
        with pytest.raises(TypeError):
            registry.register(int)
    finally:
        registry.unregister("test-shouting")
    with pytest.raises(registry.UnknownRotator):
        registry.get("test-shouting")


def test_manual_rotator_plans_a_checklist_and_refuses_steps() -> None:
    rotator = registry.create("manual", _Context())
    plan = rotator.plan(_info("api-key"))
    assert plan.manual is True
    assert plan.rotator == "manual"
    assert "checklist" in plan.summary
    assert [s.split(":")[0] for s in plan.steps] == ["create", "verify", "promote", "revoke"]
    for call in (
        lambda: rotator.create(_info("api-key"), "run-1"),
        lambda: rotator.verify(_info("api-key"), Pending(version="1")),
        lambda: rotator.promote(_info("api-key"), Pending(version="1")),
        lambda: rotator.revoke(_info("api-key"), "1"),
    ):
        with pytest.raises(RotatorError, match=r"^manual: confirm .* in the checklist"):
            call()
    assert rotator.rollback(_info("api-key"), Pending(version="1")) is None
