from setuptools import find_packages, setup

# The Dagster family is released in lock-step: unpinned, pip resolves dagster-aws and
# dagster-postgres to 0.11 (2021), which import but break at run time.
DAGSTER = [
    "dagster==1.13.27",
    "dagster-webserver==1.13.27",
    "dagster-graphql==1.13.27",
    "dagster-aws==0.29.27",
    "dagster-postgres==0.29.27",
]

setup(
    name="weward_pipeline",
    version="0.1.0",
    description="Daily PostgreSQL -> Parquet on S3 export, registered in AWS Glue, orchestrated by Dagster",
    packages=find_packages(exclude=["weward_pipeline_tests", "bench"]),
    package_data={"weward_pipeline": ["sample/*.yaml"]},
    python_requires=">=3.11,<3.13",
    install_requires=[
        *DAGSTER,
        # Streams query results as Arrow record batches over COPY BINARY: 1.2x the raw COPY
        # time in flat memory (pandas/polars read_database: 10x and 4 GB for 2M rows).
        "adbc-driver-postgresql>=1.5,<2",
        "adbc-driver-manager>=1.5,<2",
        "pyarrow>=18",
        "polars>=1.20",
        # psycopg 3: sql.Identifier quoting, server-side settings, redaction batches.
        "psycopg[binary]>=3.2,<4",
        # dagster-postgres storage: SQLAlchemy 2.1 maps postgresql:// to psycopg 3, so the
        # production dagster.yaml names postgresql+psycopg2 explicitly.
        "psycopg2-binary>=2.9.9",
        "sqlalchemy>=2.0",
        "boto3>=1.34",
        "pyyaml>=6",
        "duckdb>=1.1,<3",  # `weward-pipeline query --engine local`: Athena-style SQL over the lake's Parquet, in-process
        # Athena (Trino) SQL -> DuckDB for the local engine. Pinned to the tested minor: sqlglot changes
        # its translations between releases, and test_query_dialect/test_query_corpus pin ours (30.30).
        "sqlglot>=30.30,<30.31",
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "ruff>=0.15,<0.16",  # linter and formatter (ruff.toml), run by make test; pinned: new rules land in minors
            "pytest-timeout>=2.3",
            "moto[server]>=5.0.20,<6",
            "hypothesis>=6.100",
            "python-hcl2>=8.1,<9",
            "playwright>=1.50,<2",  # UI lineage test; drives Debian's /usr/bin/chromium (scripts/install-browser-deps.sh)
        ],
    },
    entry_points={
        "console_scripts": [
            "weward-pipeline=weward_pipeline.cli:main",
        ],
    },
)
