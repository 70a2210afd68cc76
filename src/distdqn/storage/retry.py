"""Retrying calls to an object store: which errors waiting may cure, and how long to wait.

A store fails now and then (a dropped connection, a timeout, a 503 SlowDown); every call to it
is retried after such a transient error, on top of what the fsspec backend retries itself. An
error that waiting does not cure (permissions, credentials, a missing bucket) is raised at once.
"""

from __future__ import annotations

import errno
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Retry:
    """How long a call to the store is retried after a transient error: waits that double
    from `first_wait_s` up to `max_wait_s`, each drawn between half and all of that (so that
    processes that failed together do not retry in step), until `attempts` tries were made or
    the next try would start more than `total_s` after the first. A call thus gives up within
    `total_s` plus its own last try (the backend's timeouts)."""

    attempts: int = 8
    """Tries of one call, the first included."""
    first_wait_s: float = 1.0
    """The wait after the first failure."""
    max_wait_s: float = 30.0
    """The cap on one wait."""
    total_s: float = 120.0
    """No try starts later than this after the first."""

    def nominal_wait(self, failures: int) -> float:
        """The wait after `failures` failures, before its random half."""
        return min(self.first_wait_s * 2.0 ** (failures - 1), self.max_wait_s)


STORE_RETRY = Retry()
"""The retry of every call to a store: 8 tries, waits of about 1, 2, 4, 8, 16, 30 and 30 s
(91 s at most in all), and no try later than 120 s after the first."""

_JITTER = random.Random()  # not the global stream, which a seeded run may use

_PERMANENT_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.ENOENT,
        errno.EINVAL,
        errno.ENOSYS,
        errno.ENAMETOOLONG,
        errno.EMSGSIZE,
        errno.ENOTEMPTY,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EREMCHG,  # s3fs: a redirect to another region or endpoint
    }
)
_TRANSIENT_TYPES = frozenset(
    {
        "ConnectionError",  # Python's, and botocore's (EndpointConnectionError...)
        "TimeoutError",  # Python's, asyncio's and fsspec's FSTimeoutError
        "HTTPClientError",  # botocore: connection closed, read timeout
        "ClientConnectionError",  # aiohttp (gcsfs, adlfs): server disconnected...
        "ClientPayloadError",  # aiohttp: a response cut short
        "IncompleteRead",  # http.client
        "TransportError",  # google-auth: the token endpoint could not be reached
    }
)
_THROTTLING_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "TooManyRequests", "RequestTimeout", "InternalError"}
)


def is_transient(error: BaseException) -> bool:
    """Whether waiting may cure `error`, an exception of an fsspec backend: a lost connection, a
    timeout, throttling (HTTP 429, S3's SlowDown) or a server error (5xx, which s3fs turns into
    OSError EBUSY or EREMOTEIO) may; permissions, credentials, a missing bucket or key and a
    malformed request (403, 404, 400: PermissionError, FileNotFoundError, OSError EINVAL) do not.
    Exceptions of no known kind are not retried either."""
    if isinstance(error, (PermissionError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError)):
        return False
    status = _http_status(error)
    if status is not None:
        return status in (408, 429) or status >= 500
    if {kind.__name__ for kind in type(error).__mro__} & _TRANSIENT_TYPES:
        return True
    return isinstance(error, OSError) and error.errno not in _PERMANENT_ERRNOS


def _http_status(error: BaseException) -> int | None:
    """The HTTP status an exception carries: botocore's ClientError in its response (throttling
    codes count as 503), gcsfs' HttpError and google's as `code`, aiohttp's as `status`."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        if response.get("Error", {}).get("Code") in _THROTTLING_CODES:
            return 503
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    else:
        status = getattr(error, "code", None)
        if not isinstance(status, int):
            status = getattr(error, "status", None)
    return status if isinstance(status, int) and not isinstance(status, bool) and 100 <= status < 600 else None


class GaveUp(Exception):
    """A call to the store that failed `tries` times over `seconds`, the last time with `error`."""

    def __init__(self, error: Exception, tries: int, seconds: float) -> None:
        super().__init__(error)
        self.error, self.tries, self.seconds = error, tries, seconds


def retried(call: Callable[..., Any], args: tuple, kwargs: dict[str, Any], retry: Retry) -> Any:
    """`call(*args, **kwargs)`, tried again after transient errors as `retry` says; `GaveUp`
    once it says no more. Other errors are raised as they are, at once."""
    started = time.monotonic()
    failures = 0
    while True:
        try:
            return call(*args, **kwargs)
        except Exception as error:
            if not is_transient(error):
                raise
            failures += 1
            wait = retry.nominal_wait(failures) * _JITTER.uniform(0.5, 1.0)
            elapsed = time.monotonic() - started
            if failures >= retry.attempts or elapsed + wait > retry.total_s:
                raise GaveUp(error, failures, elapsed) from error
            time.sleep(wait)
            elapsed = time.monotonic() - started
            if elapsed > retry.total_s:  # the sleep overran (a loaded machine): no try after total_s
                raise GaveUp(error, failures, elapsed) from error


class Retrying:
    """An fsspec filesystem whose calls to the store are retried (see `retried`); `retry` may
    be swapped for a while (`RemoteRun.upload_best` tries once)."""

    CALLS = frozenset({"cat_file", "get_file", "put_file", "pipe_file", "rm", "ls", "exists", "isdir"})

    def __init__(self, fs: Any, retry: Retry) -> None:
        self.fs = fs
        self.retry = retry

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.fs, name)
        if name not in self.CALLS:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return retried(attribute, args, kwargs, self.retry)

        return call
