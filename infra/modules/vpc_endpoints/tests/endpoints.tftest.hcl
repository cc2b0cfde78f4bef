# The VPC endpoints, planned against a mock AWS provider.

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012", arn = "arn:aws:iam::123456789012:user/ci", user_id = "AIDACI" }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-3", id = "eu-west-3", region = "eu-west-3" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws", dns_suffix = "amazonaws.com", id = "aws" }
  }
}

variables {
  name_prefix     = "weward-test"
  vpc_id          = "vpc-0123456789abcdef0"
  vpc_cidr        = "10.20.0.0/16"
  subnet_ids      = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]
  route_table_ids = ["rtb-0aaaaaaaaaaaaaaaa"]
}

run "interface_endpoints_resolve_privately_and_accept_https_from_the_vpc_only" {
  command = plan

  assert {
    condition     = alltrue([for e in aws_vpc_endpoint.interface : e.private_dns_enabled && e.vpc_endpoint_type == "Interface"])
    error_message = "the SDKs reach the endpoints under the services' own names"
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.https_from_vpc.cidr_ipv4 == var.vpc_cidr && aws_vpc_security_group_ingress_rule.https_from_vpc.from_port == 443
    error_message = "HTTPS from the VPC only"
  }
}
