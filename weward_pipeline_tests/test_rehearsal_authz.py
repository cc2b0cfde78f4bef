"""Requests recorded through the rehearsal's proxy map to the IAM authorizations AWS makes.

The samples are real requests: boto3 and pyarrow's own S3 client talk to the moto server through
the recording proxy, and the mapping is asserted on what was recorded.
"""

from __future__ import annotations

import secrets

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from weward_pipeline.lake import s3_filesystem
from weward_pipeline_tests.rehearsal.authz import Account, Environment, UnmappedRequest, Workgroup, authorize
from weward_pipeline_tests.rehearsal.proxy import job_credentials

ACCOUNT = Account("111122223333", "eu-west-3")
KEY = "arn:aws:kms:eu-west-3:111122223333:key/0000-key"


@pytest.fixture
def sample(recording_proxy, aws_server):
    """A bucket, a boto3 client signing as job `sample-<random>`, and that job's recorded requests."""
    job = f"sample-{secrets.token_hex(3)}"
    bucket = f"authz-{secrets.token_hex(4)}"
    aws_server.create_bucket(bucket)
    credentials = job_credentials(job)

    def client(service):
        return boto3.client(
            service,
            endpoint_url=recording_proxy.endpoint_url,
            region_name=ACCOUNT.region,
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        )

    env = Environment(ACCOUNT, bucket_keys={bucket: KEY})
    return job, bucket, client, env, lambda: recording_proxy.for_job(job)


def mapped(records, env):
    return [
        (a.operation, a.action, a.resource, {k: v for k, v in a.context.items() if k != "aws:SecureTransport"})
        for r in records
        for a in authorize(r, env)
    ]


def test_head_bucket_is_list_bucket_without_a_prefix_and_listing_carries_one(sample):
    job, bucket, client, env, recorded = sample
    s3 = client("s3")
    s3.head_bucket(Bucket=bucket)
    s3.list_objects_v2(Bucket=bucket, Prefix="lake/", Delimiter="/")
    s3.list_object_versions(Bucket=bucket, Prefix="lake/t/")
    assert [r.client for r in recorded()] == ["boto3"] * 3
    assert mapped(recorded(), env) == [
        ("s3:HeadBucket", "s3:ListBucket", f"arn:aws:s3:::{bucket}", {}),
        (
            "s3:ListObjectsV2",
            "s3:ListBucket",
            f"arn:aws:s3:::{bucket}",
            {"s3:prefix": "lake/", "s3:delimiter": "/", "s3:max-keys": "1000"},
        ),
        (
            "s3:ListObjectVersions",
            "s3:ListBucketVersions",
            f"arn:aws:s3:::{bucket}",
            {"s3:prefix": "lake/t/", "s3:max-keys": "1000"},
        ),
    ]


def test_object_versions_copies_deletes_and_a_404_map_to_their_actions(sample):
    job, bucket, client, env, recorded = sample
    s3 = client("s3")
    version = s3.put_object(Bucket=bucket, Key="lake/a.txt", Body=b"a")["VersionId"]
    s3.get_object(Bucket=bucket, Key="lake/a.txt", VersionId=version)
    s3.copy_object(
        Bucket=bucket, Key="lake/b.txt", CopySource={"Bucket": bucket, "Key": "lake/a.txt", "VersionId": version}
    )
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key="lake/missing.txt")
    s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "lake/a.txt", "VersionId": version}, {"Key": "lake/b.txt"}]}
    )
    a, b = f"arn:aws:s3:::{bucket}/lake/a.txt", f"arn:aws:s3:::{bucket}/lake/b.txt"
    kms = {"kms:ViaService": "s3.eu-west-3.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{bucket}"}
    assert mapped(recorded(), env) == [
        ("s3:PutObject", "s3:PutObject", a, {}),
        ("s3:PutObject", "kms:GenerateDataKey", KEY, kms),
        ("s3:GetObject", "s3:GetObjectVersion", a, {}),
        ("s3:GetObject", "kms:Decrypt", KEY, kms),
        ("s3:CopyObject", "s3:PutObject", b, {}),
        ("s3:CopyObject", "s3:GetObjectVersion", a, {}),
        ("s3:CopyObject", "kms:Decrypt", KEY, kms),
        ("s3:CopyObject", "kms:GenerateDataKey", KEY, kms),
        ("s3:HeadObject", "s3:GetObject", f"arn:aws:s3:::{bucket}/lake/missing.txt", {}),
        ("s3:HeadObject", "s3:ListBucket", f"arn:aws:s3:::{bucket}", {}),
        ("s3:DeleteObjects", "s3:DeleteObjectVersion", a, {}),
        ("s3:DeleteObjects", "s3:DeleteObject", b, {}),
    ]


def test_pyarrow_requests_are_recorded_and_tagged_with_their_job(sample, recording_proxy, monkeypatch):
    job, bucket, client, env, recorded = sample
    for key, value in job_credentials(job).items():
        monkeypatch.setenv(key, value)
    fs = s3_filesystem(ACCOUNT.region, recording_proxy.endpoint_url)
    pq.write_table(pa.table({"x": [1, 2, 3]}), f"{bucket}/lake/t/part-0.parquet", filesystem=fs)
    assert pq.read_table(f"{bucket}/lake/t/part-0.parquet", filesystem=fs).num_rows == 3
    fs.get_file_info(pa.fs.FileSelector(f"{bucket}/lake/t/"))
    records = recorded()
    assert records and {r.client for r in records} == {"pyarrow"}
    actions = {(a.action, a.resource) for r in records for a in authorize(r, env)}
    assert ("s3:PutObject", f"arn:aws:s3:::{bucket}/lake/t/part-0.parquet") in actions
    assert ("s3:GetObject", f"arn:aws:s3:::{bucket}/lake/t/part-0.parquet") in actions
    assert ("s3:ListBucket", f"arn:aws:s3:::{bucket}") in actions


def test_glue_athena_sns_and_secrets_map_to_their_resource_arns(sample):
    job, bucket, client, env, recorded = sample
    database = f"db_{secrets.token_hex(3)}"
    glue = client("glue")
    glue.create_database(DatabaseInput={"Name": database})
    with pytest.raises(glue.exceptions.EntityNotFoundException):
        glue.get_table(DatabaseName=database, Name="users")
    sns = client("sns")
    topic = sns.create_topic(Name=f"alerts-{job}")["TopicArn"]
    recorded_before_publish = len(recorded())
    sns.publish(TopicArn=topic, Message="hello")
    secretsmanager = client("secretsmanager")
    secretsmanager.create_secret(Name=f"weward/{job}", SecretString="s")
    secretsmanager.get_secret_value(SecretId=f"weward/{job}")
    athena = client("athena")
    query_id = athena.start_query_execution(
        QueryString="SELECT 1", WorkGroup="primary", ResultConfiguration={"OutputLocation": f"s3://{bucket}/results/"}
    )["QueryExecutionId"]
    athena.get_query_execution(QueryExecutionId=query_id)

    records = recorded()
    glue_arns = mapped(records[:2], env)
    base = "arn:aws:glue:eu-west-3:111122223333"
    assert [(action, resource) for _, action, resource, _ in glue_arns] == [
        ("glue:CreateDatabase", f"{base}:catalog"),
        ("glue:CreateDatabase", f"{base}:database/{database}"),
        ("glue:GetTable", f"{base}:catalog"),
        ("glue:GetTable", f"{base}:database/{database}"),
        ("glue:GetTable", f"{base}:table/{database}/users"),
    ]
    assert mapped([records[recorded_before_publish]], env) == [("sns:Publish", "sns:Publish", topic, {})]
    env.secret_arns[f"weward/{job}"] = "arn:aws:secretsmanager:eu-west-3:111122223333:secret:weward/x-AbCdEf"
    get_secret = next(r for r in records if r.headers.get("x-amz-target") == "secretsmanager.GetSecretValue")
    assert mapped([get_secret], env) == [
        (
            "secretsmanager:GetSecretValue",
            "secretsmanager:GetSecretValue",
            "arn:aws:secretsmanager:eu-west-3:111122223333:secret:weward/x-AbCdEf",
            {},
        )
    ]
    athena_calls = mapped([r for r in records if r.service == "athena"], env)
    # StartQueryExecution: the call, then what Athena does with the caller's credentials (no table in
    # SELECT 1: the database lookup and the result object in the requested location, SSE-KMS).
    assert [(action, resource) for _, action, resource, _ in athena_calls] == [
        ("athena:StartQueryExecution", "arn:aws:athena:eu-west-3:111122223333:workgroup/primary"),
        ("glue:GetDatabase", f"{base}:catalog"),
        ("glue:GetDatabase", f"{base}:database/default"),
        ("s3:GetBucketLocation", f"arn:aws:s3:::{bucket}"),
        ("s3:PutObject", f"arn:aws:s3:::{bucket}/results/{query_id}.csv"),
        ("kms:GenerateDataKey", KEY),
        ("athena:GetQueryExecution", "arn:aws:athena:eu-west-3:111122223333:workgroup/primary"),
    ]


def test_an_athena_query_reads_its_tables_and_writes_the_workgroups_results_as_the_caller(sample):
    job, bucket, client, env, recorded = sample
    env.table_locations[("lake_db", "step_events")] = f"s3://{bucket}/lake/step_events"
    env.workgroups["analysts"] = Workgroup(f"s3://{bucket}/results/", kms_key=KEY, enforced=True)
    athena = client("athena")
    athena.create_work_group(
        Name="analysts", Configuration={"ResultConfiguration": {"OutputLocation": f"s3://{bucket}/results/"}}
    )
    query_id = athena.start_query_execution(
        QueryString="WITH d AS (SELECT * FROM step_events) SELECT count(*) FROM d",
        WorkGroup="analysts",
        QueryExecutionContext={"Database": "lake_db"},
        ResultConfiguration={"OutputLocation": f"s3://{bucket}/elsewhere/"},
    )["QueryExecutionId"]
    (start,) = [r for r in recorded() if r.headers.get("x-amz-target") == "AmazonAthena.StartQueryExecution"]
    base = "arn:aws:glue:eu-west-3:111122223333"
    got = mapped([start], env)
    assert [(action, resource) for _, action, resource, _ in got] == [
        ("athena:StartQueryExecution", "arn:aws:athena:eu-west-3:111122223333:workgroup/analysts"),
        ("glue:GetDatabase", f"{base}:catalog"),
        ("glue:GetDatabase", f"{base}:database/lake_db"),
        *[
            (action, r)
            for action in ("glue:GetTable", "glue:GetPartitions")
            for r in (f"{base}:catalog", f"{base}:database/lake_db", f"{base}:table/lake_db/step_events")
        ],
        ("s3:ListBucket", f"arn:aws:s3:::{bucket}"),
        ("s3:GetObject", f"arn:aws:s3:::{bucket}/lake/step_events/part-00000.parquet"),
        ("kms:Decrypt", KEY),
        ("s3:GetBucketLocation", f"arn:aws:s3:::{bucket}"),
        # The workgroup enforces its own location: the request's is ignored.
        ("s3:PutObject", f"arn:aws:s3:::{bucket}/results/{query_id}.csv"),
        ("kms:GenerateDataKey", KEY),
    ]
    assert got[9][3] == {"s3:prefix": "lake/step_events/"}
    assert got[13][3] == {
        "s3:x-amz-server-side-encryption": "aws:kms",
        "s3:x-amz-server-side-encryption-aws-kms-key-id": KEY,
    }


def test_a_request_the_mapping_does_not_know_fails_instead_of_passing(sample):
    job, bucket, client, env, recorded = sample
    client("s3").put_bucket_cors(
        Bucket=bucket, CORSConfiguration={"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}
    )
    with pytest.raises(UnmappedRequest, match="PUT /.*cors"):
        authorize(recorded()[-1], env)
