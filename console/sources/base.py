"""The Source protocol and the one place that maps an inventory source type to its collector."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from console.model import Credential, Grant, ItemError, ReadPosition, UsageEvent

if TYPE_CHECKING:
    from console.config import LoadedInventory

Progress = Callable[[str], None]


@dataclass
class CollectResult:
    credentials: list[Credential] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)
    usage: list[UsageEvent] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
    # False when part of the listing failed: sync then marks unseen rows stale, never gone.
    complete: bool = True
    # where each evidence log was read up to: sync stores them with the listing, in one
    # transaction, and hands them back to the collector (``start_positions``) next time
    positions: list[ReadPosition] = field(default_factory=list)


class Source(Protocol):
    """A collector. One that reads an evidence log also has ``start_positions: dict[str,
    ReadPosition]`` (by log path), which sync fills from the store before ``collect``; without
    it (a bench, a test) the log is read from its start."""

    name: str
    type: str

    def collect(self, progress: Progress | None = None) -> CollectResult:
        """Read the source. Raises SourceError when the source as a whole cannot be read."""
        ...


# The one place that knows which collector reads which inventory source type; imported lazily
# so `keyshift ls` never pays for boto3 or hvac.
_COLLECTORS: dict[str, str] = {
    "declared": "console.sources.declared:DeclaredSource",
    "vault": "console.sources.vault:VaultSource",
    "openbao": "console.sources.vault:VaultSource",
    "aws": "console.sources.aws:AwsSource",
    "keyring": "console.sources.keyring_source:KeyringSource",
}


def build_sources(loaded: LoadedInventory, only: list[str] | None = None) -> list[Source]:
    """Collectors for the inventory's sources (all, or those named in ``only``)."""
    import importlib

    from console.errors import UsageError

    known = {s.name for s in loaded.inventory.sources}
    unknown = [name for name in only or [] if name not in known]
    if unknown:
        raise UsageError(
            f"unknown source {unknown[0]!r}", hint=f"sources: {', '.join(sorted(known))}"
        )
    collectors: list[Source] = []
    for cfg in loaded.inventory.sources:
        if only and cfg.name not in only:
            continue
        module_name, _, class_name = _COLLECTORS[cfg.type].partition(":")
        module = importlib.import_module(module_name)
        collectors.append(getattr(module, class_name)(cfg, loaded))
    return collectors
