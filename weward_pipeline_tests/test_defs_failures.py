"""defs/failures.as_failure: the one translation of a core failure into a dg.Failure."""

from __future__ import annotations

import logging

import pytest

from weward_pipeline.config import ConfigError
from weward_pipeline.defs.failures import as_failure
from weward_pipeline.export import ExportError
from weward_pipeline.redact import RedactionFailed, RedactionReport

WHERE = "table events day 2024-03-12"


def raised(error: BaseException, wrapper: BaseException | None = None) -> BaseException:
    """`error` as the core raises it: alone, or wrapped (`raise wrapper from error`)."""
    try:
        try:
            raise error
        except BaseException as exc:
            if wrapper is None:
                raise
            raise wrapper from exc
    except BaseException as exc:  # noqa: BLE001
        return exc


def test_a_transient_cause_is_retried_and_says_why(caplog):
    exc = raised(
        ConnectionResetError(104, "Connection reset by peer"), ExportError(f"{WHERE}: writing to the lake failed")
    )
    with caplog.at_level(logging.WARNING):
        failure = as_failure(exc, where=WHERE, known=(ExportError,), log=logging.getLogger("test"))
    assert failure.allow_retries is True
    assert failure.description == f"{WHERE}: writing to the lake failed [transient: network: ConnectionResetError]"
    assert "transient failure (network: ConnectionResetError); retried with backoff" in caplog.text


def test_a_known_refusal_fails_once_with_its_own_message_and_no_traceback():
    failure = as_failure(raised(ConfigError("table 'x': unknown key(s) foo")), where=WHERE, known=(ConfigError,))
    assert failure.allow_retries is False and failure.description == "table 'x': unknown key(s) foo"
    with pytest.raises(type(failure)) as caught:
        try:
            raise ConfigError("inner")
        except ConfigError:
            raise failure  # noqa: B904 - what as_failure guarantees even without `from None`
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_run_that_broke_off_is_retried_to_finish_with_its_metadata():
    report = RedactionReport("events", "2024-03-12", "public.events", "", dry_run=False, started_at="", rows_deleted=25)
    exc = raised(RedactionFailed(f"{WHERE}: redaction broke off after 25 deleted rows", report))
    failure = as_failure(exc, where=WHERE, resumable=(RedactionFailed,), metadata={"rows_deleted": 25})
    assert failure.allow_retries is True and failure.description.startswith(f"{WHERE}: redaction broke off")
    assert failure.metadata["rows_deleted"].value == 25


def test_anything_else_fails_once_named_and_without_the_password_it_echoed():
    exc = raised(ValueError("could not parse postgresql://export:Hunter2-secret@db:5432/app"))
    failure = as_failure(exc, where=WHERE, known=(ConfigError,))
    assert failure.allow_retries is False
    assert failure.description == f"{WHERE}: ValueError: could not parse postgresql://export:***@db:5432/app"
