"""The asset lineage page in a real browser: Debian's chromium, driven by Playwright.

Opens the global asset graph of the running webserver, checks that every table is drawn as its
layers (postgres/<t> -> lake/<t> -> redaction/<t>) from left to right with the edges between them,
and saves a screenshot: the one the README shows (docs/lineage.png) when WEWARD_UPDATE_SCREENSHOT=1,
else under the test's tmp_path (so a test run does not rewrite a committed file).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from weward_pipeline.config import SAMPLE_CATALOG
from weward_pipeline_tests.dagster_ui import REPO_ROOT, DagsterProcesses

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = REPO_ROOT / "docs" / "lineage.png"
# Redaction is drawn for tables with retention_days; the shipped sample keeps everything, so the
# page shows it with retention on the three event tables.
RETENTION = {"step_events": 90, "ward_transactions": 365, "reward_purchases": 365}
PLACEHOLDER_ENV = {
    "WEWARD_PG_URL": "postgresql://weward_export@db.internal:5432/weward",
    "WEWARD_LAKE_URL": "s3://weward-lake/exports",
    "WEWARD_GLUE_DATABASE": "weward_lake",
    "AWS_REGION": "eu-west-3",
    "AWS_ENDPOINT_URL": "",  # production-like: the AWS console link is shown (a session's moto endpoint would hide it)
}

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"{CHROMIUM} is missing: run scripts/install-browser-deps.sh (apt-get install chromium) as root",
)


@pytest.fixture(scope="module")
def webserver():
    """The webserver alone (no daemon, no database: drawing the graph reads only the definitions)."""
    home = Path(tempfile.mkdtemp(prefix="weward-dagster-lineage-"))
    catalog = yaml.safe_load(SAMPLE_CATALOG.read_text())
    for table in catalog["tables"]:
        if table["name"] in RETENTION:
            table["retention_days"] = RETENTION[table["name"]]
    catalog_file = home / "tables.yaml"
    catalog_file.write_text(yaml.safe_dump(catalog, sort_keys=False))
    processes = DagsterProcesses(home, {**PLACEHOLDER_ENV, "WEWARD_TABLES_FILE": str(catalog_file)})
    try:
        processes.start(daemon=False)
        processes.wait_ready()
        processes.catalog = catalog
        yield processes
    finally:
        processes.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_the_lineage_page_draws_source_export_and_redaction_layers(webserver, tmp_path):
    from playwright.sync_api import sync_playwright

    tables = [t["name"] for t in webserver.catalog["tables"]]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1400})
            # The layers are groups (postgres, lake, redaction), drawn collapsed until opened: open them.
            expanded = ",".join(f"global@global:{group}" for group in ("postgres", "lake", "redaction"))
            page.goto(f"{webserver.url}/asset-groups?expanded={expanded}", wait_until="domcontentloaded")
            page.locator('[data-tooltip="step_events"]').first.wait_for(state="visible", timeout=90_000)
            page.wait_for_load_state("networkidle", timeout=60_000)
            # Room for the graph: fold the navigation, as a user does on a laptop screen.
            page.get_by_text("Hide navigation").click()
            page.get_by_placeholder("Jump to").locator("xpath=following::button[1]").click()  # asset list
            page.mouse.move(1450, 250)  # off the nodes: no hover highlight in the picture
            # Node details load after the graph: wait until no node says "Loading…".
            loading = page.get_by_text("Loading")
            for _ in range(120):
                if loading.count() == 0:
                    break
                page.wait_for_timeout(500)
            page.wait_for_timeout(800)  # the graph re-centres in an animation

            drawn: dict[str, list[float]] = {}
            for name in tables:
                nodes = page.locator(f'[data-tooltip="{name}"]')
                boxes = [nodes.nth(i).bounding_box() for i in range(nodes.count())]
                drawn[name] = sorted(box["x"] for box in boxes if box)
            for name in tables:
                layers = 3 if name in RETENTION else 2
                assert len(drawn[name]) == layers, f"{name}: {len(drawn[name])} nodes drawn, expected {layers}"
                # Left to right: postgres/<t>, then lake/<t>, then redaction/<t>, each in its own column.
                assert len(set(round(x) for x in drawn[name])) == layers, f"{name}: layers overlap {drawn[name]}"

            # The edges between the layers, and the kinds that say what each node is.
            edges = sum(3 - 1 if name in RETENTION else 1 for name in tables)
            assert page.locator("svg path").count() >= edges
            body = page.locator("body").inner_text()
            for kind in ("postgres", "glue", "parquet"):
                assert kind in body.lower(), f"kind tag {kind!r} not shown on the graph"

            screenshot = SCREENSHOT if os.environ.get("WEWARD_UPDATE_SCREENSHOT") == "1" else tmp_path / SCREENSHOT.name
            screenshot.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=False)
        finally:
            browser.close()
    assert screenshot.stat().st_size > 20_000


ASSET_NODES = """
query AssetNodes {
  assetNodes {
    assetKey { path }
    groupName
    kinds
    description
    isMaterializable
    owners { __typename ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    dependencyKeys { path }
    metadataEntries {
      label
      __typename
      ... on UrlMetadataEntry { url }
      ... on CodeReferencesMetadataEntry {
        codeReferences { __typename ... on LocalFileCodeReference { filePath lineNumber label } }
      }
    }
  }
}
"""


def test_the_asset_graph_carries_the_catalog_lineage_owners_and_where_to_look(webserver):
    nodes = {"/".join(n["assetKey"]["path"]): n for n in webserver.graphql(ASSET_NODES)["assetNodes"]}
    for table in webserver.catalog["tables"]:
        name = table["name"]
        source, export = nodes[f"postgres/{name}"], nodes[f"lake/{name}"]
        assert not source["isMaterializable"], "postgres/<t> is an external source"
        assert export["dependencyKeys"] == [{"path": ["postgres", name]}]
        assert set(export["kinds"]) == {"postgres", "s3", "parquet", "glue"}
        assert source["kinds"] == ["postgres"]
        # Grouped by layer: the sidebar shows only a key's last part, the group tells the three apart.
        assert (source["groupName"], export["groupName"]) == ("postgres", "lake")
        assert table["description"].strip() in export["description"]
        assert [o.get("team") for o in export["owners"]] == [o.removeprefix("team:") for o in table["owners"]]
        entries = {e["label"]: e for e in export["metadataEntries"]}
        assert entries["glue_console"]["url"].startswith("https://eu-west-3.console.aws.amazon.com/glue/")
        assert f"tables/view/{name}?database=weward_lake" in entries["glue_console"]["url"]
        references = entries["dagster/code_references"]["codeReferences"]
        catalog_entry = next(r for r in references if r["filePath"].endswith("tables.yaml"))
        lines = Path(catalog_entry["filePath"]).read_text().splitlines()
        assert f"name: {name}" in lines[catalog_entry["lineNumber"] - 1], "points at the table's catalog entry"
        assert any(r["filePath"].endswith("weward_pipeline/defs/assets.py") for r in references)
        if name in RETENTION:
            assert nodes[f"redaction/{name}"]["dependencyKeys"] == [{"path": ["lake", name]}]
            assert nodes[f"redaction/{name}"]["groupName"] == "redaction"
        else:
            assert f"redaction/{name}" not in nodes
