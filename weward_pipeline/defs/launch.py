"""Which ECS task definition a run is launched from, with the Dagster service (EcsRunLauncher).

The daemon's EcsRunLauncher starts every run from DAGSTER_RUN_TASK_DEFINITION, the export's (export
role, export DSN: no DELETE, no object versions). Runs that need another role name their task
definition in dagster-aws's `ecs/run_task_kwargs` run tag, from a variable Terraform sets on the
daemon and webserver (infra/modules/dagster_service): the redaction sensor's runs
(WEWARD_REDACTION_TASK_DEFINITION) and `gdpr_erasure` (WEWARD_ERASURE_TASK_DEFINITION). Unset (the
local stack, the scheduled ECS tasks, which run in their own task already): no tag.
"""

from __future__ import annotations

import json
import os

RUN_TASK_KWARGS_TAG = "ecs/run_task_kwargs"


def task_definition_tags(variable: str) -> dict[str, str]:
    task_definition = os.environ.get(variable, "").strip()
    return {RUN_TASK_KWARGS_TAG: json.dumps({"taskDefinition": task_definition})} if task_definition else {}
