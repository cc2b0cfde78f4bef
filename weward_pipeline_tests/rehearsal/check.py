"""The rehearsal's verdict: every recorded call of a job must be allowed for the role its task runs as."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from weward_pipeline_tests.rehearsal.authz import Authorization, Environment, authorize
from weward_pipeline_tests.rehearsal.iam import Request, evaluate
from weward_pipeline_tests.rehearsal.proxy import RecordedRequest


@dataclass(frozen=True)
class Denial:
    job: str
    role: str
    call: str  # the recorded request, as sent
    authorization: Authorization
    decision: str
    statements: tuple[str, ...]

    def __str__(self) -> str:
        a = self.authorization
        context = {k: v for k, v in a.context.items() if k != "aws:SecureTransport"}
        why = f" ({a.why})" if a.why else ""
        by = f" by {', '.join(self.statements)}" if self.statements else ""
        return (
            f"job {self.job}: {self.call} [{a.operation}] needs {a.action} on {a.resource}"
            f"{' with ' + json.dumps(context, sort_keys=True) if context else ''}{why}: "
            f"{self.decision.replace('_', ' ')}{by} for role {self.role}"
        )


def denials(
    job: str, records: Iterable[RecordedRequest], policies: Sequence[Mapping], role: str, env: Environment
) -> list[Denial]:
    """Every authorization of every recorded request that the policies do not allow (deduplicated)."""
    found: dict[tuple, Denial] = {}
    for record in records:
        for authorization in authorize(record, env):
            key = (
                authorization.action,
                authorization.resource,
                tuple(sorted((k, str(v)) for k, v in authorization.context.items())),
            )
            if key in found:
                continue
            decision = evaluate(policies, Request(authorization.action, authorization.resource, authorization.context))
            if not decision.allowed:
                found[key] = Denial(job, role, record.describe(), authorization, decision.decision, decision.statements)
    return list(found.values())


def report(found: Sequence[Denial]) -> str:
    return "\n".join(str(d) for d in found)
