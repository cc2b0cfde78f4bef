"""PostgreSQL sessions with limits, and the retry-on-lock loop: the one place both are written.

Every session the pipeline opens on the application's database (export, redaction, erasure) is
built here, so the guarantees hold for all of them:
  1. Limits are server settings fixed at connect time (libpq `options`), so they hold for every
     statement of the session, even one a caller forgot to wrap: statement_timeout, lock_timeout,
     idle_in_transaction_session_timeout. connect_timeout bounds the connection itself.
  2. `application_name` says which job, table and day a session is, in pg_stat_activity.
  3. A read-only session is refused writes by the server (default_transaction_read_only), not by
     convention.
  4. The caller's own URL parameters (sslmode, options...) are kept; ours are appended.
  5. Errors name the server as user@host:port/db (config.mask_url), never with its password.
Lock conflicts: a statement that waited lock_timeout for another transaction's lock is rolled back
by the server; `retry_on_lock` runs it again after a doubling backoff, a bounded number of times,
then raises `LockRetriesExhausted` and leaves the decision (skip the batch, stop) to the caller.

`SessionLimits` and `RetryPolicy` are values: a use case states its own (export, redaction and
erasure each derive theirs from the limits users configure) and can extend them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from psycopg import errors as pg_errors

from weward_pipeline.config import mask_url
from weward_pipeline.secret_store import scrub, url_password_forms

T = TypeVar("T")

# Text forms (interval, timetz, arrays of timestamps) must never depend on server defaults.
PINNED_TEXT_FORMS: Mapping[str, str] = {"TimeZone": "UTC", "DateStyle": "ISO, YMD", "IntervalStyle": "postgres"}

# Someone else holds a lock we need (or a timeout/deadlock broke the wait): roll back, try again.
LOCK_CONFLICTS: tuple[type[Exception], ...] = (
    pg_errors.LockNotAvailable,
    pg_errors.QueryCanceled,
    pg_errors.DeadlockDetected,
    pg_errors.SerializationFailure,
)


@dataclass(frozen=True)
class SessionLimits:
    """What one session may cost the server. Durations in seconds; fractions are kept (as ms)."""

    statement_timeout_s: float
    lock_timeout_s: float
    idle_in_transaction_timeout_s: float
    connect_timeout_s: int = 15
    read_only: bool = False
    # default_transaction_isolation, e.g. "repeatable read" (one snapshot for every statement).
    isolation: str | None = None
    # Further settings fixed for the session, e.g. PINNED_TEXT_FORMS.
    settings: Mapping[str, str] = field(default_factory=dict)

    def replace(self, **changes) -> SessionLimits:
        return dataclasses.replace(self, **changes)

    def problems(self) -> list[str]:
        """What is wrong with these limits (0 would mean "no limit" to PostgreSQL)."""
        return [
            f"{name} must be > 0 (0 would mean no limit in PostgreSQL)"
            for name in ("statement_timeout_s", "lock_timeout_s", "idle_in_transaction_timeout_s")
            if getattr(self, name) <= 0
        ]

    def server_settings(self) -> dict[str, str]:
        settings = {
            "statement_timeout": _ms(self.statement_timeout_s),
            "lock_timeout": _ms(self.lock_timeout_s),
            "idle_in_transaction_session_timeout": _ms(self.idle_in_transaction_timeout_s),
            **self.settings,
        }
        if self.read_only:
            settings["default_transaction_read_only"] = "on"
        if self.isolation:
            settings["default_transaction_isolation"] = self.isolation
        return settings


def _ms(seconds: float) -> str:
    return str(round(seconds * 1000))


def _option_value(value: str) -> str:
    """libpq splits `options` on spaces: escape them (and backslashes)."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def session_uri(url: str, application_name: str, limits: SessionLimits) -> str:
    """The libpq URI of a session with these limits; for drivers that take a URI (ADBC, psycopg)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    options = " ".join(f"-c {k}={_option_value(v)}" for k, v in limits.server_settings().items())
    query["options"] = (query.get("options", "") + " " + options).strip()
    query["application_name"] = application_name[:63]
    query.setdefault("connect_timeout", str(limits.connect_timeout_s))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, quote_via=quote), ""))


def mask_error(message: str, url: str) -> str:
    """Drivers sometimes echo the URI; never let a password reach a log or an exception."""
    return scrub(message, url_password_forms(url))


class ConnectError(RuntimeError):
    """PostgreSQL could not be reached. The message names the server (masked) and the driver's reason."""


def connect_error(url: str, exc: BaseException, purpose: str = "") -> ConnectError:
    where = f" for {purpose}" if purpose else ""
    return ConnectError(f"cannot connect to PostgreSQL at {mask_url(url)}{where}: {mask_error(str(exc), url).strip()}")


def connect(url: str, application_name: str, limits: SessionLimits, *, purpose: str = "", autocommit: bool = True):
    """A psycopg connection with these limits. Autocommit by default: each unit of work opens and
    commits its own short transaction (`with conn.transaction():`), nothing stays open between."""
    import psycopg

    try:
        return psycopg.connect(session_uri(url, application_name, limits), autocommit=autocommit)
    except psycopg.Error as exc:
        raise connect_error(url, exc, purpose) from None


@dataclass(frozen=True)
class RetryPolicy:
    """How often a unit of work that met a lock conflict is tried again, and how long in between."""

    retries: int = 3  # after the first try
    backoff_s: float = 1.0  # before the first retry; doubled at each one
    max_backoff_s: float = math.inf
    retry_on: tuple[type[Exception], ...] = LOCK_CONFLICTS

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        return min(self.backoff_s * 2 ** (retry - 1), self.max_backoff_s)


class LockRetriesExhausted(RuntimeError):
    """Every try met a lock conflict. `attempts` tries were made; `error` is the last conflict."""

    def __init__(self, attempts: int, error: Exception) -> None:
        super().__init__(f"{attempts} tries met a lock conflict, the last: {error.__class__.__name__}")
        self.attempts = attempts
        self.error = error


def retry_on_lock(
    run: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, Exception], None] | None = None,
) -> T:
    """`run()`, tried again after each lock conflict, up to `policy.retries` more times.

    `run` must be one transaction (rolled back by the conflict, so safe to repeat). `on_retry(retry,
    error)` is called before each retry; after the last, LockRetriesExhausted is raised.
    """
    retry = 0
    while True:
        try:
            return run()
        except policy.retry_on as exc:
            if retry >= policy.retries:
                raise LockRetriesExhausted(retry + 1, exc) from exc
            retry += 1
            if on_retry is not None:
                on_retry(retry, exc)
            sleep(policy.delay(retry))
