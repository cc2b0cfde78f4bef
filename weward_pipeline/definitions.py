"""The code location: every table of the catalog becomes a source, an export and its checks."""

import dagster as dg

from weward_pipeline.config import load_catalog
from weward_pipeline.defs import cli_errors
from weward_pipeline.defs.factory import build_definitions

cli_errors.install()  # `dagster asset materialize` with a catalog typo or a variable unset: one line
defs: dg.Definitions = build_definitions(load_catalog())
cli_errors.check_in_process_run()  # the CLI runs the run here: its DSN must be set (the service's planners hold none)
