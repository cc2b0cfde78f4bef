"""A failed or missing run reaches a person: the rendered EventBridge rule matched against sample
ECS Task State Change events, and the wiring of rule, alarm, topic and key.

The matcher below implements EventBridge's content filtering for the operators the rule uses (exact
values, prefix, anything-but, numeric, exists, $or), tested on the examples of the EventBridge user
guide. moto cannot be the oracle: its matcher (5.2.5) does not descend into arrays of objects, and
an ECS event's exit codes are in `detail.containers[*].exitCode` (it answers False for exit 1).
"""

from __future__ import annotations

import json

import pytest

from weward_pipeline_tests.terraform_render import ENVS, as_list, render


def _leaf_values(node, path: tuple[str, ...]) -> list:
    """Every value at `path`, arrays flattened at any depth (EventBridge does not correlate elements)."""
    if isinstance(node, list):
        return [value for item in node for value in _leaf_values(item, path)]
    if not path:
        return [node]
    if isinstance(node, dict) and path[0] in node:
        return _leaf_values(node[path[0]], path[1:])
    return []


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equal(value, expected) -> bool:
    if _is_number(value) and _is_number(expected):
        return value == expected
    return type(value) is type(expected) and value == expected


def _matches(value, rule) -> bool:
    if not isinstance(rule, dict):
        return _equal(value, rule)
    ((operator, argument),) = rule.items()
    if operator == "prefix":
        return isinstance(value, str) and value.startswith(argument)
    if operator == "suffix":
        return isinstance(value, str) and value.endswith(argument)
    if operator == "anything-but":
        if isinstance(argument, dict):
            return not _matches(value, argument)
        return not any(_equal(value, excluded) for excluded in as_list(argument))
    if operator == "numeric":
        if not _is_number(value):
            return False
        compare = {"<": float.__lt__, "<=": float.__le__, "=": float.__eq__, ">=": float.__ge__, ">": float.__gt__}
        return all(compare[op](float(value), float(bound)) for op, bound in zip(argument[::2], argument[1::2]))
    raise ValueError(f"operator {operator!r} is not implemented here; implement it before using it in a rule")


def event_pattern_matches(pattern: dict, event: dict, path: tuple[str, ...] = ()) -> bool:
    """EventBridge content filtering: every key of the pattern must match; `$or` needs one branch."""
    for key, rules in pattern.items():
        if key == "$or":
            matched = any(event_pattern_matches(branch, event, path) for branch in rules)
        elif isinstance(rules, dict):
            matched = event_pattern_matches(rules, event, (*path, key))
        else:
            values = _leaf_values(event, (*path, key))
            exists = [r["exists"] for r in rules if isinstance(r, dict) and "exists" in r]
            others = [r for r in rules if not (isinstance(r, dict) and "exists" in r)]
            matched = any(e == bool(values) for e in exists) or any(_matches(v, r) for v in values for r in others)
        if not matched:
            return False
    return True


# The EventBridge user guide's examples ("Content filtering in Amazon EventBridge event patterns").
GUIDE_EVENT = {
    "version": "0",
    "id": "ddddd4-aaaa-7777-4444-345499zzz",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "123456789012",
    "time": "2017-10-02T18:43:48Z",
    "region": "us-east-1",
    "resources": [
        "arn:aws:ec2:us-east-1:123456789012:instance/i-02ebd4584a2ebd341",
        "arn:aws:ec2:us-east-1:111122223333:eventbus/default",
    ],
    "detail": {
        "instance-id": "i-02ebd4584a2ebd341",
        "state": "running",
        "c-count": 5,
        "d-count": 3,
        "x-limit": 301.8,
        "source-ip": "10.0.0.33",
        "location": None,
    },
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"source": ["aws.ec2"], "detail": {"state": ["running"]}}, True),
        ({"source": ["aws.ec2"], "detail": {"state": ["stopped"]}}, False),
        ({"resources": ["arn:aws:ec2:us-east-1:111122223333:eventbus/default"]}, True),  # any element of an array
        ({"time": [{"prefix": "2017-10-02"}]}, True),
        ({"time": [{"prefix": "2017-10-03"}]}, False),
        ({"detail": {"state": [{"anything-but": "initializing"}]}}, True),
        ({"detail": {"state": [{"anything-but": ["stopped", "running"]}]}}, False),
        ({"detail": {"state": [{"anything-but": {"prefix": "run"}}]}}, False),
        ({"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}]}}, True),
        ({"detail": {"c-count": [{"numeric": [">", 5]}]}}, False),
        ({"detail": {"x-limit": [{"numeric": ["=", 3.018e2]}]}}, True),
        ({"detail": {"c-count": [{"anything-but": 0}]}}, True),
        ({"detail": {"c-count": [{"anything-but": 5}]}}, False),
        ({"detail": {"nothing": [{"anything-but": 0}]}}, False),  # anything-but needs the field
        ({"detail": {"nothing": [{"exists": False}]}}, True),
        ({"detail": {"state": [{"exists": True}]}}, True),
        ({"detail": {"location": [None]}}, True),
        ({"detail": {"c-count": ["5"]}}, False),  # a string never equals a number
        ({"detail": {"$or": [{"c-count": [{"numeric": [">", 5]}]}, {"d-count": [{"numeric": ["<", 10]}]}]}}, True),
        ({"detail": {"$or": [{"c-count": [{"numeric": [">", 5]}]}, {"d-count": [{"numeric": ["<", 2]}]}]}}, False),
    ],
)
def test_the_matcher_agrees_with_the_eventbridge_user_guide(pattern, expected):
    assert event_pattern_matches(pattern, GUIDE_EVENT) is expected


def test_array_elements_are_flattened_like_eventbridge_does():
    event = {"detail": {"containers": [{"name": "sidecar", "exitCode": 0}, {"name": "run-worker", "exitCode": 1}]}}
    assert event_pattern_matches({"detail": {"containers": {"exitCode": [{"anything-but": 0}]}}}, event)
    assert not event_pattern_matches({"detail": {"containers": {"exitCode": [2]}}}, event)


def ecs_task_stopped(
    env: str,
    family: str,
    *,
    exit_code: int | None,
    stop_code: str = "EssentialContainerExited",
    cluster: str | None = None,
    last_status: str = "STOPPED",
) -> dict:
    """An ECS Task State Change event, in the shape of the ECS developer guide's example."""
    account, region = "123456789012", "eu-west-3"
    cluster = cluster or f"weward-{env}"
    container = {
        "containerArn": f"arn:aws:ecs:{region}:{account}:container/{cluster}/0f3a/8c1d",
        "name": "run-worker",
        "lastStatus": "STOPPED" if last_status == "STOPPED" else "RUNNING",
        "taskArn": f"arn:aws:ecs:{region}:{account}:task/{cluster}/0f3a",
    }
    if exit_code is not None:
        container["exitCode"] = exit_code
    return {
        "version": "0",
        "id": "3317b2af-7005-947d-b652-f55e762e571a",
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": account,
        "time": "2026-11-30T01:14:07Z",
        "region": region,
        "resources": [f"arn:aws:ecs:{region}:{account}:task/{cluster}/0f3a"],
        "detail": {
            "clusterArn": f"arn:aws:ecs:{region}:{account}:cluster/{cluster}",
            "containers": [container],
            "desiredStatus": "STOPPED",
            "group": f"family:{family}",
            "lastStatus": last_status,
            "launchType": "FARGATE",
            "stopCode": stop_code,
            "stoppedReason": "Essential container in task exited",
            "taskArn": f"arn:aws:ecs:{region}:{account}:task/{cluster}/0f3a",
            "taskDefinitionArn": f"arn:aws:ecs:{region}:{account}:task-definition/{family}:7",
        },
    }


@pytest.mark.parametrize("env", ENVS)
def test_the_failed_run_rule_matches_a_non_zero_exit_or_a_task_that_never_started_and_nothing_else(env):
    rendering = render(env)
    rule = rendering.event_rules[f"weward-{env}-run-failed"]
    pattern = rule.event_pattern
    for run in ("export", "redact", "erase"):
        family = f"weward-{env}-{run}"
        assert event_pattern_matches(pattern, ecs_task_stopped(env, family, exit_code=1)), f"{family} exit 1"
        assert event_pattern_matches(pattern, ecs_task_stopped(env, family, exit_code=137)), f"{family} OOM kill"
        assert event_pattern_matches(
            pattern, ecs_task_stopped(env, family, exit_code=None, stop_code="TaskFailedToStart")
        )
        assert not event_pattern_matches(pattern, ecs_task_stopped(env, family, exit_code=0)), f"{family} exit 0"
    export = f"weward-{env}-export"
    assert not event_pattern_matches(pattern, ecs_task_stopped(env, export, exit_code=1, last_status="RUNNING"))
    assert not event_pattern_matches(pattern, ecs_task_stopped(env, export, exit_code=1, cluster="someone-else"))
    assert not event_pattern_matches(pattern, ecs_task_stopped(env, f"weward-{env}-exporter", exit_code=1))
    # The Dagster service's own tasks stop at every deployment: not a failed run.
    assert not event_pattern_matches(pattern, ecs_task_stopped(env, f"weward-{env}-dagster-daemon", exit_code=143))


@pytest.mark.parametrize("env", ENVS)
def test_failed_runs_and_dead_letters_reach_the_encrypted_topic(env):
    rendering = render(env)
    (topic,) = rendering.resources("aws_sns_topic")
    topic_arn = topic.values["arn"]
    (key_arn,) = rendering.key_policies
    assert topic.values["kms_master_key_id"] == key_arn

    rule = rendering.event_rules[f"weward-{env}-run-failed"]
    (target,) = rule.targets
    assert target["arn"] == topic_arn
    template = target["input_transformer"][0]["input_template"]
    assert json.loads(template.replace("<", "").replace(">", ""))  # a JSON string, as SNS expects

    (alarm,) = rendering.resources("aws_cloudwatch_metric_alarm")
    (queue,) = rendering.resources("aws_sqs_queue")
    assert alarm.values["alarm_actions"] == [topic_arn]
    assert alarm.values["dimensions"] == {"QueueName": queue.values["name"]}
    assert alarm.values["metric_name"] == "ApproximateNumberOfMessagesVisible" and alarm.values["threshold"] == 1

    (policy,) = rendering.resources("aws_sns_topic_policy")
    publishers = {
        s["Principal"]["Service"]: s["Condition"]["ArnEquals"]["aws:SourceArn"]
        for s in json.loads(policy.values["policy"])["Statement"]
        if s["Action"] == "sns:Publish"
    }
    assert publishers == {
        "events.amazonaws.com": rule.values["arn"],
        "cloudwatch.amazonaws.com": f"arn:aws:cloudwatch:{rendering.region}:{rendering.account_id}:alarm:{alarm.values['alarm_name']}",
    }
    key_services = {
        service
        for s in rendering.key_policies[key_arn]["Statement"]
        if {"kms:GenerateDataKey", "kms:Decrypt"} <= set(as_list(s["Action"]))
        for service in as_list(s["Principal"].get("Service", []))
    }
    assert {"events.amazonaws.com", "cloudwatch.amazonaws.com"} <= key_services, (
        "they could not publish to the encrypted topic"
    )
