"""Athena SQL in, checked, and (for the local engine) translated to DuckDB with Athena's semantics.

Analysts write Athena (Trino) SQL. Both engines run `parse` first, so a query Athena would refuse
fails before any Athena request is made, with a line, a column and a hint; the local engine then
runs `to_duckdb`'s translation, never the analyst's text.

1. Parsing is sqlglot's `athena` dialect (pinned in setup.py). sqlglot is lenient: it also reads
   DuckDB and PostgreSQL spellings (`x::int`, `ILIKE`, `[1, 2]`, `SELECT * EXCLUDE`, `GROUP BY ALL`,
   `LIMIT 10 OFFSET 5`, `==`...). `_refuse_non_athena` refuses those by their tokens, and
   `_refuse_unknown_functions` refuses calls to functions Athena does not have
   (`athena_functions.py`), naming Athena's spelling.
2. Translation is sqlglot's athena -> duckdb transpiler, on a tree whose columns are typed from
   the Glue schema (sqlglot's `qualify` + `annotate_types`), plus rewrites where its output
   would answer differently from Athena (`_REWRITES`, each pinned by a test in
   test_query_dialect.py):
   - integer / integer truncates (`//`), decimal / decimal is a decimal of Trino's scale,
     avg(decimal) a decimal, sum(integer) a bigint;
   - date_diff counts whole units (DuckDB's date_diff counts boundaries: 23:00 -> 01:00 is 1 day);
   - `ts AT TIME ZONE 'Europe/Paris'` and at_timezone give that zone's wall clock (DuckDB and
     PostgreSQL read the timestamp *as* that zone's time instead);
   - json_extract_scalar is NULL for objects, arrays and text that is not JSON;
   - regexp_extract is NULL without a match; regexp_replace's `$1` is a group reference;
   - a string compared with a date or timestamp is refused, as Athena refuses it (`dt` is a string);
   - unnamed result columns are `_col0`, `_col1`... as in Athena.
3. What cannot be translated (a function DuckDB has no equivalent for, an argument sqlglot cannot
   carry over) fails with `QueryFailedError` naming the construct and why; `--engine athena` runs it.

Known differences kept (documented in docs/querying.md): an array subscript past the end is NULL
locally (Athena fails the query); decimal division is computed in double precision before being
rounded to Athena's scale; a zoned timestamp is its wall clock locally (so `+ INTERVAL '1' HOUR`
across the DST change counts wall-clock hours).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import (
    ErrorLevel,
    OptimizeError,
    ParseError,
    SchemaError,
    SqlglotError,
    TokenError,
    UnsupportedError,
)
from sqlglot.tokens import Token, TokenType

from weward_pipeline.query.athena_functions import ATHENA_FUNCTIONS, ATHENA_SPELLING
from weward_pipeline.query.errors import QueryError, QueryFailedError, QuerySyntaxError

READ = "athena"
WRITE = "duckdb"

# Words that may stand before "(" without being a function call.
_NOT_CALLS = frozenset(
    """
in exists values over filter using on and or not as with from join select where having by when then
else case between like is all any some distinct within group lateral unnest table ordinality rows
partition decimal varchar char varbinary timestamp time interval array map row union intersect except
rollup cube sets bernoulli system match_recognize define pattern measures subset
""".split()
)
_KEYWORDS = ("SELECT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "HAVING", "JOIN", "LIMIT", "UNION", "WITH", "ON")


@dataclass
class Translation:
    """The DuckDB statement the local engine runs for one Athena statement."""

    athena_sql: str
    duckdb_sql: str
    rewrites: list[str] = field(default_factory=list)  # which Athena semantics were applied
    typed: bool = True  # False: the tree could not be typed, type-dependent rewrites were skipped


# --------------------------------------------------------------------------------------------
# Positions.
# --------------------------------------------------------------------------------------------


def _position(sql: str, offset: int) -> tuple[int, int]:
    line = sql.count("\n", 0, offset) + 1
    column = offset - (sql.rfind("\n", 0, offset) + 1) + 1
    return line, column


def _at(sql: str, token: Token) -> tuple[int, int]:
    return _position(sql, token.start)


def _unterminated(sql: str) -> tuple[int, int, str] | None:
    """Where a quote opens that never closes (sqlglot's tokenizer says only that it failed)."""
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if ch == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                return (*_position(sql, i), "comment opened here is never closed (*/)")
            i = end + 2
            continue
        if ch in "'\"":
            j = i + 1
            while True:
                j = sql.find(ch, j)
                if j < 0:
                    kind = "string literal" if ch == "'" else "quoted identifier"
                    return (*_position(sql, i), f"{kind} opened here is never closed ({ch})")
                if sql.startswith(ch * 2, j):
                    j += 2
                    continue
                break
            i = j + 1
            continue
        i += 1
    return None


# --------------------------------------------------------------------------------------------
# 1. Parse, and refuse what Athena would refuse.
# --------------------------------------------------------------------------------------------


def tokenize(sql: str) -> list[Token]:
    try:
        return sqlglot.tokenize(sql, read=READ)
    except TokenError as exc:
        where = _unterminated(sql)
        if where:
            line, column, detail = where
            raise QuerySyntaxError(detail, sql, line, column) from None
        raise QuerySyntaxError(str(exc), sql, None, None) from None


def _syntax_hint(sql: str, tokens: list[Token], line: int, column: int, highlight: str) -> str:
    """'unexpected X', and the keyword the analyst probably meant when the word before it is a typo."""
    detail = f"unexpected {highlight!r}" if highlight else "incomplete statement"
    offset = next((t.start for t in tokens if _at(sql, t) == (line, column)), None)
    before = [t for t in tokens if offset is not None and t.end < offset]
    if before and before[-1].token_type == TokenType.VAR:
        word = before[-1].text.upper()
        close = difflib.get_close_matches(word, _KEYWORDS, n=1, cutoff=0.6)
        if close and close[0] != word:
            detail += f" after {before[-1].text}: did you mean {close[0]}?"
    return detail + " (Athena SQL)"


def parse(sql: str) -> exp.Expression:
    """The one Athena statement in `sql`, or a QueryError saying where and why it is not one."""
    tokens = tokenize(sql)
    try:
        statements = [s for s in sqlglot.parse(sql, read=READ, error_level=ErrorLevel.RAISE) if s is not None]
    except ParseError as exc:
        error = exc.errors[0] if exc.errors else {}
        line, end_column = error.get("line"), error.get("col")
        highlight = error.get("highlight") or ""
        column = max(end_column - len(highlight) + 1, 1) if line and end_column else None
        if line and column:
            detail = _syntax_hint(sql, tokens, line, column, highlight)
            description = error.get("description") or ""
            if description.startswith("Required keyword"):
                detail = f"incomplete {highlight or 'clause'}: something is missing after it (Athena SQL)"
            raise QuerySyntaxError(detail, sql, line, column) from None
        raise QuerySyntaxError(str(exc).splitlines()[0], sql, None, None) from None
    if len(statements) != 1:
        raise QueryError(f"one statement per query (as in Athena), got {len(statements)}")
    statement = statements[0]
    _refuse_non_athena(sql, tokens, statement)
    _refuse_unknown_functions(sql, tokens, statement)
    return statement


# DuckDB/PostgreSQL syntax sqlglot's athena reader accepts, refused by token: (type, text) -> hint.
_NON_ATHENA_TOKENS: dict[TokenType, str] = {
    TokenType.DCOLON: "Athena has no '::' cast: write CAST(x AS type)",
    TokenType.ILIKE: "Athena has no ILIKE: write lower(x) LIKE lower('pattern')",
    TokenType.L_BRACE: "Athena has no {...} struct literal: write CAST(ROW(...) AS ROW(name type, ...))",
    TokenType.DPIPE_SLASH: "Athena has no '||/' operator: write cbrt(x)",
}


def _refuse(sql: str, token: Token, detail: str) -> None:
    line, column = _at(sql, token)
    raise QuerySyntaxError(detail, sql, line, column)


def _refuse_non_athena(sql: str, tokens: list[Token], statement: exp.Expression) -> None:
    for i, token in enumerate(tokens):
        previous = tokens[i - 1] if i else None
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if token.token_type in _NON_ATHENA_TOKENS:
            _refuse(sql, token, _NON_ATHENA_TOKENS[token.token_type])
        if token.token_type == TokenType.EQ and token.text == "==":
            _refuse(sql, token, "Athena compares with '=', not '=='")
        if token.token_type in (TokenType.VAR, TokenType.PARAMETER) and token.text.startswith("$"):
            _refuse(sql, token, "Athena has no $n parameters in a query: write the value")
        if token.token_type == TokenType.L_BRACKET and (
            previous is None
            or previous.token_type in (TokenType.COMMA, TokenType.L_PAREN, TokenType.SELECT, TokenType.EQ)
            or previous.token_type in (TokenType.IN, TokenType.AND, TokenType.OR)
        ):
            _refuse(sql, token, "Athena writes an array as ARRAY[1, 2], not [1, 2]")
        if token.token_type == TokenType.COMMA and following is not None and following.token_type == TokenType.FROM:
            _refuse(sql, token, "a comma before FROM: Athena does not allow a trailing comma in the select list")
        if (
            token.token_type == TokenType.OFFSET
            and previous is not None
            and any(t.token_type == TokenType.LIMIT for t in tokens[max(i - 4, 0) : i])
        ):
            _refuse(sql, token, "Athena writes OFFSET before LIMIT: ... OFFSET 5 LIMIT 10")
        if (
            token.token_type == TokenType.PERCENT
            and previous is not None
            and previous.token_type == TokenType.NUMBER
            and (any(t.token_type in (TokenType.LIMIT, TokenType.USING) for t in tokens[max(i - 4, 0) : i]))
        ):
            _refuse(sql, token, "Athena has no LIMIT n% or USING SAMPLE: write TABLESAMPLE BERNOULLI (10)")
        if (
            token.token_type == TokenType.VAR
            and token.text.upper() == "SAMPLE"
            and previous is not None
            and previous.text.upper() == "USING"
        ):
            _refuse(sql, token, "Athena has no USING SAMPLE: write TABLESAMPLE BERNOULLI (10)")
    if tokens and tokens[0].token_type == TokenType.FROM:
        _refuse(sql, tokens[0], "Athena statements start with SELECT or WITH, not FROM")
    for star in statement.find_all(exp.Star):
        for key, word in (("except_", "EXCLUDE"), ("except", "EXCLUDE"), ("replace", "REPLACE"), ("rename", "RENAME")):
            if star.args.get(key):
                token = next((t for t in tokens if t.text.upper() in (word, "EXCEPT")), tokens[0])
                _refuse(sql, token, f"Athena has no SELECT * {word} (...): list the columns you want")
    for group in statement.find_all(exp.Group):
        if group.args.get("all") and not group.expressions:
            token = next((t for t in tokens if t.token_type == TokenType.ALL), tokens[0])
            _refuse(
                sql, token, "Athena has no GROUP BY ALL: list the grouped columns (or their positions: GROUP BY 1, 2)"
            )


def _table_function_names(statement: exp.Expression) -> set[str]:
    names = set()
    for table in statement.find_all(exp.Table):
        if isinstance(table.this, exp.Func):
            node = table.this
            names.add((node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower())
    return names


def _refuse_unknown_functions(sql: str, tokens: list[Token], statement: exp.Expression) -> None:
    """A call to a function Athena lacks answers locally, then fails in Athena: refuse it here.

    Table functions in FROM are left to the local engine's sandbox (it reads only the lake).
    """
    aliases = {a.name.lower() for a in statement.find_all(exp.TableAlias)}
    aliases |= {c.alias.lower() for c in statement.find_all(exp.CTE)}
    table_functions = _table_function_names(statement)
    for i, token in enumerate(tokens[:-1]):
        if tokens[i + 1].token_type != TokenType.L_PAREN or token.token_type in (
            TokenType.IDENTIFIER,
            TokenType.STRING,
        ):
            continue
        name = token.text.lower()
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name) or name in _NOT_CALLS or name in ATHENA_FUNCTIONS:
            continue
        previous = tokens[i - 1] if i else None
        if previous is not None and previous.token_type in (TokenType.ALIAS, TokenType.R_PAREN, TokenType.DOT):
            continue
        if name in aliases or name in table_functions:
            continue
        spelling = ATHENA_SPELLING.get(name)
        close = difflib.get_close_matches(name, sorted(ATHENA_FUNCTIONS), n=1, cutoff=0.75)
        hint = f"; in Athena: {spelling}" if spelling else (f"; did you mean {close[0]}?" if close else "")
        line, column = _at(sql, token)
        raise QueryFailedError(f"Athena has no function {token.text}{hint}", sql, line, column)


def referenced_tables(statement: exp.Expression) -> list[tuple[str, ...]]:
    """The lake tables a statement reads, as (catalog, database, name) parts present (lower case)."""
    ctes = {c.alias.lower() for c in statement.find_all(exp.CTE)}
    found = []
    for table in statement.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue  # a table function or UNNEST
        parts = tuple(p.lower() for p in (table.catalog, table.db, table.name) if p)
        if len(parts) == 1 and parts[0] in ctes:
            continue
        found.append(parts)
    return found


# --------------------------------------------------------------------------------------------
# 2. Translate to DuckDB.
# --------------------------------------------------------------------------------------------

_INTEGER_TYPES = {
    exp.DataType.Type.TINYINT: 3,
    exp.DataType.Type.SMALLINT: 5,
    exp.DataType.Type.INT: 10,
    exp.DataType.Type.BIGINT: 19,
}


def _decimal_shape(node: exp.Expression) -> tuple[int, int] | None:
    """(precision, scale) Trino gives this operand in decimal arithmetic, or None if not exact."""
    if isinstance(node, exp.Literal) and not node.is_string:
        text = node.this
        if re.fullmatch(r"\d+", text):
            return max(len(text), 1), 0
        match = re.fullmatch(r"(\d*)\.(\d+)", text)
        if match:  # Trino reads 2.5 as DECIMAL(2, 1), not as a double
            return max(len(match.group(1).lstrip("0")) + len(match.group(2)), 1), len(match.group(2))
        return None
    if isinstance(node, exp.Paren):
        return _decimal_shape(node.this)
    kind = node.type
    if kind is None:
        return None
    if kind.this in _INTEGER_TYPES:
        return _INTEGER_TYPES[kind.this], 0
    if kind.this == exp.DataType.Type.DECIMAL:
        params = [p.this.this if isinstance(p.this, exp.Literal) else p.name for p in kind.expressions]
        if not params:
            return None  # a decimal of unknown scale (sqlglot could not derive it): leave it to DuckDB
        try:
            return (int(params[0]), int(params[1])) if len(params) == 2 else (int(params[0]), 0)
        except (TypeError, ValueError):
            return None
    return None


def _is_integer(node: exp.Expression) -> bool:
    if isinstance(node, exp.Paren):
        return _is_integer(node.this)
    if isinstance(node, exp.Literal) and not node.is_string:
        return bool(re.fullmatch(r"\d+", node.this))
    return node.type is not None and node.type.this in _INTEGER_TYPES


def _is_decimal(node: exp.Expression) -> bool:
    if isinstance(node, exp.Paren):
        return _is_decimal(node.this)
    if isinstance(node, exp.Literal) and not node.is_string:
        return bool(re.fullmatch(r"\d*\.\d+", node.this))
    return node.type is not None and node.type.this == exp.DataType.Type.DECIMAL


def _decimal(precision: int, scale: int) -> exp.DataType:
    return exp.DataType.build(f"DECIMAL({min(max(precision, 1), 38)}, {min(scale, 38)})")


def _divide(node: exp.Div, applied: list[str]) -> exp.Expression | None:
    left, right = node.left, node.right
    if _is_integer(left) and _is_integer(right):
        applied.append("integer division truncates")
        return exp.IntDiv(this=left.copy(), expression=right.copy())
    if (
        (_is_decimal(left) or _is_decimal(right))
        and (_is_decimal(left) or _is_integer(left))
        and (_is_decimal(right) or _is_integer(right))
    ):
        a, b = _decimal_shape(left), _decimal_shape(right)
        if a and b:
            (p1, s1), (_, s2) = a, b
            scale = max(s1, s2)
            precision = p1 + s2 + max(s2 - s1, 0)
            applied.append("decimal division keeps Athena's scale")
            return exp.cast(exp.Div(this=left.copy(), expression=right.copy()), _decimal(precision, scale))
    return None


def _average(node: exp.Avg, applied: list[str]) -> exp.Expression | None:
    shape = _decimal_shape(node.this) if _is_decimal(node.this) else None
    if shape:
        applied.append("avg(decimal) is a decimal")
        return exp.cast(node.copy(), _decimal(*shape))
    return None


def _sum(node: exp.Sum, applied: list[str]) -> exp.Expression | None:
    if _is_integer(node.this) and not isinstance(node.parent, exp.Window):
        applied.append("sum(integer) is a bigint")
        return exp.cast(node.copy(), exp.DataType.build("BIGINT"))
    return None


def _approx_percentile(node: exp.ApproxQuantile, applied: list[str]) -> exp.Expression | None:
    if node.args.get("accuracy") is not None or node.args.get("weight") is not None:
        return None  # sqlglot refuses to translate those arguments: the error names them
    applied.append("approx_percentile keeps its argument's type")
    return exp.Anonymous(this="approx_quantile", expressions=[node.this.copy(), node.args["quantile"].copy()])


def _approx_distinct(node: exp.ApproxDistinct, applied: list[str]) -> exp.Expression | None:
    """Counted exactly: DuckDB's HyperLogLog was 5% off at 150 distinct values (Athena's estimator has
    a 2.3% standard error), and on the local stack's data an exact count costs nothing."""
    if node.args.get("accuracy") is not None:
        return None  # approx_distinct(x, e): refused with the function's name
    applied.append("approx_distinct counted exactly")
    return exp.Count(this=exp.Distinct(expressions=[node.this.copy()]))


def _date_diff(node: exp.DateDiff, applied: list[str]) -> exp.Expression:
    applied.append("date_diff counts whole units")
    unit = node.args.get("unit")
    unit_text = (unit.name if unit is not None else "day").lower()
    # sqlglot: DateDiff(this=end, expression=start); DuckDB date_sub(part, start, end) counts whole parts.
    return exp.Anonymous(
        this="date_sub", expressions=[exp.Literal.string(unit_text), node.expression.copy(), node.this.copy()]
    )


def _wall_clock(node: exp.Expression, applied: list[str]) -> exp.Expression:
    applied.append("AT TIME ZONE gives the zone's wall clock")
    if isinstance(node, exp.AtTimeZone):
        value, zone = node.this, node.args["zone"]
    else:
        value, zone = node.expressions[0], node.expressions[1]
    return exp.Anonymous(
        this="timezone", expressions=[zone.copy(), exp.cast(value.copy(), exp.DataType.build("TIMESTAMPTZ"))]
    )


def _json_scalar(node: exp.JSONExtractScalar, applied: list[str]) -> exp.Expression:
    applied.append("json_extract_scalar is NULL for objects, arrays and non-JSON text")
    value, path = node.this, node.expression
    path_sql = path if isinstance(path, exp.Literal) else exp.Literal.string(path.sql(dialect=READ).strip("'"))
    kind = exp.Anonymous(this="json_type", expressions=[value.copy(), path_sql.copy()])
    condition = exp.and_(
        exp.Anonymous(this="json_valid", expressions=[value.copy()]),
        exp.not_(exp.In(this=kind, expressions=[exp.Literal.string("OBJECT"), exp.Literal.string("ARRAY")])),
    )
    extract = exp.Anonymous(this="json_extract_string", expressions=[value.copy(), path_sql.copy()])
    return exp.Case(ifs=[exp.If(this=condition, true=extract)])


def _regexp_extract(node: exp.RegexpExtract, applied: list[str]) -> exp.Expression:
    applied.append("regexp_extract is NULL without a match")
    matches = exp.RegexpLike(this=node.this.copy(), expression=node.expression.copy())
    return exp.Case(ifs=[exp.If(this=matches, true=node.copy())])


def _regexp_replace(node: exp.RegexpReplace, applied: list[str]) -> exp.Expression | None:
    replacement = node.args.get("replacement")
    if isinstance(replacement, exp.Literal) and replacement.is_string and "$" in replacement.this:
        applied.append("regexp_replace: $n is group n")
        text = re.sub(r"(?<!\\)\$(\d)", r"\\\1", replacement.this).replace("\\$", "$")
        node = node.copy()
        node.set("replacement", exp.Literal.string(text))
        return node
    return None


_TEXT = {exp.DataType.Type.VARCHAR, exp.DataType.Type.TEXT, exp.DataType.Type.CHAR, exp.DataType.Type.NCHAR}
_TEMPORAL = {
    exp.DataType.Type.DATE,
    exp.DataType.Type.TIMESTAMP,
    exp.DataType.Type.TIMESTAMPTZ,
    exp.DataType.Type.DATETIME,
}


def _kind(node: exp.Expression):
    if isinstance(node, exp.Literal):
        return exp.DataType.Type.VARCHAR if node.is_string else None
    return node.type.this if node.type is not None else None


def _refuse_text_vs_time(statement: exp.Expression, athena_sql: str) -> None:
    """Athena refuses `varchar = date`; DuckDB casts silently. `dt` is a string: say so."""
    comparisons = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
    for node in statement.find_all(*comparisons, exp.Between, exp.In):
        if isinstance(node, exp.Between):
            pairs = [(node.this, node.args.get("low")), (node.this, node.args.get("high"))]
        elif isinstance(node, exp.In):
            pairs = [(node.this, e) for e in node.expressions]
        else:
            pairs = [(node.left, node.right)]
        for a, b in pairs:
            if b is None:
                continue
            kinds = {_kind(a), _kind(b)}
            if kinds & _TEXT and kinds & _TEMPORAL:
                text_side = a if _kind(a) in _TEXT else b
                name = text_side.name if isinstance(text_side, exp.Column) else text_side.sql(dialect=READ)
                hint = (
                    f"{name} is a string (YYYY-MM-DD): compare it with a string, e.g. {name} >= '2024-03-01'"
                    if name == "dt"
                    else f"cast one side: CAST({name} AS date) or date_format(...)"
                )
                raise QueryFailedError(
                    f"Athena cannot compare varchar with {min(k.value.lower() for k in kinds & _TEMPORAL)} "
                    f"({node.sql(dialect=READ)}): {hint}",
                    athena_sql,
                )


def _name_unnamed_columns(statement: exp.Expression) -> None:
    """Athena names an unnamed result column _col<position>; DuckDB would name it by its text."""
    select = statement
    while isinstance(select, (exp.Subquery, exp.Paren)):
        select = select.this
    if isinstance(select, exp.SetOperation):
        select = select.left
        while isinstance(select, (exp.Subquery, exp.Paren)):
            select = select.this
    if not isinstance(select, exp.Select):
        return
    named = []
    for index, column in enumerate(select.expressions):
        if isinstance(column, (exp.Alias, exp.Column, exp.Star)) or (isinstance(column, exp.Dot)):
            named.append(column)
        else:
            named.append(exp.alias_(column, f"_col{index}", quoted=True))
    select.set("expressions", named)


def _schema(tables: dict[str, list[tuple[str, str]]]) -> dict:
    return {name: {column: glue_type for column, glue_type in columns} for name, columns in tables.items()}


def _typed_copy(statement: exp.Expression, tables, catalog: str, database: str) -> exp.Expression | None:
    from sqlglot.optimizer.annotate_types import annotate_types
    from sqlglot.optimizer.qualify import qualify

    schema = {catalog: {database: _schema(tables)}} if tables else None
    try:
        tree = qualify(
            statement.copy(),
            schema=schema,
            catalog=catalog,
            db=database,
            dialect=READ,
            validate_qualify_columns=False,
            expand_stars=False,
            quote_identifiers=True,
            identify=True,
        )
        return annotate_types(tree, schema=schema, dialect=READ)
    except (OptimizeError, SchemaError, KeyError, ValueError, TypeError, AttributeError):
        return None


def _count_if(node: exp.CountIf, applied: list[str]) -> exp.Expression:
    applied.append("count_if of no rows is 0")
    return exp.Coalesce(this=node.copy(), expressions=[exp.Literal.number(0)])


_REWRITES = (
    (exp.Div, _divide),
    (exp.Avg, _average),
    (exp.Sum, _sum),
    (exp.ApproxQuantile, _approx_percentile),
    (exp.ApproxDistinct, _approx_distinct),
    (exp.DateDiff, _date_diff),
    (exp.JSONExtractScalar, _json_scalar),
    (exp.RegexpExtract, _regexp_extract),
    (exp.RegexpReplace, _regexp_replace),
    (exp.CountIf, _count_if),
)


def _rewrite(tree: exp.Expression, applied: list[str]) -> exp.Expression:
    """Apply `_REWRITES` bottom-up: a node is rewritten after its operands, so nested constructs
    (a division inside a sum, a zoned timestamp inside date_diff) are all translated."""

    def rewritten(node: exp.Expression) -> exp.Expression | None:
        if isinstance(node, exp.AtTimeZone) or (isinstance(node, exp.Anonymous) and node.name.lower() == "at_timezone"):
            return _wall_clock(node, applied)
        for kind, rewrite in _REWRITES:
            if type(node) is kind:
                return rewrite(node, applied)
        return None

    for node in reversed(list(tree.walk(bfs=False))):
        new = rewritten(node)
        if new is None or new is node:
            continue
        if new.type is None or new.type.this == exp.DataType.Type.UNKNOWN:
            new.type = new.to if isinstance(new, exp.Cast) else node.type
        if node is tree:
            tree = new
        else:
            node.replace(new)
    return tree


def to_duckdb(
    statement: exp.Expression,
    athena_sql: str,
    tables: dict[str, list[tuple[str, str]]],
    *,
    catalog: str,
    database: str,
) -> Translation:
    """The DuckDB statement that answers `statement` as Athena would.

    Args:
        statement: the parsed Athena statement (`parse`).
        athena_sql: its text, for error positions.
        tables: the columns (name, Glue type) of every table the statement may read, by name.
        catalog, database: where the local engine defines those tables.
    """
    statement = statement.copy()
    _name_unnamed_columns(statement)
    typed = _typed_copy(statement, tables, catalog, database)
    tree = typed if typed is not None else statement.copy()
    if typed is not None:
        _refuse_text_vs_time(tree, athena_sql)
    applied: list[str] = []
    tree = _rewrite(tree, applied)
    try:
        duckdb_sql = tree.sql(dialect=WRITE, unsupported_level=ErrorLevel.RAISE, pretty=True)
    except UnsupportedError as exc:
        raise QueryFailedError(
            f"cannot translate this Athena SQL for the local engine: {str(exc).splitlines()[0]} "
            "(DuckDB has no equivalent); run it with --engine athena",
            athena_sql,
        ) from None
    except SqlglotError as exc:  # a translation bug: say so, never a traceback
        raise QueryFailedError(
            f"cannot translate this Athena SQL for the local engine ({str(exc).splitlines()[0]}); "
            "run it with --engine athena",
            athena_sql,
        ) from None
    return Translation(athena_sql, duckdb_sql, sorted(set(applied)), typed is not None)


def locate(sql: str, word: str) -> tuple[int | None, int | None]:
    """Line and column of the first token spelling `word` (any case, quoted or not)."""
    try:
        tokens = sqlglot.tokenize(sql, read=READ)
    except TokenError:
        return None, None
    for token in tokens:
        if token.text.lower() == word.lower() and token.token_type != TokenType.STRING:
            return _at(sql, token)
    return None, None


def untranslatable_function(name: str) -> bool:
    """A function DuckDB lacks but Athena has: the translation's gap, not the analyst's mistake."""
    return name.lower() in ATHENA_FUNCTIONS
