"""An IAM identity-policy evaluator: does this policy allow this (action, resource, context)?

moto's IAM enforcement cannot be the oracle (it ignores Resource and Condition), and no PyPI
package evaluates requests against Resource and Condition while being maintained (policy_sentry,
parliament and cloudsplaining lint or generate policies; principalmapper's simulator stopped in
2022). So this is ours, small, and tested on the examples of the IAM User Guide
(weward_pipeline_tests/test_rehearsal_iam.py cites each page).

What it implements, as the IAM User Guide states it:
- Policy evaluation logic: an explicit Deny in any statement wins; otherwise an Allow that matches
  allows; otherwise the request is implicitly denied.
- Action / NotAction (case-insensitive, `*` and `?` wildcards); Resource / NotResource (each of
  the six colon-separated ARN components matched separately, case-sensitive, wildcards).
- Condition: every operator block must hold, every key in a block must hold, and a key holds when
  any of its policy values matches (OR). String*, Numeric*, Date*, Bool, BinaryEquals, IpAddress,
  NotIpAddress, Arn*, Null; the ...IfExists suffix; the ForAnyValue: / ForAllValues: qualifiers.
  A key missing from the request context makes a positive operator false and a negated one
  (StringNotEquals, ArnNotLike, ...) true, except ...IfExists (true) and Null (tests presence).
- Policy variables ${key}, ${key, 'default'} and the escapes ${*} ${?} ${$} in Resource and in
  String/Arn condition values.

Only identity policies are evaluated (the roles' inline policies); resource policies, SCPs and
permission boundaries are out of scope: the stack has no bucket policy that grants anything.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

ContextValue = str | Sequence[str]

_NEGATED = {
    "StringNotEquals",
    "StringNotEqualsIgnoreCase",
    "StringNotLike",
    "NumericNotEquals",
    "DateNotEquals",
    "NotIpAddress",
    "ArnNotEquals",
    "ArnNotLike",
}
_OPERATORS = {
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "DateEquals",
    "DateNotEquals",
    "DateLessThan",
    "DateLessThanEquals",
    "DateGreaterThan",
    "DateGreaterThanEquals",
    "Bool",
    "BinaryEquals",
    "IpAddress",
    "NotIpAddress",
    "ArnEquals",
    "ArnLike",
    "ArnNotEquals",
    "ArnNotLike",
    "Null",
}


class PolicyError(ValueError):
    """The policy uses something this evaluator does not know: never guess an answer."""


@dataclass(frozen=True)
class Request:
    """One authorization: an action on a resource ARN, with its request context keys."""

    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    decision: str  # "allowed", "explicit_deny" or "implicit_deny"
    statements: tuple[str, ...] = ()  # the Sids (or indexes) that decided

    @property
    def allowed(self) -> bool:
        return self.decision == "allowed"


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _glob_regex(pattern: str, *, ignore_case: bool = False) -> re.Pattern:
    parts = []
    for char in pattern:
        parts.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    return _glob_regex(pattern, ignore_case=ignore_case).fullmatch(value) is not None


_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def _lookup(context: Mapping[str, ContextValue], key: str) -> list[str] | None:
    for name, value in context.items():
        if name.lower() == key.lower():  # condition key names are case-insensitive
            return [str(v) for v in _as_list(value)]
    return None


def substitute(value: str, context: Mapping[str, ContextValue]) -> str | None:
    """Replace policy variables; None when a variable has no value and no default (no match)."""
    missing = False

    def replace(match: re.Match) -> str:
        nonlocal missing
        body = match.group(1)
        if body in ("*", "?", "$"):
            return "\0" + body  # a literal, protected from wildcard expansion below
        name, _, default = body.partition(",")
        found = _lookup(context, name.strip())
        if found and len(found) == 1:
            return found[0]
        default = default.strip()
        if default.startswith("'") and default.endswith("'") and len(default) >= 2:
            return default[1:-1]
        missing = True
        return ""

    result = _VARIABLE.sub(replace, value)
    return None if missing else result


def _literal_glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """A glob where "\\0*" / "\\0?" / "\\0$" (escaped policy variables) are literal characters."""
    parts, i = [], 0
    while i < len(pattern):
        if pattern[i] == "\0":
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        char = pattern[i]
        parts.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
        i += 1
    regex = re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))
    return regex.fullmatch(value) is not None


def _unescape(value: str) -> str:
    return value.replace("\0", "")


def arn_like(pattern: str, arn: str) -> bool:
    """ArnLike: each of the six colon-delimited components is matched on its own."""
    if pattern == "*":
        return True
    pattern_parts = pattern.split(":", 5)
    arn_parts = arn.split(":", 5)
    if len(pattern_parts) != 6 or len(arn_parts) != 6:
        return _literal_glob(pattern, arn)
    return all(_literal_glob(p, a) for p, a in zip(pattern_parts, arn_parts))


def action_matches(pattern: str, action: str) -> bool:
    return _glob(pattern, action, ignore_case=True)


def resource_matches(pattern: str, resource: str, context: Mapping[str, ContextValue]) -> bool:
    expanded = substitute(pattern, context)
    return expanded is not None and arn_like(expanded, resource)


def _parse_date(value: str) -> dt.datetime:
    text = value.strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return dt.datetime.fromtimestamp(float(text), dt.UTC)
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _compare(operator: str, policy_value: str, request_value: str, context) -> bool:
    """The positive form of `operator` on one (policy value, request value) pair."""
    if operator == "NotIpAddress":
        base = "IpAddress"
    else:
        base = operator.replace("Not", "", 1) if operator in _NEGATED else operator
    if base.startswith("String") or base.startswith("Arn"):
        expanded = substitute(policy_value, context)
        if expanded is None:
            return False
        if base == "StringEquals":
            return _unescape(expanded) == request_value
        if base == "StringEqualsIgnoreCase":
            return _unescape(expanded).lower() == request_value.lower()
        if base == "StringLike":
            return _literal_glob(expanded, request_value)
        if base in ("ArnEquals", "ArnLike"):
            return arn_like(expanded, request_value)
    if base.startswith("Numeric"):
        a, b = float(request_value), float(policy_value)
        return {
            "NumericEquals": a == b,
            "NumericLessThan": a < b,
            "NumericLessThanEquals": a <= b,
            "NumericGreaterThan": a > b,
            "NumericGreaterThanEquals": a >= b,
        }[base]
    if base.startswith("Date"):
        a, b = _parse_date(request_value), _parse_date(policy_value)
        return {
            "DateEquals": a == b,
            "DateLessThan": a < b,
            "DateLessThanEquals": a <= b,
            "DateGreaterThan": a > b,
            "DateGreaterThanEquals": a >= b,
        }[base]
    if base == "Bool":
        expanded = substitute(policy_value, context)
        return expanded is not None and expanded.lower() == request_value.lower()
    if base == "BinaryEquals":
        return base64.b64decode(policy_value) == base64.b64decode(request_value)
    if base == "IpAddress":
        return ipaddress.ip_address(request_value) in ipaddress.ip_network(policy_value, strict=False)
    raise PolicyError(f"condition operator {operator!r} is not supported")


def _condition_holds(block: str, key: str, policy_values: list, context: Mapping[str, ContextValue]) -> bool:
    qualifier, _, operator = block.rpartition(":")
    if qualifier not in ("", "ForAnyValue", "ForAllValues"):
        raise PolicyError(f"unknown condition qualifier {qualifier!r} in {block!r}")
    if_exists = operator.endswith("IfExists") and operator != "IfExists"
    if if_exists:
        operator = operator[: -len("IfExists")]
    if operator not in _OPERATORS:
        raise PolicyError(f"unknown condition operator {block!r}")
    values = _lookup(context, key)
    policy_values = [str(v).lower() if isinstance(v, bool) else str(v) for v in _as_list(policy_values)]
    if operator == "Null":
        if if_exists or qualifier:
            raise PolicyError(f"{block!r}: Null takes no qualifier and no IfExists")
        return any((values is None) == (v.lower() == "true") for v in policy_values)
    negated = operator in _NEGATED

    def one(request_value: str) -> bool:
        positive = any(_compare(operator, p, request_value, context) for p in policy_values)
        return not positive if negated else positive

    if qualifier == "ForAllValues":
        return all(one(v) for v in (values or []))  # an absent or empty key: true
    if qualifier == "ForAnyValue":
        return any(one(v) for v in (values or []))  # an absent or empty key: false
    if values is None:
        return if_exists or negated
    if negated:
        return all(one(v) for v in values)
    return any(one(v) for v in values)


def statement_matches(statement: Mapping, request: Request) -> bool:
    if "Action" in statement:
        if not any(action_matches(p, request.action) for p in _as_list(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(action_matches(p, request.action) for p in _as_list(statement["NotAction"])):
            return False
    else:
        raise PolicyError(f"statement {statement.get('Sid', '?')} has neither Action nor NotAction")
    if "Resource" in statement:
        if not any(resource_matches(p, request.resource, request.context) for p in _as_list(statement["Resource"])):
            return False
    elif "NotResource" in statement:
        if any(resource_matches(p, request.resource, request.context) for p in _as_list(statement["NotResource"])):
            return False
    else:
        raise PolicyError(f"statement {statement.get('Sid', '?')} has neither Resource nor NotResource")
    for block, keys in (statement.get("Condition") or {}).items():
        for key, policy_values in keys.items():
            if not _condition_holds(block, key, policy_values, request.context):
                return False
    return True


def statements(policies: Iterable[Mapping]) -> list[tuple[str, Mapping]]:
    found = []
    for p, policy in enumerate(policies):
        for s, statement in enumerate(_as_list(policy.get("Statement"))):
            effect = statement.get("Effect")
            if effect not in ("Allow", "Deny"):
                raise PolicyError(f"statement {statement.get('Sid', s)} has Effect {effect!r}")
            found.append((statement.get("Sid") or f"policy{p}.statement{s}", statement))
    return found


def evaluate(policies: Iterable[Mapping], request: Request) -> Decision:
    """Explicit Deny > Allow > implicit deny, over every statement of every policy."""
    matched = [(sid, s["Effect"]) for sid, s in statements(policies) if statement_matches(s, request)]
    denies = tuple(sid for sid, effect in matched if effect == "Deny")
    if denies:
        return Decision("explicit_deny", denies)
    allows = tuple(sid for sid, effect in matched if effect == "Allow")
    if allows:
        return Decision("allowed", allows)
    return Decision("implicit_deny")
