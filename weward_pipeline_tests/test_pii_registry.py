"""pii.POLICIES is the one place a personal-data policy is defined: the catalog, the export plan,
Glue and the Dagster UI all derive from it."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from weward_pipeline import pii
from weward_pipeline.config import ConfigError
from weward_pipeline.typemap import map_column
from weward_pipeline_tests.conftest import make_catalog

INITIAL = pii.Policy(
    "initial",
    accepts=frozenset({"string"}),
    refusal="`initial` applies to text columns. Use `drop` in its `pii` entry.",
    lake_type=(pa.string(), "string", "first letter"),
    glue_comment="first letter only",
    label="first letter only",
    ui_key="pii/initial_only",
    transform=lambda values, _: pc.utf8_slice_codeunits(values, 0, 1),
)
COLUMNS = [
    map_column(name="id", pg_type="bigint", base_type="int8", typmod=-1, is_array=False, nullable=False),
    map_column(name="first_name", pg_type="text", base_type="text", typmod=-1, is_array=False, nullable=True),
    map_column(name="born", pg_type="date", base_type="date", typmod=-1, is_array=False, nullable=True),
]


def test_every_policy_says_how_it_is_shown_and_protecting_ones_change_what_is_exported():
    assert list(pii.POLICIES) == ["keep", "hash", "drop", "generalize_year"]
    for policy in pii.POLICIES.values():
        assert policy.label and policy.ui_key.startswith("pii/")
        if policy.protects:
            assert not policy.exported or policy.transform is not None, policy.name
            assert not policy.allowed_on_primary_key, policy.name


def test_a_policy_added_to_the_registry_is_validated_planned_applied_and_described(monkeypatch):
    monkeypatch.setitem(pii.POLICIES, "initial", INITIAL)
    table = make_catalog(
        {"name": "people", "mode": "snapshot", "primary_key": ["id"], "pii": {"id": "keep", "first_name": "initial"}}
    ).tables[0]
    plan = pii.plan(table, COLUMNS)
    batch = pa.record_batch(
        [pa.array([1, 2]), pa.array(["Ada", None]), pa.array([None, None], pa.date32())],
        names=["id", "first_name", "born"],
    )
    assert plan.apply(batch).column("first_name").to_pylist() == ["A", None]
    (first_name,) = [c for c in plan.lake_columns if c.name == "first_name"]
    assert plan.glue_comment(first_name) == "text; first letter only" and first_name.note == "first letter of text"
    assert pii.describe_policies(table)["weward.pii.initial"] == "first_name"
    assert pii.ui_metadata(table)["pii/initial_only"] == "first_name"
    assert pii.description_note(table) == "Personal data - first letter only: first_name; personal, kept as is: id."
    assert pii.tightened_columns(
        {"Parameters": {}, "StorageDescriptor": {"Columns": [{"Name": "first_name"}]}}, table
    ) == ["first_name"]

    with pytest.raises(ConfigError, match="primary key column 'id' cannot be `initial`"):
        make_catalog({"name": "people", "mode": "snapshot", "primary_key": ["id"], "pii": {"id": "initial"}})
    with pytest.raises(
        ConfigError,
        match="user_column 'id' cannot be `initial`: erasure finds a user's rows by it. Use `keep` or `hash`",
    ):
        make_catalog(
            {"name": "people", "mode": "snapshot", "primary_key": ["k"], "user_column": "id", "pii": {"id": "initial"}}
        )
    born = make_catalog({"name": "people", "mode": "snapshot", "primary_key": ["id"], "pii": {"born": "initial"}})
    with pytest.raises(pii.PiiPolicyError, match="column 'born' is date; `initial` applies to text columns"):
        pii.plan(born.tables[0], COLUMNS)
