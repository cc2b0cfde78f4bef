"""What IAM authorizes for each recorded request: action(s), resource ARN(s), condition keys.

Written from the Service Authorization Reference (Amazon S3, AWS Glue, Amazon Athena, Amazon SNS,
AWS Secrets Manager, AWS KMS) and the S3 API reference's "Permissions" sections:
https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html
https://docs.aws.amazon.com/glue/latest/dg/glue-specifying-resource-arns.html

Rules that matter here and that a reading of the SDK call name gets wrong:
- HeadBucket is s3:ListBucket with no s3:prefix in the context; ListObjectsV2 is s3:ListBucket
  with s3:prefix (only when the request has a prefix parameter), s3:delimiter, s3:max-keys.
- ListObjectVersions is s3:ListBucketVersions. GET/HEAD with versionId is s3:GetObjectVersion.
- CopyObject / UploadPartCopy: s3:GetObject(Version) on the source and s3:PutObject on the target.
- DeleteObjects: s3:DeleteObject (s3:DeleteObjectVersion with a VersionId) for every key in the body.
- A GET/HEAD that answers 404 needs s3:ListBucket on the bucket too: without it S3 answers 403,
  and code that expects NoSuchKey breaks.
- Objects of a bucket whose default encryption is SSE-KMS: reading (GetObject, copy source,
  multipart completion) needs kms:Decrypt, writing (PutObject, CreateMultipartUpload, copy target)
  kms:GenerateDataKey, on the bucket's key, with kms:ViaService s3.<region>.amazonaws.com.
- Glue checks every ARN of the hierarchy: the catalog, the database and the table(s).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl
from xml.etree import ElementTree

from weward_pipeline_tests.rehearsal.proxy import RecordedRequest


@dataclass(frozen=True)
class Account:
    account_id: str
    region: str
    partition: str = "aws"


@dataclass(frozen=True)
class Authorization:
    """One thing IAM checks for a request."""

    operation: str  # the API operation, e.g. "s3:HeadBucket", "glue:GetTable"
    action: str  # the IAM action, e.g. "s3:ListBucket"
    resource: str
    context: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    why: str = ""  # set when the requirement is not obvious from the operation


@dataclass(frozen=True)
class Workgroup:
    """What an Athena workgroup does with query results (Terraform's aws_athena_workgroup)."""

    output_location: str | None  # s3://bucket/prefix/
    kms_key: str | None = None  # SSE_KMS key of the results, sent by Athena with each result object
    enforced: bool = True  # EnforceWorkGroupConfiguration: the client's result settings are ignored


@dataclass
class Environment:
    """What the mapping needs to know about the deployed account."""

    account: Account
    bucket_keys: dict[str, str] = field(default_factory=dict)  # bucket -> KMS key ARN of its default encryption
    secret_arns: dict[str, str] = field(default_factory=dict)  # secret name -> ARN
    # Athena: what a query reads and writes with the caller's credentials.
    table_locations: dict[tuple[str, str], str] = field(default_factory=dict)  # (database, table) -> s3://...
    workgroups: dict[str, Workgroup] = field(default_factory=dict)
    # ECS: the roles a task definition passes (task role, execution role), by task definition ARN.
    task_definition_roles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Athena query id -> workgroup, learnt from StartQueryExecution bodies/answers as they go by.
    query_workgroups: dict[str, str] = field(default_factory=dict)


class UnmappedRequest(Exception):
    """A request the mapping does not know: the rehearsal fails rather than guess."""


def _s3_arn(env: Environment, bucket: str, key: str | None = None) -> str:
    return f"arn:{env.account.partition}:s3:::{bucket}" + (f"/{key}" if key is not None else "")


_GLOBAL = {"aws:SecureTransport": "true"}  # production endpoints are HTTPS (the local one is not)


def _kms(env: Environment, operation: str, action: str, bucket: str, why: str) -> list[Authorization]:
    key = env.bucket_keys.get(bucket)
    if key is None:
        return []
    context = {
        **_GLOBAL,
        "kms:ViaService": f"s3.{env.account.region}.amazonaws.com",
        "kms:EncryptionContext:aws:s3:arn": _s3_arn(env, bucket),
    }
    return [Authorization(operation, action, key, context, why)]


def _sse_context(record: RecordedRequest) -> dict[str, str]:
    """PutObject's encryption condition keys: present only when the request sends the headers."""
    context = dict(_GLOBAL)
    for header in ("x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id"):
        if header in record.headers:
            context[f"s3:{header}"] = record.headers[header]
    return context


def _list_context(query: Mapping[str, str]) -> dict[str, str]:
    context = dict(_GLOBAL)
    for param in ("prefix", "delimiter", "max-keys"):
        if param in query:
            context[f"s3:{param}"] = query[param]
    context.setdefault("s3:max-keys", "1000")
    return context


def _object_read(env, operation, bucket, key, version, status, *, decrypt: bool) -> list[Authorization]:
    action = "s3:GetObjectVersion" if version else "s3:GetObject"
    found = [Authorization(operation, action, _s3_arn(env, bucket, key), dict(_GLOBAL))]
    if status == 404:
        found.append(
            Authorization(
                operation,
                "s3:ListBucket",
                _s3_arn(env, bucket),
                dict(_GLOBAL),
                "S3 answers 404 for a missing object only to a caller with s3:ListBucket (else 403)",
            )
        )
    if decrypt and status < 300:
        found += _kms(env, operation, "kms:Decrypt", bucket, "reading an SSE-KMS object")
    return found


def _copy_source(header: str) -> tuple[str, str, str | None]:
    source, _, version = header.lstrip("/").partition("?versionId=")
    bucket, _, key = source.partition("/")
    return bucket, key, version or None


def authorize_s3(record: RecordedRequest, env: Environment) -> list[Authorization]:
    parts = record.path.lstrip("/").split("/", 1)
    bucket = parts[0]
    key = parts[1] if len(parts) > 1 and parts[1] != "" else None
    query = record.query_dict()
    method = record.method
    bucket_arn = _s3_arn(env, bucket)
    if not bucket:
        if method == "GET":
            return [Authorization("s3:ListBuckets", "s3:ListAllMyBuckets", "*", dict(_GLOBAL))]
        raise UnmappedRequest(record.describe())
    if key is None:
        if method == "HEAD":
            return [
                Authorization(
                    "s3:HeadBucket",
                    "s3:ListBucket",
                    bucket_arn,
                    dict(_GLOBAL),
                    "HeadBucket is authorized as s3:ListBucket without s3:prefix",
                )
            ]
        if method == "GET":
            simple = {
                "location": "s3:GetBucketLocation",
                "versioning": "s3:GetBucketVersioning",
                "encryption": "s3:GetEncryptionConfiguration",
                "policy": "s3:GetBucketPolicy",
                "lifecycle": "s3:GetLifecycleConfiguration",
                "tagging": "s3:GetBucketTagging",
                "acl": "s3:GetBucketAcl",
                "uploads": "s3:ListBucketMultipartUploads",
            }
            for param, action in simple.items():
                if param in query:
                    return [Authorization(f"s3:Get{param}", action, bucket_arn, dict(_GLOBAL))]
            if "versions" in query:
                return [
                    Authorization("s3:ListObjectVersions", "s3:ListBucketVersions", bucket_arn, _list_context(query))
                ]
            operation = "s3:ListObjectsV2" if query.get("list-type") == "2" else "s3:ListObjects"
            return [Authorization(operation, "s3:ListBucket", bucket_arn, _list_context(query))]
        if method == "POST" and "delete" in query:
            return _delete_objects(record, env, bucket)
        if method == "PUT" and not query:
            return [Authorization("s3:CreateBucket", "s3:CreateBucket", bucket_arn, dict(_GLOBAL))]
        if method == "DELETE" and not query:
            return [Authorization("s3:DeleteBucket", "s3:DeleteBucket", bucket_arn, dict(_GLOBAL))]
        raise UnmappedRequest(record.describe())

    object_arn = _s3_arn(env, bucket, key)
    version = query.get("versionId")
    if method in ("GET", "HEAD"):
        if "uploadId" in query:
            return [Authorization("s3:ListParts", "s3:ListMultipartUploadParts", object_arn, dict(_GLOBAL))]
        if "tagging" in query:
            action = "s3:GetObjectVersionTagging" if version else "s3:GetObjectTagging"
            return [Authorization("s3:GetObjectTagging", action, object_arn, dict(_GLOBAL))]
        if "attributes" in query:
            action = "s3:GetObjectVersionAttributes" if version else "s3:GetObjectAttributes"
            return [Authorization("s3:GetObjectAttributes", action, object_arn, dict(_GLOBAL))]
        operation = "s3:HeadObject" if method == "HEAD" else "s3:GetObject"
        return _object_read(env, operation, bucket, key, version, record.status, decrypt=method == "GET")
    if method == "PUT":
        copy = record.headers.get("x-amz-copy-source")
        operation = (
            "s3:UploadPartCopy"
            if copy and "uploadId" in query
            else "s3:CopyObject"
            if copy
            else "s3:UploadPart"
            if "uploadId" in query
            else "s3:PutObjectTagging"
            if "tagging" in query
            else "s3:PutObject"
        )
        if operation == "s3:PutObjectTagging":
            return [Authorization(operation, "s3:PutObjectTagging", object_arn, dict(_GLOBAL))]
        found = [Authorization(operation, "s3:PutObject", object_arn, _sse_context(record))]
        if copy:
            source_bucket, source_key, source_version = _copy_source(copy)
            found += _object_read(
                env, operation, source_bucket, source_key, source_version, record.status, decrypt=True
            )
        if operation != "s3:UploadPart":
            found += _kms(env, operation, "kms:GenerateDataKey", bucket, "writing an SSE-KMS object")
        return found
    if method == "POST" and "uploads" in query:
        return [
            Authorization("s3:CreateMultipartUpload", "s3:PutObject", object_arn, _sse_context(record)),
            *_kms(env, "s3:CreateMultipartUpload", "kms:GenerateDataKey", bucket, "writing an SSE-KMS object"),
        ]
    if method == "POST" and "uploadId" in query:
        return [
            Authorization("s3:CompleteMultipartUpload", "s3:PutObject", object_arn, dict(_GLOBAL)),
            *_kms(
                env,
                "s3:CompleteMultipartUpload",
                "kms:Decrypt",
                bucket,
                "S3 decrypts the parts of an SSE-KMS multipart upload to complete it",
            ),
        ]
    if method == "DELETE":
        if "uploadId" in query:
            return [Authorization("s3:AbortMultipartUpload", "s3:AbortMultipartUpload", object_arn, dict(_GLOBAL))]
        action = "s3:DeleteObjectVersion" if version else "s3:DeleteObject"
        return [Authorization("s3:DeleteObject", action, object_arn, dict(_GLOBAL))]
    raise UnmappedRequest(record.describe())


def _delete_objects(record: RecordedRequest, env: Environment, bucket: str) -> list[Authorization]:
    if not record.body:
        raise UnmappedRequest(f"{record.describe()}: DeleteObjects without a recorded body")
    root = ElementTree.fromstring(record.body)
    found = []
    for obj in root.iter():
        if not obj.tag.endswith("Object"):
            continue
        key = next((c.text for c in obj if c.tag.endswith("Key")), None)
        version = next((c.text for c in obj if c.tag.endswith("VersionId")), None)
        action = "s3:DeleteObjectVersion" if version else "s3:DeleteObject"
        found.append(Authorization("s3:DeleteObjects", action, _s3_arn(env, bucket, key), dict(_GLOBAL)))
    return found


# Glue: which ARNs each operation is checked against (catalog, database, table, or all tables).
_GLUE_DATABASE_ONLY = {"GetDatabase", "CreateDatabase", "UpdateDatabase", "DeleteDatabase"}
_GLUE_ALL_TABLES = {"GetTables", "SearchTables", "GetTableVersions"}
_GLUE_TABLE = {
    "GetTable",
    "CreateTable",
    "UpdateTable",
    "DeleteTable",
    "GetPartition",
    "GetPartitions",
    "BatchGetPartition",
    "CreatePartition",
    "BatchCreatePartition",
    "UpdatePartition",
    "BatchUpdatePartition",
    "DeletePartition",
    "BatchDeletePartition",
    "GetTableVersion",
    "DeleteTableVersion",
    "BatchDeleteTableVersion",
}


def authorize_glue(record: RecordedRequest, env: Environment, operation: str, body: dict) -> list[Authorization]:
    a = env.account
    account = body.get("CatalogId") or a.account_id
    base = f"arn:{a.partition}:glue:{a.region}:{account}"
    catalog = f"{base}:catalog"
    action = f"glue:{operation}"
    database = body.get("DatabaseName") or (body.get("DatabaseInput") or {}).get("Name")
    if operation == "GetDatabases":
        resources = [catalog, f"{base}:database/*"]
    elif operation in _GLUE_DATABASE_ONLY:
        resources = [catalog, f"{base}:database/{database or body.get('Name')}"]
    elif operation in _GLUE_ALL_TABLES:
        resources = [catalog, f"{base}:database/{database}", f"{base}:table/{database}/*"]
    elif operation in _GLUE_TABLE:
        table = body.get("TableName") or body.get("Name") or (body.get("TableInput") or {}).get("Name")
        resources = [catalog, f"{base}:database/{database}", f"{base}:table/{database}/{table}"]
    else:
        raise UnmappedRequest(f"{record.describe()}: Glue operation {operation} is not mapped")
    return [Authorization(f"glue:{operation}", action, r, dict(_GLOBAL)) for r in resources]


def _referenced_tables(query: str) -> set[str]:
    """The tables (not CTEs) a statement reads, by name; parsed as Athena SQL."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(query, read="athena")
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    return {t.name for t in tree.find_all(exp.Table) if t.name and t.name not in ctes}


_ATHENA_WHY = "Athena reads the tables and writes the results with the caller's credentials"


def athena_reads_and_writes(env: Environment, body: dict, query_id: str) -> list[Authorization]:
    """What StartQueryExecution makes Athena do as the caller: Glue lookups of the tables, S3 listing
    and reads of their locations (SSE-KMS: kms:Decrypt), and the result object written to the
    workgroup's output location (its SSE_KMS key: kms:GenerateDataKey), as the Athena User Guide's
    "Access to Amazon S3" and "Fine-grained access to databases and tables" list them."""
    a = env.account
    base = f"arn:{a.partition}:glue:{a.region}:{a.account_id}"
    database = (body.get("QueryExecutionContext") or {}).get("Database") or "default"
    found = [
        Authorization("athena:StartQueryExecution", "glue:GetDatabase", r, dict(_GLOBAL), _ATHENA_WHY)
        for r in (f"{base}:catalog", f"{base}:database/{database}")
    ]
    for table in sorted(_referenced_tables(body["QueryString"])):
        location = env.table_locations.get((database, table))
        if location is None:
            raise UnmappedRequest(
                f"Athena query {query_id} reads {database}.{table}, whose location the rehearsal does not know"
            )
        for action in ("glue:GetTable", "glue:GetPartitions"):
            found += [
                Authorization("athena:StartQueryExecution", action, r, dict(_GLOBAL), _ATHENA_WHY)
                for r in (f"{base}:catalog", f"{base}:database/{database}", f"{base}:table/{database}/{table}")
            ]
        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        prefix = prefix.rstrip("/") + "/"
        found.append(
            Authorization(
                "athena:StartQueryExecution",
                "s3:ListBucket",
                _s3_arn(env, bucket),
                {**_GLOBAL, "s3:prefix": prefix},
                _ATHENA_WHY,
            )
        )
        found.append(
            Authorization(
                "athena:StartQueryExecution",
                "s3:GetObject",
                _s3_arn(env, bucket, prefix + "part-00000.parquet"),
                dict(_GLOBAL),
                _ATHENA_WHY,
            )
        )
        found += _kms(env, "athena:StartQueryExecution", "kms:Decrypt", bucket, _ATHENA_WHY)
    workgroup = env.workgroups.get(body.get("WorkGroup") or "primary") or Workgroup(None, enforced=False)
    requested = (body.get("ResultConfiguration") or {}).get("OutputLocation")
    output = workgroup.output_location if workgroup.enforced or not requested else requested
    if output is None:
        raise UnmappedRequest(f"Athena query {query_id}: no results location (workgroup or request)")
    bucket, _, prefix = output.removeprefix("s3://").partition("/")
    key = (prefix.rstrip("/") + "/" if prefix else "") + f"{query_id}.csv"
    put_context = dict(_GLOBAL)
    if workgroup.kms_key:
        put_context.update(
            {
                "s3:x-amz-server-side-encryption": "aws:kms",
                "s3:x-amz-server-side-encryption-aws-kms-key-id": workgroup.kms_key,
            }
        )
    found.append(
        Authorization(
            "athena:StartQueryExecution", "s3:GetBucketLocation", _s3_arn(env, bucket), dict(_GLOBAL), _ATHENA_WHY
        )
    )
    found.append(
        Authorization("athena:StartQueryExecution", "s3:PutObject", _s3_arn(env, bucket, key), put_context, _ATHENA_WHY)
    )
    key_arn = workgroup.kms_key or env.bucket_keys.get(bucket)
    if key_arn:
        found.append(
            Authorization(
                "athena:StartQueryExecution",
                "kms:GenerateDataKey",
                key_arn,
                {
                    **_GLOBAL,
                    "kms:ViaService": f"s3.{a.region}.amazonaws.com",
                    "kms:EncryptionContext:aws:s3:arn": _s3_arn(env, bucket),
                },
                _ATHENA_WHY,
            )
        )
    return found


def authorize_athena(record: RecordedRequest, env: Environment, operation: str, body: dict) -> list[Authorization]:
    a = env.account
    on_behalf: list[Authorization] = []
    if operation == "StartQueryExecution" and record.response:
        answered = json.loads(record.response).get("QueryExecutionId")
        if answered:
            env.query_workgroups[answered] = body.get("WorkGroup") or "primary"
            if record.status < 300:
                on_behalf = athena_reads_and_writes(env, body, answered)
    query_id = body.get("QueryExecutionId")
    if operation == "BatchGetQueryExecution":
        workgroups = {env.query_workgroups.get(q, "primary") for q in body.get("QueryExecutionIds", [])}
    elif query_id:
        workgroups = {env.query_workgroups.get(query_id, "primary")}
    else:
        workgroups = {body.get("WorkGroup") or body.get("Name") or "primary"}
    if operation in ("GetDataCatalog", "GetDatabase", "GetTableMetadata", "ListDatabases", "ListTableMetadata"):
        catalog = body.get("CatalogName") or body.get("Name") or "AwsDataCatalog"
        return [
            Authorization(
                f"athena:{operation}",
                f"athena:{operation}",
                f"arn:{a.partition}:athena:{a.region}:{a.account_id}:datacatalog/{catalog}",
                dict(_GLOBAL),
            )
        ]
    if operation == "ListDataCatalogs" or operation == "ListWorkGroups":
        return [Authorization(f"athena:{operation}", f"athena:{operation}", "*", dict(_GLOBAL))]
    return [
        Authorization(
            f"athena:{operation}",
            f"athena:{operation}",
            f"arn:{a.partition}:athena:{a.region}:{a.account_id}:workgroup/{wg}",
            dict(_GLOBAL),
        )
        for wg in sorted(workgroups)
    ] + on_behalf


def _ecs_arn(env: Environment, kind: str, name: str) -> str:
    a = env.account
    return name if name.startswith("arn:") else f"arn:{a.partition}:ecs:{a.region}:{a.account_id}:{kind}/{name}"


def authorize_ecs(record: RecordedRequest, env: Environment, operation: str, body: dict) -> list[Authorization]:
    """ECS as the Service Authorization Reference lists it: RunTask on the task definition (ecs:cluster),
    iam:PassRole of the roles it names (iam:PassedToService), ecs:TagResource on the new task when tags
    are passed (ecs:CreateAction); DescribeTasks/StopTask on the task (ecs:cluster);
    DescribeTaskDefinition has no resource-level permission ("*")."""
    cluster = _ecs_arn(env, "cluster", body.get("cluster") or "default")
    cluster_name = cluster.rsplit("/", 1)[-1]
    in_cluster = {**_GLOBAL, "ecs:cluster": cluster}
    if operation == "DescribeTaskDefinition":
        return [Authorization("ecs:DescribeTaskDefinition", "ecs:DescribeTaskDefinition", "*", dict(_GLOBAL))]
    if operation in ("DescribeTasks", "StopTask"):
        tasks = body.get("tasks") or [body.get("task")]
        return [
            Authorization(
                f"ecs:{operation}",
                f"ecs:{operation}",
                _ecs_arn(env, "task", t if t.startswith("arn:") else f"{cluster_name}/{t}"),
                in_cluster,
            )
            for t in tasks
        ]
    if operation == "RunTask":
        answer = json.loads(record.response or "{}")
        started = answer.get("tasks") or []
        definition = (
            started[0]["taskDefinitionArn"] if started else _ecs_arn(env, "task-definition", body["taskDefinition"])
        )
        found = [Authorization("ecs:RunTask", "ecs:RunTask", definition, in_cluster)]
        overrides = body.get("overrides") or {}
        roles = list(env.task_definition_roles.get(definition, ()))
        roles += [overrides[k] for k in ("taskRoleArn", "executionRoleArn") if overrides.get(k)]
        if not roles and definition not in env.task_definition_roles:
            raise UnmappedRequest(f"{record.describe()}: the roles of task definition {definition} are unknown")
        found += [
            Authorization(
                "ecs:RunTask",
                "iam:PassRole",
                role,
                {**_GLOBAL, "iam:PassedToService": "ecs-tasks.amazonaws.com"},
                "RunTask passes the task definition's task and execution roles",
            )
            for role in dict.fromkeys(roles)
        ]
        if body.get("tags"):
            task = started[0]["taskArn"] if started else _ecs_arn(env, "task", f"{cluster_name}/*")
            found.append(
                Authorization(
                    "ecs:RunTask",
                    "ecs:TagResource",
                    task,
                    {**_GLOBAL, "ecs:CreateAction": "RunTask", "aws:TagKeys": tuple(t["key"] for t in body["tags"])},
                    "tagging a task at launch is ecs:TagResource with ecs:CreateAction=RunTask",
                )
            )
        return found
    raise UnmappedRequest(f"{record.describe()}: ECS operation {operation} is not mapped")


def authorize_logs(record: RecordedRequest, env: Environment, operation: str, body: dict) -> list[Authorization]:
    a = env.account
    if operation == "GetLogEvents":
        group = body.get("logGroupName") or body.get("logGroupIdentifier", "")
        arn = f"arn:{a.partition}:logs:{a.region}:{a.account_id}:log-group:{group}:log-stream:{body.get('logStreamName', '')}"
        return [Authorization("logs:GetLogEvents", "logs:GetLogEvents", arn, dict(_GLOBAL))]
    raise UnmappedRequest(f"{record.describe()}: CloudWatch Logs operation {operation} is not mapped")


def authorize_secretsmanager(
    record: RecordedRequest, env: Environment, operation: str, body: dict
) -> list[Authorization]:
    secret = body.get("SecretId", "")
    arn = secret if secret.startswith("arn:") else env.secret_arns.get(secret)
    if arn is None:
        a = env.account
        arn = f"arn:{a.partition}:secretsmanager:{a.region}:{a.account_id}:secret:{secret}-??????"
    return [Authorization(f"secretsmanager:{operation}", f"secretsmanager:{operation}", arn, dict(_GLOBAL))]


def authorize(record: RecordedRequest, env: Environment) -> list[Authorization]:
    """Every authorization IAM makes for one recorded request (empty: none needed)."""
    service = record.service
    if service == "s3":
        return authorize_s3(record, env)
    target = record.headers.get("x-amz-target", "")
    if target:  # JSON protocol: Glue, Athena, Secrets Manager, ...
        prefix, _, operation = target.partition(".")
        body = json.loads(record.body or "{}")
        if prefix == "AWSGlue":
            return authorize_glue(record, env, operation, body)
        if prefix == "AmazonAthena":
            return authorize_athena(record, env, operation, body)
        if prefix == "secretsmanager":
            return authorize_secretsmanager(record, env, operation, body)
        if prefix == "AmazonEC2ContainerServiceV20141113":
            return authorize_ecs(record, env, operation, body)
        if prefix == "Logs_20140328":
            return authorize_logs(record, env, operation, body)
        raise UnmappedRequest(f"{record.describe()}: no mapping for {target}")
    form = dict(parse_qsl(record.body or "", keep_blank_values=True))
    operation = form.get("Action")
    if service == "sts" and operation == "GetCallerIdentity":
        return []  # needs no permission
    if service == "ec2" and operation in ("DescribeNetworkInterfaces", "DescribeSubnets", "DescribeSecurityGroups"):
        return [
            Authorization(
                f"ec2:{operation}",
                f"ec2:{operation}",
                "*",
                dict(_GLOBAL),
                "EC2 Describe* actions have no resource-level permissions",
            )
        ]
    if service == "sns" and operation == "Publish":
        return [
            Authorization(
                "sns:Publish", "sns:Publish", form.get("TopicArn") or form.get("TargetArn", ""), dict(_GLOBAL)
            )
        ]
    raise UnmappedRequest(f"{record.describe()}: no mapping for {service} {operation}")
