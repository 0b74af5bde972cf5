"""The decisions behind runtask.sh: launch, watch and finish one ECS training task.

runtask.sh only sequences these steps (``python -m tfodkit.runtask <step>``)::

    check   [OPTIONS] CONFIGS [RECORDS MODEL CONFIG HPARAMS] validate everything; no AWS call
    name    MODEL                                  print a generated run name
    launch  --run NAME CONFIGS RECORDS MODEL CONFIG HPARAMS  run-task; prints the task ARN on stdout
    find    CONFIGS RUN_OR_TASK                    the task ARN of a run (its newest task) or of a task
    wait    [--deadline T] CONFIGS TASK            status line until RUNNING; prints the EC2 instance id
    tensorboard CONFIGS INSTANCE [--print]         become the SSM port forwarding (or print its command)
    follow  [--deadline T] CONFIGS TASK            stream the task's log; exit with the training exit code
    next    [--deadline T] --restarts K --max-restarts N CONFIGS TASK
                                                   after a task stopped: relaunch its run (prints the new
                                                   task ARN) or exit with the run's final exit code

A run has a name (``--run``, tfodkit/runs.py). Every task of a run gets it as
``RUN_NAME`` (container overrides) and as its ``startedBy``
(``tfodkit-run/<name>``, how ``find`` finds it again); its artifacts are under
``<ARTIFACTS_TARGET>/runs/<name>/``. When a task stopped because its instance
went away (stop code ``SpotInterruption`` or ``TerminationNotice``), the
training container was stopped by that (exit 143 or 137, or no exit code) and
the run's export is not in S3, ``next`` starts a new task with the same
overrides, up to ``--max-restarts`` times and within the ``--deadline``
(``--max-wait``); train.sh in it restores the checkpoints from S3.

Every ECS, CloudWatch Logs and SSM call goes through the ``aws`` CLI (v1 or v2)
so that the user's profiles, SSO sessions and ``AWS_ENDPOINT_URL`` apply as they
do for their own commands; S3 (the run's checkpoints and export) is read with
boto3 through tfodkit/s3.py, with the same profile and region. The training log is read with ``get-log-events`` and its
forward token, with either CLI: each line is printed once, and after the task
stops the stream is drained, so the last lines are never lost (``aws logs tail
--follow``, v2 only, polls a time window and is stopped only by Ctrl-C).

Output: the training log goes to stdout; runtask's own messages (status line,
summary, hints) go to stderr, so ``./runtask.sh ... > train.log`` keeps the log.

Environment: ``RUNTASK_POLL_SECONDS`` (default 5), ``RUNTASK_DRAIN_SECONDS``
(grace after the task stops before the last read of its log, default 5),
``RUNTASK_LOG_PAGE_LIMIT`` (events per get-log-events call, default the
service's), ``TENSORBOARD_PORT`` (local port, default 6006),
``STOP_ON_INTERRUPT=1`` (Ctrl-C in wait/follow also stops the task),
``RUNTASK_SELF`` (how runtask.sh was invoked, for the hints).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfodkit import runs
from tfodkit.errors import FAILURE, ArgumentParser, UserError, cli
from tfodkit.s3 import is_s3, parse_s3_uri
from tfodkit.settings import env_number

OUTPUTS = ("profile", "region", "cluster_name", "task_definition", "container_name", "log_group")
# train.sh's first three arguments when the task definition gives no default command.
DEFAULT_DIRS = ("models", "experiments/training", "experiments/exported_model")
ARTIFACTS_ENV = "ARTIFACTS_TARGET"
# Stop codes of a task whose instance went away (a spot reclaim, a scale-in or maintenance notice).
RELAUNCH_STOP_CODES = ("SpotInterruption", "TerminationNotice")
# The training container's exit when such a stop ended it: train.sh's SIGTERM status, or SIGKILL after the timeout.
STOPPED_EXITS = (143, 137)
_TASK_ID = re.compile(r"^[0-9a-f]{32}$")
PLACEMENT_HINTS = {
    "RESOURCE:GPU": "no container instance has a free GPU: wait for the running task, or use a GPU instance type",
    "RESOURCE:MEMORY": "no container instance has enough free memory for the task definition",
    "RESOURCE:CPU": "no container instance has enough free CPU for the task definition",
    "RESOURCE:PORTS": "a host port of the task definition is taken on every container instance",
    "AGENT": "the ECS agent on the container instance is disconnected",
    "ATTRIBUTE": "no container instance matches the task definition's placement constraints",
    "MISSING": "the container instance is gone",
}


# --- validation (no AWS call) ------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    """The terraform outputs runtask needs (configs.json)."""

    path: str
    profile: str
    region: str
    cluster: str
    task_definition: str
    container: str
    log_group: str


@dataclass(frozen=True)
class Inputs:
    records: str
    model: str  # canonical zoo display name
    config: str
    hparams: str


def load_settings(path: str) -> Settings:
    """Read configs.json: ``terraform output -json`` ({"name": {"value": ...}}) or plain {"name": value}."""
    fix = "write it with `make runtask-config` after `make apply`; it is `terraform output -json`"
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path} not found", fix) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not readable JSON: {exc}", fix) from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a JSON object of terraform outputs", fix)
    values: dict[str, str] = {}
    for name in OUTPUTS:
        item = data.get(name)
        value = item.get("value") if isinstance(item, dict) else item
        if isinstance(value, str) and (value.strip() or name == "profile"):
            values[name] = value.strip()
    missing = [n for n in OUTPUTS if n not in values]
    if missing:
        raise UserError(f"{path} has no output {', '.join(missing)} (needs: {', '.join(OUTPUTS)})",
                        "run `make runtask-config` again with the current terraform/")
    return Settings(path=path, profile=values["profile"], region=values["region"], cluster=values["cluster_name"],
                    task_definition=values["task_definition"], container=values["container_name"],
                    log_group=values["log_group"])


def check_s3(label: str, uri: str, need_key: bool = True) -> str:
    """An input URI, checked before any AWS call: s3://, S3's bucket naming rules, a key when a file is needed."""
    if not is_s3(uri):
        raise UserError(f"{label} must be an s3:// URI, got {uri!r}",
                        "upload it first, e.g. aws s3 cp <local> s3://<bucket>/<key>, and pass that URI")
    parse_s3_uri(uri, label, need_key=need_key)
    return uri


def check_inputs(records: str, model: str, config: str, hparams: str) -> Inputs:
    from tfodkit.zoo import resolve  # stdlib only, no TensorFlow

    check_s3("records", records, need_key=False)
    check_s3("training config", config)
    check_s3("hparams", hparams)
    return Inputs(records=records, model=resolve(model).name, config=config, hparams=hparams)


# --- pure decisions (tested without AWS) -------------------------------------------------------

def console_url(region: str, cluster: str, task_arn: str) -> str:
    return (f"https://{region}.console.aws.amazon.com/ecs/v2/clusters/{cluster}/tasks/"
            f"{runs.task_id(task_arn)}/configuration?region={region}")


def find_container(task_def: dict, name: str) -> dict:
    containers = task_def.get("containerDefinitions") or []
    for c in containers:
        if c.get("name") == name:
            return c
    names = ", ".join(repr(c.get("name")) for c in containers) or "none"
    raise UserError(f"task definition {task_def.get('taskDefinitionArn', '?')} has no container {name!r} "
                    f"(it has: {names})", "fix container_name in terraform and rerun make runtask-config")


def train_command(container: dict, inputs: Inputs) -> list[str]:
    """train.sh's arguments: the task definition's three directories, then this run's inputs."""
    default = container.get("command") or []
    dirs = list(default[:3]) if len(default) >= 3 else list(DEFAULT_DIRS)
    return [*dirs, inputs.records, inputs.model, inputs.config, inputs.hparams]


def artifacts_target(task_def: dict) -> str | None:
    """The artifacts sidecar's ARTIFACTS_TARGET (or --target): the base of every run's folder."""
    for c in task_def.get("containerDefinitions") or []:
        env = {e.get("name"): e.get("value") for e in c.get("environment") or []}
        target = env.get(ARTIFACTS_ENV)
        cmd = c.get("command") or []
        if not target and "--target" in cmd[:-1]:
            target = cmd[cmd.index("--target") + 1]
        if target:
            return target
    return None


def overrides(task_def: dict, container_name: str, command: list[str], run_name: str) -> dict:
    """Every container gets RUN_NAME; the training container its command, and the sidecar's ARTIFACTS_TARGET
    when it has none of its own (train.sh restores the run from there)."""
    target = artifacts_target(task_def)
    result = []
    for c in task_def.get("containerDefinitions") or []:
        env = [{"name": "RUN_NAME", "value": run_name}]
        item: dict[str, Any] = {"name": c.get("name")}
        if c.get("name") == container_name:
            item["command"] = command
            own = {e.get("name") for e in c.get("environment") or []}
            if target and ARTIFACTS_ENV not in own:
                env.append({"name": ARTIFACTS_ENV, "value": target})
        item["environment"] = env
        result.append(item)
    return {"containerOverrides": result}


def started_by(run_name: str) -> str:
    return runs.STARTED_BY_PREFIX + run_name


def run_name_of(task: dict, container_name: str) -> str | None:
    """The run a task belongs to: its startedBy, else the RUN_NAME of its overrides."""
    by = task.get("startedBy") or ""
    if by.startswith(runs.STARTED_BY_PREFIX):
        return by[len(runs.STARTED_BY_PREFIX):]
    for c in (task.get("overrides") or {}).get("containerOverrides") or []:
        for e in c.get("environment") or []:
            if e.get("name") == "RUN_NAME" and e.get("value"):
                return e["value"]
    return None


def task_command(task: dict, container_name: str) -> list[str]:
    """The training command a task was launched with (its container override)."""
    for c in (task.get("overrides") or {}).get("containerOverrides") or []:
        if c.get("name") == container_name:
            return list(c.get("command") or [])
    return []


def is_task_ref(text: str) -> bool:
    """A task ARN or a 32-hex-digit task id (anything else given to --attach is a run name)."""
    return text.startswith("arn:") or bool(_TASK_ID.match(text))


@dataclass(frozen=True)
class LogTarget:
    group: str
    stream: str
    region: str | None


def log_target(container: dict, task_arn: str, settings: Settings) -> LogTarget:
    """The awslogs stream of this task's training container: <prefix>/<container name>/<task id>."""
    conf = container.get("logConfiguration") or {}
    opts = conf.get("options") or {}
    name = container.get("name", settings.container)
    if conf.get("logDriver") != "awslogs":
        raise UserError(f"container {name!r} does not log with awslogs (logDriver={conf.get('logDriver')!r})",
                        "give it the awslogs driver with awslogs-stream-prefix in terraform")
    prefix = opts.get("awslogs-stream-prefix")
    if not prefix:
        raise UserError(f"container {name!r} has no awslogs-stream-prefix, so its stream name is unknowable",
                        "set awslogs-stream-prefix in the task definition's log options")
    group = opts.get("awslogs-group") or settings.log_group
    return LogTarget(group=group, stream=f"{prefix}/{name}/{runs.task_id(task_arn)}",
                     region=opts.get("awslogs-region"))


def run_layout(task_def: dict, run_name: str | None) -> runs.Layout | None:
    """The run's S3 folders: <ARTIFACTS_TARGET>/runs/<name>/ (None without a target or a name)."""
    target = artifacts_target(task_def)
    return runs.layout(target, run_name) if target and run_name else None


def artifacts_uri(task_def: dict, run_name: str | None) -> str | None:
    """Where the artifacts sidecar copies this run."""
    lay = run_layout(task_def, run_name)
    return runs.uri_text(lay.root) if lay else None


def relaunch_reason(task: dict, container_name: str) -> str | None:
    """Why a stopped task's run should go on in a new task (its instance went away before training ended), or
    None: a clean exit, a failure of train.sh itself (never retried), a stop by the user."""
    code = task.get("stopCode")
    if code not in RELAUNCH_STOP_CODES:
        return None
    exits = [c.get("exitCode") for c in task.get("containers") or [] if c.get("name") == container_name]
    if exits and isinstance(exits[0], int) and exits[0] not in STOPPED_EXITS:
        return None
    exited = f", training exit {exits[0]}" if exits and isinstance(exits[0], int) else ", training stopped"
    return f"{code} ({task.get('stoppedReason') or 'its instance went away'}){exited}"


def exit_code(task: dict, container_name: str) -> int:
    """The training container's exit code as runtask's own: 0 only for a clean run."""
    for c in task.get("containers") or []:
        if c.get("name") == container_name:
            code = c.get("exitCode")
            if isinstance(code, int) and 0 <= code <= 255:
                return code
    return FAILURE


def started(task: dict) -> bool:
    """Did any container of a stopped task actually run (has an exit code)?"""
    return any(isinstance(c.get("exitCode"), int) for c in task.get("containers") or [])


def summary(task: dict, container_name: str, artifacts: str | None = None) -> list[str]:
    lines = [f"task {runs.task_id(task.get('taskArn', '?'))} {task.get('lastStatus', '?')}",
             f"  stop code: {task.get('stopCode') or '-'}",
             f"  reason:    {task.get('stoppedReason') or '-'}"]
    for c in task.get("containers") or []:
        code = c.get("exitCode")
        text = f"exit code {code}" if isinstance(code, int) else "no exit code"
        if c.get("reason"):
            text += f" ({c['reason']})"
        mark = " (training)" if c.get("name") == container_name else ""
        lines.append(f"  container {c.get('name')}{mark}: {text}")
    code = exit_code(task, container_name)
    if artifacts:
        lines.append(f"  artifacts: {artifacts}")
        if code == 0:
            lines.append(f"  download the model: aws s3 cp --recursive {artifacts}exported_model exported_model")
    if code == 0:
        lines.append("training finished cleanly (exit 0)")
    elif relaunch_reason(task, container_name):
        lines.append(f"training stopped by {task.get('stopCode')}: its instance went away (exit {code})")
    else:
        lines.append(f"training failed (exit {code})")
    return lines


def placement_error(failures: list[dict], settings: Settings) -> UserError:
    reasons = []
    for f in failures:
        reason = f.get("reason") or "no reason given"
        where = f" on {runs.task_id(f['arn'])}" if f.get("arn") else ""
        detail = f" ({f['detail']})" if f.get("detail") else ""
        reasons.append(f"{reason}{where}{detail}")
    hint = next((PLACEMENT_HINTS[f.get("reason")] for f in failures if f.get("reason") in PLACEMENT_HINTS),
                f"check the cluster: aws ecs list-container-instances --cluster {settings.cluster}")
    return UserError(f"ECS could not place the task: {'; '.join(reasons)}", hint, status=FAILURE)


def format_event(event: dict) -> str:
    stamp = dt.datetime.fromtimestamp(event.get("timestamp", 0) / 1000, dt.timezone.utc)  # noqa: UP017 (python3 < 3.11 fallback)
    return f"{stamp:%Y-%m-%dT%H:%M:%S} {str(event.get('message', '')).rstrip()}"


def reattach_hint(settings: Settings, task_arn: str, run_name: str | None = None) -> str:
    me = os.environ.get("RUNTASK_SELF") or "./runtask.sh"
    return (f"reattach: {me} --attach {run_name or task_arn} {shlex.quote(settings.path)}\n"
            f"stop it:  aws ecs stop-task --cluster {settings.cluster} --task {task_arn}"
            + (f" --profile {settings.profile}" if settings.profile else "") + f" --region {settings.region}")


def resume_command(settings: Settings, run_name: str, command: list[str]) -> str:
    """The runtask.sh command that starts the run again (train.sh then resumes from its checkpoints in S3)."""
    me = os.environ.get("RUNTASK_SELF") or "./runtask.sh"
    return shlex.join([me, "--run", run_name, settings.path, *command[-4:]])


def ssm_command(settings: Settings, instance_id: str, port: str) -> list[str]:
    params = json.dumps({"portNumber": ["6006"], "localPortNumber": [port]}, separators=(",", ":"))
    return ["aws", "ssm", "start-session", "--target", instance_id,
            "--document-name", "AWS-StartPortForwardingSession", "--parameters", params,
            *(["--profile", settings.profile] if settings.profile else []), "--region", settings.region]


def _seconds(name: str, default: float) -> float:
    return env_number(name, default, minimum=0, unit="seconds")


def say(*lines: str) -> None:
    for line in lines:
        print(f"runtask: {line}", file=sys.stderr, flush=True)


# --- the aws CLI -------------------------------------------------------------------------------

class AwsError(Exception):
    """A failed aws CLI call; str() is the CLI's own error line."""

    def __init__(self, message: str, code: str = ""):
        super().__init__(message)
        self.code = code


class Aws:
    """Runs the user's aws CLI (v1 or v2) with the profile and region of configs.json."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def __call__(self, *args: str, region: str | None = None) -> dict[str, Any]:
        cmd = ["aws", *args, "--output", "json", "--region", region or self.settings.region]
        if self.settings.profile:
            cmd += ["--profile", self.settings.profile]
        env = {**os.environ, "AWS_PAGER": ""}  # v2 pipes output through less otherwise
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise UserError("aws CLI not found", "install AWS CLI v2, or `make install` for v1 in .venv/bin") from None
        if proc.returncode != 0:
            lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
            message = lines[-1] if lines else f"exit status {proc.returncode}"
            m = re.search(r"An error occurred \((\w+)\)", message)
            raise AwsError(f"aws {' '.join(args[:2])}: {message}", m.group(1) if m else "")
        return json.loads(proc.stdout) if proc.stdout.strip() else {}


def describe_task(aws: Aws, settings: Settings, task: str) -> dict:
    out = aws("ecs", "describe-tasks", "--cluster", settings.cluster, "--tasks", task)
    tasks = out.get("tasks") or []
    if not tasks:
        reason = "; ".join(f.get("reason", "?") for f in out.get("failures") or []) or "not found"
        raise UserError(f"task {task} is not in cluster {settings.cluster} ({reason})",
                        "ECS forgets stopped tasks after about an hour; check the ARN and configs.json", FAILURE)
    return tasks[0]


class TaskPoller:
    """describe-tasks that rides out transient errors (throttling, network) and gives up after five in a row."""

    def __init__(self, aws: Aws, settings: Settings, task: str, tries: int = 5):
        self.aws, self.settings, self.task, self.tries = aws, settings, task, tries
        self.failures = 0
        self.last: dict | None = None

    def __call__(self) -> dict:
        try:
            self.last = describe_task(self.aws, self.settings, self.task)
            self.failures = 0
        except AwsError as exc:
            self.failures += 1
            if self.failures >= self.tries or self.last is None:
                raise UserError(f"cannot see task {self.task}: {exc}",
                                reattach_hint(self.settings, self.task).replace("\n", "; "), FAILURE) from None
            say(f"warning: {exc} (retrying)")
        return self.last


def describe_task_definition(aws: Aws, name: str) -> dict:
    return aws("ecs", "describe-task-definition", "--task-definition", name).get("taskDefinition") or {}


class LogReader:
    """Pages get-log-events with the forward token: each event once, in order."""

    def __init__(self, aws: Aws, target: LogTarget, limit: int | None = None):
        self.aws, self.target, self.limit = aws, target, limit
        self.token: str | None = None
        self.warned: set[str] = set()

    def read(self) -> list[dict]:
        """Every event that arrived since the last call (all pages)."""
        events: list[dict] = []
        while True:
            args = ["logs", "get-log-events", "--log-group-name", self.target.group,
                    "--log-stream-name", self.target.stream, "--start-from-head"]
            if self.token:
                args += ["--next-token", self.token]
            if self.limit:
                args += ["--limit", str(self.limit)]
            try:
                page = self.aws(*args, region=self.target.region)
            except AwsError as exc:
                if exc.code != "ResourceNotFoundException" and str(exc) not in self.warned:
                    self.warned.add(str(exc))  # transient (throttling, network): say it once, keep going
                    say(f"warning: {exc} (retrying)")
                return events
            events += page.get("events") or []
            token = page.get("nextForwardToken")
            if not token or token == self.token:
                return events  # caught up: the service returns the token it was given
            self.token = token


# --- steps -------------------------------------------------------------------------------------

MAX_WAIT_REASON = "runtask.sh: --max-wait exceeded"


def _whole(text: str, flag: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise UserError(f"{flag} {text!r} must be a whole number of at least {minimum}", f"e.g. {flag} 3")
    return value


def step_check(args: argparse.Namespace) -> int:
    load_settings(args.configs)
    if args.run:
        runs.check_name(args.run, "--run")
    if args.attach is not None and not is_task_ref(args.attach):
        runs.check_name(args.attach, "--attach")
    if args.max_restarts is not None:
        _whole(args.max_restarts, "--max-restarts", 0)
    if args.max_wait is not None:
        _whole(args.max_wait, "--max-wait", 1)
    if len(args.inputs) not in (0, 4):
        raise UserError(f"check takes configs.json and 0 or 4 more arguments, got {len(args.inputs)}")
    if args.inputs:
        check_inputs(*args.inputs)
    return 0


def step_name(args: argparse.Namespace) -> int:
    from tfodkit.zoo import resolve

    print(runs.generate_name(resolve(args.model).name))
    return 0


# Keys of a container override that run-task takes back as describe-tasks returns them.
_OVERRIDE_KEYS = ("name", "command", "environment", "environmentFiles", "cpu", "memory", "memoryReservation",
                  "resourceRequirements")


def run_task(aws: Aws, settings: Settings, task_definition: str, task_overrides: dict, run_name: str) -> str:
    """run-task for one task of the run; its ARN."""
    clean = {"containerOverrides": [{k: v for k, v in c.items() if k in _OVERRIDE_KEYS}
                                    for c in task_overrides.get("containerOverrides") or []]}
    try:
        out = aws("ecs", "run-task", "--cluster", settings.cluster, "--task-definition", task_definition,
                  "--count", "1", "--started-by", started_by(run_name), "--overrides", json.dumps(clean))
    except AwsError as exc:
        raise UserError(f"ECS could not start the task: {exc}",
                        f"check that the GPU instance joined the cluster: aws ecs list-container-instances "
                        f"--cluster {settings.cluster}", FAILURE) from None
    tasks = out.get("tasks") or []
    if out.get("failures") or not tasks:
        raise placement_error(out.get("failures") or [], settings)
    arn = tasks[0]["taskArn"]
    say(f"task {arn}", f"console: {console_url(settings.region, settings.cluster, arn)}")
    return arn


def step_launch(args: argparse.Namespace) -> int:
    settings = load_settings(args.configs)
    inputs = check_inputs(args.records, args.model, args.config, args.hparams)
    name = runs.check_name(args.run, "--run")
    aws = Aws(settings)
    try:
        task_def = describe_task_definition(aws, settings.task_definition)
    except AwsError as exc:
        raise UserError(f"cannot read task definition {settings.task_definition}: {exc}",
                        "check task_definition, profile and region in configs.json", FAILURE) from None
    container = find_container(task_def, settings.container)
    command = train_command(container, inputs)
    arn = run_task(aws, settings, settings.task_definition, overrides(task_def, settings.container, command, name),
                   name)
    say(f"command: train.sh {shlex.join(command)}")
    uri = artifacts_uri(task_def, name)
    if uri:
        say(f"artifacts: {uri}")
    print(arn)
    return 0


def step_find(args: argparse.Namespace) -> int:
    """The task ARN of --attach's argument: a task as given, or the newest task of a run (a running one first)."""
    settings = load_settings(args.configs)
    if is_task_ref(args.run):
        print(args.run)
        return 0
    name = runs.check_name(args.run, "--attach")
    aws = Aws(settings)
    arns: list[str] = []
    for status in ("RUNNING", "STOPPED"):
        arns = aws("ecs", "list-tasks", "--cluster", settings.cluster, "--started-by", started_by(name),
                   "--desired-status", status).get("taskArns") or []
        if arns:
            break
    if not arns:
        me = os.environ.get("RUNTASK_SELF") or "./runtask.sh"
        raise UserError(f"run {name} has no task in cluster {settings.cluster}",
                        f"ECS forgets stopped tasks after about an hour; start it again with {me} --run {name} "
                        f"{shlex.quote(settings.path)} <records> <model> <config> <hparams> (train.sh resumes from "
                        "its checkpoints in S3)", FAILURE)
    if len(arns) > 1:
        described = aws("ecs", "describe-tasks", "--cluster", settings.cluster, "--tasks", *arns).get("tasks") or []
        described.sort(key=lambda t: str(t.get("createdAt") or ""))
        arns = [t["taskArn"] for t in described] or arns
    say(f"run {name}: task {arns[-1]}")
    print(arns[-1])
    return 0


def _task_run_name(aws: Aws, settings: Settings, task: str) -> str | None:
    try:
        return run_name_of(describe_task(aws, settings, task), settings.container)
    except (AwsError, UserError):
        return None


def _interrupted(aws: Aws, settings: Settings, task: str, stop: bool) -> int:
    print(file=sys.stderr)
    if stop:
        aws("ecs", "stop-task", "--cluster", settings.cluster, "--task", task, "--reason", "runtask.sh interrupted")
        say(f"stopped watching and stopped task {task}")
    else:
        say(f"stopped watching; task {task} is still running (and billing)",
            *reattach_hint(settings, task, _task_run_name(aws, settings, task)).splitlines())
    return 130


def _watching(func: Callable[[argparse.Namespace, Aws, Settings], int]) -> Callable[[argparse.Namespace], int]:
    """Ctrl-C in wait/follow: stop watching, say how to reattach (or stop the task with --stop-on-interrupt)."""

    def step(args: argparse.Namespace) -> int:
        settings = load_settings(args.configs)
        aws = Aws(settings)
        try:
            return func(args, aws, settings)
        except KeyboardInterrupt:
            return _interrupted(aws, settings, args.task, os.environ.get("STOP_ON_INTERRUPT") == "1")

    return step


class Deadline:
    """--max-wait: once the deadline (epoch seconds) has passed, the task is stopped, once."""

    def __init__(self, aws: Aws, settings: Settings, task: str, deadline: float | None):
        self.aws, self.settings, self.task, self.deadline = aws, settings, task, deadline
        self.stopped = False

    def check(self, status: str) -> None:
        if self.stopped or self.deadline is None or status == "STOPPED" or time.time() < self.deadline:
            return
        self.stopped = True
        self.aws("ecs", "stop-task", "--cluster", self.settings.cluster, "--task", self.task, "--reason",
                 MAX_WAIT_REASON)
        say(f"--max-wait reached: stopping task {runs.task_id(self.task)} (train.sh saves a checkpoint on the SIGTERM "
            "and the sidecar uploads it)")


@_watching
def step_wait(args: argparse.Namespace, aws: Aws, settings: Settings) -> int:
    poll = _seconds("RUNTASK_POLL_SECONDS", 5)
    tty = sys.stderr.isatty()
    start, shown = time.monotonic(), ""
    poll_task = TaskPoller(aws, settings, args.task)
    deadline = Deadline(aws, settings, args.task, args.deadline)
    while True:
        task = poll_task()
        status = task.get("lastStatus", "?")
        line = f"status: {status} ({time.monotonic() - start:.0f} s)"
        if status == "PROVISIONING":  # the capacity provider starts a GPU instance for it
            line += ", waiting for an instance (several minutes when the cluster has none running)"
        if tty:
            print(f"\rruntask: {line}  ", end="", file=sys.stderr, flush=True)
        elif status != shown:
            say(line)
        shown = status
        if status == "RUNNING":
            break
        if status == "STOPPED":
            if tty:
                print(file=sys.stderr)
            if started(task):
                return 0  # it ran and finished between two polls: follow shows its log and result
            say(*summary(task, settings.container))
            return exit_code(task, settings.container) or FAILURE
        deadline.check(status)
        time.sleep(poll)
    if tty:
        print(file=sys.stderr)
    ci = task.get("containerInstanceArn")
    if not ci:
        say("the task has no container instance (Fargate?): no TensorBoard forwarding")
        return 0
    out = aws("ecs", "describe-container-instances", "--cluster", settings.cluster, "--container-instances", ci)
    instances = out.get("containerInstances") or []
    if instances and instances[0].get("ec2InstanceId"):
        print(instances[0]["ec2InstanceId"])
    return 0


@_watching
def step_follow(args: argparse.Namespace, aws: Aws, settings: Settings) -> int:
    poll = _seconds("RUNTASK_POLL_SECONDS", 5)
    drain = _seconds("RUNTASK_DRAIN_SECONDS", 5)
    limit = int(env_number("RUNTASK_LOG_PAGE_LIMIT", 0, minimum=1, integer=True, example=100)) or None
    task = describe_task(aws, settings, args.task)
    arn = task["taskArn"]
    task_def = describe_task_definition(aws, task["taskDefinitionArn"])
    container = find_container(task_def, settings.container)
    try:
        target: LogTarget | None = log_target(container, arn, settings)
    except UserError as exc:
        target = None
        say(f"warning: cannot follow the log: {exc}; waiting for the task to stop")
    reader = LogReader(aws, target, limit) if target else None
    if target:
        if target.group != settings.log_group:
            say(f"note: the task definition logs to {target.group}, configs.json says {settings.log_group}")
        say(f"log: {target.group} {target.stream} (Ctrl-C stops watching, the task keeps running)")

    def show() -> None:
        for event in reader.read() if reader else []:
            print(format_event(event), flush=True)

    poll_task = TaskPoller(aws, settings, arn)
    deadline = Deadline(aws, settings, arn, args.deadline)
    with ThreadPoolExecutor(max_workers=1) as pool:  # the status poll overlaps the log read
        while True:
            status = pool.submit(poll_task)
            show()
            task = status.result()
            if task.get("lastStatus") == "STOPPED":
                break
            deadline.check(task.get("lastStatus", "?"))
            time.sleep(poll)
    if reader:
        show()  # what arrived while the task stopped
        time.sleep(drain)  # awslogs delivers the last batch as the container exits
        show()
    say(*summary(task, settings.container, artifacts_uri(task_def, run_name_of(task, settings.container))))
    return exit_code(task, settings.container)


def _s3_state(settings: Settings, lay: runs.Layout | None) -> tuple[bool, runs.Checkpoint | None]:
    """(the run's export is in S3, its newest complete checkpoint there); (False, None) when S3 cannot say."""
    if lay is None:
        return False, None
    from tfodkit import s3

    try:
        client = s3.client(profile=settings.profile or None, region_name=settings.region)
        if runs.exported(lay, client):
            return True, None
        done = [c for c in runs.s3_checkpoints(lay, client) if c.complete]
        return False, done[-1] if done else None
    except UserError as exc:
        say(f"warning: cannot read the run's folder {runs.uri_text(lay.root)}: {exc}")
        return False, None


def step_next(args: argparse.Namespace) -> int:
    """After a task stopped: relaunch its run (print the new task's ARN) or exit with the run's final code."""
    settings = load_settings(args.configs)
    aws = Aws(settings)
    task = describe_task(aws, settings, args.task)
    code = exit_code(task, settings.container)
    name = run_name_of(task, settings.container)
    command = task_command(task, settings.container)
    resume = f"resume the run: {resume_command(settings, name, command)}" if name and len(command) >= 4 else None
    if code == 0:
        return 0
    if task.get("stoppedReason") == MAX_WAIT_REASON:
        say(f"stopped: --max-wait ran out before run {name or runs.task_id(args.task)} finished",
            *filter(None, [resume]))
        return code
    reason = relaunch_reason(task, settings.container)
    if reason is None:
        return code  # train.sh failed (or was stopped by hand): never retried; follow printed why
    if name is None:
        say(f"task {runs.task_id(args.task)} stopped ({reason}) but has no run name: not relaunching")
        return code
    lay = run_layout(describe_task_definition(aws, task["taskDefinitionArn"]), name)
    exported, newest = _s3_state(settings, lay)
    if exported:
        say(f"run {name} is exported in S3 ({lay.export_json}): it finished before the stop")
        return 0
    if args.restarts >= args.max_restarts:
        say(f"task {runs.task_id(args.task)} stopped: {reason}; not relaunching: --max-restarts {args.max_restarts} "
            f"{'allows no restart' if args.max_restarts == 0 else 'reached'}", *filter(None, [resume]))
        return code
    if args.deadline is not None and time.time() >= args.deadline:
        say(f"task {runs.task_id(args.task)} stopped: {reason}; not relaunching: --max-wait reached",
            *filter(None, [resume]))
        return code
    where = f"{newest.name} in {runs.uri_text(lay.training)}" if newest else \
        "no complete checkpoint in S3 yet" if lay else "no ARTIFACTS_TARGET: nothing to resume from"
    say(f"restart {args.restarts + 1}/{args.max_restarts}: task {runs.task_id(args.task)} stopped: {reason}; "
        f"relaunching run {name}, resuming from step {newest.step if newest else 0} ({where})")
    print(run_task(aws, settings, task["taskDefinitionArn"], task.get("overrides") or {}, name))
    return 0


def step_tensorboard(args: argparse.Namespace) -> int:
    settings = load_settings(args.configs)
    cmd = ssm_command(settings, args.instance, os.environ.get("TENSORBOARD_PORT") or "6006")
    if args.print:
        print(shlex.join(cmd))
        return 0
    os.environ["AWS_PAGER"] = ""
    os.execvp(cmd[0], cmd)  # runtask.sh runs this in the background and stops it on exit


@cli
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m tfodkit.runtask",
                                     description="The steps of runtask.sh (see its --help).")
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("check", help="validate configs.json (and the run's inputs and options); no AWS call")
    p.add_argument("--run")
    p.add_argument("--attach")
    p.add_argument("--max-restarts", dest="max_restarts")
    p.add_argument("--max-wait", dest="max_wait")
    p.add_argument("configs")
    p.add_argument("inputs", nargs="*", metavar="RECORDS MODEL CONFIG HPARAMS")
    p = sub.add_parser("name", help="print a generated run name")
    p.add_argument("model")
    p = sub.add_parser("launch", help="run-task with the training command; prints the task ARN")
    p.add_argument("--run", required=True)
    for name in ("configs", "records", "model", "config", "hparams"):
        p.add_argument(name)
    p = sub.add_parser("find", help="the task ARN of a run name (or of a task)")
    p.add_argument("configs")
    p.add_argument("run")
    for name in ("wait", "follow", "next"):
        p = sub.add_parser(name, help={"wait": "wait for RUNNING", "follow": "stream the log until the task stops",
                                       "next": "relaunch a reclaimed run, or exit with its final code"}[name])
        p.add_argument("--deadline", type=float, help="epoch seconds: --max-wait's end")
        if name == "next":
            p.add_argument("--restarts", type=int, default=0, help="restarts so far")
            p.add_argument("--max-restarts", dest="max_restarts", type=int, default=3)
        p.add_argument("configs")
        p.add_argument("task")
    p = sub.add_parser("tensorboard", help="run (exec) the SSM port forwarding to the container instance")
    p.add_argument("configs")
    p.add_argument("instance")
    p.add_argument("--print", action="store_true", help="print the command instead of running it")
    args = parser.parse_args(argv)
    steps = {"check": step_check, "name": step_name, "launch": step_launch, "find": step_find, "wait": step_wait,
             "follow": step_follow, "next": step_next, "tensorboard": step_tensorboard}
    try:
        return steps[args.step](args)
    except AwsError as exc:
        raise UserError(str(exc), "check the profile and region in configs.json, and your AWS login", FAILURE) from None


if __name__ == "__main__":
    raise SystemExit(main())
