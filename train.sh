#!/usr/bin/env bash
# train.sh: one training run of a TFOD zoo model (fetch, readconfig, train,
# evaluate, export); the container's entrypoint. The steps, their signals and
# run.json are in tfodkit/run.py; this script only picks the Python that has
# the toolkit's dependencies and runs it. ./train.sh --help for the arguments.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tfodkit/lib.sh
source "$HERE/tfodkit/lib.sh"

# TFODKIT_PYTHON, else PYTHON (its old name), else the venv beside this script, else python3.
py=${TFODKIT_PYTHON:-${PYTHON:-}}
if [[ -z "$py" ]]; then
  if [[ -x "$HERE/.venv/bin/python" ]]; then py=$HERE/.venv/bin/python; else py=python3; fi
fi
command -v "$py" >/dev/null || die 2 "$py not found (run make install, or set TFODKIT_PYTHON to a Python with the toolkit's dependencies)"
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" -m tfodkit.run "$@"
