"""The local stack: a real PostgreSQL server and a moto S3+Glue endpoint on free ports.

Used by `make demo`, `make dev`, the tests and the benchmarks. Nothing here runs in production.
"""
