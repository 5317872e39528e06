"""Vault / OpenBao errors as RotatorErrors: what failed and where, never a value."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import hvac.exceptions
import requests

from rotators.base import RotatorError


@contextmanager
def vault_errors(step: str, where: str, source: str) -> Iterator[None]:
    """Client errors become RotatorErrors naming the step and the path. A server that is
    down, sealed, overloaded or throttling is retryable; a denial or a bad request is not."""
    try:
        yield
    except RotatorError:
        raise
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
        raise RotatorError(f"{step} {where}: cannot reach {source}", retryable=True) from None
    except (
        hvac.exceptions.VaultDown,
        hvac.exceptions.InternalServerError,
        hvac.exceptions.BadGateway,
        hvac.exceptions.RateLimitExceeded,
    ) as exc:
        reason = "sealed" if isinstance(exc, hvac.exceptions.VaultDown) else type(exc).__name__
        raise RotatorError(
            f"{step} {where}: {source} is unavailable ({reason})", retryable=True
        ) from None
    except hvac.exceptions.Forbidden:
        raise RotatorError(f"{step} {where}: permission denied by {source}") from None
    except hvac.exceptions.VaultError as exc:
        errors = "; ".join(str(e) for e in (exc.errors or [])) or type(exc).__name__
        raise RotatorError(f"{step} {where}: {errors[:300]}") from None
