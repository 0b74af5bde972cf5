#!/usr/bin/env bash
# train.sh: fetch inputs, merge the config, train, evaluate and export one TFOD
# zoo model. The container's entrypoint; orchestration only: every decision is
# made in Python (tfodkit/), where it is tested.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: ./train.sh <models_dir> <training_dir> <exported_model_dir> <records_dir|s3://bucket/prefix> "<zoo model name>" [<training.config|s3://...>] [<hparams.json|s3://...>]

  models_dir          a TFOD source checkout (research/object_detection is put on
                      PYTHONPATH), or any other folder to use the installed TFOD
  training_dir        pipeline.config, checkpoints, TensorBoard events, metrics.json,
                      run.json; rerunning on the same folder resumes
  exported_model_dir  the SavedModel (saved_model/, label_map.pbtxt, export.json)
  records_dir         training.record, testing.record (or shards) and classes.pbtxt
  zoo model name      e.g. "SSD MobileNet V2 FPNLite 320x320" (readconfig.py --list_models)

environment:
  TENSORBOARD=1            TensorBoard on 0.0.0.0:$TENSORBOARD_PORT during the run (0: off)
  TENSORBOARD_PORT=6006
  TFOD_NUM_GPUS            GPUs to use (default: every visible GPU)
  TFOD_CROSS_DEVICE_OPS    nccl (default) | hierarchical_copy | reduction_to_one_device
  TFOD_CPU_REPLICAS        with no GPU, mirror over N logical CPU devices
  TFOD_FROM_SCRATCH=1      random initial weights (no download for the 4 models in configs/base)
  TFOD_PRETRAINED_DIR      an extracted zoo model directory instead of a download
  TFOD_CACHE_DIR           zoo download cache (default ~/.cache/tfodkit/zoo)
  TFOD_ZOO_URL             zoo server (default download.tensorflow.org)
  TFOD_EXPORT_TFLITE=1     also write <exported_model_dir>/tflite/model.tflite (SSD models)
  ARTIFACTS_URI            s3://bucket/prefix: copy training_dir and exported_model_dir there at the end
  PYTHON                   Python with the toolkit's dependencies (default: .venv/bin/python
                           beside this script, else python3)

exit status: 0 when every step succeeded; 2 bad usage; 143 stopped by SIGTERM,
130 by SIGINT/Ctrl-C (during training a checkpoint is saved first: rerun to
resume); otherwise the failed step's status.
EOF
}

die() { printf 'error: %s\n' "$*" >&2; exit 2; }
log() { printf '[train.sh %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
child=""
tensorboard_pid=""
finished=0
received=""

# SIGTERM/SIGINT: stop the running step with SIGTERM (training saves a checkpoint
# first) and start no other. SIGTERM because background steps ignore SIGINT when
# job control is off, as in any script.
forward() {
  received=$1
  log "received SIG$1: stopping the running step"
  [[ -n "$child" ]] && kill -TERM "$child" 2>/dev/null || true
}

signal_status() { if [[ "$received" == INT ]]; then echo 130; else echo 143; fi; }

cleanup() {
  local rc=$?
  if [[ -n "$tensorboard_pid" ]]; then kill "$tensorboard_pid" 2>/dev/null || true; fi
  if ((!finished)) && [[ -n "${TRAINING_DIR:-}" && -f "$TRAINING_DIR/run.json" ]]; then
    "$PY" -m tfodkit.runlog finish --training_dir "$TRAINING_DIR" --export_dir "$EXPORT_DIR" --status "$rc" \
      >/dev/null 2>&1 || true
  fi
  exit "$rc"
}

# Run a step in the background so that signals reach this script while it waits.
run_child() {
  "$@" &
  child=$!
  local rc=0
  while true; do
    wait "$child" && rc=0 || rc=$?
    kill -0 "$child" 2>/dev/null || break  # still running: a signal interrupted wait
  done
  child=""
  return "$rc"
}

stop() {  # stop <status>: record the outcome in run.json and exit with it
  "$PY" -m tfodkit.runlog finish --training_dir "$TRAINING_DIR" --export_dir "$EXPORT_DIR" --status "$1"
  finished=1
  exit "$1"
}

step() {
  local name=$1 t0=$SECONDS rc=0
  shift
  [[ -z "$received" ]] || stop "$(signal_status)"  # a signal between steps: start no other
  log "step $name: start"
  run_child "$@" || rc=$?
  if ((rc != 0)) && [[ -n "$received" ]]; then rc=$(signal_status); fi
  "$PY" -m tfodkit.runlog step --training_dir "$TRAINING_DIR" --name "$name" --status "$rc" \
    --seconds "$((SECONDS - t0))"
  log "step $name: status $rc after $((SECONDS - t0)) s"
  ((rc == 0)) || stop "$rc"
}

fetch_file() {  # fetch_file <local path or s3 URI> <dest dir>: prints the local path
  local src=$1 dest=$2 local_path
  if [[ "$src" == s3://* ]]; then
    local_path="$dest/$(basename "$src")"
    aws s3 cp --only-show-errors "$src" "$local_path" >&2
  else
    local_path=$src
  fi
  [[ -s "$local_path" ]] || { printf 'error: %s is missing or empty\n' "$src" >&2; return 1; }
  printf '%s\n' "$local_path"
}

fetch_inputs() {
  local inputs="$TRAINING_DIR/inputs"
  mkdir -p "$inputs"
  if [[ "$RECORDS" == s3://* ]]; then
    aws s3 sync --only-show-errors "${RECORDS%/}/" "$inputs/records/"
    [[ -n "$(ls -A "$inputs/records" 2>/dev/null)" ]] || { echo "error: $RECORDS is empty" >&2; return 1; }
    RECORDS_DIR="$inputs/records"
  else
    [[ -d "$RECORDS" ]] || { echo "error: records dir $RECORDS does not exist" >&2; return 1; }
    RECORDS_DIR=$RECORDS
  fi
  if [[ -n "$CONFIG" ]]; then CONFIG_LOCAL=$(fetch_file "$CONFIG" "$inputs"); fi
  if [[ -n "$HPARAMS" ]]; then HPARAMS_LOCAL=$(fetch_file "$HPARAMS" "$inputs"); fi
  printf 'records=%s\nconfig=%s\nhparams=%s\n' "$RECORDS_DIR" "${CONFIG_LOCAL:-}" "${HPARAMS_LOCAL:-}" \
    > "$inputs/paths"
}

sync_artifacts() {
  aws s3 sync --only-show-errors "$TRAINING_DIR" "${ARTIFACTS_URI%/}/training"
  aws s3 sync --only-show-errors "$EXPORT_DIR" "${ARTIFACTS_URI%/}/exported_model"
}

start_tensorboard() {
  [[ "${TENSORBOARD:-1}" == "0" ]] && return 0
  local port=${TENSORBOARD_PORT:-6006}
  "$PY" -m tensorboard.main --logdir "$TRAINING_DIR" --host 0.0.0.0 --port "$port" \
    >"$TRAINING_DIR/tensorboard.log" 2>&1 &
  tensorboard_pid=$!
  log "TensorBoard: http://0.0.0.0:$port (log: $TRAINING_DIR/tensorboard.log)"
}

main() {
  if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then usage; exit 0; fi
  if (($# < 5 || $# > 7)); then usage >&2; die "expected 5 to 7 arguments, got $#"; fi
  local models_dir=$1
  TRAINING_DIR=$2 EXPORT_DIR=$3 RECORDS=$4 MODEL=$5 CONFIG=${6:-} HPARAMS=${7:-}
  PY=${PYTHON:-}
  if [[ -z "$PY" ]]; then
    if [[ -x "$HERE/.venv/bin/python" ]]; then PY="$HERE/.venv/bin/python"; else PY=python3; fi
  fi
  command -v "$PY" >/dev/null || die "$PY not found (run make install, or set PYTHON)"
  PATH="$PATH:$HERE/.venv/bin"  # make install's aws CLI, when there is no other
  if [[ "$RECORDS$CONFIG$HPARAMS${ARTIFACTS_URI:-}" == *s3://* ]]; then
    command -v aws >/dev/null || die "the aws CLI is needed for s3:// inputs (run make install)"
  fi
  [[ -z "$CONFIG" || "$CONFIG" == s3://* || -f "$CONFIG" ]] || die "training config $CONFIG not found"
  [[ -z "$HPARAMS" || "$HPARAMS" == s3://* || -f "$HPARAMS" ]] || die "hparams file $HPARAMS not found"
  if [[ -d "$models_dir/research/object_detection" ]]; then
    export PYTHONPATH="$models_dir/research${PYTHONPATH:+:$PYTHONPATH}"
    log "using TFOD from $models_dir/research"
  fi
  export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  "$PY" -m tfodkit.zoo resolve "$MODEL" >/dev/null || exit 2
  mkdir -p "$TRAINING_DIR"
  TRAINING_DIR=$(cd "$TRAINING_DIR" && pwd)
  EXPORT_DIR=$(mkdir -p "$(dirname "$EXPORT_DIR")" && cd "$(dirname "$EXPORT_DIR")" && pwd)/$(basename "$EXPORT_DIR")

  trap cleanup EXIT
  trap 'forward TERM' TERM
  trap 'forward INT' INT
  "$PY" -m tfodkit.runlog start --training_dir "$TRAINING_DIR" --model "$MODEL" --argv "$@"

  step fetch fetch_inputs
  local paths="$TRAINING_DIR/inputs/paths" records config hparams
  records=$(sed -n 's/^records=//p' "$paths")
  config=$(sed -n 's/^config=//p' "$paths")
  hparams=$(sed -n 's/^hparams=//p' "$paths")
  local readconfig=("$PY" "$HERE/readconfig.py" --pretrained_model "$MODEL" --records_dir "$records"
                    --output_dir "$TRAINING_DIR")
  [[ -n "$config" ]] && readconfig+=(--config_override "$config")
  [[ -n "$hparams" ]] && readconfig+=(--hparams "$hparams")
  [[ -n "${TFOD_NUM_GPUS:-}" ]] && readconfig+=(--num_gpus "$TFOD_NUM_GPUS")
  [[ -n "${TFOD_CPU_REPLICAS:-}" && -z "${TFOD_NUM_GPUS:-}" ]] && readconfig+=(--num_gpus "$TFOD_CPU_REPLICAS")
  [[ -n "${TFOD_PRETRAINED_DIR:-}" ]] && readconfig+=(--pretrained_dir "$TFOD_PRETRAINED_DIR")
  [[ "${TFOD_FROM_SCRATCH:-0}" == "1" ]] && readconfig+=(--from_scratch)
  step readconfig "${readconfig[@]}"

  start_tensorboard
  local train=("$PY" -m tfodkit.train --pipeline_config "$TRAINING_DIR/pipeline.config"
               --model_dir "$TRAINING_DIR" --cross_device_ops "${TFOD_CROSS_DEVICE_OPS:-nccl}")
  [[ -n "${TFOD_NUM_GPUS:-}" ]] && train+=(--num_gpus "$TFOD_NUM_GPUS")
  [[ -n "${TFOD_CPU_REPLICAS:-}" ]] && train+=(--cpu_replicas "$TFOD_CPU_REPLICAS")
  step train "${train[@]}"
  step evaluate "$PY" -m tfodkit.evaluate --pipeline_config "$TRAINING_DIR/pipeline.config" \
    --model_dir "$TRAINING_DIR"
  local export=("$PY" -m tfodkit.export --pipeline_config "$TRAINING_DIR/pipeline.config"
                --model_dir "$TRAINING_DIR" --output_dir "$EXPORT_DIR")
  [[ "${TFOD_EXPORT_TFLITE:-0}" == "1" ]] && export+=(--tflite)
  step export "${export[@]}"
  [[ -n "${ARTIFACTS_URI:-}" ]] && step artifacts sync_artifacts
  "$PY" -m tfodkit.runlog finish --training_dir "$TRAINING_DIR" --export_dir "$EXPORT_DIR" --status 0
  finished=1
  log "done: metrics $TRAINING_DIR/metrics.json, model $EXPORT_DIR, record $TRAINING_DIR/run.json"
}

main "$@"
