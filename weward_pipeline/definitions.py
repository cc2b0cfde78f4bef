"""The code location: every table of the catalog becomes a source, an export and its checks."""

import dagster as dg

from weward_pipeline.config import load_catalog
from weward_pipeline.defs.factory import build_definitions

defs: dg.Definitions = build_definitions(load_catalog())
