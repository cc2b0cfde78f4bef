"""The Dagster service's launcher (dagster-aws's EcsRunLauncher) against the local ECS API (moto).

What Terraform and Fargate provide, set up as the admin (not through the recording proxy): the
cluster, the rendered task definitions, a subnet and security group, and the daemon's own task
(EcsRunLauncher reads its cluster, subnets and security groups from it: use_current_ecs_task_config).
The ECS agent's task metadata endpoint (ECS_CONTAINER_METADATA_URI_V4, answered inside every task)
is a local HTTP server answering `/task` for that task, with the two fields dagster-aws reads.

Then `dagster job launch` runs with the daemon's container environment and deploy/dagster.yaml
except the run coordinator: the daemon's queue hands each run to instance.launch_run, which is what
the CLI does with the default coordinator. So the ECS, EC2 and IAM calls recorded are the ones
EcsRunLauncher makes for a launch, signed as the daemon's role.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3


@dataclass
class LocalEcs:
    cluster_arn: str
    daemon_task_arn: str
    task_definitions: dict[str, str]  # family -> ARN as moto registered it


def _register_input(task_definition) -> dict:
    """RegisterTaskDefinition's input from a rendered aws_ecs_task_definition."""
    values = task_definition.values
    containers = json.loads(values["container_definitions"])
    for container in containers:  # moto sums container memory even on Fargate (task-level memory there)
        container.setdefault("memory", int(values["memory"]) // len(containers))
    return {
        "family": values["family"],
        "containerDefinitions": containers,
        "taskRoleArn": values["task_role_arn"],
        "executionRoleArn": values["execution_role_arn"],
        "networkMode": values["network_mode"],
        "requiresCompatibilities": values["requires_compatibilities"],
        "cpu": values["cpu"],
        "memory": values["memory"],
        "volumes": [{"name": v["name"]} for v in values.get("volume") or []],
    }


def create_ecs(endpoint_url: str, region: str, production, families: list[str], daemon_family: str) -> LocalEcs:
    """The rendered cluster and task definitions in moto, and the daemon's task running (idempotent)."""
    ecs = boto3.client("ecs", endpoint_url=endpoint_url, region_name=region)
    ec2 = boto3.client("ec2", endpoint_url=endpoint_url, region_name=region)
    (cluster,) = production.resources("aws_ecs_cluster")
    name = cluster.values["name"]
    existing = ecs.describe_clusters(clusters=[name])["clusters"]
    cluster_arn = (
        existing[0]["clusterArn"]
        if existing and existing[0]["status"] == "ACTIVE"
        else ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]
    )
    registered = {}
    for family in [*families, daemon_family]:
        try:
            registered[family] = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"][
                "taskDefinitionArn"
            ]
        except ecs.exceptions.ClientException:
            registered[family] = ecs.register_task_definition(**_register_input(production.task_definitions[family]))[
                "taskDefinition"
            ]["taskDefinitionArn"]
    running = ecs.list_tasks(cluster=name, family=daemon_family)["taskArns"]
    if running:
        daemon_task = running[0]
    else:
        vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(
            VpcId=vpc, EnableDnsHostnames={"Value": True}
        )  # as the app's VPC (and moto's ENIs need it)
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="weward-prod-dagster", Description="the service's", VpcId=vpc)[
            "GroupId"
        ]
        daemon_task = ecs.run_task(
            cluster=name,
            taskDefinition=registered[daemon_family],
            launchType="FARGATE",
            networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}},
        )["tasks"][0]["taskArn"]
    return LocalEcs(cluster_arn, daemon_task, registered)


class TaskMetadataEndpoint:
    """The ECS agent's task metadata endpoint v4 for one task: GET <uri>/task."""

    def __init__(self, cluster_arn: str, task_arn: str):
        self.document = {"Cluster": cluster_arn, "TaskARN": task_arn, "LaunchType": "FARGATE"}
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.rstrip("/") != "/v4/task":
                    self.send_error(404)
                    return
                body = json.dumps(endpoint.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v4"

    def __enter__(self) -> TaskMetadataEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
