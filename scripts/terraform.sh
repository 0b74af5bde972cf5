#!/usr/bin/env bash
# Provision, inspect and tear down the ECS GPU training cluster (terraform/).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/terraform.sh <command> [terraform options...]

  setup            terraform init (downloads the AWS provider)
  plan             show what apply would change
  apply            create or update the cluster (asks for confirmation)
  destroy          delete everything terraform created (asks for confirmation)
  runtask-config   write `terraform output -json` to configs.json, for runtask.sh

Extra options go to terraform, e.g. `scripts/terraform.sh apply -auto-approve`.
Env: TFVARS  variables file (default terraform/config.tfvars)
     CONFIGS where runtask-config writes (default configs.json at the repo root)
EOF
}

# shellcheck source=tfodkit/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tfodkit/lib.sh"

main() {
  local root cmd tfdir tfvars
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  cmd=${1:-}
  case "$cmd" in
    -h|--help) usage; return 0 ;;
    setup|plan|apply|destroy|runtask-config) shift ;;
    "") usage >&2; exit 2 ;;
    *) die 2 "unknown command $cmd (see scripts/terraform.sh --help)" ;;
  esac
  tfdir=$root/terraform
  command -v terraform >/dev/null \
    || die 2 "terraform not found (install Terraform >= 1.9: https://developer.hashicorp.com/terraform/install)"

  case "$cmd" in
    setup)
      terraform -chdir="$tfdir" init -input=false "$@"
      return ;;
    runtask-config)
      runtask_config "$tfdir" "${CONFIGS:-$root/configs.json}" "$@"
      return ;;
  esac

  # plan, apply and destroy need the variables file and an initialised dir.
  # -chdir resolves -var-file against terraform/, so pass an absolute path.
  tfvars=${TFVARS:-$tfdir/config.tfvars}
  [[ -f "$tfvars" ]] \
    || die 2 "$tfvars not found (cp terraform/config.tfvars.example terraform/config.tfvars and fill it in, or set TFVARS=path)"
  tfvars=$(cd "$(dirname "$tfvars")" && pwd)/$(basename "$tfvars")
  [[ -d "$tfdir/.terraform" ]] || die 2 "terraform/ is not initialised (run make setup)"
  terraform -chdir="$tfdir" "$cmd" -input=false -var-file="$tfvars" "$@"
}

# configs.json is written to a temporary file and renamed, so runtask.sh never
# reads half of one; an empty output (nothing applied yet) is an error.
runtask_config() {
  local tfdir=$1 out=$2 tmp
  shift 2
  tmp=$(mktemp "$out.XXXXXX")
  if ! terraform -chdir="$tfdir" output -json "$@" >"$tmp"; then
    rm -f "$tmp"
    die 1 "terraform output failed (run make setup and make apply first)"
  fi
  if ! grep -q '"cluster_name"' "$tmp"; then
    rm -f "$tmp"
    die 1 "terraform has no outputs yet (run make apply first)"
  fi
  mv "$tmp" "$out"
  echo "runtask-config: wrote $out"
}

main "$@"
