"""Personal data policies, applied to Arrow batches between PostgreSQL and Parquet.

The catalog lists each personal column of a table under `pii` with an explicit policy:

    keep             exported as is (an explicit, reviewed decision, e.g. an internal user id)
    hash             keyed pseudonym: HMAC-SHA256(key, text form of the value), 64 hex chars.
                     Stable across days and tables (analysts can join and count distinct on it);
                     without the key it cannot be reversed by trying candidate values.
    drop             never selected from PostgreSQL, absent from Parquet and Glue
    generalize_year  a date or timestamp becomes its year (an int), e.g. birth_date -> 1987

`POLICIES` is the registry: each `Policy` carries its transform, the column kinds it accepts,
its lake/Glue type and comment, and its rules (primary key, user column). The catalog's
validation (config.py), the export, Glue, erasure, redaction and the Dagster metadata all read
it; adding a policy means adding one entry here.

The text form hashed is PostgreSQL's for text, uuid and integers ("42", lower-case uuid), ISO
for dates, so a pseudonym can be recomputed from a value an operator holds (erasure does).

Speed: this is on the export's hot path. HMAC per distinct value of the batch (Arrow
dictionary-encodes the column first), from precomputed inner/outer SHA-256 states: about
1-2 us per distinct value, 2-4x faster than `hmac.digest` (OpenSSL 3 builds a context per call).
See README "Personal data" for the measurements.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from weward_pipeline.config import ConfigError, TableConfig
from weward_pipeline.secret_store import PiiKey
from weward_pipeline.typemap import ColumnMapping

HASH_ALGORITHM = "HMAC-SHA256"
HASH_GLUE_COMMENT = "pseudonymized: HMAC-SHA256 (hex) of the value, keyed"
YEAR_GLUE_COMMENT = "generalized: year only"
# Parquet field metadata and manifest column entries carry the policy applied.
FIELD_POLICY = b"weward.pii"


class PiiPolicyError(ConfigError):
    """A policy cannot apply to the column as PostgreSQL defines it. Names table, column and fix."""


# -- the registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """One way a personal column reaches the lake."""

    name: str
    # Never selected from PostgreSQL: absent from Parquet, Glue and the redaction keys.
    exported: bool = True
    # The lake does not hold the value as PostgreSQL has it (so the lake may not hold it raw either).
    protects: bool = True
    needs_key: bool = False
    # Column kinds (`column_kind`) the policy applies to; None: any.
    accepts: frozenset[str] | None = None
    # The refusal when the column's kind is not accepted: "<applies to>. <what to do instead>".
    refusal: str = ""
    # The lake column: Arrow type, Glue type and a note "<...> of <pg type>"; None: as in PostgreSQL.
    lake_type: tuple[pa.DataType, str, str] | None = None
    # Appended to the PostgreSQL type in the Glue column comment ("" : the type alone).
    glue_comment: str = ""
    # How the Glue table comment and the Dagster UI name the columns under this policy.
    label: str = ""
    ui_key: str = ""
    ui_suffix: str = ""
    # Rules: redaction and erasure match rows by the primary key; erasure finds a user's rows by user_column.
    allowed_on_primary_key: bool = False
    allowed_on_user_column: bool = False
    # Arrow values as PostgreSQL gave them -> the lake's values (None: unchanged).
    transform: Callable[[pa.Array, Pseudonymizer | None], pa.Array] | None = None

    @property
    def parameter(self) -> str:
        """The Glue table parameter (and manifest entry) listing the columns under this policy."""
        return f"weward.pii.{self.name}"


POLICIES: dict[str, Policy] = {
    p.name: p
    for p in (
        Policy(
            "keep",
            protects=False,
            glue_comment="personal data, kept as is",
            label="personal, kept as is",
            ui_key="pii/kept_personal",
            allowed_on_primary_key=True,
            allowed_on_user_column=True,
        ),
        Policy(
            "hash",
            needs_key=True,
            accepts=frozenset({"string", "binary", "integer", "date", "decimal"}),
            refusal="`hash` applies to text, uuid, integer, numeric, date and bytea columns. Use `drop` (or "
            "`generalize_year` for dates and timestamps) in its `pii` entry.",
            lake_type=(pa.string(), "string", f"{HASH_ALGORITHM} pseudonym"),
            glue_comment=HASH_GLUE_COMMENT,
            label=f"pseudonymized ({HASH_ALGORITHM}, keyed)",
            ui_key="pii/pseudonymized",
            ui_suffix=f" ({HASH_ALGORITHM}, keyed)",
            allowed_on_user_column=True,
            transform=lambda values, pseudonymizer: pseudonymizer.array(values),
        ),
        Policy("drop", exported=False, label="dropped (not exported)", ui_key="pii/dropped"),
        Policy(
            "generalize_year",
            accepts=frozenset({"date", "timestamp"}),
            refusal="`generalize_year` applies to date and timestamp columns. Use `hash` or `drop` in its `pii` entry.",
            lake_type=(pa.int32(), "int", "year"),
            glue_comment=YEAR_GLUE_COMMENT,
            label="year only",
            ui_key="pii/year_only",
            transform=lambda values, _: generalize_year(values),
        ),
    )
}


def policy_of(table: TableConfig, column: str) -> Policy | None:
    """The column's policy; None for a column the catalog does not list as personal."""
    name = table.pii.get(column)
    return POLICIES[name] if name is not None else None


def is_exported(table: TableConfig, column: str) -> bool:
    policy = policy_of(table, column)
    return policy is None or policy.exported


def protects(policy_name: str | None) -> bool:
    """Whether the lake's values differ from PostgreSQL's under this policy (None: not personal)."""
    return policy_name is not None and POLICIES[policy_name].protects


def user_column_needs_key(table: TableConfig) -> bool:
    """Whether the lake holds the user column keyed (erasure then needs the key to find a user's rows)."""
    policy = policy_of(table, table.user_column) if table.user_column else None
    return policy is not None and policy.needs_key


def columns_with(table: TableConfig, policy: str) -> list[str]:
    return sorted(c for c, p in table.pii.items() if p == policy)


def key_columns(table: TableConfig) -> list[str]:
    """Columns whose policy needs the PII key."""
    return sorted(c for c, p in table.pii.items() if POLICIES[p].needs_key)


def unexported_columns(table: TableConfig) -> frozenset[str]:
    """Never selected from PostgreSQL: the values never leave it."""
    return frozenset(c for c, p in table.pii.items() if not POLICIES[p].exported)


def needs_key(table: TableConfig) -> bool:
    return bool(key_columns(table))


def describe_policies(table: TableConfig) -> dict[str, str]:
    """For Glue parameters and Dagster metadata: which columns get which treatment (empty = none)."""
    return {
        **{policy.parameter: ",".join(columns_with(table, name)) for name, policy in POLICIES.items()},
        "weward.pii.algorithm": HASH_ALGORITHM if needs_key(table) else "",
        "weward.user_column": table.user_column or "",
    }


def by_protection() -> list[Policy]:
    """The policies, those that protect the values first (how the UI and the Glue comment list them)."""
    return sorted(POLICIES.values(), key=lambda policy: not policy.protects)


def ui_metadata(table: TableConfig) -> dict[str, str]:
    """What the Dagster UI says about the table's personal columns, one entry per policy ("none" if unused)."""
    metadata = {}
    for policy in by_protection():
        name = policy.name
        columns = ", ".join(columns_with(table, name))
        metadata[policy.ui_key] = f"{columns}{policy.ui_suffix}" if columns else "none"
    return metadata


def glue_parameters(table: TableConfig, key: PiiKey | None) -> dict[str, str]:
    """Glue table parameters: the policies, and which key made the pseudonyms (its id, not the key)."""
    return {**describe_policies(table), KEY_ID_PARAMETER: key.key_id if key is not None and needs_key(table) else ""}


KEY_ID_PARAMETER = "weward.pii.key_id"


def check_key_id(glue_table: dict | None, table: TableConfig, key: PiiKey | None) -> None:
    """Refuse to mix pseudonyms of two keys in one lake table: they would silently stop joining."""
    if glue_table is None or key is None or not needs_key(table):
        return
    published = (glue_table.get("Parameters") or {}).get(KEY_ID_PARAMETER)
    if published and published != key.key_id:
        raise PiiPolicyError(
            f"table {table.name}: the PII key (id {key.key_id}) is not the key that pseudonymized the published "
            f"days (id {published}); their pseudonyms would no longer join. Nothing was read. Restore the "
            "original key (WEWARD_PII_KEY / its Secrets Manager secret), or, to change keys on purpose, "
            "re-export every day of the table after removing the Glue table."
        )


def tightened_columns(glue_table: dict | None, table: TableConfig) -> list[str]:
    """Columns now hashed, dropped or generalized that published days recorded as exported as is.

    Those days still hold the raw values: re-export them (a backfill) to apply the new policy."""
    if glue_table is None:
        return []
    params = glue_table.get("Parameters") or {}
    # No recorded policy (exported before policies existed) reads as "exported as is".
    before = {c: name for name, policy in POLICIES.items() for c in params.get(policy.parameter, "").split(",") if c}
    published = {c["Name"] for c in glue_table.get("StorageDescriptor", {}).get("Columns", [])}
    return sorted(c for c, p in table.pii.items() if protects(p) and before.get(c) != p and c in published)


def description_note(table: TableConfig) -> str:
    """One sentence for the Glue table comment and the asset description."""
    parts = []
    for policy in by_protection():
        if columns_with(table, policy.name):
            parts.append(f"{policy.label}: {', '.join(columns_with(table, policy.name))}")
    return ("Personal data - " + "; ".join(parts) + ".") if parts else ""


# -- the keyed hash -----------------------------------------------------------------------------


class Pseudonymizer:
    """HMAC-SHA256 with the key's inner and outer SHA-256 states computed once (RFC 2104)."""

    __slots__ = ("_inner", "_outer", "key_id")

    def __init__(self, key: PiiKey) -> None:
        material = key.material
        if len(material) > 64:  # SHA-256 block size
            material = hashlib.sha256(material).digest()
        material = material.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in material))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in material))
        self.key_id = key.key_id

    def __repr__(self) -> str:
        return f"Pseudonymizer(key_id={self.key_id})"

    def __reduce__(self):
        raise TypeError("Pseudonymizer cannot be pickled: it holds key material")

    def digest_hex(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def _many(self, messages: Iterable[bytes]) -> list[str]:
        inner_copy, outer_copy = self._inner.copy, self._outer.copy
        out = []
        append = out.append
        for message in messages:
            inner = inner_copy()
            inner.update(message)
            outer = outer_copy()
            outer.update(inner.digest())
            append(outer.hexdigest())
        return out

    def array(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Pseudonyms of a column (nulls stay null), one HMAC per distinct value."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        canonical = canonical_bytes(values)
        encoded = pc.dictionary_encode(canonical)
        digests = pa.array(self._many(encoded.dictionary.to_pylist()), pa.string())
        return digests.take(encoded.indices)

    def value(self, value: str | bytes) -> str:
        return self.digest_hex(value.encode() if isinstance(value, str) else value)


def column_kind(arrow_type: pa.DataType) -> str:
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "binary"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_decimal(arrow_type):
        return "decimal"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    return str(arrow_type)


def canonical_bytes(values: pa.Array) -> pa.Array:
    """The bytes hashed for each value: UTF-8 text (integers in decimal, dates ISO), raw binary."""
    kind = column_kind(values.type)
    if kind in ("string", "binary"):
        return values.cast(pa.large_binary())
    if kind in ("integer", "date", "decimal"):
        return pc.cast(values, pa.string()).cast(pa.large_binary())
    raise PiiPolicyError(f"cannot pseudonymize values of type {values.type}")


def generalize_year(values: pa.Array) -> pa.Array:
    return pc.cast(pc.year(values), pa.int32())


# -- the plan for one table -------------------------------------------------------------------


@dataclass(frozen=True)
class PiiPlan:
    """How one table's described columns become the lake's columns."""

    table: TableConfig
    source_columns: tuple[ColumnMapping, ...]
    lake_columns: tuple[ColumnMapping, ...]
    pseudonymizer: Pseudonymizer | None = None

    @property
    def read_columns(self) -> list[ColumnMapping]:
        """What the export selects from PostgreSQL: dropped columns are never read."""
        return [c for c in self.source_columns if is_exported(self.table, c.name)]

    def policy(self, column: str) -> str | None:
        return self.table.pii.get(column)

    @property
    def transforms(self) -> bool:
        return any(POLICIES[p].transform is not None for p in self.table.pii.values())

    @property
    def arrow_schema(self) -> pa.Schema:
        fields = []
        for column in self.lake_columns:
            metadata = {"pg_type": column.pg_type}
            policy = self.policy(column.name)
            if policy:
                metadata[FIELD_POLICY.decode()] = policy
            fields.append(pa.field(column.name, column.arrow_type, nullable=column.nullable, metadata=metadata))
        return pa.schema(fields)

    def manifest_columns(self) -> list[dict[str, str]]:
        columns = []
        for column in self.lake_columns:
            entry = {"name": column.name, "pg_type": column.pg_type, "glue_type": column.glue_type}
            if self.policy(column.name):
                entry["pii"] = self.policy(column.name)
            columns.append(entry)
        return columns

    def glue_comment(self, column: ColumnMapping) -> str:
        policy = policy_of(self.table, column.name)
        if policy is not None and policy.glue_comment:
            return f"{column.pg_type}; {policy.glue_comment}"
        return column.pg_type

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """A batch with the `read_columns` (by name; extra columns are ignored) -> lake batch."""
        if not self.table.pii:
            return batch
        arrays = []
        for column in self.lake_columns:
            array = batch.column(column.name)
            policy = policy_of(self.table, column.name)
            if policy is not None and policy.transform is not None:
                array = policy.transform(array, self.pseudonymizer)
            arrays.append(array)
        return pa.RecordBatch.from_arrays(arrays, schema=self.arrow_schema)


def plan(table: TableConfig, columns: Iterable[ColumnMapping], key: PiiKey | None = None) -> PiiPlan:
    """Check each policy against the column's type and build the lake columns.

    Raises PiiPolicyError listing every problem (table, column, type, what to do instead).
    """
    columns = tuple(columns)
    problems: list[str] = []
    lake_columns: list[ColumnMapping] = []
    for column in columns:
        policy = policy_of(table, column.name)
        kind = "array" if column.is_array else column_kind(column.arrow_type)
        if policy is not None and not policy.exported:
            continue
        if policy is not None and policy.accepts is not None and kind not in policy.accepts:
            problems.append(f"table {table.name}: column {column.name!r} is {column.pg_type}; {policy.refusal}")
            continue
        if policy is not None and policy.lake_type is not None:
            arrow_type, glue_type, note = policy.lake_type
            column = dataclasses.replace(
                column, arrow_type=arrow_type, glue_type=glue_type, note=f"{note} of {column.pg_type}"
            )
        lake_columns.append(column)
    if problems:
        raise PiiPolicyError("\n".join(problems))
    if needs_key(table) and key is None:
        raise PiiPolicyError(f"table {table.name}: `hash` policies need the PII key; none was given")
    pseudonymizer = Pseudonymizer(key) if needs_key(table) else None
    return PiiPlan(table=table, source_columns=columns, lake_columns=tuple(lake_columns), pseudonymizer=pseudonymizer)


LOOKS_PERSONAL = (
    "email",
    "e_mail",
    "phone",
    "mobile",
    "first_name",
    "last_name",
    "firstname",
    "lastname",
    "full_name",
    "birth",
    "dob",
    "address",
    "street",
    "postcode",
    "zip_code",
    "iban",
    "ip_address",
    "latitude",
    "longitude",
    "passport",
    "ssn",
    "national_id",
)


def unreviewed_personal_columns(table: TableConfig, columns: Iterable[ColumnMapping]) -> list[str]:
    """Column names that look personal but have no `pii` entry: a reminder, not a guarantee."""
    names = []
    for column in columns:
        lowered = column.name.lower()
        if column.name not in table.pii and any(word in lowered for word in LOOKS_PERSONAL):
            names.append(column.name)
    return names
