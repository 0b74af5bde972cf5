#!/usr/bin/env bash
# Launch one training run as an ECS task, forward TensorBoard, stream its log,
# and exit with the training container's exit code. The decisions live in
# tfodkit/runtask.py; this script only sequences them. See usage() / README.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: ./runtask.sh [options] configs.json s3://<records> "<zoo model name>" s3://<training.config> s3://<hparams.json>
       ./runtask.sh [options] --attach <run name, task ARN or id> configs.json

Runs train.sh as an ECS task with these inputs, prints the run's name, the task
ARN and console link, waits for RUNNING, forwards TensorBoard to localhost:6006
over SSM, streams the task's training log and exits with the training
container's exit code. When a task stops because its instance went away (stop
code SpotInterruption or TerminationNotice) before training finished, it starts
a new task for the same run, which resumes from the run's last checkpoint in S3,
and streams that one's log in turn. A failure of train.sh is never retried.
Ctrl-C stops watching and leaves the task running (it prints how to reattach).

options:
  --run NAME             the run's name: its tasks get RUN_NAME, its artifacts go to
                         <ARTIFACTS_TARGET>/runs/NAME/ (default: generated from the model and time)
  --max-restarts N       new tasks after spot reclaims, at most (default 3; 0: none)
  --max-wait SECONDS     wall clock for the whole run, restarts included; then the task is stopped
                         (a checkpoint is saved) and runtask exits non-zero (default: no limit)
  --attach RUN           follow a run (or a task) that is already running (or stopped) instead of
                         launching one; reclaims are relaunched as above
  --stop-on-interrupt    Ctrl-C also stops the task (env STOP_ON_INTERRUPT=1)
  --no-tensorboard       do not forward TensorBoard (env TENSORBOARD=0)
  -h, --help             show this help

environment:
  TFODKIT_PYTHON         Python for tfodkit (default .venv/bin/python, else python3)
  TENSORBOARD_PORT       local port for TensorBoard (default 6006)
  RUNTASK_POLL_SECONDS   seconds between status and log polls (default 5)
  RUNTASK_DRAIN_SECONDS  grace for the last log lines after the task stops (default 5)
  AWS_ENDPOINT_URL       talk to another AWS endpoint (as the aws CLI does)
EOF
}

# shellcheck source=tfodkit/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/tfodkit/lib.sh"

SSM_PID=""
SSM_LOG=""
stop_tensorboard() {
  if [[ -n "$SSM_PID" ]]; then kill -- -"$SSM_PID" 2>/dev/null || kill "$SSM_PID" 2>/dev/null || true; fi
  if [[ -n "$SSM_LOG" ]]; then rm -f "$SSM_LOG"; fi
  SSM_PID=""
  SSM_LOG=""
}

# Forward local TENSORBOARD_PORT to port 6006 of the container instance, in the background.
tensorboard() {  # configs.json, EC2 instance id
  if ! command -v session-manager-plugin >/dev/null; then
    echo "runtask: TensorBoard: session-manager-plugin is not installed; to forward it yourself run:" >&2
    "${RT[@]}" tensorboard --print "$1" "$2" >&2
    return 0
  fi
  SSM_LOG=$(mktemp "${TMPDIR:-/tmp}/runtask-ssm.XXXXXX")
  set -m  # its own process group, so cleanup stops aws and the plugin it starts
  "${RT[@]}" tensorboard "$1" "$2" </dev/null >"$SSM_LOG" 2>&1 &
  SSM_PID=$!
  set +m
  echo "runtask: TensorBoard: http://localhost:${TENSORBOARD_PORT:-6006} (SSM port forwarding to $2, log $SSM_LOG)" >&2
}

main() {
  local attach="" run="" restarts_max=3 max_wait="" stop=${STOP_ON_INTERRUPT:-0} board=${TENSORBOARD:-1}
  local root py task instance next code restarts=0 deadline=() checks=()
  while (($#)); do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --attach | --run | --max-restarts | --max-wait)
        (($# >= 2)) || die 2 "$1 needs a value (see ./runtask.sh --help)"
        case "$1" in
          --attach) attach=$2 ;;
          --run) run=$2 ;;
          --max-restarts) restarts_max=$2 ;;
          --max-wait) max_wait=$2 ;;
        esac
        checks+=("$1" "$2")
        shift 2
        ;;
      --stop-on-interrupt) stop=1; shift ;;
      --no-tensorboard) board=0; shift ;;
      --) shift; break ;;
      -*) die 2 "unknown option $1 (see ./runtask.sh --help)" ;;
      *) break ;;
    esac
  done
  if [[ -n "$attach" ]]; then
    [[ -z "$run" ]] || die 2 "--attach and --run do not go together: --attach names the run (see ./runtask.sh --help)"
    (($# == 1)) || die 2 "--attach takes one more argument, configs.json (see ./runtask.sh --help)"
  else
    (($# == 5)) || die 2 "expected 5 arguments, got $# (see ./runtask.sh --help)"
  fi

  root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  py=${TFODKIT_PYTHON:-$root/.venv/bin/python}
  if [[ ! -x "$py" ]]; then
    [[ -z "${TFODKIT_PYTHON:-}" ]] || die 2 "TFODKIT_PYTHON=$py is not an executable Python (set it to a Python with the toolkit's dependencies)"
    py=$(command -v python3) || die 2 "python3 not found (run make install, or set TFODKIT_PYTHON)"
  fi
  PATH="$PATH:$root/.venv/bin"  # make install's aws CLI v1, when there is no other
  command -v aws >/dev/null || die 2 "aws CLI not found (install AWS CLI v2, or run make install for v1 in .venv/bin)"
  export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" RUNTASK_SELF="$0" STOP_ON_INTERRUPT="$stop"
  RT=("$py" -m tfodkit.runtask)
  trap stop_tensorboard EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  "${RT[@]}" check "${checks[@]}" "$@"  # every input and option checked before anything is paid for
  if [[ -n "$max_wait" ]]; then deadline=(--deadline "$(($(date +%s) + max_wait))"); fi
  if [[ -n "$attach" ]]; then
    task=$("${RT[@]}" find "$1" "$attach")
  else
    [[ -n "$run" ]] || run=$("${RT[@]}" name "$3")
    echo "runtask: run $run" >&2
    task=$("${RT[@]}" launch --run "$run" "$@")  # run-task; a placement failure ends here
  fi
  while true; do
    code=0
    if instance=$("${RT[@]}" wait "${deadline[@]}" "$1" "$task"); then  # status line until RUNNING
      if [[ -n "$instance" ]] && ((board)); then tensorboard "$1" "$instance"; fi
      "${RT[@]}" follow "${deadline[@]}" "$1" "$task" || code=$?  # the log, then the summary
      stop_tensorboard
    else
      code=$?
    fi
    ((code != 130)) || exit 130  # Ctrl-C: stopped watching (the hint is printed)
    # after a reclaim: a new task for the run (its ARN), else nothing and the run's final exit code
    code=0
    next=$("${RT[@]}" next "${deadline[@]}" --restarts "$restarts" --max-restarts "$restarts_max" "$1" "$task") || code=$?
    [[ -n "$next" ]] || exit "$code"
    task=$next
    restarts=$((restarts + 1))
  done
}

main "$@"
