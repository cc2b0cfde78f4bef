"""The Dagster layer: a thin shell over the plain-Python core (config, extract, lake, glue, verify)."""
