"""How each PostgreSQL column type becomes an Arrow/Parquet type and a Glue (Athena) type.

Exact where Athena has the type; otherwise PostgreSQL's own text output, which is lossless and
documented by PostgreSQL itself (uuid 8-4-4-4-12 hex, json/jsonb text, enum label, inet/cidr,
interval in the server's IntervalStyle, time as HH:MM:SS[.ffffff]).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

# Athena's decimal is decimal(38, s). An unconstrained PostgreSQL `numeric` has no declared
# precision, so we choose decimal(38, 9) (29 integer digits, 9 fractional), the same default
# BigQuery's NUMERIC uses. A value with more digits fails the export, naming the column: never rounded.
UNCONSTRAINED_NUMERIC = (38, 9)
MAX_DECIMAL_PRECISION = 38

# PostgreSQL base type name -> (arrow type, glue type). ADBC's PostgreSQL driver decodes these
# natively from COPY BINARY.
NATIVE_TYPES: dict[str, tuple[pa.DataType, str]] = {
    "int2": (pa.int16(), "smallint"),
    "int4": (pa.int32(), "int"),
    "int8": (pa.int64(), "bigint"),
    "float4": (pa.float32(), "float"),
    "float8": (pa.float64(), "double"),
    "bool": (pa.bool_(), "boolean"),
    "text": (pa.string(), "string"),
    "varchar": (pa.string(), "string"),
    "bpchar": (pa.string(), "string"),
    "name": (pa.string(), "string"),
    "bytea": (pa.binary(), "binary"),
    "date": (pa.date32(), "date"),
    "timestamp": (pa.timestamp("us"), "timestamp"),
    "timestamptz": (pa.timestamp("us", tz="UTC"), "timestamp"),
}

PARTITION_COLUMN_TYPES = ("timestamptz", "timestamp", "date")


class UnsupportedTypeError(ValueError):
    pass


@dataclass(frozen=True)
class ColumnMapping:
    name: str
    pg_type: str  # as format_type() prints it, e.g. "numeric(12,2)", "user_status[]"
    base_type: str  # pg_type.typname of the (element) base type, domains resolved
    is_array: bool
    arrow_type: pa.DataType
    glue_type: str
    nullable: bool
    as_text: bool  # selected as ::text (or ::text[]): PostgreSQL's lossless text form
    note: str = ""

    @property
    def decimal_from_text(self) -> bool:
        element = self.arrow_type.value_type if self.is_array else self.arrow_type
        return pa.types.is_decimal(element)


def numeric_precision_scale(typmod: int) -> tuple[int, int] | None:
    if typmod < 0:
        return None
    precision = ((typmod - 4) >> 16) & 0xFFFF
    scale = (typmod - 4) & 0xFFFF
    if scale > 0x7FFF:  # PostgreSQL 15 allows negative scales, stored as 11-bit two's complement
        scale -= 0x10000
    return precision, scale


def map_column(
    *,
    name: str,
    pg_type: str,
    base_type: str,
    typmod: int,
    is_array: bool,
    nullable: bool,
    table: str = "?",
) -> ColumnMapping:
    """Map one column; raise UnsupportedTypeError naming table, column and type when impossible."""
    as_text = False
    note = ""
    if base_type == "numeric":
        declared = numeric_precision_scale(typmod)
        if declared is None:
            precision, scale = UNCONSTRAINED_NUMERIC
            note = f"unconstrained numeric stored as decimal({precision},{scale}); larger values fail the export"
        else:
            precision, scale = declared
            if precision > MAX_DECIMAL_PRECISION or scale < 0:
                raise UnsupportedTypeError(
                    f"table {table}: column {name!r} is {pg_type}, which Athena's decimal (at most 38 "
                    "digits, scale >= 0) cannot hold exactly; change the column type or exclude it"
                )
        arrow_type: pa.DataType = pa.decimal128(precision, scale)
        glue_type = f"decimal({precision},{scale})"
        as_text = True  # ADBC hands numeric over as text; we cast it, checked, to decimal
    elif base_type in NATIVE_TYPES:
        arrow_type, glue_type = NATIVE_TYPES[base_type]
    else:
        arrow_type, glue_type = pa.string(), "string"
        as_text = True
        note = f"{base_type} as PostgreSQL text"
    if is_array:
        arrow_type = pa.list_(arrow_type)
        glue_type = f"array<{glue_type}>"
    return ColumnMapping(
        name=name,
        pg_type=pg_type,
        base_type=base_type,
        is_array=is_array,
        arrow_type=arrow_type,
        glue_type=glue_type,
        nullable=nullable,
        as_text=as_text,
        note=note,
    )


def arrow_schema(columns: list[ColumnMapping]) -> pa.Schema:
    return pa.schema(
        [pa.field(c.name, c.arrow_type, nullable=c.nullable, metadata={"pg_type": c.pg_type}) for c in columns]
    )


# Which Glue type changes an existing lake table can absorb. Athena reads Parquet by column name
# and widens these safely; anything else would make old partitions unreadable.
SAFE_WIDENINGS = {
    ("smallint", "int"),
    ("smallint", "bigint"),
    ("int", "bigint"),
    ("float", "double"),
}


def is_compatible_change(old: str, new: str) -> bool:
    if old == new or (old, new) in SAFE_WIDENINGS:
        return True
    if old.startswith("decimal(") and new.startswith("decimal("):
        (op, os_), (np_, ns) = (tuple(int(x) for x in t[8:-1].split(",")) for t in (old, new))
        return ns == os_ and np_ >= op  # more integer digits, same scale: old values still fit
    if old.startswith("array<") and new.startswith("array<"):
        return is_compatible_change(old[6:-1], new[6:-1])
    return False
