"""Short references: what a person types for a credential (``show openai-prod``).

The full id always works; so does a unique name, or a unique tail of the id after a ``:`` or
``/`` (``support-bot/openai``, an access key id, a Secrets Manager secret's name without its
ARN's random suffix). An ambiguous reference lists the candidates (exit 2); one that matches
nothing says so (exit 3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from console.errors import NotFoundError, UsageError
from console.model import Credential

if TYPE_CHECKING:
    from console.store import Store

MAX_LISTED = 10


def resolve_credential(store: Store, ref: str) -> Credential:
    found = store.credentials_by_reference(ref, limit=MAX_LISTED + 1)
    if len(found) == 1:
        return found[0]
    if found:
        shown = ", ".join(c.id for c in found[:MAX_LISTED])
        more = " (and more)" if len(found) > MAX_LISTED else ""
        raise UsageError(
            f"{ref!r} matches {len(found)}{'+' if more else ''} credentials: {shown}{more}",
            hint="give more of the id, or the full id",
        )
    tail = ref.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    close = store.names_like(tail) if len(tail) >= 3 else []
    raise NotFoundError(
        f"no credential {ref!r}",
        hint=f"did you mean {', '.join(close)}?" if close else "list them with: keyshift ls",
    )


def resolve_prefixed(ref: str, prefix: str, find: Callable[..., list[dict[str, Any]]],
                     noun: str, listing: str) -> str:
    """A record id like ``INC-1A2B3C`` from the full id or a unique prefix, with or without
    ``prefix``, any case (incidents, drill runs). ``find(prefix, limit=N)`` lists the records
    whose id starts with it; ``listing`` is the command that lists them."""
    text = ref.strip().upper()
    if not text:
        raise UsageError(f"no {noun} id given")
    wanted = text if text.startswith(prefix) else prefix + text
    found = find(wanted, limit=MAX_LISTED + 1)
    exact = [r for r in found if r["id"] == wanted]
    if exact or len(found) == 1:
        return str((exact or found)[0]["id"])
    if found:
        raise UsageError(f"{ref!r} matches {len(found)} {noun}s: "
                         f"{', '.join(r['id'] for r in found[:MAX_LISTED])}",
                         hint="give more of the id")
    raise NotFoundError(f"no {noun} {ref!r}", hint=f"list them with: {listing}")
