#!/usr/bin/env bash
# make demo: the whole job offline on CPU, on data it makes itself.
#   scripts/demo.sh [demo_dir]       Env: VENV (default .venv), DEMO_IMAGES (240)
# synthetic shapes -> records (dataset tool) -> train.sh (SSD MobileNet V2
# FPNLite 320x320 from scratch: train, evaluate, export) -> predict.py on the
# held-out images -> report (exit 1 when mAP@0.5 < 0.9).
set -euo pipefail

# shellcheck source=tfodkit/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tfodkit/lib.sh"

main() {
  local root demo py
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  demo=${1:-$root/demo}
  py=${VENV:-$root/.venv}/bin/python
  [[ -x "$py" ]] || die 2 "$py not found (run make install)"
  cd "$root"
  mkdir -p "$demo"
  demo=$(cd "$demo" && pwd)

  if [[ ! -f "$demo/records/classes.pbtxt" ]]; then
    "$py" -m tfodkit.synthetic --output_dir "$demo/data" --images "${DEMO_IMAGES:-240}" --holdout 12 \
      --records_dir "$demo/records"
  fi
  TFOD_FROM_SCRATCH=1 TFODKIT_PYTHON="$py" "$root/train.sh" "$demo/models" "$demo/training" "$demo/exported" \
    "$demo/records" "SSD MobileNet V2 FPNLite 320x320" "$root/configs/demo.config" "$root/configs/demo_hparams.json"
  local status=0
  "$py" "$root/predict.py" --model "$demo/exported" --labels "$demo/exported/label_map.pbtxt" \
    --images "$demo/data/holdout" --output_dir "$demo/predictions" --min_confidence 0.5 --json || status=$?
  ((status == 0)) || die 1 "predict.py failed with status $status"
  "$py" -m tfodkit.demo report --demo_dir "$demo"
}

main "$@"
