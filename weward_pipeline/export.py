"""Export one (table, day): PostgreSQL -> Parquet in a new S3 prefix -> Glue points at it.

Order matters and is the whole safety story:
  1. check the catalog entry, the day, the bucket and Glue before reading anything;
  2. read the day in one snapshot, streaming into a fresh version prefix;
  3. rows written must equal the snapshot's count, else nothing is published;
  4. end the PostgreSQL transaction, then describe the objects (size, ETag, version) and write
     the manifest;
  5. publish: one Glue call points dt=<day> at the new prefix (readers switch atomically);
  6. delete superseded prefixes of that day (previous export, leftovers of killed runs).
A failure before 5 deletes what this run wrote and leaves the published day untouched.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from psycopg import sql

from weward_pipeline import lake, pii, redaction_audit, restate
from weward_pipeline.aws import AwsClients
from weward_pipeline.config import Catalog, ConfigError, LakeLocation, Settings, TableConfig
from weward_pipeline.extract import DayWindow, Extraction, ExtractLimits, RecoveryConflict, SourceError
from weward_pipeline.glue import GlueCatalog, GlueColumn
from weward_pipeline.keys import MANIFEST_ENTRY as REDACTION_KEYS
from weward_pipeline.keys import CarryOverError, ExportKeys
from weward_pipeline.pacing import export_pacing
from weward_pipeline.secret_store import PiiKey, load_pii_key
from weward_pipeline.standby import CONFLICT_SLICES, conflict_failure
from weward_pipeline.verify import published_manifest

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """The export was refused or failed; the published day (if any) is unchanged."""


@dataclass
class ExportResult:
    table: str
    day: dt.date
    export_id: str
    rows: int
    bytes: int
    location: str
    manifest_url: str
    glue_database: str
    glue_table: str
    columns: list[GlueColumn]
    source_columns: list[dict[str, str]]
    window: dict[str, str] | None
    duration_s: float
    read_s: float
    superseded_deleted: int
    objects: list[lake.WrittenObject] = field(default_factory=list)
    snapshot_at: str | None = None
    # Where the rows came from: primary or standby (its replay position, the wait), reads, conflicts.
    source: dict = field(default_factory=dict)
    # What pacing did: batches read, work and sleep seconds, back-offs and why, the limits (pacing.py).
    pacing: dict = field(default_factory=dict)
    carried_rows: int = 0  # kept from the previous export: the pipeline deleted them from PostgreSQL
    dropped_rows: int = 0  # in the previous export, gone from PostgreSQL by the app's hand (or moved days)
    # A re-export: rows added, changed (None: not measurable) and deleted since the previous export.
    changes: dict | None = None


def check_day(catalog: Catalog, table: TableConfig, day: dt.date, now: dt.datetime) -> DayWindow:
    window = DayWindow(day, catalog.timezone)
    if day < catalog.start_date:
        raise ExportError(f"table {table.name}: day {day} is before the catalog's start_date {catalog.start_date}")
    if window.end > now:
        raise ExportError(
            f"table {table.name}: day {day} has not ended yet (it ends at {window.end.isoformat()}); "
            "exporting it now would publish a partial day"
        )
    if table.mode == "snapshot":
        deadline = window.end + dt.timedelta(hours=table.snapshot_grace_hours)
        if now > deadline:
            raise ExportError(
                f"table {table.name}: snapshot tables hold the table as it stands at export time, so day "
                f"{day} can only be exported until {deadline.isoformat()} ({table.snapshot_grace_hours} h "
                "after it ended). Exporting it now would file today's state under an old date; export "
                "the latest day instead."
            )
    return window


def check_lake_reachable(clients: AwsClients, settings: Settings, table: str) -> None:
    """Fail fast, before PostgreSQL is read, when the lake cannot be reached.

    Probes with a one-key listing under the lake prefix, which IAM authorizes as s3:ListBucket
    with s3:prefix inside the lake: what the export role is granted. (HeadBucket would need
    s3:ListBucket without any prefix, i.e. the right to list the whole bucket.)
    """
    bucket = settings.lake.bucket
    prefix = settings.lake.prefix
    try:
        clients.s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "", MaxKeys=1)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise ExportError(
                f"table {table}: the lake bucket {bucket!r} does not exist; create it (infra/ Terraform, or "
                "`weward-pipeline stack up` locally) or fix WEWARD_LAKE_URL. Nothing was read or written."
            ) from None
        raise ExportError(
            f"table {table}: cannot access bucket {bucket!r} ({code}); check the role's S3 permissions"
        ) from None
    except (EndpointConnectionError, BotoCoreError) as exc:
        raise ExportError(
            f"table {table}: cannot reach S3 ({exc.__class__.__name__}: {exc}); check AWS_ENDPOINT_URL/AWS_REGION "
            "and the network path. Nothing was read or written."
        ) from None


def export_day(
    settings: Settings,
    catalog: Catalog,
    table: TableConfig,
    day: dt.date,
    *,
    clients: AwsClients | None = None,
    limits: ExtractLimits = ExtractLimits(),
    now: dt.datetime | None = None,
    on_progress: Callable[[str], None] | None = None,
    pii_key: PiiKey | None = None,
) -> ExportResult:
    started = time.monotonic()
    say = on_progress or (lambda message: log.info(message))
    now = now or dt.datetime.now(dt.UTC)
    window = check_day(catalog, table, day, now)
    if pii.needs_key(table) and pii_key is None:  # before anything is read
        pii_key = load_pii_key(needed_by=f"table {table.name} pseudonymizes {', '.join(pii.key_columns(table))}")
    clients = clients or AwsClients.from_settings(settings)
    check_lake_reachable(clients, settings, table.name)
    glue = GlueCatalog(clients.glue, settings.glue_database)
    try:
        glue.ensure_database()
    except (EndpointConnectionError, BotoCoreError, ClientError) as exc:
        raise ExportError(f"table {table.name}: cannot use Glue database {settings.glue_database!r}: {exc}") from None
    glue_table = glue.get_table(table.name)
    pii.check_key_id(glue_table, table, pii_key)
    tightened = pii.tightened_columns(glue_table, table)
    if tightened:
        log.warning(
            "table %s: column(s) %s now have a stricter pii policy, but days exported before still hold "
            "them as they were; re-export those days (a backfill) to apply it",
            table.name,
            ", ".join(tightened),
        )

    export_id = lake.new_export_id()
    location = LakeLocation(settings.lake.bucket, settings.lake.prefix)
    prefix = lake.version_prefix(location, table.name, day, export_id)
    manifest_key = lake.manifest_key(location, table.name, day, export_id)
    bucket = settings.lake.bucket
    written: list[lake.WrittenObject] = []
    try:
        read = None
        conflicts: list[str] = []
        for slices in CONFLICT_SLICES:
            try:
                read = _read_day(
                    settings,
                    table,
                    window,
                    day,
                    limits,
                    pii_key,
                    clients,
                    glue,
                    location,
                    export_id,
                    prefix,
                    slices,
                    say,
                )
                break
            except RecoveryConflict as exc:
                # On a standby only: discard what this attempt wrote and read the day in shorter reads.
                _discard(clients, bucket, prefix, manifest_key, table.name)
                conflicts.append(f"{'whole day' if slices == 1 else f'{slices} slices'}: {exc}")
                say(f"{table.name} {day}: {exc}; reading again in shorter reads")
        if read is None:
            raise conflict_failure(f"table {table.name} day {day}", conflicts)
        written, rows_written, carried, keys_entry = read.written, read.rows_written, read.carried, read.keys
        source_rows, snapshot_at, source_columns, columns = (
            read.source_rows,
            read.snapshot_at,
            read.source_columns,
            read.columns,
        )
        source = {
            **read.source,
            "recovery_conflicts": len(conflicts),
            **({"conflicts": conflicts} if conflicts else {}),
        }
        changes, restate_record = read.changes, read.restate_record
        read_s = time.monotonic() - started
        # The snapshot is released; from here on PostgreSQL carries no load from this export.
        for obj in written:
            obj.key = obj.key[len(bucket) + 1 :]
        written = lake.describe_objects(clients.s3, bucket, written)
        manifest = lake.Manifest(
            table=table.name,
            day=day.isoformat(),
            export_id=export_id,
            location=f"s3://{bucket}/{prefix}",
            objects=written,
            rows=rows_written,
            source_rows=source_rows,
            window=window.as_metadata() if table.mode == "append" else None,
            columns=source_columns,
            mode=table.mode,
            created_at=dt.datetime.now(dt.UTC).isoformat(),
            snapshot_at=snapshot_at.isoformat() if snapshot_at else None,
            extra={"pii": pii.glue_parameters(table, pii_key)} if table.pii else {},
        )
        if restate_record is not None:
            manifest.extra[restate.MANIFEST_ENTRY] = restate_record
        if keys_entry is not None:
            manifest.carried_rows = carried
            manifest.extra[REDACTION_KEYS] = keys_entry.to_manifest()
            # Redactions of this export write their audit (redaction_audit.py): the next export of
            # the day carries exactly the rows they list.
            manifest.extra[redaction_audit.MANIFEST_ENTRY] = redaction_audit.AUDIT_VERSION
        lake.write_manifest(clients.s3, bucket, manifest_key, manifest)
        merged = glue.ensure_table(
            table.name,
            f"s3://{bucket}/{lake.table_prefix(location, table.name)}",
            columns,
            description=" ".join(
                filter(
                    None,
                    [
                        table.description or f"{table.mode} export of PostgreSQL {table.qualified_source}",
                        pii.description_note(table),
                    ],
                )
            ),
            parameters={
                "weward.mode": table.mode,
                "weward.source": table.qualified_source,
                "weward.primary_key": ",".join(table.primary_key),
                **pii.glue_parameters(table, pii_key),
            },
        )
        by_name = {c.name: c for c in merged}
        previous = glue.get_partition(table.name, day.isoformat())
        previous_id = (previous or {}).get("Parameters", {}).get("weward.export_id", "")
        if previous_id > export_id:
            raise ExportError(
                f"table {table.name} day {day}: a newer export ({previous_id}) was published while this one "
                "ran; keeping it and discarding this one"
            )
        glue.publish_partition(
            table.name,
            day.isoformat(),
            manifest.location,
            [by_name[c.name] for c in columns],
            {
                "weward.export_id": export_id,
                "weward.manifest": f"s3://{bucket}/{manifest_key}",
                "weward.rows": str(rows_written),
                "weward.source_rows": str(source_rows),
                "weward.carried_rows": str(carried),
                "weward.exported_at": manifest.created_at,
            },
        )
    except BaseException as exc:
        _discard(clients, bucket, prefix, manifest_key, table.name)
        if isinstance(exc, (SourceError, ConfigError, ExportError)):
            raise
        if isinstance(exc, CarryOverError):
            raise ExportError(str(exc)) from None
        if isinstance(exc, (ClientError, BotoCoreError, OSError)):
            raise ExportError(
                f"table {table.name} day {day}: writing to the lake failed ({exc}); the published day is unchanged"
            ) from exc
        raise
    say(f"{table.name} {day}: published {rows_written} rows at {manifest.location}")
    deleted = delete_superseded(
        clients, location, table.name, day, keep_export_id=export_id, previous_export_id=previous_id
    )
    return ExportResult(
        table=table.name,
        day=day,
        export_id=export_id,
        rows=rows_written,
        bytes=manifest.bytes,
        location=manifest.location,
        manifest_url=f"s3://{bucket}/{manifest_key}",
        glue_database=settings.glue_database,
        glue_table=table.name,
        columns=columns,
        source_columns=source_columns,
        window=manifest.window,
        duration_s=time.monotonic() - started,
        read_s=read_s,
        superseded_deleted=deleted,
        objects=written,
        snapshot_at=manifest.snapshot_at,
        source=source,
        pacing=read.pacing,
        carried_rows=carried,
        dropped_rows=read.dropped_rows,
        changes=changes,
    )


def _read_day(
    settings: Settings,
    table: TableConfig,
    window: DayWindow,
    day: dt.date,
    limits: ExtractLimits,
    pii_key: PiiKey | None,
    clients: AwsClients,
    glue: GlueCatalog,
    location: LakeLocation,
    export_id: str,
    prefix: str,
    slices: int,
    say: Callable[[str], None],
) -> _DayRead:
    """Steps 2-4: read the day (in `slices` reads, each its own snapshot, after a recovery conflict) into
    the new prefix; rows written must equal the rows counted. Raises RecoveryConflict to be read again."""
    bucket = location.bucket
    # On a standby: wait until it has replayed the primary past the day's end plus a margin.
    fresh_after = window.end + dt.timedelta(seconds=limits.standby_margin_s)
    # The budget: the export's defaults, the table's `pacing:` in the catalog, this run's settings.
    pacing = export_pacing().merged(table.pacing, limits.pacing)
    with Extraction(
        settings.pg_url,
        table,
        window,
        limits,
        skip_columns=pii.unexported_columns(table),
        fresh_after=fresh_after,
        slices=slices,
        say=say,
        pacing=pacing,
    ) as extraction:
        # Personal data: dropped columns were not selected; hashed/generalized ones change type.
        pii_plan = pii.plan(table, extraction.described_columns, pii_key)
        unreviewed = pii.unreviewed_personal_columns(table, extraction.described_columns)
        if unreviewed:
            log.warning(
                "table %s: column(s) %s look personal but have no `pii` policy in the catalog; exported as is",
                table.name,
                ", ".join(unreviewed),
            )
        columns = [GlueColumn(c.name, c.glue_type, pii_plan.glue_comment(c)) for c in pii_plan.lake_columns]
        # Refuse an incompatible schema change before writing a single byte.
        glue.plan_columns(table.name, columns)
        # Tables with a retention: primary key + fingerprint of each row for redaction, and the rows
        # redaction already deleted carried over from the published export (keys.py). Created after
        # the snapshot was taken: that order is what makes the carry-over complete.
        export_keys = (
            ExportKeys(
                clients=clients,
                glue=glue,
                location=location,
                table=table,
                day=day,
                export_id=export_id,
                extraction=extraction,
            )
            if extraction.fingerprint
            else None
        )
        carried = 0
        # A re-export of an append day: what it adds, changes and deletes (restate.py).
        diff = _diff_against_published(glue, clients, table, day) if table.mode == "append" else None
        restate_record = None
        if table.mode == "append" and table.updated_column is not None:
            # Rows stamped around the snapshot, so a later comparison sees late commits (restate.py).
            restate_record = restate.export_record(
                *extraction.row(
                    restate.updated_counts_sql(
                        table,
                        window,
                        extraction.source.partition_type,
                        extraction.source.column(table.updated_column).base_type,
                        sql.SQL("now()"),
                    )
                )
            )
        counted = f"{extraction.source_rows} rows" if extraction.slices == 1 else f"{extraction.slices} reads"
        say(f"{table.name} {day}: {counted} in the source window; writing {prefix}")
        writer = lake.ParquetDayWriter(
            clients.filesystem,
            f"{bucket}/{prefix}",
            pii_plan.arrow_schema,
            metadata={"weward.table": table.name, "weward.day": day.isoformat(), "weward.export_id": export_id},
        )
        try:
            for batch in extraction.batches(keys_sink=export_keys.add if export_keys else None):
                if diff is not None:
                    diff.add(batch)
                writer.write(pii_plan.apply(batch))
            if export_keys is not None:
                extraction.close()  # the snapshot is read in full: release it before reading S3
                carried = export_keys.carry_over(writer)
                keys_entry = export_keys.close()
            written = writer.close()
        except BaseException:
            writer.abort()
            if export_keys is not None:
                export_keys.abort()
            written = writer.objects
            raise
        rows_written = sum(o.rows for o in written)
        # The day is read: release the snapshot before reading the previous export's keys from S3.
        extraction.close()
        if rows_written != extraction.source_rows + carried or (
            export_keys and keys_entry.rows != extraction.source_rows
        ):
            raise ExportError(
                f"table {table.name}: wrote {rows_written} rows ({carried} carried over) but the source window "
                f"holds {extraction.source_rows} in the same snapshot(s); nothing was published"
            )
        return _DayRead(
            written=written,
            rows_written=rows_written,
            carried=carried,
            keys=keys_entry if export_keys is not None else None,
            source_rows=extraction.source_rows,
            snapshot_at=extraction.snapshot_at,
            source_columns=pii_plan.manifest_columns(),
            columns=columns,
            source={**extraction.standby, "reads": extraction.slices},
            pacing=extraction.pacer.report.as_dict(pacing) if extraction.pacer else {},
            changes=diff.finish(carried) if diff is not None else None,
            restate_record=restate_record,
            dropped_rows=export_keys.dropped_rows if export_keys is not None else 0,
        )


@dataclass
class _DayRead:
    written: list[lake.WrittenObject]
    rows_written: int
    carried: int
    keys: object | None  # keys.RedactionKeys
    source_rows: int
    snapshot_at: dt.datetime | None
    source_columns: list[dict[str, str]]
    columns: list[GlueColumn]
    source: dict
    pacing: dict
    changes: dict | None
    restate_record: dict | None
    dropped_rows: int


def _diff_against_published(glue: GlueCatalog, clients: AwsClients, table: TableConfig, day: dt.date):
    """An ExportDiff against the day's published export, or None on a first export."""
    _, previous = published_manifest(glue, clients.s3, table.name, day.isoformat())
    if previous is None:
        return None
    bucket = previous.location.removeprefix("s3://").split("/", 1)[0]
    return restate.ExportDiff(table, previous, clients.filesystem, bucket)


def _discard(clients: AwsClients, bucket: str, prefix: str, manifest_key: str, table: str) -> None:
    """Remove what a failed run wrote; never the published day (it lives under another prefix)."""
    try:
        keys = lake.list_keys(clients.s3, bucket, prefix) + [manifest_key]
        keys += lake.list_keys(clients.s3, bucket, lake.keys_prefix_of(manifest_key))
        lake.delete_keys(clients.s3, bucket, keys)
    except Exception as exc:  # noqa: BLE001 - the next export of this day sweeps leftovers too
        log.warning("table %s: could not remove unpublished objects under %s: %s", table, prefix, exc)


# A version prefix that is not published and older than this is a leftover of a killed run,
# not an export still in flight.
LEFTOVER_AGE = dt.timedelta(hours=6)


def _export_time(export_id: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(export_id.split("-")[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def delete_superseded(
    clients: AwsClients,
    location: LakeLocation,
    table: str,
    day: dt.date,
    keep_export_id: str,
    previous_export_id: str = "",
) -> int:
    """After publishing `keep_export_id`: delete the export it replaced, and leftovers of killed runs.

    Never deletes a newer prefix (an export that may still be in flight) or a recent unpublished one.
    """
    bucket = location.bucket
    day_prefix = lake.day_prefix(location, table, day)
    now = dt.datetime.now(dt.UTC)
    stale: list[str] = []
    for key in lake.list_keys(clients.s3, bucket, day_prefix):
        version = key[len(day_prefix) :].split("/", 1)[0]
        export_id = version[2:] if version.startswith("v=") else ""
        if export_id == keep_export_id or export_id > keep_export_id:
            continue
        created = _export_time(export_id)
        if export_id == previous_export_id or created is None or now - created > LEFTOVER_AGE:
            stale.append(key)
    superseded_ids = {k[len(day_prefix) :].split("/", 1)[0][2:] for k in stale}
    superseded_ids.add(previous_export_id)
    for export_id in superseded_ids - {"", keep_export_id}:
        stale.append(lake.manifest_key(location, table, day, export_id))
        stale.extend(lake.list_keys(clients.s3, bucket, lake.keys_prefix(location, table, day, export_id)))
    if stale:
        try:
            lake.delete_keys(clients.s3, bucket, stale)
        except Exception as exc:  # noqa: BLE001 - harmless leftovers; retried next export
            log.warning("table %s day %s: could not delete superseded objects: %s", table, day, exc)
            return 0
    return len(stale)
