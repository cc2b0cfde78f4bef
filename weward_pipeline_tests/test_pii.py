"""Personal data: keyed pseudonyms (stable, keyed, never reversible by dictionary), dropped and
generalized columns, and what Glue, the manifest and Parquet say about them."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import hmac
import io
import json
import pickle

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weward_pipeline import pii
from weward_pipeline.config import ConfigError
from weward_pipeline.devstack import sample_data
from weward_pipeline.export import export_day
from weward_pipeline.glue import GlueCatalog
from weward_pipeline.secret_store import PiiKey, load_pii_key, scrub
from weward_pipeline.typemap import map_column
from weward_pipeline.verify import published_manifest, verify_published_day
from weward_pipeline_tests.conftest import make_catalog, make_settings
from weward_pipeline_tests.lake_reader import glue_column_types, read_table

KEY = "test-pii-key-0123456789-abcdefghijklmnopqrstuvwxyz"
OTHER_KEY = "another-pii-key-0123456789-abcdefghijklmnopqrstuvw"


def reference_hmac(key: str, text: str | bytes) -> str:
    message = text.encode() if isinstance(text, str) else text
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def pseudonymizer(key: str = KEY) -> pii.Pseudonymizer:
    return pii.Pseudonymizer(PiiKey(key.encode(), "test"))


# -- properties of the pseudonym ------------------------------------------------------------------

texts = st.lists(st.one_of(st.none(), st.text(max_size=40)), max_size=60)
keys = st.text(alphabet=st.characters(codec="utf-8"), min_size=32, max_size=120)


@given(values=texts, key=keys)
@settings(max_examples=150, deadline=None)
def test_text_pseudonym_is_standard_hmac_sha256_of_the_utf8_value(values, key):
    result = pseudonymizer(key).array(pa.array(values, pa.string())).to_pylist()
    assert result == [None if v is None else reference_hmac(key, v) for v in values]


@given(values=st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), max_size=60))
@settings(max_examples=100, deadline=None)
def test_integer_pseudonym_hashes_the_decimal_text_postgresql_prints(values):
    result = pseudonymizer().array(pa.array(values, pa.int64())).to_pylist()
    assert result == [None if v is None else reference_hmac(KEY, str(v)) for v in values]
    # the same id stored as int4 elsewhere, or typed in by an operator, gives the same pseudonym
    small = [v for v in values if v is not None and -(2**31) <= v < 2**31]
    assert pseudonymizer().array(pa.array(small, pa.int32())).to_pylist() == [
        pseudonymizer().value(str(v)) for v in small
    ]


@given(values=texts, cut=st.integers(0, 60))
@settings(max_examples=100, deadline=None)
def test_pseudonyms_are_stable_across_batches_and_runs(values, cut):
    """Day after day (new process, new batches) a value gets the same pseudonym: analysts can join."""
    whole = pseudonymizer().array(pa.array(values, pa.string())).to_pylist()
    first, second = values[:cut], values[cut:]
    split = (
        pseudonymizer().array(pa.array(first, pa.string())).to_pylist()
        + pseudonymizer().array(pa.array(second, pa.string())).to_pylist()
    )
    chunked = (
        pseudonymizer()
        .array(pa.chunked_array([pa.array(first, pa.string()), pa.array(second, pa.string())], type=pa.string()))
        .to_pylist()
    )
    assert whole == split == chunked


@given(values=st.lists(st.text(max_size=20), min_size=1, max_size=40, unique=True))
@settings(max_examples=100, deadline=None)
def test_pseudonyms_depend_on_the_key_and_are_not_plain_hashes(values):
    """Without the key, hashing candidate values (a dictionary attack) finds nothing."""
    with_key = pseudonymizer(KEY).array(pa.array(values)).to_pylist()
    other_key = pseudonymizer(OTHER_KEY).array(pa.array(values)).to_pylist()
    plain = {hashlib.sha256(v.encode()).hexdigest() for v in values} | {
        hashlib.md5(v.encode()).hexdigest() for v in values
    }
    assert all(a != b for a, b in zip(with_key, other_key))
    assert not plain & set(with_key)
    assert len(set(with_key)) == len(values)  # distinct values stay distinct (count distinct works)


@given(
    emails=st.lists(st.emails(), min_size=1, max_size=30),
    phones=st.lists(st.from_regex(r"\+33 6 [0-9]{8}", fullmatch=True), min_size=1, max_size=30),
    births=st.lists(st.dates(dt.date(1920, 1, 1), dt.date(2010, 12, 31)), min_size=1, max_size=30),
)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_no_raw_value_or_key_reaches_the_parquet_bytes(emails, phones, births):
    n = min(len(emails), len(phones), len(births))
    table = make_catalog(
        {
            "name": "people",
            "mode": "snapshot",
            "primary_key": ["id"],
            "pii": {"email": "hash", "phone": "drop", "birth_date": "generalize_year"},
        }
    ).tables[0]
    columns = [
        map_column(name="id", pg_type="bigint", base_type="int8", typmod=-1, is_array=False, nullable=False),
        map_column(name="email", pg_type="text", base_type="text", typmod=-1, is_array=False, nullable=False),
        map_column(name="phone", pg_type="text", base_type="text", typmod=-1, is_array=False, nullable=True),
        map_column(name="birth_date", pg_type="date", base_type="date", typmod=-1, is_array=False, nullable=True),
    ]
    key = PiiKey(KEY.encode(), "test")
    plan = pii.plan(table, columns, key)
    assert [c.name for c in plan.read_columns] == ["id", "email", "birth_date"]
    batch = pa.RecordBatch.from_pydict(
        {"id": list(range(n)), "email": emails[:n], "birth_date": births[:n]},
        schema=pa.schema([(c.name, c.arrow_type) for c in plan.read_columns]),
    )
    out = io.BytesIO()
    # Uncompressed, dictionary off: a raw value written anywhere would show up as its bytes.
    with pq.ParquetWriter(out, plan.arrow_schema, compression="none", use_dictionary=False) as writer:
        writer.write_batch(plan.apply(batch))
    data = out.getvalue()
    for value in emails[:n] + phones[:n]:
        assert value.encode() not in data
    assert KEY.encode() not in data
    back = pq.read_table(io.BytesIO(data))
    assert back.column_names == ["id", "email", "birth_date"]
    assert back.column("email").to_pylist() == [reference_hmac(KEY, e) for e in emails[:n]]
    assert back.column("birth_date").to_pylist() == [b.year for b in births[:n]]
    assert back.schema.field("email").metadata[b"weward.pii"] == b"hash"


def test_policies_that_do_not_fit_the_column_type_name_table_column_and_fix():
    table = make_catalog(
        {
            "name": "t",
            "mode": "snapshot",
            "primary_key": ["id"],
            "pii": {"flag": "hash", "nick": "generalize_year", "tags": "hash"},
        }
    ).tables[0]
    columns = [
        map_column(name="id", pg_type="bigint", base_type="int8", typmod=-1, is_array=False, nullable=False),
        map_column(name="flag", pg_type="boolean", base_type="bool", typmod=-1, is_array=False, nullable=True),
        map_column(name="nick", pg_type="text", base_type="text", typmod=-1, is_array=False, nullable=True),
        map_column(name="tags", pg_type="text[]", base_type="text", typmod=-1, is_array=True, nullable=True),
    ]
    with pytest.raises(ConfigError) as error:
        pii.plan(table, columns, PiiKey(KEY.encode(), "test"))
    message = str(error.value)
    assert "table t: column 'flag' is boolean" in message and "Use `drop`" in message
    assert "column 'nick' is text; `generalize_year` applies to date and timestamp" in message
    assert "column 'tags' is text[]" in message


# -- the catalog ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {"pii": {"email": None}},
            "personal column 'email' has no policy; write one of keep, hash, drop, generalize_year",
        ),
        (
            {"pii": {"email": "encrypt"}},
            "`pii` policy for 'email' must be one of keep, hash, drop, generalize_year, got 'encrypt'",
        ),
        ({"pii": ["email"]}, "`pii` must map column names to a policy"),
        ({"pii": {"id": "hash"}}, "primary key column 'id' cannot be `hash`"),
        (
            {"user_column": "user_id"},
            "user_column 'user_id' identifies a person, so it is personal data: list it under `pii`",
        ),
        ({"user_column": "user_id", "pii": {"user_id": "drop"}}, "user_column 'user_id' cannot be `drop`"),
        ({"pii": {'x"; DROP TABLE users; --' * 4: "keep"}}, "is not a valid PostgreSQL identifier"),
    ],
)
def test_catalog_pii_errors_name_the_table_the_column_and_the_fix(entry, expected):
    with pytest.raises(ConfigError) as error:
        make_catalog({"name": "users", "mode": "snapshot", "primary_key": ["id"], **entry})
    assert "table 'users'" in str(error.value) and expected in str(error.value)


def test_keep_is_an_explicit_choice_and_hash_of_the_user_column_is_allowed():
    catalog = make_catalog(
        {
            "name": "events",
            "mode": "append",
            "partition_column": "at",
            "primary_key": ["id"],
            "user_column": "user_id",
            "pii": {"user_id": "hash", "ip": "keep"},
        }
    )
    table = catalog.tables[0]
    assert table.pii == {"user_id": "hash", "ip": "keep"} and pii.needs_key(table)
    assert pii.describe_policies(table)["weward.pii.keep"] == "ip"


def test_the_sample_catalog_declares_personal_columns_of_every_user_table():
    from weward_pipeline.config import load_catalog

    catalog = load_catalog()
    users = catalog.table("users")
    assert users.pii["email"] == "hash" and users.pii["phone"] == "drop"
    assert users.pii["first_name"] == "drop" and users.pii["birth_date"] == "generalize_year"
    assert users.user_column == "id"
    for name in ("step_events", "ward_transactions", "reward_purchases", "contest_participations"):
        assert catalog.table(name).user_column == "user_id"


# -- the key ------------------------------------------------------------------------------------------


def test_the_key_never_shows_in_repr_str_errors_or_pickles():
    key = PiiKey(KEY.encode(), "WEWARD_PII_KEY")
    for text in (repr(key), str(key), repr(pseudonymizer()), f"{key}"):
        assert KEY not in text and key.key_id in text or "Pseudonymizer" in text
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(TypeError):
        pickle.dumps(pseudonymizer())
    assert KEY not in key.key_id and len(key.key_id) == 16
    assert scrub(f"failed with key {KEY}", env={"WEWARD_PII_KEY": KEY}) == "failed with key ***"


def test_missing_or_short_key_is_a_clear_error():
    with pytest.raises(ConfigError, match="no PII key: set WEWARD_PII_KEY .* or WEWARD_PII_KEY_SECRET_ID"):
        load_pii_key({})
    with pytest.raises(ConfigError, match="at least 32") as error:
        load_pii_key({"WEWARD_PII_KEY": "short-key"})
    assert "short-key" not in str(error.value)


def test_key_from_secrets_manager(aws_server):
    import boto3

    client = boto3.client("secretsmanager", endpoint_url=aws_server.endpoint_url, region_name="eu-west-3")
    client.create_secret(Name="weward/test/pii-key", SecretString=OTHER_KEY)
    env = {**aws_server.env(), "WEWARD_PII_KEY_SECRET_ID": "weward/test/pii-key"}
    key = load_pii_key(env)
    assert key == PiiKey(OTHER_KEY.encode(), "x") and "Secrets Manager" in key.source
    with pytest.raises(ConfigError, match="cannot read the PII key from Secrets Manager secret 'weward/test/nope'"):
        load_pii_key({**env, "WEWARD_PII_KEY_SECRET_ID": "weward/test/nope"})


# -- end to end: PostgreSQL -> Parquet -> Glue ------------------------------------------------------------

USERS = {
    "name": "users",
    "mode": "snapshot",
    "primary_key": ["id"],
    "user_column": "id",
    "pii": {"id": "keep", "email": "hash", "phone": "drop", "first_name": "drop", "birth_date": "generalize_year"},
}
DAY = dt.date(2024, 4, 1)
AFTER_DAY = dt.datetime(2024, 4, 2, 1, 0, tzinfo=dt.UTC)


@pytest.fixture
def small_app(fresh_database):
    sample_data.load(fresh_database, end_date=DAY, size=sample_data.SampleSize(users=120, days=1))
    return fresh_database


def test_export_pseudonymizes_drops_and_generalizes_and_says_so(small_app, lake_env, clients, monkeypatch):
    monkeypatch.setenv("WEWARD_PII_KEY", KEY)
    settings = make_settings(lake_env, small_app)
    catalog = make_catalog(USERS)
    result = export_day(settings, catalog, catalog.tables[0], DAY, clients=clients, now=AFTER_DAY)

    glue = GlueCatalog(clients.glue, settings.glue_database)
    types = glue_column_types(glue, "users")
    assert "phone" not in types and "first_name" not in types
    assert types["email"] == "string" and types["birth_date"] == "int" and types["id"] == "bigint"
    glue_table = glue.get_table("users")
    params = glue_table["Parameters"]
    assert params["weward.pii.hash"] == "email" and params["weward.pii.drop"] == "first_name,phone"
    assert params["weward.pii.generalize_year"] == "birth_date" and params["weward.pii.algorithm"] == "HMAC-SHA256"
    assert params["weward.pii.key_id"] == PiiKey(KEY.encode(), "x").key_id
    assert "pseudonymized (HMAC-SHA256, keyed): email" in glue_table["Description"]
    assert "dropped (not exported): first_name, phone" in glue_table["Description"]
    comments = {c["Name"]: c.get("Comment", "") for c in glue_table["StorageDescriptor"]["Columns"]}
    assert "pseudonymized: HMAC-SHA256" in comments["email"] and "year only" in comments["birth_date"]

    with psycopg.connect(small_app) as conn:
        source = {row[0]: row[1:] for row in conn.execute("SELECT id, email, phone, first_name, birth_date FROM users")}
    lake_rows = read_table(glue, clients.filesystem, "users").to_pylist()
    assert len(lake_rows) == len(source) == result.rows
    for row in lake_rows:
        email, phone, first_name, birth = source[row["id"]]
        assert row["email"] == reference_hmac(KEY, email)
        assert row["birth_date"] == (birth.year if birth else None)
        assert "phone" not in row and "first_name" not in row

    _, manifest = published_manifest(glue, clients.s3, "users", DAY.isoformat())
    assert {c["name"]: c.get("pii") for c in manifest.columns}["email"] == "hash"
    assert manifest.extra["pii"]["weward.pii.drop"] == "first_name,phone"
    assert verify_published_day(glue, clients.s3, clients.filesystem, "users", DAY).passed()

    # Nothing personal or secret anywhere in what was written: decoded values, footers, manifest, Glue.
    raw = {v for _, (email, phone, first_name, _) in source.items() for v in (email, phone, first_name) if v}
    written = json.dumps(glue_table, default=str) + manifest.to_json()
    for obj in manifest.objects:
        parquet = pq.ParquetFile(clients.filesystem.open_input_file(f"{settings.lake.bucket}/{obj.key}"))
        written += json.dumps(parquet.read().to_pylist(), default=str)
        written += str(parquet.metadata.metadata) + str(parquet.schema_arrow)
    leaks = [value for value in raw if value in written]
    assert leaks == [] and KEY not in written


def test_missing_key_fails_before_postgres_or_s3_is_touched(lake_env, clients, monkeypatch):
    monkeypatch.delenv("WEWARD_PII_KEY", raising=False)
    monkeypatch.delenv("WEWARD_PII_KEY_SECRET_ID", raising=False)
    settings = make_settings(lake_env, "postgresql://nobody:pw@127.0.0.1:9/nowhere")  # nothing listens there
    catalog = make_catalog(USERS)
    with pytest.raises(ConfigError) as error:
        export_day(settings, catalog, catalog.tables[0], DAY, clients=clients, now=AFTER_DAY)
    assert "table users pseudonymizes email" in str(error.value) and "WEWARD_PII_KEY" in str(error.value)
    assert clients.s3.list_objects_v2(Bucket=settings.lake.bucket).get("KeyCount", 0) == 0
    assert clients.glue.get_databases()["DatabaseList"] == [] or all(
        d["Name"] != settings.glue_database for d in clients.glue.get_databases()["DatabaseList"]
    )


def test_a_different_key_is_refused_so_pseudonyms_keep_joining(small_app, lake_env, clients):
    settings = make_settings(lake_env, small_app)
    catalog = make_catalog(USERS)
    export_day(
        settings, catalog, catalog.tables[0], DAY, clients=clients, now=AFTER_DAY, pii_key=PiiKey(KEY.encode(), "test")
    )
    with pytest.raises(ConfigError, match="is not the key that pseudonymized the published days") as error:
        export_day(
            settings,
            catalog,
            catalog.tables[0],
            DAY,
            clients=clients,
            now=AFTER_DAY,
            pii_key=PiiKey(OTHER_KEY.encode(), "test"),
        )
    assert KEY not in str(error.value) and OTHER_KEY not in str(error.value)


def test_a_dropped_column_is_never_selected(small_app, lake_env, clients):
    """A role without SELECT on `phone` can still export users: the column is not even read."""
    with psycopg.connect(small_app, autocommit=True) as conn:
        role = f"no_phone_{small_app.rsplit('/', 1)[1]}"
        conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD 'pw-no-phone'")
        conn.execute(
            f"GRANT SELECT (id, public_id, email, birth_date, country, status, marketing_opt_in, "
            f'referral_code, preferences, devices, created_at, updated_at) ON users TO "{role}"'
        )
    url = small_app.replace(small_app.split("//", 1)[1].split("@", 1)[0], f"{role}:pw-no-phone")
    catalog = make_catalog({**USERS, "pii": {**USERS["pii"], "first_name": "drop"}})
    try:
        result = export_day(
            make_settings(lake_env, url),
            catalog,
            catalog.tables[0],
            DAY,
            clients=clients,
            now=AFTER_DAY,
            pii_key=PiiKey(KEY.encode(), "test"),
        )
        assert result.rows == 120
    finally:
        with psycopg.connect(small_app, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def test_hashing_a_numeric_user_column_matches_what_an_operator_recomputes(small_app, lake_env, clients):
    catalog = make_catalog(
        {
            "name": "ward_transactions",
            "mode": "append",
            "partition_column": "created_at",
            "primary_key": ["id"],
            "user_column": "user_id",
            "pii": {"user_id": "hash", "amount": "keep"},
        }
    )
    settings = make_settings(lake_env, small_app)
    export_day(settings, catalog, catalog.tables[0], DAY, clients=clients, pii_key=PiiKey(KEY.encode(), "t"))
    glue = GlueCatalog(clients.glue, settings.glue_database)
    rows = read_table(glue, clients.filesystem, "ward_transactions").to_pylist()
    with psycopg.connect(small_app) as conn:
        by_id = dict(conn.execute("SELECT id, user_id FROM ward_transactions").fetchall())
    assert rows and all(r["user_id"] == reference_hmac(KEY, str(by_id[r["id"]])) for r in rows)
    assert all(isinstance(r["amount"], decimal.Decimal) for r in rows)


def test_the_dagster_ui_says_which_columns_are_pseudonymized_dropped_or_generalized(small_app, lake_env, clients):
    import dagster as dg

    from weward_pipeline.defs.assets import export_metadata
    from weward_pipeline.defs.factory import build_definitions
    from weward_pipeline.defs.resources import LakeResource

    catalog = make_catalog(USERS)
    key = dg.AssetKey(["lake", "users"])
    asset = build_definitions(catalog).get_assets_def(key)
    metadata = asset.metadata_by_key[key]
    assert metadata["pii/pseudonymized"] == "email (HMAC-SHA256, keyed)"
    assert metadata["pii/dropped"] == "first_name, phone" and metadata["pii/year_only"] == "birth_date"
    assert metadata["pii/kept_personal"] == "id" and metadata["pii/user_column"] == "id"
    assert "Personal data - pseudonymized (HMAC-SHA256, keyed): email" in asset.descriptions_by_key[key]

    settings = make_settings(lake_env, small_app)
    result = export_day(
        settings, catalog, catalog.tables[0], DAY, clients=clients, now=AFTER_DAY, pii_key=PiiKey(KEY.encode(), "test")
    )
    resource = LakeResource(pg_url=small_app, lake_url=lake_env["WEWARD_LAKE_URL"])
    columns = {c.name: c for c in export_metadata(result, resource)["dagster/column_schema"].columns}
    assert columns["email"].tags == {"pii": "hash"} and "pseudonymized" in columns["email"].description
    assert columns["birth_date"].tags == {"pii": "generalize_year"} and columns["birth_date"].type == "int"
    assert "phone" not in columns and not columns["country"].tags


def test_columns_that_look_personal_but_have_no_policy_are_named():
    table = make_catalog({"name": "t", "mode": "snapshot", "primary_key": ["id"], "pii": {"email": "hash"}}).tables[0]
    columns = [
        map_column(name=n, pg_type="text", base_type="text", typmod=-1, is_array=False, nullable=True)
        for n in ("id", "email", "contact_phone", "home_address", "steps", "lastName")
    ]
    assert pii.unreviewed_personal_columns(table, columns) == ["contact_phone", "home_address", "lastName"]


def test_a_stricter_policy_warns_that_days_exported_before_keep_the_raw_values(small_app, lake_env, clients, caplog):
    settings = make_settings(lake_env, small_app)
    before = make_catalog({**USERS, "pii": {**USERS["pii"], "email": "keep", "phone": "keep"}})
    export_day(
        settings, before, before.tables[0], DAY, clients=clients, now=AFTER_DAY, pii_key=PiiKey(KEY.encode(), "t")
    )
    after = make_catalog(USERS)
    with caplog.at_level("WARNING", logger="weward_pipeline.export"):
        export_day(
            settings, after, after.tables[0], DAY, clients=clients, now=AFTER_DAY, pii_key=PiiKey(KEY.encode(), "t")
        )
    (warning,) = [r.getMessage() for r in caplog.records if "stricter pii policy" in r.getMessage()]
    assert "column(s) email, phone now have a stricter pii policy" in warning and "re-export those days" in warning
