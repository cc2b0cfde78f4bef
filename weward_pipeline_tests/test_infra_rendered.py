"""The deployment's wiring, asserted on Terraform's own rendering of each environment.

`render(env)` (terraform_render.py) plans infra/envs/<env> against a mock AWS provider whose ARNs
have the shape AWS gives them; these tests read what would be deployed: who may start what, with
which command, environment and volumes. Each defect of issue 11 has a test here that fails on the
infrastructure as it was.
"""

from __future__ import annotations

import pytest

from weward_pipeline_tests.terraform_render import ENVS, Role, as_list, render


def allow_statements(role: Role, action: str) -> list[dict]:
    """The Allow statements of a role that name `action` exactly (no wildcard is ever granted)."""
    return [s for s in role.statements() if s["Effect"] == "Allow" and action in as_list(s["Action"])]


def condition(statement: dict) -> dict[tuple[str, str], list]:
    return {(op, key): as_list(values) for op, keys in statement.get("Condition", {}).items()
            for key, values in keys.items()}


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("dagster_service", [False, True])
def test_each_schedule_may_run_tag_and_pass_exactly_what_its_task_needs(env, dagster_service):
    """Defect 1: RunTask with managed/propagated tags is also ecs:TagResource on the new task
    (condition ecs:CreateAction = RunTask); the scheduler role lacked it and every run failed."""
    rendering = render(env, dagster_service_enabled=dagster_service)
    cluster = rendering.outputs["ecs_cluster_name"]
    cluster_arn = f"arn:aws:ecs:{rendering.region}:{rendering.account_id}:cluster/{cluster}"
    assert rendering.schedules, "no schedule rendered"
    for name, schedule in rendering.schedules.items():
        task = schedule.task_definition
        assert task is not None and schedule.target_arn == cluster_arn, name
        role = schedule.role
        tags_requested = schedule.ecs["enable_ecs_managed_tags"] or schedule.ecs["propagate_tags"]

        (run,) = allow_statements(role, "ecs:RunTask")
        assert set(as_list(run["Resource"])) == {s.task_definition.arn for s in rendering.schedules.values()
                                                 if s.role is role}, name
        assert condition(run) == {("ArnEquals", "ecs:cluster"): [cluster_arn]}, name

        tag = allow_statements(role, "ecs:TagResource")
        if tags_requested:
            assert len(tag) == 1, f"{name}: starts tasks with tags but its role {role.name} may not tag them"
            assert as_list(tag[0]["Resource"]) == [f"arn:aws:ecs:{rendering.region}:{rendering.account_id}:task/{cluster}/*"]
            assert condition(tag[0]) == {("StringEquals", "ecs:CreateAction"): ["RunTask"]}, name

        (pass_role,) = allow_statements(role, "iam:PassRole")
        passed = {task.execution_role.arn, task.task_role.arn}
        assert passed <= set(as_list(pass_role["Resource"])), f"{name}: cannot pass {passed}"
        every_scheduled_task = [s.task_definition for s in rendering.schedules.values() if s.role is role]
        assert set(as_list(pass_role["Resource"])) == {arn for t in every_scheduled_task
                                                       for arn in (t.execution_role.arn, t.task_role.arn)}
        assert condition(pass_role) == {("StringEquals", "iam:PassedToService"): ["ecs-tasks.amazonaws.com"]}


@pytest.mark.parametrize("env", ENVS)
def test_a_failed_invocation_lands_in_an_encrypted_dead_letter_queue_the_scheduler_may_write(env):
    """Defect 1: without a dead-letter queue a refused RunTask left no trace anywhere."""
    rendering = render(env)
    (queue,) = rendering.resources("aws_sqs_queue")
    (key_arn,) = rendering.key_policies
    assert queue.values["kms_master_key_id"] == key_arn
    for name, schedule in rendering.schedules.items():
        assert schedule.dead_letter_arn == queue.values["arn"], name
        role = schedule.role
        assert [as_list(s["Resource"]) for s in allow_statements(role, "sqs:SendMessage")] == [[queue.values["arn"]]]
        assert any(key_arn in as_list(s["Resource"]) for s in allow_statements(role, "kms:GenerateDataKey"))


@pytest.mark.parametrize("env", ENVS)
def test_the_export_role_may_head_the_lake_bucket(env):
    """Defect 2: export.check_lake_reachable calls HeadBucket, authorized as s3:ListBucket with no
    s3:prefix key; the export role granted ListBucket only under an s3:prefix condition (403)."""
    rendering = render(env)
    bucket_arn = f"arn:aws:s3:::{rendering.outputs['lake_url'].removeprefix('s3://').split('/')[0]}"
    role = rendering.roles[f"weward-{env}-export"]
    head = [s for s in allow_statements(role, "s3:ListBucket")
            if as_list(s["Resource"]) == [bucket_arn] and condition(s) in ({}, {("Null", "s3:prefix"): ["true"]})]
    assert head, f"{role.name} cannot HeadBucket {bucket_arn}: every s3:ListBucket it has requires an s3:prefix"
