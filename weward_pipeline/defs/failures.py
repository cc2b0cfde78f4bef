"""How a failure of the core reaches Dagster: the one translation every asset and op uses.

The step's RetryPolicy applies only when a retry can change the outcome:
  1. transient (weward_pipeline.failures.transient_reason: a reset, a failover, S3 throttling...):
     retried; the description ends with "[transient: <reason>]";
  2. `resumable`: a run that broke off after part of its work, which a re-run continues: retried;
  3. `known`: the core's own refusals and bad-input errors, whose message names the table and the
     fix: failed once, the message as it is, no traceback;
  4. anything else: failed once, prefixed with where it happened and the error's class.
Every description is scrubbed of secrets (secret_store.scrub), and no error is chained to the
Failure: a driver's own message or traceback may echo a DSN, and Dagster keeps both forever.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from weward_pipeline.failures import transient_reason
from weward_pipeline.secret_store import scrub


def as_failure(
    exc: BaseException,
    *,
    where: str,
    known: tuple[type[BaseException], ...] = (),
    resumable: tuple[type[BaseException], ...] = (),
    metadata: dict[str, Any] | None = None,
    log: Any = None,
) -> dg.Failure:
    """The dg.Failure for `exc` (raise it). `where`: e.g. "table step_events day 2024-03-31"."""
    own = isinstance(exc, known + resumable)
    message = str(exc) if own else f"{where}: {exc.__class__.__name__}: {exc}"
    reason = transient_reason(exc)
    if reason is not None:
        if log is not None:
            log.warning(f"{where}: transient failure ({reason}); retried with backoff")
        failure = dg.Failure(
            description=scrub(f"{message} [transient: {reason}]"), metadata=metadata, allow_retries=True
        )
    else:
        failure = dg.Failure(description=scrub(message), metadata=metadata, allow_retries=isinstance(exc, resumable))
    # Raised inside the caller's `except`: as `raise ... from None`.
    failure.__cause__ = None
    failure.__suppress_context__ = True
    return failure
