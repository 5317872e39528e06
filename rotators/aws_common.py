"""AWS errors as RotatorErrors: what failed and where, never a value."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import botocore.exceptions

from rotators.base import RotatorError

RETRYABLE_CODES = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalServiceError",
    "InternalServerError",
    "RequestTimeout",
    "RequestTimeoutException",
}


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


@contextmanager
def aws_errors(step: str, where: str) -> Iterator[None]:
    try:
        yield
    except RotatorError:
        raise
    except botocore.exceptions.ClientError as exc:
        code = error_code(exc)
        status = (exc.response or {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        retryable = code in RETRYABLE_CODES or int(status or 0) >= 500
        raise RotatorError(
            f"{step} {where}: {exc.operation_name} failed ({code or status})",
            retryable=retryable,
        ) from None
    except (
        botocore.exceptions.EndpointConnectionError,
        botocore.exceptions.ConnectTimeoutError,
        botocore.exceptions.ReadTimeoutError,
        botocore.exceptions.ConnectionClosedError,
    ) as exc:
        raise RotatorError(
            f"{step} {where}: AWS unreachable ({type(exc).__name__})", retryable=True
        ) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise RotatorError(f"{step} {where}: {type(exc).__name__}") from None
