"""How a run's steps execute: in the run's own process when it reads PostgreSQL once, forked otherwise.

Most runs touch one table: the scheduled ECS task of one table, a backfill's one-day runs, a
redaction. Forking them buys nothing, and costs memory: the run process, a forkserver and one
child per step each hold their own copy of Dagster, pyarrow and the code location. Measured on
`dagster asset materialize` of one table and day (bench/, the whole process tree sampled): 726 MB
of RSS over 9 processes with the forkserver executor; run in its own process, the same run is
counted in bench/results.md.

A run with several steps in the `postgres_source` pool (the daily run of every table, a
multi-table backfill) keeps the forkserver executor: its exports overlap, up to the pool's limit.
"""

from __future__ import annotations

import dagster as dg

from weward_pipeline.defs.assets import SOURCE_POOL  # the pool of every step that uses PostgreSQL

_IN_PROCESS_CONFIG = {"retries": {"enabled": {}}}
# forkserver: each step forks from a process that has already imported dagster, pyarrow, boto3 and
# the code location, instead of a fresh interpreter importing them again for every step.
_MULTIPROCESS_CONFIG = {"retries": {"enabled": {}}, "start_method": {"forkserver": {}}}


def database_steps(execution_plan) -> int | None:
    """How many of the plan's steps to execute claim the database pool; None when it cannot tell."""
    try:
        steps = execution_plan.get_steps_to_execute_in_topo_order()
        return sum(1 for step in steps if step.pool == SOURCE_POOL)
    except AttributeError:  # Dagster changed its plan objects: assume several, as before
        return None


class OneReadInProcess(dg.Executor):
    """Delegates each run to Dagster's in-process executor or its multiprocess (forkserver) executor."""

    def __init__(self, in_process: dg.Executor, multiprocess: dg.Executor) -> None:
        self.in_process = in_process
        self.multiprocess = multiprocess

    @property
    def retries(self):
        return self.multiprocess.retries

    def choose(self, execution_plan) -> dg.Executor:
        steps = database_steps(execution_plan)
        return self.in_process if steps is not None and steps <= 1 else self.multiprocess

    def execute(self, plan_context, execution_plan):
        return self.choose(execution_plan).execute(plan_context, execution_plan)


@dg.executor(name="one_read_in_process", requirements=dg.multiple_process_executor_requirements())
def one_read_in_process_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    def build(definition: dg.ExecutorDefinition, config: dict) -> dg.Executor:
        context = dg.InitExecutorContext(
            job=init_context.job, executor_def=definition, executor_config=config, instance=init_context.instance
        )
        return definition.executor_creation_fn(context)

    return OneReadInProcess(
        build(dg.in_process_executor, _IN_PROCESS_CONFIG), build(dg.multiprocess_executor, _MULTIPROCESS_CONFIG)
    )
