"""runtask.sh against a local AWS (moto on 127.0.0.1), driven through the real aws CLI.

moto's ECS model reports exit code 0 for every container and gives no reason
when a task cannot be placed, so the test plays the ECS agent through moto's
backend objects (task and container status, exit codes, stop code and reason,
placement failures) and writes the training log itself, while runtask.sh and
the aws CLI see what real ECS and CloudWatch would send.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
from moto.core.responses import ActionResult
from moto.ecs.exceptions import InvalidParameterException
from moto.ecs.models import Container, ecs_backends
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.logs.responses import LogsResponse
from moto.moto_api import state_manager
from moto.ssm.responses import SimpleSystemManagerResponse

from tests.conftest import Followed, reset_moto
from tests.ecs_world import ACCOUNT, AMI, CLUSTER, DIRS, FAMILY, GROUP, PREFIX, REGION, aws_user, make_world
from tfodkit import runtask

ROOT = Path(__file__).resolve().parent.parent
RUNTASK = ROOT / "runtask.sh"
MODEL = "SSD MobileNet V2 FPNLite 320x320"
ARGS = ["s3://tfod-records/shapes", "ssd mobilenet v2 fpnlite 320x320",
        "s3://tfod-configs/training.config", "s3://tfod-configs/hparams.json"]


# --- local AWS ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def endpoint(moto_endpoint):
    state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})  # the agent decides
    yield moto_endpoint
    state_manager.unset_transition("ecs::task")


class Agent:
    """Plays the ECS agent and the awslogs driver against moto's in-process backend."""

    def __init__(self, endpoint: str, monkeypatch: pytest.MonkeyPatch):
        self.backend = ecs_backends[ACCOUNT][REGION]
        self.logs = boto3.client("logs", endpoint_url=endpoint, region_name=REGION,
                                 aws_access_key_id="testing", aws_secret_access_key="testing")
        self.placement_failure: str | None = None
        original = EC2ContainerServiceResponse.run_task
        agent = self

        def run_task(response: EC2ContainerServiceResponse) -> ActionResult:
            backend = response.ecs_backend
            active = [ci for ci in backend.container_instances.get(CLUSTER, {}).values() if ci.status == "ACTIVE"]
            if not active:  # what ECS says for EC2 tasks when no instance is registered and active
                raise InvalidParameterException("No Container Instances were found in your cluster.")
            if agent.placement_failure:
                return ActionResult({"tasks": [], "failures": [
                    {"arn": ci.container_instance_arn, "reason": agent.placement_failure} for ci in active]})
            before = set(backend.tasks.get(CLUSTER, {}))
            result = original(response)
            for arn, task in backend.tasks[CLUSTER].items():
                if arn not in before:
                    agent._provision(task)
            return result

        monkeypatch.setattr(EC2ContainerServiceResponse, "run_task", run_task)
        self.stop_reported = threading.Event()  # ECS has told runtask.sh that a task STOPPED
        # callbacks run as soon as runtask.sh has read the whole log once after that (see get_log_events)
        self.after_stop_read: list = []
        describe = EC2ContainerServiceResponse.describe_tasks

        def describe_tasks(response: EC2ContainerServiceResponse) -> ActionResult:
            result = describe(response)
            if any(t.last_status == "STOPPED" for t in agent.tasks()):
                agent.stop_reported.set()
            return result

        monkeypatch.setattr(EC2ContainerServiceResponse, "describe_tasks", describe_tasks)
        get_log_events = LogsResponse.get_log_events
        reads = {"caught_up_token": None, "began_after_stop": False}

        def get_log_events_(response: LogsResponse) -> str:
            # runtask.sh reads the log by pages, each from the token the last one returned, until the token comes
            # back unchanged (caught up); its next read starts from that token again.
            token = response._get_param("nextToken")
            if token == reads["caught_up_token"]:  # the first page of a read
                reads["began_after_stop"] = agent.stop_reported.is_set()
            body = get_log_events(response)
            if json.loads(body).get("nextForwardToken") in (token, None):  # the read is complete
                reads["caught_up_token"] = token
                while reads["began_after_stop"] and agent.after_stop_read:
                    agent.after_stop_read.pop(0)()
            return body

        monkeypatch.setattr(LogsResponse, "get_log_events", get_log_events_)

    def _provision(self, task) -> None:
        task_def = self.backend.describe_task_definition(task.task_definition_arn)
        task.last_status = "PROVISIONING"
        task.containers = []
        for definition in task_def.container_definitions:
            c = Container(task_def)
            c.name, c.image, c.last_status, c.exitCode = definition["name"], definition["image"], "PENDING", None
            task.containers.append(c)

    def task(self, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tasks = list(self.backend.tasks.get(CLUSTER, {}).values())
            if tasks:
                return tasks[0]
            time.sleep(0.05)
        raise AssertionError("runtask.sh started no task")

    def tasks(self) -> list:
        return list(self.backend.tasks.get(CLUSTER, {}).values())

    def start(self, task) -> None:
        for c in task.containers:
            c.last_status = "RUNNING"
        task.last_status = "RUNNING"
        self.logs.create_log_stream(logGroupName=GROUP, logStreamName=self.stream(task))

    def stream(self, task) -> str:
        return f"{PREFIX}/training/{task.id}"

    def log(self, task, lines: list[str]) -> None:
        now = int(time.time() * 1000)
        self.logs.put_log_events(logGroupName=GROUP, logStreamName=self.stream(task),
                                 logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)])

    def stop(self, task, training: int | None, reason: str = "Essential container in task exited",
             stop_code: str = "EssentialContainerExited", container_reason: str | None = None) -> None:
        for c in task.containers:
            c.last_status = "STOPPED"
            c.exitCode = training if c.name == "training" else 0
            if c.name == "training" and container_reason:
                c.reason = container_reason
        task.stopped_reason, task.stop_code = reason, stop_code
        task.desired_status = "STOPPED"
        task.last_status = "STOPPED"

    def fail_to_start(self, task, reason: str) -> None:
        for c in task.containers:
            c.last_status, c.reason = "STOPPED", reason
        task.stopped_reason = f"CannotPullContainerError: {reason}"
        task.stop_code = "TaskFailedToStart"
        task.desired_status = task.last_status = "STOPPED"


@pytest.fixture
def base(tmp_path):
    """configs.json, an aws profile with dummy credentials, and runtask.sh's environment (no AWS yet)."""
    configs, env = aws_user(tmp_path)
    env.update(TFODKIT_PYTHON=sys.executable, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               RUNTASK_POLL_SECONDS="0.1", RUNTASK_DRAIN_SECONDS="0.5", RUNTASK_LOG_PAGE_LIMIT="4")
    for name in ("STOP_ON_INTERRUPT", "TENSORBOARD", "TENSORBOARD_PORT"):
        env.pop(name, None)
    return {"configs": configs, "env": env, "tmp": tmp_path}


@pytest.fixture
def world(endpoint, base, monkeypatch):
    """A cluster with one GPU container instance, the task definition, log group and buckets."""
    reset_moto(endpoint)
    aws = make_world(endpoint, MODEL, {"portMappings": [{"containerPort": 6006, "hostPort": 6006}]})
    env = {**base["env"], "AWS_ENDPOINT_URL": endpoint}
    return {**base, "env": env, "agent": Agent(endpoint, monkeypatch), "ecs": aws["ecs"], "instance": aws["instance"]}


class Run(Followed):
    """runtask.sh in its own process group (like a terminal job), its output collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]):
        super().__init__(["bash", str(RUNTASK), *args], env=env, terminal_job=True)


def launch(world) -> Run:
    return Run([str(world["configs"]), *ARGS], world["env"])


def run_name(run: Run) -> str:
    """The run's name, the first line runtask.sh prints."""
    run.saw("runtask: run ")
    return next(line for line in run.err if line.startswith("runtask: run ")).split()[-1]


def messages(run: Run) -> list[str]:
    """The log lines printed on stdout, without runtask's timestamp."""
    return [line.split(" ", 1)[1] for line in run.out]


# --- the runs of the issue ---------------------------------------------------------------------

@pytest.fixture
def plugin(world, monkeypatch):
    """A session-manager-plugin that records its pid and sleeps, and StartSession in moto (which lacks it)."""
    sessions: list[dict] = []

    def start_session(response: SimpleSystemManagerResponse) -> str:
        sessions.append(json.loads(response.body))
        return json.dumps({"SessionId": "s-1", "TokenValue": "t", "StreamUrl": "wss://127.0.0.1/s-1"})

    def terminate_session(response: SimpleSystemManagerResponse) -> str:
        return json.dumps({"SessionId": "s-1"})

    monkeypatch.setattr(SimpleSystemManagerResponse, "start_session", start_session, raising=False)
    monkeypatch.setattr(SimpleSystemManagerResponse, "terminate_session", terminate_session, raising=False)
    bin_dir, pid_file = world["tmp"] / "plugin-bin", world["tmp"] / "plugin.pid"
    bin_dir.mkdir()
    exe = bin_dir / "session-manager-plugin"
    exe.write_text(f'#!/bin/sh\n[ "$1" = --version ] && {{ echo 1.2.707.0; exit 0; }}\n'
                   f'echo $$ > {pid_file}\nexec sleep 300\n')
    exe.chmod(0o755)
    world["env"].update(PATH=f"{bin_dir}{os.pathsep}{world['env']['PATH']}", TENSORBOARD_PORT="16006")
    return sessions, pid_file


def test_clean_run_streams_every_line_once_and_exits_0(world, plugin):
    agent, (sessions, pid_file) = world["agent"], plugin
    run = launch(world)
    task = agent.task()
    command = task.overrides["containerOverrides"][0]["command"]
    assert task.overrides["containerOverrides"][0]["name"] == "training"
    assert command == [*DIRS, ARGS[0], MODEL, ARGS[2], ARGS[3]]  # canonical model name; dirs from the task def
    name = run_name(run)
    assert re.fullmatch(r"ssd-mobilenet-v2-fpnlite-320x320-\d{8}-\d{6}", name), name  # generated, printed first
    assert run.err[0] == f"runtask: run {name}" and task.started_by == f"tfodkit-run/{name}"
    env = {c["name"]: c["environment"] for c in task.overrides["containerOverrides"]}
    assert env == {"training": [{"name": "RUN_NAME", "value": name},
                                {"name": "ARTIFACTS_TARGET", "value": "s3://tfod-artifacts"}],
                   "artifacts": [{"name": "RUN_NAME", "value": name}]}
    run.saw(f"task {task.task_arn}")
    run.saw(f"console: https://{REGION}.console.aws.amazon.com/ecs/v2/clusters/{CLUSTER}/tasks/{task.id}")
    run.saw("status: PROVISIONING")

    agent.start(task)
    run.saw("status: RUNNING")
    run.saw("TensorBoard: http://localhost:16006")  # SSM port forwarding in the background
    run.until("the session-manager-plugin to start", pid_file.exists)
    assert sessions[0]["Target"] == world["instance"]
    assert sessions[0]["DocumentName"] == "AWS-StartPortForwardingSession"
    assert sessions[0]["Parameters"] == {"portNumber": ["6006"], "localPortNumber": ["16006"]}
    run.saw(f"log: {GROUP} {PREFIX}/training/{task.id}")
    lines = [f"step {i} loss {1 / (i + 1):.3f}" for i in range(13)]
    agent.log(task, lines[:3])
    run.saw("step 2 loss", where="out")  # streamed while the task runs
    agent.log(task, lines[3:10])  # two pages of RUNTASK_LOG_PAGE_LIMIT=4
    run.saw("step 9 loss", where="out")
    agent.log(task, lines[10:12])
    # the awslogs driver's last batch lands after ECS reported the task stopped, once a read of the log that
    # began after that is complete: usually runtask.sh's read right after it saw STOPPED, which leaves the batch
    # to the drain's read (RUNTASK_DRAIN_SECONDS later); when the loop's last read began after the report, to the
    # read after it. Either way it comes after a read that found the stream caught up.
    agent.after_stop_read.append(lambda: agent.log(task, lines[12:]))
    agent.stop(task, training=0)

    assert run.finish() == 0, run.stderr
    assert messages(run) == lines  # every line once, in order, nothing else on stdout
    assert "stop code: EssentialContainerExited" in run.stderr
    assert "container training (training): exit code 0" in run.stderr
    assert f"artifacts: s3://tfod-artifacts/runs/{name}/" in run.stderr
    assert "training finished cleanly (exit 0)" in run.stderr
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the TensorBoard port forwarding outlived runtask.sh"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z")


def test_training_exit_1_prints_the_reason_and_exits_1(world):
    agent = world["agent"]
    run = launch(world)
    task = agent.task()
    agent.start(task)
    run.saw("log:")
    # without session-manager-plugin: the exact command to forward TensorBoard
    assert (f"aws ssm start-session --target {world['instance']} --document-name AWS-StartPortForwardingSession "
            """--parameters '{"portNumber":["6006"],"localPortNumber":["6006"]}' --profile tfod --region """
            f"{REGION}") in run.stderr
    agent.log(task, ["Traceback (most recent call last):", "ValueError: num_classes must be > 0"])
    agent.stop(task, training=1, container_reason="OutOfMemoryError: Container killed due to memory usage")
    assert run.finish() == 1, run.stderr
    assert messages(run) == ["Traceback (most recent call last):", "ValueError: num_classes must be > 0"]
    assert "reason:    Essential container in task exited" in run.stderr
    assert "exit code 1 (OutOfMemoryError: Container killed due to memory usage)" in run.stderr
    assert "training failed (exit 1)" in run.stderr


@pytest.mark.parametrize("case", ["no-gpu", "no-instance"])
def test_task_that_cannot_be_placed_fails_within_seconds(world, case):
    agent = world["agent"]
    if case == "no-gpu":
        agent.placement_failure = "RESOURCE:GPU"
        expected = "ECS could not place the task: RESOURCE:GPU on "
    else:
        ecs = world["ecs"]
        arns = ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"]
        ecs.update_container_instances_state(cluster=CLUSTER, containerInstances=arns, status="DRAINING")
        expected = "No Container Instances were found in your cluster."
    start = time.monotonic()
    run = launch(world)
    code = run.finish()
    assert code == 1, run.stderr
    assert time.monotonic() - start < 15  # a few aws CLI calls, no waiting
    errors = [line for line in run.err if line.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0], run.stderr
    assert agent.tasks() == []


def test_task_that_fails_to_start_prints_ecs_reason(world):
    agent = world["agent"]
    start = time.monotonic()
    run = launch(world)
    task = agent.task()
    run.saw("status: PROVISIONING")
    agent.fail_to_start(task, "pull image manifest has been retried 5 time(s): tfodkit:gpu: not found")
    assert run.finish() == 1, run.stderr
    assert time.monotonic() - start < 20
    assert "stop code: TaskFailedToStart" in run.stderr
    assert "CannotPullContainerError: pull image manifest" in run.stderr
    assert run.out == []


# --- bad inputs: one-line errors, no AWS call --------------------------------------------------

@pytest.fixture
def recorder():
    """An HTTP server on 127.0.0.1 that records every request (it must see none)."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _any(self):
            seen.append(f"{self.command} {self.path}")
            self.send_response(500)
            self.end_headers()

        do_GET = do_POST = do_PUT = do_HEAD = _any

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def _configs(world, drop: str | None = None) -> Path:
    data = json.loads(world["configs"].read_text())
    data.pop(drop, None)
    path = world["tmp"] / "bad-configs.json"
    path.write_text(json.dumps(data))
    return path


BAD = {
    "missing configs key": (lambda w: [str(_configs(w, drop="log_group")), *ARGS], "has no output log_group"),
    "missing configs.json": (lambda w: [str(w["tmp"] / "nope.json"), *ARGS], "nope.json not found"),
    "non-s3 records": (lambda w: [str(w["configs"]), "/data/records", *ARGS[1:]],
                       "records must be an s3:// URI, got '/data/records'"),
    "non-s3 hparams": (lambda w: [str(w["configs"]), *ARGS[:3], "https://example.com/hparams.json"],
                       "hparams must be an s3:// URI"),
    "bucket-only config": (lambda w: [str(w["configs"]), ARGS[0], ARGS[1], "s3://tfod-configs", ARGS[3]],
                           "names a bucket, not a file"),
    "one-letter bucket": (lambda w: [str(w["configs"]), "s3://b/records", *ARGS[1:]],
                          "S3 bucket names are 3-63 characters"),
    "bucket with capitals": (lambda w: [str(w["configs"]), ARGS[0], ARGS[1], "s3://Tfod_Configs/training.config",
                                        ARGS[3]], "S3 bucket names use lower-case letters, digits, dots and hyphens"),
    "unknown model": (lambda w: [str(w["configs"]), ARGS[0], "SSD MobileNet V9 320x320", *ARGS[2:]],
                      "unknown zoo model 'SSD MobileNet V9 320x320' (did you mean: SSD MobileNet"),
    "four arguments": (lambda w: [str(w["configs"]), *ARGS[:3]], "expected 5 arguments, got 4"),
    "bad run name": (lambda w: ["--run", "my run", str(w["configs"]), *ARGS], "--run 'my run' is not a valid run name"),
    "bad max-restarts": (lambda w: ["--max-restarts", "-1", str(w["configs"]), *ARGS],
                         "--max-restarts '-1' must be a whole number of at least 0"),
    "bad max-wait": (lambda w: ["--max-wait", "1h", str(w["configs"]), *ARGS],
                     "--max-wait '1h' must be a whole number of at least 1"),
    "attach and run": (lambda w: ["--attach", "r1", "--run", "r1", str(w["configs"])],
                       "--attach and --run do not go together"),
    "unknown option": (lambda w: ["--follow", str(w["configs"]), *ARGS], "unknown option --follow"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_no_aws_call(base, recorder, case):
    url, seen = recorder
    make_args, expected = BAD[case]
    env = {**base["env"], "AWS_ENDPOINT_URL": url}
    proc = subprocess.run(["bash", str(RUNTASK), *make_args(base)], env=env, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
    assert seen == []  # not one request reached the (recording) AWS endpoint


def test_missing_aws_cli_is_one_line(base, tmp_path):
    bin_dir = tmp_path / "bin"  # bash and coreutils, no aws
    bin_dir.mkdir()
    for tool in ("bash", "dirname"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {**base["env"], "PATH": str(bin_dir)}
    script = shutil.copy(RUNTASK, tmp_path / "runtask.sh")  # beside no .venv/bin/aws either
    (tmp_path / "tfodkit").mkdir()
    shutil.copy(RUNTASK.parent / "tfodkit" / "lib.sh", tmp_path / "tfodkit" / "lib.sh")  # the scripts' die
    proc = subprocess.run([str(bin_dir / "bash"), str(script), str(base["configs"]), *ARGS], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: aws CLI not found (install AWS CLI v2, or run make install for v1 in .venv/bin)"]


# --- Ctrl-C, reattach, stop on interrupt, TensorBoard ------------------------------------------

@pytest.mark.slow  # over 10 s alone, so make test-fast leaves it out
def test_ctrl_c_leaves_the_task_running_and_attach_resumes(world):
    agent = world["agent"]
    run = launch(world)
    task = agent.task()
    agent.start(task)
    agent.log(task, ["epoch 1"])
    run.saw("epoch 1", where="out")
    run.signal(signal.SIGINT, group=True)  # what Ctrl-C in a terminal does
    assert run.finish() == 130, run.stderr
    assert task.last_status == "RUNNING" and task.desired_status == "RUNNING"
    assert "still running" in run.stderr
    name = run_name(run)
    assert f"--attach {name} {world['configs']}" in run.stderr

    again = Run(["--attach", name, str(world["configs"])], world["env"])  # by the run's name
    again.saw("status: RUNNING")
    agent.log(task, ["epoch 2"])
    again.saw("epoch 2", where="out")
    agent.stop(task, training=0)
    assert again.finish() == 0, again.stderr
    assert messages(again) == ["epoch 1", "epoch 2"]
    assert len(agent.tasks()) == 1  # attaching launched nothing


def test_stop_on_interrupt_stops_the_task(world):
    agent = world["agent"]
    run = Run(["--stop-on-interrupt", str(world["configs"]), *ARGS], world["env"])
    task = agent.task()
    agent.start(task)
    run.saw("log:")
    run.signal(signal.SIGINT, group=True)
    assert run.finish() == 130, run.stderr
    assert task.last_status == "STOPPED"
    assert task.stopped_reason == "runtask.sh interrupted"
    assert f"stopped task {task.task_arn}" in run.stderr


# --- pure decisions ----------------------------------------------------------------------------

def test_log_stream_follows_the_task_definition_prefix():
    settings = runtask.Settings("c.json", "", REGION, CLUSTER, FAMILY, "training", "/other")
    container = {"name": "training", "logConfiguration": {"logDriver": "awslogs", "options": {
        "awslogs-group": GROUP, "awslogs-stream-prefix": "run", "awslogs-region": "us-west-2"}}}
    target = runtask.log_target(container, f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/abc123", settings)
    assert target == runtask.LogTarget(GROUP, "run/training/abc123", "us-west-2")
    with pytest.raises(runtask.UserError, match="awslogs-stream-prefix"):
        runtask.log_target({"name": "training", "logConfiguration": {"logDriver": "awslogs", "options": {}}},
                           "abc", settings)


def test_train_command_defaults_without_a_task_definition_command():
    inputs = runtask.Inputs("s3://r", MODEL, "s3://c/x", "s3://h/y")
    assert runtask.train_command({}, inputs) == [*runtask.DEFAULT_DIRS, "s3://r", MODEL, "s3://c/x", "s3://h/y"]


@pytest.mark.parametrize(("containers", "code"), [
    ([{"name": "training", "exitCode": 0}, {"name": "artifacts", "exitCode": 1}], 0),
    ([{"name": "training", "exitCode": 137}], 137),
    ([{"name": "training"}], 1),  # killed before it could exit: never a clean run
    ([], 1),
])
def test_exit_code_is_the_training_containers(containers, code):
    assert runtask.exit_code({"containers": containers}, "training") == code


def test_task_poller_rides_out_transient_errors():
    settings = runtask.Settings("c.json", "", REGION, CLUSTER, FAMILY, "training", GROUP)
    replies = [{"tasks": [{"taskArn": "t", "lastStatus": "RUNNING"}]}]
    replies += [runtask.AwsError("aws ecs describe-tasks: Throttling", "ThrottlingException")] * 4
    replies += [{"tasks": [{"taskArn": "t", "lastStatus": "STOPPED"}]}]
    replies += [runtask.AwsError("aws ecs describe-tasks: token expired", "ExpiredToken")] * 5

    def aws(*args, **kwargs):
        reply = replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    poll = runtask.TaskPoller(aws, settings, "t")
    assert [poll()["lastStatus"] for _ in range(6)] == ["RUNNING"] * 5 + ["STOPPED"]
    for _ in range(4):
        poll()
    with pytest.raises(runtask.UserError, match="cannot see task t: aws ecs describe-tasks: token expired"):
        poll()


def test_usage_and_readme_agree():
    usage = subprocess.run(["bash", str(RUNTASK), "--help"], capture_output=True, text=True, check=True).stdout
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Train on AWS: runtask.sh"):]
    section = section[:section.index("\n## ", 5)]
    names = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+|[A-Z][A-Z_]{4,}=?)", usage)) - {"AWS_ENDPOINT_URL"}
    assert names, usage
    for name in sorted(names):
        assert name.rstrip("=") in section, f"{name} is in runtask.sh --help but not in the README"
    for name in set(re.findall(r"`(--[a-z][a-z-]+)", section)):
        assert name in usage, f"{name} is in the README but not in runtask.sh --help"
    assert usage.startswith('usage: ./runtask.sh [options] configs.json s3://<records> "<zoo model name>" '
                            "s3://<training.config> s3://<hparams.json>")


# --- named runs, spot reclaims and relaunches (issue 15) ---------------------------------------

def spot_reclaim(world, task, training: int | None = 143) -> None:
    """A spot instance reclaimed: ECS reports the task stopped (train.sh got SIGTERM and exited 143), the
    instance drains away and the capacity provider brings up another one."""
    ecs = world["ecs"]
    world["agent"].stop(task, training=training, reason="Your Spot Task was interrupted.",
                        stop_code="SpotInterruption")
    old = ecs.list_container_instances(cluster=CLUSTER, status="ACTIVE")["containerInstanceArns"]
    ecs.update_container_instances_state(cluster=CLUSTER, containerInstances=old, status="DRAINING")
    kw = {"endpoint_url": world["env"]["AWS_ENDPOINT_URL"], "region_name": REGION, "aws_access_key_id": "testing",
          "aws_secret_access_key": "testing"}
    instance = boto3.client("ec2", **kw).run_instances(ImageId=AMI, MinCount=1, MaxCount=1,
                                                       InstanceType="g4dn.xlarge")["Instances"][0]
    ecs.register_container_instance(cluster=CLUSTER,
                                    instanceIdentityDocument=json.dumps({"instanceId": instance["InstanceId"]}))


def launched(world, *options: str, env: dict | None = None):
    """runtask.sh started on the world's configs with these options, its first task running and its log followed."""
    run = Run([*options, str(world["configs"]), *ARGS], env or world["env"])
    task = world["agent"].task()
    world["agent"].start(task)
    run.saw("log:")
    return run, task


def second_task(agent: Agent, first, run: Run, timeout: float = 60):
    """The task runtask.sh launches after ``first`` (fails with runtask's output when there is none)."""
    run.until("a second task", lambda: any(t.task_arn != first.task_arn for t in agent.tasks()), timeout)
    return next(t for t in agent.tasks() if t.task_arn != first.task_arn)


@pytest.mark.slow  # over 10 s alone, so make test-fast leaves it out
def test_a_reclaimed_task_is_relaunched_with_the_same_run_and_inputs(world):
    """Without training (the slow test below trains): the relaunch, its message, both logs in turn."""
    agent = world["agent"]
    run, first = launched(world, "--run", "spot-1")
    agent.log(first, ["task 1 step 5"])
    run.saw("task 1 step 5", where="out")
    spot_reclaim(world, first)
    second = second_task(agent, first, run)
    assert second.started_by == first.started_by == "tfodkit-run/spot-1"
    assert second.overrides == first.overrides
    run.saw(f"restart 1/3: task {first.id} stopped: SpotInterruption (Your Spot Task was interrupted.), training "
            "exit 143; relaunching run spot-1, resuming from step 0 (no complete checkpoint in S3 yet)")
    agent.start(second)
    agent.log(second, ["task 2 step 9"])
    agent.stop(second, training=0)
    assert run.finish() == 0, run.stderr
    assert messages(run) == ["task 1 step 5", "task 2 step 9"]
    assert sum(line.startswith("runtask: restart ") for line in run.err) == 1


def test_a_failure_of_train_sh_is_not_relaunched_and_its_exit_code_passes_through(world):
    agent = world["agent"]
    run, task = launched(world, "--run", "fails-1")
    agent.log(task, ["error: hparams file s3://tfod-configs/hparams.json is missing or empty"])
    # train.sh failed (exit 2) as the spot notice came: a failure of its own, never retried
    spot_reclaim(world, task, training=2)
    assert run.finish() == 2, run.stderr
    assert len(agent.tasks()) == 1
    assert "restart" not in run.stderr and "training failed (exit 2)" in run.stderr


def test_max_restarts_0_exits_non_zero_with_the_command_that_resumes_the_run(world):
    agent = world["agent"]
    run, task = launched(world, "--run", "norestart-1", "--max-restarts", "0")
    assert run_name(run) == "norestart-1" and task.started_by == "tfodkit-run/norestart-1"
    spot_reclaim(world, task)
    assert run.finish() == 143, run.stderr
    assert len(agent.tasks()) == 1
    assert "training stopped by SpotInterruption: its instance went away (exit 143)" in run.stderr
    assert (f"task {task.id} stopped: SpotInterruption (Your Spot Task was interrupted.), training exit 143; not "
            "relaunching: --max-restarts 0 allows no restart") in run.stderr
    resume = f"resume the run: {RUNTASK} --run norestart-1 {world['configs']} {ARGS[0]} '{MODEL}' {ARGS[2]} {ARGS[3]}"
    assert resume in run.stderr, run.stderr


def test_attach_to_a_run_with_no_task_says_how_to_start_it_again(world):
    run = Run(["--attach", "ghost-1", str(world["configs"])], world["env"])
    assert run.finish() == 1, run.stderr
    errors = [line for line in run.err if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: run ghost-1 has no task in cluster tfod-cluster"), run.err
    assert f"--run ghost-1 {world['configs']} <records>" in errors[0]


def test_max_wait_stops_the_task_cleanly_with_a_message(world):
    agent = world["agent"]
    start = time.monotonic()
    run, task = launched(world, "--run", "slow-1", "--max-wait", "4")
    code = run.finish()
    assert code != 0, run.stderr
    assert task.last_status == "STOPPED" and task.stopped_reason == "runtask.sh: --max-wait exceeded"
    assert f"--max-wait reached: stopping task {task.id} (train.sh saves a checkpoint" in run.stderr
    assert "stopped: --max-wait ran out before run slow-1 finished" in run.stderr
    assert f"resume the run: {RUNTASK} --run slow-1 " in run.stderr
    assert len(agent.tasks()) == 1 and time.monotonic() - start < 30


def _local_task(task, base: Path, endpoint: str) -> tuple[list[str], dict[str, str]]:
    """train.sh's command and environment as ECS would start them for this task (its overrides), with the
    task definition's directories moved under ``base``."""
    override = next(c for c in task.overrides["containerOverrides"] if c["name"] == "training")
    command = [str(base / "models"), str(base / "training"), str(base / "exported_model"), *override["command"][3:]]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ARTIFACTS_", "RUN_", "TFOD_"))}
    env.update({e["name"]: e["value"] for e in override["environment"]})
    env.update(TENSORBOARD="0", TFOD_FROM_SCRATCH="1", TFODKIT_PYTHON=sys.executable, AWS_ENDPOINT_URL=endpoint,
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION,
               AWS_EC2_METADATA_DISABLED="true")
    return command, env


@pytest.mark.slow
def test_a_spot_reclaim_is_relaunched_and_the_new_task_resumes_from_s3(world, tmp_path):
    """A real train.sh run is SIGTERMed at step k and the real sidecar syncs it to S3; ECS reports the task
    stopped by SpotInterruption; runtask relaunches the run; the second task's train.sh, on an empty disk,
    restores from S3, resumes at step k and finishes; runtask exits 0 after one restart."""
    from tests.conftest import synthetic_records

    agent, endpoint = world["agent"], world["env"]["AWS_ENDPOINT_URL"]
    kw = {"endpoint_url": endpoint, "region_name": REGION, "aws_access_key_id": "testing",
          "aws_secret_access_key": "testing"}
    s3 = boto3.client("s3", **kw)
    shapes = synthetic_records(tmp_path / "shapes", images=8, holdout=2, seed=1)
    for f in (shapes / "records").iterdir():
        s3.upload_file(str(f), "tfod-records", f"shapes/{f.name}")
    s3.upload_file(str(ROOT / "configs" / "training.config"), "tfod-configs", "training.config")
    # A checkpoint every 5 steps bounds train's chunks of steps to 5, so the SIGTERM sent at its first progress
    # line (step 1 here: the first chunk, with tracing, takes longer than a progress interval) stops it well
    # before the last step; learning rate 0.01: batch 2 at the base config's 0.08 can
    # diverge to NaN, which train stops on.
    steps = 20
    s3.put_object(Bucket="tfod-configs", Key="hparams.json", Body=json.dumps(
        {"batch_size": 2, "train_steps": steps, "checkpoint_every_n": 5, "learning_rate": 0.01}).encode())
    # polls (each an aws CLI process) every 5 s: the cores are the training's
    env = {**world["env"], "RUNTASK_POLL_SECONDS": "5", "RUNTASK_LOG_PAGE_LIMIT": "50"}
    run, first = launched(world, "--run", "reclaim-1", "--no-tensorboard", env=env)

    # task 1: train.sh and the artifacts sidecar, as ECS runs them; the spot notice is train.sh's SIGTERM
    command, task_env = _local_task(first, tmp_path / "task1", endpoint)
    sidecar_env = {**task_env, "ARTIFACTS_TARGET": "s3://tfod-artifacts", "ARTIFACTS_INTERVAL": "600",
                   "ARTIFACTS_DIRS": f"{tmp_path / 'task1' / 'training'}:{tmp_path / 'task1' / 'exported_model'}",
                   "ARTIFACTS_MANIFEST": str(tmp_path / "manifest.json"), "PYTHONPATH": str(ROOT)}
    sidecar_env.update({e["name"]: e["value"] for e in next(
        c for c in first.overrides["containerOverrides"] if c["name"] == "artifacts")["environment"]})
    sidecar = Followed([sys.executable, "-m", "tfodkit.artifacts", "sync"], env=sidecar_env)
    with Followed(["bash", str(ROOT / "train.sh"), *command], env=task_env, merge=True) as train:
        train.until("the first progress line", lambda: any(
            ln.startswith("train: step ") and f"/{steps} " in ln and not ln.startswith(f"train: step {steps}/")
            for ln in train.out), 600)
        train.signal(signal.SIGTERM)
        assert train.finish(120) == 143, train.stdout[-3000:]
    k = json.loads((tmp_path / "task1" / "training" / "train.json").read_text())["step"]
    assert 0 < k < steps, train.stdout[-3000:]
    sidecar.signal(signal.SIGTERM)  # ECS stops the sidecar after the training container
    assert sidecar.finish(60) == 0, sidecar.stderr
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="tfod-artifacts", Prefix="runs/reclaim-1/")["Contents"]}
    assert {f"runs/reclaim-1/training/ckpt-{k}.index", "runs/reclaim-1/training/checkpoint"} <= keys
    agent.log(first, [f"task 1: {line}" for line in train.out if line.startswith("train: ")][-3:])
    spot_reclaim(world, first)

    # runtask relaunches the same run with the same inputs
    second = second_task(agent, first, run)
    assert second.started_by == "tfodkit-run/reclaim-1" and second.overrides == first.overrides
    run.saw(f"restart 1/3: task {first.id} stopped: SpotInterruption (Your Spot Task was interrupted.), training "
            f"exit 143; relaunching run reclaim-1, resuming from step {k} (ckpt-{k} in "
            "s3://tfod-artifacts/runs/reclaim-1/training/)")
    agent.start(second)

    # task 2: a new instance, an empty disk
    command, task_env = _local_task(second, tmp_path / "task2", endpoint)
    again = subprocess.run(["bash", str(ROOT / "train.sh"), *command], env=task_env, cwd=ROOT, capture_output=True,
                           text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"run reclaim-1 resumes from ckpt-{k} (step {k})" in again.stdout
    assert f"train: resuming from ckpt-{k} at step {k}/{steps}" in again.stdout
    train2 = json.loads((tmp_path / "task2" / "training" / "train.json").read_text())
    assert train2["step"] == steps and train2["steps_this_run"] == steps - k
    assert s3.head_object(Bucket="tfod-artifacts", Key="runs/reclaim-1/exported_model/export.json")
    agent.log(second, [f"task 2: {line}" for line in again.stdout.splitlines() if line.startswith("train: ")][-3:])
    agent.stop(second, training=0)

    assert run.finish(120) == 0, run.stderr
    assert sum(line.startswith("runtask: restart ") for line in run.err) == 1, run.stderr
    shown = messages(run)
    assert shown and [m.split(":")[0] for m in shown] == sorted(m.split(":")[0] for m in shown)  # task 1, then 2
    assert {m.split(":")[0] for m in shown} == {"task 1", "task 2"}
    assert "training finished cleanly (exit 0)" in run.stderr
    print(f"reclaimed at step {k}, resumed from step {k}, finished at step {steps}")
