"""Alerting sensors of the Dagster service: a failed run, or a failed blocking check, reaches a
person through SNS (weward_pipeline/alerts.py), once, with a link to the run.

- `alert_on_run_failure`: Dagster's run-failure sensor; its cursor (the last run-failure event
  seen) makes each failure one notification, however often the daemon ticks.
- `alert_on_failed_blocking_checks`: a failed blocking check whose run did not fail (a WARN
  severity check, or a check whose run otherwise succeeded) is never seen by the run-failure
  sensor, yet nothing downstream of it runs (redaction is not requested). This sensor reads check
  evaluations after its cursor (the last event id it handled) once their run has finished, and
  alerts for the failed blocking ones whose run succeeded: a run that failed is the run-failure
  sensor's alert, so each failure reaches the topic once.

Both run only with WEWARD_ALERT_TOPIC_ARN set (the Dagster service sets it); without it they skip.
"""

from __future__ import annotations

import os

import dagster as dg

from weward_pipeline.alerts import UI_URL_ENV, Alert, AlertPublisher, run_link

RUN_FAILURE_SENSOR = "alert_on_run_failure"
CHECK_FAILURE_SENSOR = "alert_on_failed_blocking_checks"
NO_TOPIC = "WEWARD_ALERT_TOPIC_ARN is not set: alerts are only in the Dagster UI"
EVENTS_PER_TICK = 200


def _ui_url() -> str | None:
    return os.environ.get(UI_URL_ENV) or None


@dg.run_failure_sensor(
    name=RUN_FAILURE_SENSOR,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    # Runs started outside the webserver/daemon (`dagster asset materialize` in an ECS task, a
    # backfill from a shell) have no code location origin: monitor them too (there is one location).
    monitor_all_code_locations=True,
    description="Publishes every failed run to the alert topic (SNS), once, with a link to the run.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext):
    publisher = AlertPublisher.from_env()
    if publisher is None:
        return dg.SkipReason(NO_TOPIC)
    run = context.dagster_run
    partition = run.tags.get("dagster/partition")
    # What failed, in the subject: the failed steps (one per table's export, check or redaction),
    # else the selected assets, else the job.
    failed_steps = sorted(
        {
            e.dagster_event.step_key
            for e in context.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
            if e.dagster_event and e.dagster_event.step_key
        }
    )
    names = failed_steps or sorted(key.to_user_string() for key in run.asset_selection or ()) or [run.job_name]
    what = (
        ", ".join(names[:3])
        + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        + (f" {partition}" if partition else "")
    )
    failure = context.failure_event.message or "the run failed"
    publisher.publish(
        Alert(
            subject=f"weward_pipeline: run failed: {what}",
            body=f"Run {run.run_id} ({what}) failed.\n\n{failure}",
            link=run_link(_ui_url(), run.run_id),
        )
    )


@dg.sensor(
    name=CHECK_FAILURE_SENSOR,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Publishes every failed blocking asset check to the alert topic (SNS), once, with a link to its run.",
)
def alert_on_failed_blocking_checks(context: dg.SensorEvaluationContext):
    publisher = AlertPublisher.from_env()
    if publisher is None:
        return dg.SkipReason(NO_TOPIC)
    after = int(context.cursor) if context.cursor else None
    if after is None:
        # First tick: start from now; failures before the sensor existed are in the UI already.
        latest = context.instance.get_event_records(
            dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION), limit=1
        )
        context.update_cursor(str(latest[0].storage_id if latest else 0))
        return dg.SkipReason("started: alerting on check failures from now on")
    records = context.instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=after),
        limit=EVENTS_PER_TICK,
        ascending=True,
    )
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if not evaluation.passed and evaluation.blocking:
            run = context.instance.get_run_by_id(record.run_id)
            if run is not None and not run.is_finished:
                break  # decide once the run has ended: the next tick starts here again
            if run is not None and run.status == dg.DagsterRunStatus.FAILURE:
                context.update_cursor(str(record.storage_id))
                continue  # alert_on_run_failure sends this one
            key = evaluation.asset_key.to_user_string()
            partition = f" {evaluation.partition}" if evaluation.partition else ""
            publisher.publish(
                Alert(
                    subject=f"weward_pipeline: check failed: {key}{partition} {evaluation.check_name}",
                    body=(
                        f"Blocking check {evaluation.check_name} of {key}{partition} failed in run "
                        f"{record.run_id}: nothing downstream of it runs until it passes (re-export the day)."
                        + (f"\n\n{evaluation.description}" if evaluation.description else "")
                    ),
                    link=run_link(_ui_url(), record.run_id),
                )
            )
        context.update_cursor(str(record.storage_id))  # after publishing: a crash re-sends, never loses
    if not records:
        return dg.SkipReason("no new check evaluation")


def alert_sensors() -> list:
    return [alert_on_run_failure, alert_on_failed_blocking_checks]
