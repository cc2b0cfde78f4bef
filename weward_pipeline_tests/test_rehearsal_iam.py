"""The rehearsal's IAM evaluator, on the examples of the AWS IAM User Guide.

Each test names the page its policy and expected outcome come from:
- CONDITION_OPERATORS: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
- MULTI_VALUE: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html
  (formerly reference_policies_multi-value-conditions.html)
- EVALUATION_LOGIC: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
- NOT_ACTION / NOT_RESOURCE: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notaction.html,
  .../reference_policies_elements_notresource.html
- VARIABLES: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html
"""

from __future__ import annotations

import pytest

from weward_pipeline_tests.rehearsal.iam import PolicyError, Request, evaluate


def policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def decide(policies, action, resource, **context) -> str:
    return evaluate(policies if isinstance(policies, list) else [policies], Request(action, resource, context)).decision


# CONDITION_OPERATORS, "String condition operators": the principal must carry the tag.
PRINCIPAL_TAG = policy(
    {
        "Effect": "Allow",
        "Action": "iam:*AccessKey*",
        "Resource": "arn:aws:iam::111122223333:user/*",
        "Condition": {"StringEquals": {"aws:PrincipalTag/job-category": "iamuser-admin"}},
    }
)


def test_string_equals_needs_the_key_in_the_request_context():
    user = "arn:aws:iam::111122223333:user/bob"
    assert (
        decide(PRINCIPAL_TAG, "iam:CreateAccessKey", user, **{"aws:PrincipalTag/job-category": "iamuser-admin"})
        == "allowed"
    )
    assert (
        decide(PRINCIPAL_TAG, "iam:CreateAccessKey", user, **{"aws:PrincipalTag/job-category": "other"})
        == "implicit_deny"
    )
    assert decide(PRINCIPAL_TAG, "iam:CreateAccessKey", user) == "implicit_deny"  # "a user without the tag"
    assert (
        decide(PRINCIPAL_TAG, "IAM:createaccesskey", user, **{"aws:PrincipalTag/job-category": "iamuser-admin"})
        == "allowed"
    )
    assert (
        decide(PRINCIPAL_TAG, "iam:CreateUser", user, **{"aws:PrincipalTag/job-category": "iamuser-admin"})
        == "implicit_deny"
    )


# CONDITION_OPERATORS, StringLike with a policy variable: the S3 "home directory" policy.
HOME_DIRECTORY = policy(
    {"Effect": "Allow", "Action": ["s3:ListAllMyBuckets", "s3:GetBucketLocation"], "Resource": "arn:aws:s3:::*"},
    {
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": "arn:aws:s3:::BUCKET-NAME",
        "Condition": {"StringLike": {"s3:prefix": ["", "home/", "home/${aws:username}/"]}},
    },
    {
        "Effect": "Allow",
        "Action": "s3:*",
        "Resource": [
            "arn:aws:s3:::BUCKET-NAME/home/${aws:username}",
            "arn:aws:s3:::BUCKET-NAME/home/${aws:username}/*",
        ],
    },
)


def test_string_like_on_s3_prefix_with_the_username_variable():
    bucket, bob = "arn:aws:s3:::BUCKET-NAME", {"aws:username": "bob"}
    for prefix in ("", "home/", "home/bob/"):
        assert decide(HOME_DIRECTORY, "s3:ListBucket", bucket, **bob, **{"s3:prefix": prefix}) == "allowed", prefix
    assert decide(HOME_DIRECTORY, "s3:ListBucket", bucket, **bob, **{"s3:prefix": "home/alice/"}) == "implicit_deny"
    assert decide(HOME_DIRECTORY, "s3:GetObject", f"{bucket}/home/bob/notes.txt", **bob) == "allowed"
    assert decide(HOME_DIRECTORY, "s3:GetObject", f"{bucket}/home/alice/notes.txt", **bob) == "implicit_deny"
    assert decide(HOME_DIRECTORY, "s3:GetBucketLocation", bucket) == "allowed"


def test_a_list_without_an_s3_prefix_key_is_not_allowed_by_a_prefix_condition():
    """HeadBucket is authorized as s3:ListBucket with no s3:prefix in the context: StringLike is false."""
    assert (
        decide(HOME_DIRECTORY, "s3:ListBucket", "arn:aws:s3:::BUCKET-NAME", **{"aws:username": "bob"})
        == "implicit_deny"
    )


def test_numeric_less_than_equals_on_max_keys():  # CONDITION_OPERATORS, "Numeric condition operators"
    max_keys = policy(
        {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": "arn:aws:s3:::example_bucket",
            "Condition": {"NumericLessThanEquals": {"s3:max-keys": "10"}},
        }
    )
    assert decide(max_keys, "s3:ListBucket", "arn:aws:s3:::example_bucket", **{"s3:max-keys": "10"}) == "allowed"
    assert (
        decide(max_keys, "s3:ListBucket", "arn:aws:s3:::example_bucket", **{"s3:max-keys": "1000"}) == "implicit_deny"
    )
    assert decide(max_keys, "s3:ListBucket", "arn:aws:s3:::example_bucket") == "implicit_deny"


def test_date_greater_than_on_token_issue_time():  # CONDITION_OPERATORS, "Date condition operators"
    fresh = policy(
        {
            "Effect": "Allow",
            "Action": "iam:*AccessKey*",
            "Resource": "arn:aws:iam::111122223333:user/*",
            "Condition": {"DateGreaterThan": {"aws:TokenIssueTime": "2020-01-01T00:00:01Z"}},
        }
    )
    user = "arn:aws:iam::111122223333:user/bob"
    assert decide(fresh, "iam:ListAccessKeys", user, **{"aws:TokenIssueTime": "2020-06-01T10:00:00Z"}) == "allowed"
    assert (
        decide(fresh, "iam:ListAccessKeys", user, **{"aws:TokenIssueTime": "1577836800"}) == "implicit_deny"
    )  # 2020-01-01T00:00:00Z
    assert (
        decide(fresh, "iam:ListAccessKeys", user) == "implicit_deny"
    )  # access keys: no TokenIssueTime, "the request is denied"


def test_bool_deny_without_tls_overrides_an_allow():  # CONDITION_OPERATORS, "Boolean condition operators"
    allow_all = policy({"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    deny_plain = policy(
        {
            "Sid": "BooleanExample",
            "Action": "s3:*",
            "Effect": "Deny",
            "Resource": ["arn:aws:s3:::DOC-EXAMPLE-BUCKET", "arn:aws:s3:::DOC-EXAMPLE-BUCKET/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )
    obj = "arn:aws:s3:::DOC-EXAMPLE-BUCKET/a"
    assert evaluate(
        [allow_all, deny_plain], Request("s3:GetObject", obj, {"aws:SecureTransport": "false"})
    ).statements == ("BooleanExample",)
    assert decide([allow_all, deny_plain], "s3:GetObject", obj, **{"aws:SecureTransport": "false"}) == "explicit_deny"
    assert decide([allow_all, deny_plain], "s3:GetObject", obj, **{"aws:SecureTransport": "true"}) == "allowed"
    assert (
        decide([deny_plain], "s3:GetObject", obj, **{"aws:SecureTransport": "true"}) == "implicit_deny"
    )  # "does not allow any actions"


def test_ip_address_ranges_ipv4_and_ipv6():  # CONDITION_OPERATORS, "IP address condition operators"
    ips = policy(
        {
            "Effect": "Allow",
            "Action": "someservice:*",
            "Resource": "*",
            "Condition": {"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:DB8:1234:5678::/64"]}},
        }
    )
    assert decide(ips, "someservice:Do", "*", **{"aws:SourceIp": "203.0.113.77"}) == "allowed"
    assert decide(ips, "someservice:Do", "*", **{"aws:SourceIp": "2001:db8:1234:5678::1"}) == "allowed"
    assert decide(ips, "someservice:Do", "*", **{"aws:SourceIp": "203.0.114.1"}) == "implicit_deny"
    assert decide(ips, "someservice:Do", "*") == "implicit_deny"  # through a VPC endpoint: no aws:SourceIp


def test_arn_like_matches_each_component_where_string_like_does_not():  # CONDITION_OPERATORS, "ARN condition operators"
    pattern = "arn:aws:someservice:*:111122223333:finance/*"
    value = "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/document.txt"
    for operator, expected in (("StringLike", "allowed"), ("ArnLike", "implicit_deny")):
        p = policy(
            {
                "Effect": "Allow",
                "Action": "sqs:SendMessage",
                "Resource": "*",
                "Condition": {operator: {"aws:SourceArn": pattern}},
            }
        )
        assert decide(p, "sqs:SendMessage", "arn:aws:sqs:eu-west-3:1:q", **{"aws:SourceArn": value}) == expected, (
            operator
        )


def test_if_exists_lets_resources_without_the_key_through():  # CONDITION_OPERATORS, "...IfExists condition operators"
    types = ["t1.*", "t2.*", "m3.*"]
    broken = policy(
        {
            "Sid": "THISPOLICYDOESNOTWORK",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": "*",
            "Condition": {"StringLike": {"ec2:InstanceType": types}},
        }
    )
    working = policy(
        {
            "Sid": "RunInstance",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": "*",
            "Condition": {"StringLikeIfExists": {"ec2:InstanceType": types}},
        }
    )
    image, instance = "arn:aws:ec2:eu-west-3::image/ami-1", "arn:aws:ec2:eu-west-3:1:instance/*"
    assert decide(broken, "ec2:RunInstances", image) == "implicit_deny"
    assert decide(working, "ec2:RunInstances", image) == "allowed"
    assert decide(working, "ec2:RunInstances", instance, **{"ec2:InstanceType": "t2.micro"}) == "allowed"
    assert decide(working, "ec2:RunInstances", instance, **{"ec2:InstanceType": "c5.large"}) == "implicit_deny"


def test_null_tests_whether_the_key_is_present():  # CONDITION_OPERATORS, "Condition operator to check existence"
    long_term = policy(
        {"Action": "ec2:*", "Effect": "Allow", "Resource": "*", "Condition": {"Null": {"aws:TokenIssueTime": "true"}}}
    )
    assert decide(long_term, "ec2:DescribeInstances", "*") == "allowed"
    assert (
        decide(long_term, "ec2:DescribeInstances", "*", **{"aws:TokenIssueTime": "2024-01-01T00:00:00Z"})
        == "implicit_deny"
    )


def test_a_negated_operator_on_a_missing_key_is_true():  # CONDITION_OPERATORS, the "Important" note
    p = policy(
        {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": "*",
            "Condition": {"StringNotLike": {"s3:prefix": "private/*"}},
        }
    )
    assert decide(p, "s3:ListBucket", "arn:aws:s3:::b") == "allowed"
    assert decide(p, "s3:ListBucket", "arn:aws:s3:::b", **{"s3:prefix": "private/x"}) == "implicit_deny"
    assert decide(p, "s3:ListBucket", "arn:aws:s3:::b", **{"s3:prefix": "public/x"}) == "allowed"


def test_for_all_values_and_for_any_value():  # MULTI_VALUE, the DynamoDB Thread examples
    table = "arn:aws:dynamodb:eu-west-3:111122223333:table/Thread"
    only = policy(
        {
            "Effect": "Allow",
            "Action": "dynamodb:GetItem",
            "Resource": table,
            "Condition": {
                "ForAllValues:StringLike": {"dynamodb:requestedAttributes": ["PostDateTime", "Message", "Tags"]}
            },
        }
    )
    assert (
        decide(only, "dynamodb:GetItem", table, **{"dynamodb:requestedAttributes": ["PostDateTime", "Message"]})
        == "allowed"
    )
    assert (
        decide(only, "dynamodb:GetItem", table, **{"dynamodb:requestedAttributes": ["PostDateTime", "UserName"]})
        == "implicit_deny"
    )
    assert decide(only, "dynamodb:GetItem", table) == "allowed"  # an empty set: ForAllValues returns true
    allow = policy({"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": table})
    forbid = policy(
        {
            "Effect": "Deny",
            "Action": "dynamodb:PutItem",
            "Resource": table,
            "Condition": {"ForAnyValue:StringLike": {"dynamodb:requestedAttributes": ["ID", "PostDateTime"]}},
        }
    )
    attrs = {"dynamodb:requestedAttributes": ["UserName", "Message", "PostDateTime"]}
    assert decide([allow, forbid], "dynamodb:PutItem", table, **attrs) == "explicit_deny"
    assert (
        decide([allow, forbid], "dynamodb:PutItem", table, **{"dynamodb:requestedAttributes": ["UserName"]})
        == "allowed"
    )
    assert decide([allow, forbid], "dynamodb:PutItem", table) == "allowed"  # an empty set: ForAnyValue returns false


def test_explicit_deny_beats_allow_and_nothing_is_allowed_by_default():  # EVALUATION_LOGIC
    allow = policy({"Sid": "ReadAll", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"})
    deny = policy({"Sid": "NoSecrets", "Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::b/secret/*"})
    assert evaluate([allow, deny], Request("s3:GetObject", "arn:aws:s3:::b/secret/k")).statements == ("NoSecrets",)
    assert decide([allow, deny], "s3:GetObject", "arn:aws:s3:::b/public/k") == "allowed"
    assert decide([allow, deny], "s3:PutObject", "arn:aws:s3:::b/public/k") == "implicit_deny"
    assert decide([], "s3:GetObject", "arn:aws:s3:::b/public/k") == "implicit_deny"


def test_not_action_and_not_resource():  # NOT_ACTION, NOT_RESOURCE
    everything_but_iam = policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})
    assert decide(everything_but_iam, "s3:GetObject", "arn:aws:s3:::b/k") == "allowed"
    assert decide(everything_but_iam, "iam:CreateUser", "arn:aws:iam::1:user/x") == "implicit_deny"
    not_payroll = policy(
        {
            "Effect": "Allow",
            "Action": "s3:*",
            "NotResource": ["arn:aws:s3:::HRBucket/Payroll", "arn:aws:s3:::HRBucket/Payroll/*"],
        }
    )
    assert decide(not_payroll, "s3:GetObject", "arn:aws:s3:::HRBucket/Payroll/2024.csv") == "implicit_deny"
    assert decide(not_payroll, "s3:GetObject", "arn:aws:s3:::HRBucket/Other/2024.csv") == "allowed"


def test_resource_wildcards_stay_inside_their_arn_component():
    p = policy({"Effect": "Allow", "Action": "glue:GetTable", "Resource": "arn:aws:glue:*:111122223333:table/lake/*"})
    assert decide(p, "glue:GetTable", "arn:aws:glue:eu-west-3:111122223333:table/lake/users") == "allowed"
    assert decide(p, "glue:GetTable", "arn:aws:glue:eu-west-3:999999999999:table/lake/users") == "implicit_deny"
    assert decide(p, "glue:GetTable", "arn:aws:glue:eu-west-3:111122223333:table/other/users") == "implicit_deny"


def test_policy_variable_escapes_and_defaults():  # VARIABLES, "Special characters" and "Specifying default values"
    literal = policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/${*}star"})
    assert decide(literal, "s3:GetObject", "arn:aws:s3:::b/*star") == "allowed"
    assert decide(literal, "s3:GetObject", "arn:aws:s3:::b/xstar") == "implicit_deny"
    tagged = policy(
        {
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::b/${aws:PrincipalTag/team, 'company-wide'}/*",
        }
    )
    assert decide(tagged, "s3:GetObject", "arn:aws:s3:::b/company-wide/k") == "allowed"
    assert decide(tagged, "s3:GetObject", "arn:aws:s3:::b/data/k", **{"aws:PrincipalTag/team": "data"}) == "allowed"
    missing = policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/${aws:username}/*"})
    assert decide(missing, "s3:GetObject", "arn:aws:s3:::b//k") == "implicit_deny"


def test_an_unknown_operator_is_an_error_not_a_guess():
    p = policy(
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"StringSortOf": {"s3:prefix": "x"}}}
    )
    with pytest.raises(PolicyError, match="StringSortOf"):
        decide(p, "s3:ListBucket", "arn:aws:s3:::b", **{"s3:prefix": "x"})
