"""The rotator registry: built-in issuers and targets, real entry points from an installed
dist-info (a whole third-party rotator, a third-party issuer), broken plugins, in-process
registration."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rotators import registry
from rotators.base import CredentialInfo, Pending
from rotators.issuers.generated import GeneratedIssuer
from rotators.targets.vault_kv import VaultKvTarget


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


class Half:
    role = "issuer"
    name = "half"
    manual = False

    def plan(self, cred):
        return None
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
            half-{tag} = {module}:Half
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


def test_builtins_are_listed_first_by_role() -> None:
    registry.reload()
    assert registry.names("issuer")[:5] == [
        "generated", "provider", "vault-approle", "vault-token", "aws-iam"
    ]
    assert registry.names("target")[:5] == [
        "vault-kv", "secretsmanager", "ssm", "keyring", "env-file"
    ]
    assert registry.of_role("generated", "issuer") is GeneratedIssuer
    assert registry.of_role("vault-kv", "target") is VaultKvTarget
    with pytest.raises(registry.UnknownRotator):
        registry.of_role("vault-kv", "issuer")  # a target is no issuer
    assert registry.for_kind("kv") == []  # no built-in whole rotator: every kind composes
    assert registry.for_kind("no-such-kind") == []


def test_unknown_name_is_a_lookup_error_listing_known_names() -> None:
    with pytest.raises(LookupError) as caught:
        registry.get("does-not-exist")
    assert isinstance(caught.value, registry.UnknownRotator)
    message = str(caught.value)
    assert "does-not-exist" in message
    assert "vault-kv" in message and "generated" in message


def test_entry_point_rotator_is_listed_and_created(plugin: Plugin) -> None:
    assert plugin.rotator in registry.names()
    cls = registry.of_role(plugin.rotator, "rotator")
    assert cls.__module__ == plugin.module
    context = _Context()
    rotator = cls(context)
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
    # an issuer plug-in is checked against the issuer protocol
    assert f"half-{tag}" not in names
    assert "lacks" in errors[f"half-{tag}"] and "issue" in errors[f"half-{tag}"]
    # a plugin cannot replace a built-in
    assert registry.get("vault-kv") is VaultKvTarget
    assert "built-in" in errors["vault-kv"]
    # the good plugin and the built-ins still work
    assert plugin.rotator in names and "generated" in names


def test_plugin_disappears_after_uninstall(plugin: Plugin) -> None:
    assert plugin.rotator in registry.names()
    sys.path.remove(str(plugin.root))  # the fixture's monkeypatch restores sys.path
    registry.reload()
    assert plugin.rotator not in registry.names()
    assert registry.load_errors() == {}


def test_register_in_process() -> None:
    class Shouting(GeneratedIssuer):
        name = "test-shouting"

    try:
        assert registry.register(Shouting) == "test-shouting"
        assert registry.of_role("test-shouting", "issuer") is Shouting
        assert registry.names("issuer")[0] == "generated"  # built-ins keep precedence
        assert "test-shouting" in registry.names("issuer")
        with pytest.raises(ValueError, match="already registered"):
            registry.register(Shouting)
        with pytest.raises(ValueError, match="already registered"):
            registry.register(Shouting, name="provider")
        with pytest.raises(TypeError):
            registry.register(int)
    finally:
        registry.unregister("test-shouting")
    with pytest.raises(registry.UnknownRotator):
        registry.get("test-shouting")
