"""Which failures are worth retrying: the network and the servers' bad moments, never bad data.

The export wraps driver errors in its own (SourceError, ExportError) with a clear message, and
keeps the driver's error as the exception's cause or context. `transient_reason` walks that chain:
a connection refused or reset, a PostgreSQL restart or failover, too many connections, an S3 5xx
or throttling answer are transient; a wrong password, a missing table or column, a value that
does not fit, an access denied are not (retrying them would only delay the message).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# SQLSTATEs (PostgreSQL appendix A) that a later attempt can succeed on.
TRANSIENT_SQLSTATES = {
    "57P01": "the server terminated the connection (restart or failover)",
    "57P02": "the server crashed",
    "57P03": "the server is starting up or shutting down",
    "53300": "too many connections",
    "40001": "serialization failure",
    "40P01": "deadlock",
    "55P03": "lock not available (lock_timeout)",
}
# Class 08: connection exception (08000, 08003, 08006 connection failure, ...).
TRANSIENT_SQLSTATE_CLASSES = {"08": "connection failure"}

# libpq/ADBC report connection problems without a SQLSTATE; these words say "try again".
PG_CONNECTION_WORDS = re.compile(
    r"connection refused|connection reset|server closed the connection|could not receive data|"
    r"could not send data|connection timed out|timeout expired|no route to host|"
    r"terminating connection|the database system is (starting up|shutting down|in recovery mode)|"
    r"SSL SYSCALL error|EOF detected",
    re.IGNORECASE,
)
# ... and these say "fix the configuration": never retried, even if a word above also appears.
PG_PERMANENT_WORDS = re.compile(
    r"password authentication failed|no pg_hba\.conf entry|role .* does not exist|"
    r"database .* does not exist|could not translate host name|permission denied",
    re.IGNORECASE,
)

S3_TRANSIENT_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "InternalServiceException",
}
# pyarrow's S3 filesystem raises OSError("... AWS Error SLOW_DOWN during PutObject ...").
ARROW_S3_TRANSIENT = re.compile(
    r"AWS Error (NETWORK_CONNECTION|SLOW_DOWN|SERVICE_UNAVAILABLE|INTERNAL_FAILURE|REQUEST_TIMEOUT|"
    r"THROTTLING|REQUEST_TIME_TOO_SKEWED)|HTTP status 5\d\d|Connection reset|curlCode: (7|28|52|55|56)",
    re.IGNORECASE,
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then its causes and contexts (also those hidden by `raise ... from None`)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend([current.__cause__, current.__context__])


def _postgres_reason(exc: BaseException) -> str | None:
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        if sqlstate in TRANSIENT_SQLSTATES:
            return f"PostgreSQL {sqlstate}: {TRANSIENT_SQLSTATES[sqlstate]}"
        if sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES:
            return f"PostgreSQL {sqlstate}: {TRANSIENT_SQLSTATE_CLASSES[sqlstate[:2]]}"
        return None
    module = type(exc).__module__ or ""
    if not (module.startswith("adbc_driver") or module.startswith("psycopg")):
        return None
    if type(exc).__name__ != "OperationalError":
        return None
    message = str(exc)
    if PG_PERMANENT_WORDS.search(message):
        return None
    match = PG_CONNECTION_WORDS.search(message)
    return f"PostgreSQL connection problem ({match.group(0)})" if match else None


def _aws_reason(exc: BaseException) -> str | None:
    try:
        from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
        from botocore.exceptions import ConnectionError as BotoConnectionError
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return None
    if isinstance(exc, (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError, BotoConnectionError)):
        return f"AWS endpoint unreachable ({type(exc).__name__})"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if status >= 500 or error.get("Code") in S3_TRANSIENT_CODES:
            return f"AWS answered {status} {error.get('Code', '')}".strip()
        return None
    if isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, PermissionError)):
        match = ARROW_S3_TRANSIENT.search(str(exc))
        if match:
            return f"S3 write failed transiently ({match.group(0)})"
    return None


def transient_reason(exc: BaseException) -> str | None:
    """Why `exc` is worth retrying, or None when a retry would fail the same way."""
    for current in _chain(exc):
        # An error may say itself whether waiting helps (standby.StandbyLagging: yes;
        # standby.StandbyConflictError: no, although a 40001 from the driver is in its chain).
        declared = getattr(type(current), "transient", None)
        if declared is True:
            return f"{type(current).__name__}: {str(current).splitlines()[0][:200]}"
        if declared is False:
            return None
        if isinstance(current, (ConnectionResetError, ConnectionRefusedError, ConnectionAbortedError, BrokenPipeError)):
            return f"network: {type(current).__name__}"
        reason = _postgres_reason(current) or _aws_reason(current)
        if reason:
            return reason
    return None
