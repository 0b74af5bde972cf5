#!/usr/bin/env bash
# Create or update .venv from the lock files. Idempotent: when the venv was
# built from the same lock files, it returns in well under a second.
#   scripts/install.sh [--runtime-only | --gpu]
# --gpu: the runtime only, with TensorFlow's CUDA wheels (requirements/lock-gpu.txt),
# for a machine with NVIDIA GPUs (make gpu-check uses VENV=.venv-gpu).
# Env: PYTHON (default python3.11), VENV (default .venv).
set -euo pipefail

# shellcheck source=tfodkit/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tfodkit/lib.sh"

main() {
  local root python venv stamp want dev=1 lock=lock.txt
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  case "${1:-}" in
    "") ;;
    --runtime-only) dev=0 ;;
    --gpu) dev=0 lock=lock-gpu.txt ;;
    *) die 2 "unknown option ${1} (usage: scripts/install.sh [--runtime-only | --gpu])" ;;
  esac
  python=${PYTHON:-python3.11}
  venv=${VENV:-$root/.venv}

  command -v "$python" >/dev/null || die 2 "$python not found (install Python 3.11 or set PYTHON=/path/to/python3.11)"
  "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die 2 "$python is Python $("$python" -c 'import platform; print(platform.python_version())'), the lock is for 3.11 (set PYTHON=/path/to/python3.11)"

  # checkov (dev only) gets a venv of its own inside the main one, so that its
  # many dependencies never move the pins of lock.txt and lock-dev.txt.
  local checkov_venv="$venv/checkov"
  local locks=("$root/requirements/$lock" "$root/requirements/nodeps.txt")
  ((dev)) && locks+=("$root/requirements/lock-dev.txt" "$root/requirements/checkov.txt")
  want=$(cat "${locks[@]}" | sha256sum | cut -c1-16)
  stamp="$venv/.tfodkit-installed"
  # A full install from the same runtime locks holds the runtime: --runtime-only
  # (make demo) leaves it as it is instead of re-stamping it runtime-only.
  local full
  full=$(cat "${locks[@]}" "$root/requirements/lock-dev.txt" "$root/requirements/checkov.txt" | sha256sum | cut -c1-16)
  if ((!dev)) && [[ -f "$stamp" && "$(cat "$stamp")" == "$full" ]]; then
    echo "install: $venv is up to date (a full install)"
    return 0
  fi
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && { ((!dev)) || [[ -x "$checkov_venv/bin/checkov" ]]; }; then
    echo "install: $venv is up to date"
    return 0
  fi

  [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
  local pip=("$venv/bin/python" -m pip --disable-pip-version-check)
  "${pip[@]}" install --quiet --upgrade 'pip==25.3'
  echo "install: runtime packages (TensorFlow is ~600 MB: the first run takes a few minutes)"
  "${pip[@]}" install --progress-bar off -r "$root/requirements/$lock"
  if ((dev)); then
    "${pip[@]}" install --progress-bar off -r "$root/requirements/lock-dev.txt" -c "$root/requirements/lock.txt"
    echo "install: checkov, in its own venv ($checkov_venv)"
    [[ -x "$checkov_venv/bin/python" ]] || "$python" -m venv "$checkov_venv"
    "$checkov_venv/bin/python" -m pip --disable-pip-version-check install --quiet --upgrade 'pip==25.3'
    "$checkov_venv/bin/python" -m pip --disable-pip-version-check install --progress-bar off -r "$root/requirements/checkov.txt"
  fi
  "${pip[@]}" install --progress-bar off --no-deps --require-hashes -r "$root/requirements/nodeps.txt"
  if "${pip[@]}" show --quiet opencv-python >/dev/null 2>&1; then
    die 1 "opencv-python got installed beside opencv-python-headless (remove it: $venv/bin/pip uninstall -y opencv-python)"
  fi
  # Make the repository importable from the venv (python -m tfodkit anywhere).
  "$venv/bin/python" -c 'import site, sys; print(site.getsitepackages()[0])' \
    | { read -r sp; echo "$root" > "$sp/tfodkit-root.pth"; }
  echo "$want" > "$stamp"
  echo "install: done ($venv)"
}

main "$@"
