"""A recording HTTP proxy in front of the local AWS endpoint (moto server).

The product's processes get AWS_ENDPOINT_URL pointing here; boto3, pyarrow's own S3 client (the
AWS C++ SDK) and polars send their requests through it unchanged. Each request is recorded with
what IAM authorization needs: method, path, query, the headers that change the action (copy
source, SSE), the body of JSON/query-protocol calls and S3 DeleteObjects, the response status,
and the caller: the access key id of the SigV4 signature. The rehearsal gives every job its own
access key id (`job_credentials`), the way each ECS task has its own role, so recordings are
tagged per job without any cooperation from the code under test.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
# Request headers that change how a request is authorized; everything else is left out.
_KEPT_HEADERS = (
    "x-amz-target",
    "x-amz-copy-source",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-copy-source-server-side-encryption-customer-algorithm",
    "content-type",
    "host",
)
_MAX_RECORDED_BODY = 64 * 1024
_JOB_KEY_PREFIX = "rehearsal-"


def job_credentials(job: str) -> dict[str, str]:
    """AWS credentials that tag every request signed with them as coming from `job`."""
    return {"AWS_ACCESS_KEY_ID": f"{_JOB_KEY_PREFIX}{job}", "AWS_SECRET_ACCESS_KEY": "rehearsal-secret"}


@dataclass
class RecordedRequest:
    job: str | None  # from the signature's access key id; None for an unsigned request
    service: str | None  # the SigV4 credential scope's service (s3, glue, athena, sns, secretsmanager...)
    region: str | None
    method: str
    path: str  # percent-decoded
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: str | None  # JSON / form / XML bodies of control-plane calls; None for object data
    status: int
    client: str  # "boto3", "pyarrow", ... from the User-Agent
    response: str | None = None  # the answer of JSON-protocol calls (ids later calls refer to)

    def query_dict(self) -> dict[str, str]:
        return dict(self.query)

    def describe(self) -> str:
        target = self.headers.get("x-amz-target")
        query = "&".join(f"{k}={v}" if v else k for k, v in self.query)
        return f"{self.method} {self.path}{'?' + query if query else ''}{f' [{target}]' if target else ''} -> {self.status} ({self.client})"


def _client(user_agent: str) -> str:
    agent = user_agent.lower()
    for name in ("boto3", "botocore", "aws-sdk-cpp", "object_store", "duckdb"):
        if name in agent:
            return {"botocore": "boto3", "aws-sdk-cpp": "pyarrow"}.get(name, name)
    return user_agent.split("/")[0] or "unknown"


class RecordingProxy:
    """Forward every request to `upstream` (http://host:port) and record it."""

    def __init__(self, upstream: str, *, log_path: Path | None = None):
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.records: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._log_path = log_path
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        assert self._server is not None, "the proxy is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> RecordingProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # the records are the log
                pass

            def _forward(self):
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="recording-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def for_job(self, job: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.records if r.job == job]

    def clear(self) -> None:
        with self._lock:
            self.records.clear()

    def _read_body(self, handler: BaseHTTPRequestHandler) -> bytes:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(handler.rfile.read(size))
                handler.rfile.readline()
            return b"".join(chunks)
        length = int(handler.headers.get("Content-Length") or 0)
        return handler.rfile.read(length) if length else b""

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = self._read_body(handler)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("transfer-encoding", "connection")}
        if body or handler.command in ("PUT", "POST"):
            headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=300)
        try:
            upstream.request(handler.command, handler.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            status, reason, response_headers = response.status, response.reason, response.getheaders()
        finally:
            upstream.close()
        self._record(handler, body, status, payload)
        handler.send_response_only(status, reason)
        for name, value in response_headers:
            if name.lower() in ("transfer-encoding", "connection", "content-length"):
                continue
            handler.send_header(name, value)
        if handler.command == "HEAD":
            length = dict((k.lower(), v) for k, v in response_headers).get("content-length", "0")
            handler.send_header("Content-Length", length)
            handler.end_headers()
            return
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _record(self, handler: BaseHTTPRequestHandler, body: bytes, status: int, payload: bytes) -> None:
        authorization = handler.headers.get("Authorization", "")
        split = urlsplit(handler.path)
        query = parse_qsl(split.query, keep_blank_values=True)
        found = _CREDENTIAL.search(authorization) or _CREDENTIAL.search(
            unquote(dict(query).get("X-Amz-Credential", "")) + "/aws4_request"
        )
        access_key, region, service = found.groups() if found else (None, None, None)
        job = (
            access_key[len(_JOB_KEY_PREFIX) :] if access_key and access_key.startswith(_JOB_KEY_PREFIX) else access_key
        )
        kept = {k.lower(): v for k, v in handler.headers.items() if k.lower() in _KEPT_HEADERS}
        content_type = kept.get("content-type", "")
        control_plane = service != "s3" or split.query and ("delete" in dict(query))
        text = None
        if control_plane or "json" in content_type or "x-www-form-urlencoded" in content_type:
            text = body[:_MAX_RECORDED_BODY].decode("utf-8", "replace")
        record = RecordedRequest(
            job=job,
            service=service,
            region=region,
            method=handler.command,
            path=unquote(split.path),
            query=[(k, v) for k, v in query if not k.startswith("X-Amz-")],
            headers=kept,
            body=text,
            status=status,
            client=_client(handler.headers.get("User-Agent", "")),
            response=payload[:_MAX_RECORDED_BODY].decode("utf-8", "replace") if "x-amz-target" in kept else None,
        )
        with self._lock:
            self.records.append(record)
            if self._log_path is not None:
                with self._log_path.open("a") as f:
                    f.write(json.dumps(asdict(record)) + "\n")
