"""A local S3 + Glue (+ Athena API) endpoint: moto in server mode, as its own process.

boto3, pyarrow and polars all talk to it over HTTP exactly as they would to AWS.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from weward_pipeline.devstack.processes import free_port, pid_alive, port_open, stop_pid, wait_for

LOCAL_REGION = "eu-west-3"
# moto accepts any credentials; fixed fake ones keep pyarrow/polars from looking elsewhere.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "weward-local", "AWS_SECRET_ACCESS_KEY": "weward-local-secret"}


@dataclass
class LocalAws:
    base_dir: Path
    port: int = 0
    pid: int | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            **LOCAL_CREDENTIALS,
            "AWS_REGION": LOCAL_REGION,
            "AWS_DEFAULT_REGION": LOCAL_REGION,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ALLOW_HTTP": "true",  # polars/object_store refuse plain http otherwise
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def running(self) -> bool:
        return self.pid is not None and pid_alive(self.pid) and port_open(self.port)

    def start(self) -> None:
        if self.running():
            return
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        log = open(self.base_dir / "moto.log", "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **LOCAL_CREDENTIALS},
            start_new_session=True,
        )
        self.pid = process.pid
        wait_for(lambda: process.poll() is None and port_open(self.port), 60, f"moto server on port {self.port}")

    def stop(self) -> None:
        if self.pid is not None:
            stop_pid(self.pid)
            try:
                os.waitpid(self.pid, os.WNOHANG)  # reap if it was our child
            except ChildProcessError:
                pass
            self.pid = None

    def create_bucket(self, bucket: str, versioning: bool = True) -> None:
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=LOCAL_REGION,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        try:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": LOCAL_REGION})
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        if versioning:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
