#!/usr/bin/env bash
# make gpu-check: does TensorFlow train on this machine's GPUs, and how fast?
#   scripts/gpu-check.sh [gpucheck args...]      (python -m tfodkit.gpucheck --help)
# Env: GPU_CHECK_MODE=auto|image|venv (default auto: the image when Docker has the
# NVIDIA runtime, else a venv from requirements/lock-gpu.txt), IMAGE (default
# tfodkit:gpu, built when missing), VENV (default .venv-gpu), GPU_CHECK_OUT
# (default ./gpu-check). TFOD_ALLOW_CPU=1 runs the same check on the CPU.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tfodkit/lib.sh
source "$ROOT/tfodkit/lib.sh"

nvidia_docker() {
  command -v docker >/dev/null && docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia
}

main() {
  local mode=${GPU_CHECK_MODE:-auto} out=${GPU_CHECK_OUT:-$PWD/gpu-check}
  if [[ "$mode" == auto ]]; then
    if nvidia_docker; then mode=image; else mode=venv; fi
  fi
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  case "$mode" in
    image)
      local image=${IMAGE:-tfodkit:gpu}
      nvidia_docker || die 2 "Docker has no NVIDIA runtime (install nvidia-container-toolkit, or GPU_CHECK_MODE=venv)"
      if ! docker image inspect "$image" >/dev/null 2>&1; then
        echo "gpu-check: building $image (TF_VARIANT=gpu)"
        docker build --build-arg TF_VARIANT=gpu -t "$image" "$ROOT"
      fi
      echo "gpu-check: in the image $image"
      docker run --rm --gpus all -e TFOD_ALLOW_CPU="${TFOD_ALLOW_CPU:-0}" -v "$out:/opt/tfod/gpu-check" \
        --entrypoint python "$image" -m tfodkit.gpucheck --out /opt/tfod/gpu-check "$@"
      ;;
    venv)
      local venv=${VENV:-$ROOT/.venv-gpu}
      if [[ -z "${VENV:-}" ]]; then
        VENV=$venv "$ROOT/scripts/install.sh" --gpu
      fi
      [[ -x "$venv/bin/python" ]] || die 2 "$venv/bin/python not found (run scripts/install.sh --gpu)"
      echo "gpu-check: in the venv $venv"
      PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$venv/bin/python" -m tfodkit.gpucheck --out "$out" "$@"
      ;;
    *) die 2 "GPU_CHECK_MODE must be auto, image or venv, not '$mode'" ;;
  esac
}

main "$@"
