#!/usr/bin/env bash
# Run every linter the project uses; all of them come from the venv (PyPI),
# checkov from its own venv inside it.
#   scripts/lint.sh        Env: VENV (default .venv)
set -euo pipefail

# shellcheck source=tfodkit/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tfodkit/lib.sh"

main() {
  local root bin
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  bin=${VENV:-$root/.venv}/bin
  cd "$root"
  for tool in ruff shellcheck hadolint; do
    [[ -x "$bin/$tool" ]] || die 2 "$tool not found in $bin (run make install)"
  done

  echo "lint: ruff"
  "$bin/ruff" check .
  echo "lint: shellcheck"
  mapfile -t scripts < <({ git ls-files '*.sh' .ci/run; ls ./*.sh scripts/*.sh 2>/dev/null; } | sed 's|^\./||' | sort -u)
  "$bin/shellcheck" -x "${scripts[@]}"
  if [[ -f Dockerfile ]]; then
    echo "lint: hadolint"
    "$bin/hadolint" Dockerfile
  fi
  if [[ -d terraform ]]; then
    command -v terraform >/dev/null || die 2 "terraform not found (needed for terraform fmt -check)"
    echo "lint: terraform fmt -check"
    terraform fmt -check -recursive terraform
    # checkov has a venv of its own (scripts/install.sh); its settings and the
    # checks it skips, each with the reason, are in terraform/.checkov.yaml.
    local checkov=${bin%/bin}/checkov/bin/checkov
    [[ -x "$checkov" ]] || die 2 "checkov not found at $checkov (run make install)"
    echo "lint: checkov"
    "$checkov" -d terraform
  fi
  echo "lint: ok"
}

main "$@"
