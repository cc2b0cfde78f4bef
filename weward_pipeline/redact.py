"""Redaction: delete from PostgreSQL the rows of day D that are safely in the lake, and nothing else.

Everything is checked before the first row is deleted; the first check that fails stops the
redaction with a reason and deletes nothing:

  1. the table has `retention_days` (append tables only) and D ended more than that long ago;
  2. D's export is published, and the lake still matches its manifest: Glue points at the
     manifest's objects, each present with the same size and ETag, readable, with the row counts
     and schema the manifest records (verify.py, the same verification as the export's checks);
  3. the export recorded redaction keys (keys.py); the keys objects are intact (read with
     If-Match on their ETags) and equal, row for row, the primary keys of the published data files;
  4. every column the fingerprint covers still exists in PostgreSQL with the same type.

Then the keys are replayed in batches, each batch one short transaction of its own:

    DELETE FROM t USING unnest(<keys>) k
     WHERE t.<pk> = k.<pk> AND md5(ROW(t.<exported columns>)::text) = k.fingerprint
       AND t.<partition column> in day D [AND t.<column added since> IS NULL ...]

A row inserted into D after the export has no key; a row changed since has another fingerprint
(PostgreSQL re-checks the condition on the latest row version if it changes while we wait for its
lock). Both stay, and are reported: the day needs a re-export. Re-running deletes only what is
left, so a killed run is resumed by running it again.

Before each batch commits, the keys it deleted are written to the lake's redaction audit
(redaction_audit.py): a later re-export of D keeps exactly those rows, so no row leaves PostgreSQL
without the proof that keeps its only copy in the lake.

Nothing here holds a transaction across batches or touches the export's snapshot. The lake is
only read: redaction cannot damage the export.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql

from weward_pipeline import lake, pg, pii
from weward_pipeline.aws import AwsClients
from weward_pipeline.config import Catalog, ConfigError, Settings, TableConfig, mask_url
from weward_pipeline.extract import (
    FINGERPRINT_COLUMN,
    DayWindow,
    SourceError,
    SourceTable,
    describe,
    row_fingerprint_sql,
)
from weward_pipeline.glue import GlueCatalog
from weward_pipeline.keys import RedactionKeys, manifest_alignment_problem, read_columns
from weward_pipeline.pacing import Pacer, PacingLimits, PacingStopped, probe_for
from weward_pipeline.pg import mask_error
from weward_pipeline.redaction_audit import AuditWriter
from weward_pipeline.scratch import make_workdir
from weward_pipeline.verify import verify_published_day

log = logging.getLogger(__name__)

# Why a redaction deleted nothing (RedactionRefused.reason).
NOT_CONFIGURED = "not_configured"
INSIDE_RETENTION = "inside_retention"
NOT_PUBLISHED = "not_published"
LAKE_MISMATCH = "lake_mismatch"
NO_KEYS = "no_keys"
KEYS_MISMATCH = "keys_mismatch"
SCHEMA_CHANGED = "schema_changed"
NO_PRIVILEGE = "no_privilege"
CHECKS_NOT_PASSED = "checks_not_passed"  # raised by the Dagster layer, which sees the check history

# Why a row of day D was kept back in PostgreSQL (RedactionReport.kept_back).
INSERTED_AFTER_EXPORT = "inserted_after_export"
CHANGED_SINCE_EXPORT = "changed_since_export"
LOCKED = "locked_by_another_transaction"
NOT_REACHED = "not_reached"  # the run stopped early (why_quit)
NEEDS_REEXPORT = (INSERTED_AFTER_EXPORT, CHANGED_SINCE_EXPORT)


class RedactionRefused(RuntimeError):
    """Nothing was deleted. `reason` is one of the constants above; the message says what to do."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class RedactionFailed(RuntimeError):
    """The run broke off (connection lost, unexpected error). `report` says what was deleted before.

    Safe to re-run: every batch that committed is verified work, the others left no trace.
    """

    def __init__(self, message: str, report: RedactionReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class RedactionLimits:
    """What a redaction may cost the primary. Defaults suit the app's OLTP load (see README)."""

    # None (the default): batches follow pacing's target duration, pauses its duty cycle and the
    # database's signals (pacing.py). A number pins the batch size / the pause (back-offs still apply).
    batch_rows: int | None = None
    pause_s: float | None = None
    lock_timeout_s: float = 2.0  # per lock wait; a batch that waits longer is rolled back
    statement_timeout_s: float = 30.0
    idle_in_transaction_timeout_s: float = 10.0
    connect_timeout_s: int = 15
    lock_retries: int = 3  # then the batch is skipped (kept back as locked) and the run goes on
    retry_backoff_s: float = 1.0  # doubled at each retry
    max_replica_lag_s: float | None = None  # pause while a standby replays more than this behind
    max_lag_wait_s: float = 900.0  # stop (why_quit) when the lag stays above the limit this long
    lake_recheck_s: float = 60.0  # re-read the Glue partition: stop if another export was published
    max_runtime_s: float | None = None  # stop cleanly after this long; a re-run continues
    # This run's pacing settings (pacing.PacingLimits fields), over the table's `pacing:` in the catalog.
    pacing: Mapping[str, object] = field(default_factory=dict)
    reported_keys: int = 1000  # keys listed per kept-back reason in the report
    classify_rows: int = 100_000  # remaining rows of D read back to classify them

    def session(self, read_only: bool = False) -> pg.SessionLimits:
        return pg.SessionLimits(
            statement_timeout_s=self.statement_timeout_s,
            lock_timeout_s=self.lock_timeout_s,
            idle_in_transaction_timeout_s=self.idle_in_transaction_timeout_s,
            connect_timeout_s=self.connect_timeout_s,
            read_only=read_only,
        )

    def retry_policy(self) -> pg.RetryPolicy:
        """A batch that met a lock conflict is rolled back and retried (pg.LOCK_CONFLICTS)."""
        return pg.RetryPolicy(retries=self.lock_retries, backoff_s=self.retry_backoff_s)

    def validate(self) -> None:
        problems = []
        if self.batch_rows is not None and not 1 <= self.batch_rows <= 50_000:
            problems.append(f"batch_rows must be between 1 and 50000, got {self.batch_rows}")
        problems += self.session().problems()
        if (self.pause_s is not None and self.pause_s < 0) or self.retry_backoff_s < 0 or self.lock_retries < 0:
            problems.append("pause_s, retry_backoff_s and lock_retries must be >= 0")
        if self.max_replica_lag_s is not None and self.max_replica_lag_s <= 0:
            problems.append("max_replica_lag_s must be > 0 (or unset)")
        if problems:
            raise ConfigError("invalid redaction limits: " + "; ".join(problems))


@dataclass
class RedactionReport:
    """The audit record of one redaction of one (table, day); also the Dagster metadata."""

    table: str
    day: str
    source: str
    postgres: str  # masked: user@host:port/db
    dry_run: bool
    started_at: str
    status: str = "running"  # done | incomplete (batches skipped) | stopped (why_quit) | dry_run | failed
    why_quit: str | None = None
    # The export this redaction relied on: what is in the lake, where, and how to prove it.
    export_id: str = ""
    manifest: str = ""
    exported_at: str = ""
    export_snapshot_at: str | None = None
    lake_objects: list[dict] = field(default_factory=list)
    keys_objects: list[dict] = field(default_factory=list)
    rows_in_export: int = 0  # PostgreSQL rows of the export = keys = deletion candidates
    rows_carried_in_lake: int = 0
    # What happened in PostgreSQL.
    window_rows_before: int = 0
    window_rows_after: int | None = None
    rows_deleted: int = 0
    rows_would_delete: int = 0  # dry run
    rows_already_gone: int = 0  # candidates no longer in PostgreSQL (earlier run, or the app)
    kept_back: dict[str, int] = field(default_factory=dict)
    kept_back_keys: dict[str, list] = field(default_factory=dict)
    kept_back_keys_truncated: bool = False
    batches: int = 0
    batches_retried: int = 0
    batches_skipped: int = 0
    lock_timeouts: int = 0
    replica_lag_waits: int = 0
    replica_lag_wait_s: float = 0.0
    replica_lag: str = "not checked"
    first_delete_at: str | None = None
    last_delete_at: str | None = None
    finished_at: str | None = None
    duration_s: float = 0.0
    delete_sql: str = ""
    columns_required_null: list[str] = field(default_factory=list)
    lake_verified_after: bool | None = None
    lake_problems_after: str | None = None
    # What pacing did: batches, rows, work and sleep seconds, back-offs and why, the limits (pacing.py).
    pacing: dict = field(default_factory=dict)
    # Where the deleted keys were written, before each commit (redaction_audit.py).
    audit_prefix: str = ""
    audit_objects: int = 0

    @property
    def rows_kept_back(self) -> int:
        return sum(self.kept_back.values())

    @property
    def needs_reexport(self) -> bool:
        return any(self.kept_back.get(reason, 0) for reason in NEEDS_REEXPORT)

    def as_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self), default=str))

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        rows = self.rows_would_delete if self.dry_run else self.rows_deleted
        kept = ", ".join(f"{n} {reason}" for reason, n in self.kept_back.items() if n) or "none"
        text = (
            f"{self.table} {self.day}: {verb} {rows} of {self.rows_in_export} exported rows "
            f"(export {self.export_id}); already gone {self.rows_already_gone}; kept back: {kept}; "
            f"{self.batches} batches in {self.duration_s:.1f} s"
        )
        return text + (f"; stopped: {self.why_quit}" if self.why_quit else "")


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


# -- when a day may be redacted ------------------------------------------------------------------


def retention_ends(catalog: Catalog, table: TableConfig, day: dt.date) -> dt.datetime:
    """Local midnight `retention_days` days after day D ended (DST-aware wall-clock days)."""
    end = day + dt.timedelta(days=1 + table.retention_days)
    return dt.datetime.combine(end, dt.time(), tzinfo=catalog.zone)


def check_redactable(catalog: Catalog, table: TableConfig, day: dt.date, now: dt.datetime) -> DayWindow:
    if table.retention_days is None or table.mode != "append":
        raise RedactionRefused(
            NOT_CONFIGURED,
            f"table {table.name} has no retention_days in the catalog ({catalog.path or 'catalog'}), so its "
            "rows are never deleted from PostgreSQL; add retention_days (append tables only) to enable redaction",
        )
    eligible = retention_ends(catalog, table, day)
    if now < eligible:
        raise RedactionRefused(
            INSIDE_RETENTION,
            f"table {table.name} day {day} is inside its {table.retention_days}-day retention: its rows may be "
            f"deleted from {eligible.isoformat()} on. Nothing was deleted.",
        )
    return DayWindow(day, catalog.timezone)


# -- the lake side: what the deletion may rely on ------------------------------------------------


@dataclass
class LakeEvidence:
    manifest: lake.Manifest
    keys: RedactionKeys
    keys_files: list[Path]
    bucket: str
    manifest_url: str


def _object_record(bucket: str, obj: lake.WrittenObject) -> dict:
    return {
        "url": f"s3://{bucket}/{obj.key}",
        "rows": obj.rows,
        "bytes": obj.bytes,
        "etag": obj.etag,
        "version_id": obj.version_id,
    }


def collect_evidence(
    clients: AwsClients, glue: GlueCatalog, table: TableConfig, day: dt.date, workdir: Path
) -> LakeEvidence:
    """Steps 2 and 3 of the module docstring; raises RedactionRefused."""
    verification = verify_published_day(glue, clients.s3, clients.filesystem, table.name, day)
    if verification.partition is None:
        raise RedactionRefused(
            NOT_PUBLISHED,
            f"table {table.name} day {day} was never exported (no Glue partition dt={day}); nothing was "
            f"deleted. Materialize lake/{table.name} for {day} first.",
        )
    if not verification.passed():
        raise RedactionRefused(
            LAKE_MISMATCH,
            f"table {table.name} day {day}: the lake no longer matches the published export, so nothing was "
            f"deleted: {verification.summary()}. Re-export the day (or restore the objects) and re-run.",
        )
    manifest = verification.manifest
    bucket = manifest.location.removeprefix("s3://").split("/", 1)[0]
    keys = RedactionKeys.from_manifest(manifest)
    if keys is None:
        raise RedactionRefused(
            NO_KEYS,
            f"table {table.name} day {day}: export {manifest.export_id} recorded no redaction keys (it ran before "
            f"the table had retention_days, or before redaction existed); nothing was deleted. Re-export "
            f"lake/{table.name} for {day}, then redact.",
        )
    if keys.primary_key != list(table.primary_key):
        raise RedactionRefused(
            KEYS_MISMATCH,
            f"table {table.name} day {day}: the export's keys are by {keys.primary_key}, the catalog now says "
            f"primary_key {list(table.primary_key)}; nothing was deleted. Re-export the day.",
        )
    if keys.rows != manifest.source_rows or sum(o.rows for o in keys.objects) != keys.rows:
        raise RedactionRefused(
            KEYS_MISMATCH,
            f"table {table.name} day {day}: the export's keys count {keys.rows} rows, its PostgreSQL window held "
            f"{manifest.source_rows}; nothing was deleted. Re-export the day.",
        )
    files = []
    for index, obj in enumerate(keys.objects):
        path = workdir / f"keys-{index:05d}.parquet"
        _download_exact(clients.s3, bucket, obj, path, table, day)
        if pq.read_metadata(path).num_rows != obj.rows:
            raise RedactionRefused(
                KEYS_MISMATCH,
                f"table {table.name} day {day}: keys object s3://{bucket}/{obj.key} "
                f"does not hold the {obj.rows} rows its manifest says; nothing was deleted",
            )
        files.append(path)
    evidence = LakeEvidence(
        manifest=manifest,
        keys=keys,
        keys_files=files,
        bucket=bucket,
        manifest_url=verification.partition.get("Parameters", {}).get("weward.manifest", ""),
    )
    _check_keys_match_data(clients, evidence, table, day)
    return evidence


def _download_exact(s3, bucket: str, obj: lake.WrittenObject, path: Path, table: TableConfig, day) -> None:
    """The object exactly as the export described it (If-Match on its ETag), or a refusal.

    Not by VersionId: that would need s3:GetObjectVersion, which the redaction role does not have
    (infra/modules/iam), and the ETag already pins the content.
    """
    try:
        body = s3.get_object(Bucket=bucket, Key=obj.key, IfMatch=f'"{obj.etag}"')["Body"]
        with open(path, "wb") as out:
            shutil.copyfileobj(body, out, 1024 * 1024)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        raise RedactionRefused(
            KEYS_MISMATCH,
            f"table {table.name} day {day}: keys object s3://{bucket}/{obj.key} is not as exported ({code}); "
            "nothing was deleted. Re-export the day.",
        ) from None
    if path.stat().st_size != obj.bytes:
        raise RedactionRefused(
            KEYS_MISMATCH,
            f"table {table.name} day {day}: keys object s3://{bucket}/{obj.key} "
            f"is {path.stat().st_size} bytes, the manifest says {obj.bytes}",
        )


def iter_keys(files: list[Path], batch_rows: int, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    return read_columns([str(path) for path in files], columns, batch_rows=batch_rows)


class KeyFeed:
    """The keys in order, in batches of whatever size pacing asks for next."""

    def __init__(self, files: list[Path], chunk_rows: int = 65_536) -> None:
        self._chunks = iter_keys(files, chunk_rows)
        self._pending: pa.RecordBatch | None = None

    def take(self, rows: int) -> pa.RecordBatch | None:
        parts, wanted = [], rows
        while wanted > 0:
            if self._pending is None or self._pending.num_rows == 0:
                self._pending = next(self._chunks, None)
                if self._pending is None:
                    break
            part = self._pending.slice(0, wanted)
            self._pending = self._pending.slice(part.num_rows)
            parts.append(part)
            wanted -= part.num_rows
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else pa.concat_batches(parts)


def _check_keys_match_data(clients: AwsClients, evidence: LakeEvidence, table: TableConfig, day) -> None:
    """The keys' primary keys equal the data files' primary keys, in order (carried rows follow)."""
    problem = manifest_alignment_problem(
        clients.filesystem, evidence.bucket, evidence.manifest, evidence.keys, evidence.keys_files
    )
    if problem:
        raise RedactionRefused(
            KEYS_MISMATCH,
            f"table {table.name} day {day}: {problem}; the lake was changed after the export. Nothing was deleted. "
            "Re-export the day.",
        )
    # The data objects did not change while we read them.
    for obj in evidence.manifest.objects:
        if lake.changed_since_manifest(clients.s3, evidence.bucket, obj):
            raise RedactionRefused(
                LAKE_MISMATCH,
                f"table {table.name} day {day}: s3://{evidence.bucket}/{obj.key} "
                "changed while it was being verified; nothing was deleted",
            )


# -- the PostgreSQL side -------------------------------------------------------------------------

COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), tn.nspname, t.typname,
       has_column_privilege(c.oid, a.attnum, 'SELECT')
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_namespace tn ON tn.oid = t.typnamespace
WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


@dataclass
class DeletePlan:
    """The statements of one redaction, built once from the table as it is now."""

    table: TableConfig
    window: DayWindow
    source: SourceTable
    pk_types: list[tuple[str, str]]  # (schema, type name) per key column, for the array casts
    fingerprint_columns: list[str]
    required_null: list[str]

    def _target(self) -> sql.Composable:
        return sql.SQL("{}.{}").format(sql.Identifier(self.table.schema), sql.Identifier(self.table.source))

    def _keys_from(self, with_fingerprint: bool = True) -> sql.Composable:
        arrays = [
            sql.SQL("{}::{}.{}[]").format(sql.Placeholder(f"k{i}"), sql.Identifier(ns), sql.Identifier(name))
            for i, (ns, name) in enumerate(self.pk_types)
        ]
        names = [sql.Identifier(f"k{i}") for i in range(len(self.pk_types))]
        if with_fingerprint:
            arrays.append(sql.SQL("{}::bytea[]").format(sql.Placeholder("fp")))
            names.append(sql.Identifier("fp"))
        names.append(sql.Identifier("n"))
        return sql.SQL("unnest({}) WITH ORDINALITY AS k({})").format(
            sql.SQL(", ").join(arrays), sql.SQL(", ").join(names)
        )

    def _key_match(self) -> sql.Composable:
        return sql.SQL(" AND ").join(
            sql.SQL("t.{} = k.{}").format(sql.Identifier(c), sql.Identifier(f"k{i}"))
            for i, c in enumerate(self.table.primary_key)
        )

    def _unchanged(self) -> sql.Composable:
        """The row is as exported: same fingerprint, still in day D, columns added since are NULL."""
        parts = [sql.SQL("{} = k.fp").format(row_fingerprint_sql(self.fingerprint_columns, "t")), self._window()]
        parts += [sql.SQL("t.{} IS NULL").format(sql.Identifier(c)) for c in self.required_null]
        return sql.SQL(" AND ").join(parts)

    def delete(self) -> sql.Composed:
        return sql.SQL("DELETE FROM {} AS t USING {} WHERE {} AND {} RETURNING k.n").format(
            self._target(), self._keys_from(), self._key_match(), self._unchanged()
        )

    def probe(self) -> sql.Composed:
        """Dry run: which candidates are present, and would they be deleted."""
        return sql.SQL("SELECT k.n, ({}) FROM {} AS t JOIN {} ON {}").format(
            self._unchanged(), self._target(), self._keys_from(), self._key_match()
        )

    def present(self) -> sql.Composed:
        return sql.SQL("SELECT k.n FROM {} AS t JOIN {} ON {}").format(
            self._target(), self._keys_from(with_fingerprint=False), self._key_match()
        )

    def _window(self) -> sql.Composable:
        lower, upper = self.window.bounds_for(self.source.partition_type)
        return sql.SQL("t.{c} >= {lo} AND t.{c} < {hi}").format(
            c=sql.Identifier(self.table.partition_column), lo=sql.Literal(lower), hi=sql.Literal(upper)
        )

    def count_window(self) -> sql.Composed:
        return sql.SQL("SELECT count(*) FROM {} AS t WHERE {}").format(self._target(), self._window())

    def window_keys(self, limit: int) -> sql.Composed:
        """Primary keys of the rows left in D, in the lake's value types (text where the lake has text)."""
        items = []
        for name in self.table.primary_key:
            column = self.source.column(name)
            text = column.as_text and not column.decimal_from_text
            items.append(sql.SQL("t.{}::text" if text else "t.{}").format(sql.Identifier(name)))
        return sql.SQL("SELECT {} FROM {} AS t WHERE {} ORDER BY {} LIMIT {}").format(
            sql.SQL(", ").join(items),
            self._target(),
            self._window(),
            sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in self.table.primary_key),
            sql.Literal(limit),
        )

    @staticmethod
    def params(batch: pa.RecordBatch, primary_key: tuple[str, ...], rows: list[int] | None = None) -> dict:
        if rows is not None:
            batch = batch.take(pa.array(rows, pa.int64()))
        params = {f"k{i}": batch.column(name).to_pylist() for i, name in enumerate(primary_key)}
        if FINGERPRINT_COLUMN in batch.schema.names:
            params["fp"] = batch.column(FINGERPRINT_COLUMN).to_pylist()
        return params


def connect(
    url: str, table: TableConfig, day: dt.date, limits: RedactionLimits, settings: dict[str, str], dry_run: bool
) -> psycopg.Connection:
    """Autocommit: every batch opens and commits its own transaction; nothing stays open between."""
    label = "dry-run" if dry_run else "redact"
    try:
        conn = pg.connect(
            url, f"weward-{label} {table.name} {day}", limits.session(read_only=dry_run), purpose="redaction"
        )
    except pg.ConnectError as exc:
        raise SourceError(f"table {table.name}: {exc}. Check WEWARD_PG_REDACT_URL (or WEWARD_PG_URL).") from None
    # The row text form (and so the fingerprint) depends on these: use the export's values.
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    return conn


def plan_deletes(
    conn: psycopg.Connection, table: TableConfig, window: DayWindow, keys: RedactionKeys, dry_run: bool
) -> DeletePlan:
    """Step 4: compare the table as it is now with what the fingerprint covered."""

    def query_rows(text: str) -> list[tuple]:
        return conn.execute(text).fetchall()

    rows = conn.execute(COLUMNS_SQL, (table.schema, table.source)).fetchall()
    if not rows:
        raise RedactionRefused(
            SCHEMA_CHANGED,
            f"table {table.name}: PostgreSQL has no table {table.qualified_source} visible to the redaction role; "
            "nothing was deleted",
        )
    source = describe(query_rows, table)
    current = {name: (pg_type, ns, typname, can_read) for name, pg_type, ns, typname, can_read in rows}
    problems = []
    for column in keys.columns:
        now = current.get(column["name"])
        if now is None:
            problems.append(f"column {column['name']!r} was dropped or renamed")
        elif now[0] != column["pg_type"]:
            problems.append(f"column {column['name']!r} was {column['pg_type']} at export, is {now[0]} now")
    if problems:
        raise RedactionRefused(
            SCHEMA_CHANGED,
            f"table {table.name} day {window.day}: the table changed since the export ({'; '.join(problems)}), so "
            "row fingerprints cannot be compared; nothing was deleted. Re-export the day, then redact.",
        )
    covered = {c["name"] for c in keys.columns}
    # Columns added since the export read as NULL in the lake: a row may go only if they are NULL.
    # Columns the catalog drops as personal data are never exported, whatever their value.
    required_null = [name for name in current if name not in covered and pii.is_exported(table, name)]
    needed = sorted(covered | set(required_null) | set(table.primary_key) | {table.partition_column})
    unreadable = [name for name in needed if not current[name][3]]
    if unreadable:
        raise RedactionRefused(
            NO_PRIVILEGE,
            f"table {table.name}: the redaction role cannot read column(s) {', '.join(unreadable)} of "
            f"{table.qualified_source}; it needs SELECT on the exported columns to compare fingerprints. "
            "Nothing was deleted.",
        )
    if not dry_run:
        allowed = conn.execute(
            "SELECT has_table_privilege(c.oid, 'DELETE') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (table.schema, table.source),
        ).fetchone()[0]
        if not allowed:
            raise RedactionRefused(
                NO_PRIVILEGE,
                f"table {table.name}: the redaction role has no DELETE privilege on {table.qualified_source}; "
                "nothing was deleted. GRANT DELETE to the role of WEWARD_PG_REDACT_URL.",
            )
    pk_types = [(current[name][1], current[name][2]) for name in table.primary_key]
    return DeletePlan(
        table=table,
        window=window,
        source=source,
        pk_types=pk_types,
        fingerprint_columns=[c["name"] for c in keys.columns],
        required_null=required_null,
    )


def replica_lag_probe(conn: psycopg.Connection) -> Callable[[], float | None]:
    """Seconds the slowest standby is behind in replay, from pg_stat_replication on the primary.

    None when there is no standby. Seeing the lag needs pg_monitor (RDS: rds_superuser grants
    it); without it the rows are there but empty, which is reported once, not ignored.
    """
    warned = []

    def probe() -> float | None:
        rows = conn.execute("SELECT state, extract(epoch FROM replay_lag)::float8 FROM pg_stat_replication").fetchall()
        if not rows:
            return None
        if all(state is None for state, _ in rows):
            if not warned:
                log.warning("redaction: cannot see replica lag (grant pg_monitor to the redaction role)")
                warned.append(True)
            raise PermissionError("pg_stat_replication is not readable: grant pg_monitor to the redaction role")
        return max((lag or 0.0) for _, lag in rows)

    return probe


# -- the run -------------------------------------------------------------------------------------


class _Run:
    def __init__(
        self,
        *,
        conn,
        plan: DeletePlan,
        evidence: LakeEvidence,
        glue: GlueCatalog,
        table: TableConfig,
        limits: RedactionLimits,
        report: RedactionReport,
        dry_run: bool,
        say,
        lag_probe,
        on_batch,
        sleep,
        pacer: Pacer,
        audit: AuditWriter | None = None,
    ) -> None:
        self.pacer = pacer
        self.conn, self.plan, self.evidence, self.glue = conn, plan, evidence, glue
        self.table, self.limits, self.report, self.dry_run = table, limits, report, dry_run
        self.say, self.lag_probe, self.on_batch, self.sleep = say, lag_probe, on_batch, sleep
        self.audit = audit
        self.audit_s = 0.0  # time spent writing the audit to S3: not work on the database
        self.started = time.monotonic()
        self.last_recheck = time.monotonic()
        self.changed: list = []
        self.locked: list = []
        self.unreached: list = []
        self.delete_sql = plan.delete()
        self.probe_sql = plan.probe()
        self.present_sql = plan.present()

    def _keys(self, batch: pa.RecordBatch, rows: list[int] | None = None) -> list:
        taken = batch.take(pa.array(rows, pa.int64())) if rows is not None else batch
        columns = [taken.column(name).to_pylist() for name in self.table.primary_key]
        return [values[0] if len(values) == 1 else list(values) for values in zip(*columns)]

    def _why_stop(self) -> str | None:
        limits = self.limits
        if limits.max_runtime_s is not None and time.monotonic() - self.started > limits.max_runtime_s:
            return f"time budget of {limits.max_runtime_s:g} s used up; run again to continue"
        if time.monotonic() - self.last_recheck >= limits.lake_recheck_s:
            self.last_recheck = time.monotonic()
            partition = self.glue.get_partition(self.table.name, self.report.day)
            current = (partition or {}).get("Parameters", {}).get("weward.export_id")
            if current != self.evidence.manifest.export_id:
                return (
                    f"the published export of {self.report.day} changed to {current or 'nothing'} during the "
                    "redaction (re-export?); run again to redact against it"
                )
        return self._wait_for_replicas()

    def _wait_for_replicas(self) -> str | None:
        limits = self.limits
        if limits.max_replica_lag_s is None or self.lag_probe is None:
            return None
        waited = 0.0
        while True:
            try:
                lag = self.lag_probe()
            except PermissionError as exc:
                self.report.replica_lag = f"unknown: {exc}"
                return f"max_replica_lag_s is set but the replica lag cannot be read ({exc})"
            if lag is None:
                self.report.replica_lag = "no standby connected"
                return None
            self.report.replica_lag = f"{lag:.1f} s at last check"
            if lag <= limits.max_replica_lag_s:
                return None
            if waited >= limits.max_lag_wait_s:
                return (
                    f"replica lag stayed above {limits.max_replica_lag_s:g} s for {waited:.0f} s "
                    f"(last {lag:.1f} s); run again later"
                )
            if waited == 0:
                self.report.replica_lag_waits += 1
                self.say(f"{self.table.name} {self.report.day}: replica {lag:.1f} s behind, pausing deletes")
            step = min(1.0, limits.max_lag_wait_s - waited) or 1.0
            self.sleep(step)
            waited += step
            self.report.replica_lag_wait_s += step

    def run(self) -> None:
        stop = None
        feed = KeyFeed(self.evidence.keys_files)
        while (batch := feed.take(self.pacer.rows())) is not None:
            if stop is None:
                stop = self._why_stop()
                if stop:
                    self.report.why_quit = stop
            if stop:
                self.unreached.extend(self._keys(batch))
                continue
            self.report.batches += 1
            started, audit_before = time.monotonic(), self.audit_s
            if self.dry_run:
                self._probe(batch)
            else:
                self._delete(batch)
            try:
                # Paced by its time on the database; the audit's S3 write inside the transaction is not.
                self.pacer.done(batch.num_rows, time.monotonic() - started - (self.audit_s - audit_before))
            except PacingStopped as exc:
                stop = self.report.why_quit = str(exc)
            if self.on_batch is not None:
                self.on_batch(self.report)

    def _probe(self, batch: pa.RecordBatch) -> None:
        with self.conn.transaction():
            rows = self.conn.execute(self.probe_sql, DeletePlan.params(batch, self.table.primary_key)).fetchall()
        deletable = [n for n, unchanged in rows if unchanged]
        changed = [n - 1 for n, unchanged in rows if not unchanged]
        self.report.rows_would_delete += len(deletable)
        self.report.rows_already_gone += batch.num_rows - len(rows)
        self.changed.extend(self._keys(batch, changed))

    def _delete(self, batch: pa.RecordBatch) -> None:
        params = DeletePlan.params(batch, self.table.primary_key)

        def delete_once() -> set[int]:
            with self.conn.transaction():
                deleted = {n for (n,) in self.conn.execute(self.delete_sql, params).fetchall()}
                if deleted and self.audit is not None:  # write-ahead: no commit without the proof
                    writing = time.monotonic()
                    self.audit.write(
                        batch.select(list(self.table.primary_key)).take(
                            pa.array(sorted(n - 1 for n in deleted), pa.int64())
                        )
                    )
                    self.audit_s += time.monotonic() - writing
                    self.report.audit_objects = self.audit.batches
                return deleted

        def on_retry(retry: int, _: Exception) -> None:
            self.report.lock_timeouts += 1
            if retry == 1:
                self.report.batches_retried += 1

        try:
            deleted = pg.retry_on_lock(delete_once, self.limits.retry_policy(), sleep=self.sleep, on_retry=on_retry)
        except pg.LockRetriesExhausted as exhausted:
            exc = exhausted.error
            self.report.lock_timeouts += 1
            self.report.batches_skipped += 1
            self.locked.extend(self._keys(batch))
            self.say(
                f"{self.table.name} {self.report.day}: batch {self.report.batches} skipped after "
                f"{exhausted.attempts} tries ({exc.sqlstate}: {str(exc).strip()}); a re-run retries it"
            )
            return
        now = _now_iso()
        if deleted:
            self.report.first_delete_at = self.report.first_delete_at or now
            self.report.last_delete_at = now
        self.report.rows_deleted += len(deleted)
        left = [n - 1 for n in range(1, batch.num_rows + 1) if n not in deleted]
        if left:
            # Not deleted: either gone already (an earlier run), or present but not as exported.
            rows = self.conn.execute(
                self.present_sql,
                DeletePlan.params(batch.select(list(self.table.primary_key)), self.table.primary_key, left),
            ).fetchall()
            present = sorted(left[n - 1] for (n,) in rows)
            self.report.rows_already_gone += len(left) - len(present)
            self.changed.extend(self._keys(batch, present))

    def classify_remaining(self) -> None:
        """Which rows are left in day D, and why (the report's kept_back)."""
        report, limits = self.report, self.limits
        remaining = self.conn.execute(self.plan.count_window()).fetchone()[0]
        report.window_rows_after = remaining
        kept: dict[str, list] = {CHANGED_SINCE_EXPORT: self.changed, LOCKED: self.locked, NOT_REACHED: self.unreached}
        if self.dry_run:
            # Rows of D that match no key at all were inserted after the export.
            present_in_keys = report.rows_would_delete + len(self.changed) + len(self.unreached)
            inserted = max(remaining - present_in_keys, 0)
            report.kept_back = {reason: len(keys) for reason, keys in kept.items() if keys}
            if inserted:
                report.kept_back[INSERTED_AFTER_EXPORT] = inserted
        else:
            rows = self.conn.execute(self.plan.window_keys(limits.classify_rows)).fetchall()
            left = {row[0] if len(row) == 1 else tuple(row) for row in rows}
            for batch in iter_keys(self.evidence.keys_files, 65_536, list(self.table.primary_key)):
                if not left:
                    break
                for key in self._keys(batch):
                    left.discard(key if not isinstance(key, list) else tuple(key))
            inserted = sorted(left, key=str)
            if remaining > len(rows):
                report.kept_back_keys_truncated = True
            kept[INSERTED_AFTER_EXPORT] = inserted
            report.kept_back = {reason: len(keys) for reason, keys in kept.items() if keys}
        for reason, keys in kept.items():
            if keys:
                report.kept_back_keys[reason] = [
                    list(k) if isinstance(k, tuple) else k for k in keys[: limits.reported_keys]
                ]
                report.kept_back_keys_truncated |= len(keys) > limits.reported_keys


def redact_day(
    settings: Settings,
    catalog: Catalog,
    table: TableConfig,
    day: dt.date,
    *,
    clients: AwsClients | None = None,
    limits: RedactionLimits = RedactionLimits(),
    dry_run: bool = False,
    now: dt.datetime | None = None,
    on_progress: Callable[[str], None] | None = None,
    on_batch: Callable[[RedactionReport], None] | None = None,
    lag_probe: Callable[[], float | None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RedactionReport:
    """Delete from PostgreSQL the rows of (table, day) that the published export holds unchanged.

    Raises RedactionRefused (nothing deleted, `reason` says why) or RedactionFailed (broke off;
    `report` says what was deleted; re-run to finish). With dry_run, PostgreSQL is only read
    (read-only transactions) and the report says what would be deleted.
    """
    limits.validate()
    started = time.monotonic()
    say = on_progress or log.info
    now = now or dt.datetime.now(dt.UTC)
    window = check_redactable(catalog, table, day, now)
    clients = clients or AwsClients.from_settings(settings)
    glue = GlueCatalog(clients.glue, settings.glue_database)
    report = RedactionReport(
        table=table.name,
        day=day.isoformat(),
        source=table.qualified_source,
        postgres=mask_url(settings.pg_redact_url),
        dry_run=dry_run,
        started_at=_now_iso(),
    )
    # The budget: the defaults, the table's `pacing:` in the catalog, this run's settings, in that order.
    pacing = PacingLimits().merged(table.pacing, limits.pacing)
    workdir = make_workdir(f"weward-redact-{table.name}-")
    conn = None
    pacer = None
    try:
        evidence = collect_evidence(clients, glue, table, day, workdir)
        manifest = evidence.manifest
        report.export_id, report.exported_at = manifest.export_id, manifest.created_at
        report.manifest = evidence.manifest_url
        report.export_snapshot_at = manifest.snapshot_at
        report.lake_objects = [_object_record(evidence.bucket, o) for o in manifest.objects]
        report.keys_objects = [_object_record(evidence.bucket, o) for o in evidence.keys.objects]
        report.rows_in_export = evidence.keys.rows
        report.rows_carried_in_lake = manifest.carried_rows
        conn = connect(settings.pg_redact_url, table, day, limits, evidence.keys.settings, dry_run)
        plan = plan_deletes(conn, table, window, evidence.keys, dry_run)
        report.delete_sql = plan.delete().as_string(conn)
        report.columns_required_null = plan.required_null
        report.window_rows_before = conn.execute(plan.count_window()).fetchone()[0]
        pacer = Pacer(
            pacing,
            probe_for(conn),
            fixed_rows=limits.batch_rows,
            fixed_pause_s=limits.pause_s,
            sleep=sleep,
            say=say,
            what=f"{table.name} {day}",
        )
        sizes = (
            f"batches of {limits.batch_rows}"
            if limits.batch_rows
            else (f"batches of ~{pacing.target_batch_s:g} s (from {pacer.rows()} rows)")
        )
        say(
            f"{table.name} {day}: export {manifest.export_id} verified ({evidence.keys.rows} keyed rows, "
            f"{len(manifest.objects)} data object(s)); {report.window_rows_before} rows of the day in PostgreSQL; "
            f"{'dry run' if dry_run else 'deleting'} in {sizes}, working {pacing.duty_cycle:.0%} of the time"
        )
        audit = None if dry_run else AuditWriter(clients.filesystem, settings.lake, table.name, day, manifest.export_id)
        report.audit_prefix = "" if audit is None else f"s3://{settings.lake.bucket}/{audit.prefix}"
        run = _Run(
            conn=conn,
            plan=plan,
            evidence=evidence,
            glue=glue,
            table=table,
            limits=limits,
            report=report,
            dry_run=dry_run,
            say=say,
            lag_probe=lag_probe or (replica_lag_probe(conn) if limits.max_replica_lag_s else None),
            on_batch=on_batch,
            sleep=sleep,
            pacer=pacer,
            audit=audit,
        )
        try:
            run.run()
            run.classify_remaining()
        except (psycopg.Error, OSError, ClientError, BotoCoreError) as exc:
            report.status = "failed"
            report.why_quit = f"{exc.__class__.__name__}: {mask_error(str(exc), settings.pg_redact_url).strip()}"
            raise RedactionFailed(
                f"table {table.name} day {day}: redaction broke off after {report.rows_deleted} deleted rows "
                f"({report.why_quit}); every committed batch was verified, re-run to finish",
                report,
            ) from exc
        report.status = (
            "dry_run"
            if dry_run
            else "stopped"
            if report.why_quit
            else "incomplete"
            if report.batches_skipped
            else "done"
        )
        if not dry_run:
            # What we relied on must still be there: an alarm, not a rollback, if it is not.
            after = verify_published_day(glue, clients.s3, clients.filesystem, table.name, day)
            report.lake_verified_after = after.passed() and after.manifest.export_id == manifest.export_id
            report.lake_problems_after = None if report.lake_verified_after else after.summary()
        return report
    finally:
        if pacer is not None:
            report.pacing = pacer.report.as_dict(pacing)
        if conn is not None:
            conn.close()
        shutil.rmtree(workdir, ignore_errors=True)
        report.finished_at = _now_iso()
        report.duration_s = round(time.monotonic() - started, 3)
        if report.status != "running":
            say(report.summary())
