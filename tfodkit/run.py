"""train.sh's run: (restore,) fetch, readconfig, train, evaluate, export (and upload), recorded in run.json.

    ./train.sh <models_dir> <training_dir> <exported_model_dir> <records_dir|s3://...> "<zoo model>" \\
        [<training.config|s3://...>] [<hparams.json|s3://...>]

train.sh only picks the Python that has the toolkit's dependencies and runs
this module; everything else is here, in one process: the argument and
variable checks (before anything is written), the mapping of the TFOD_*
variables to each step's flags, the S3 fetch (tfodkit/s3.py), the signals,
run.json (tfodkit/runlog.py) and the decision that a rerun has nothing to do.
readconfig, train, evaluate and export run as child processes: each starts
TensorFlow afresh and gives its memory back when done, and a signal stops
exactly the one that is running.

Paths on the command line are relative to the current directory; the
toolkit's own files (readconfig.py, configs/) are found beside this package.

A named run (``ARTIFACTS_TARGET`` and ``RUN_NAME``, tfodkit/runs.py) survives
the loss of its machine: on a training dir without a checkpoint the run's
``training/`` folder is first restored from S3 (training resumes at its newest
complete checkpoint), a run whose export is already in S3 trains nothing, and
the end of the run uploads both directories to the same folders.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tfodkit import runlog, runs, s3, zoo
from tfodkit.errors import FAILURE, SIGNAL_STATUS, ArgumentParser, UserError, cli, on_stop_signals
from tfodkit.export_formats import DEFAULT_FORMATS, parse_formats
from tfodkit.paths import ROOT
from tfodkit.settings import env_number

PROG = "train.sh"

USAGE_TEXT = """\
usage: ./train.sh <models_dir> <training_dir> <exported_model_dir> <records_dir|s3://bucket/prefix> \
"<zoo model name>" [<training.config|s3://...>] [<hparams.json|s3://...>]

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
  TFOD_EXPORT_FORMATS      export formats, a comma list of saved_model (always written), tflite,
                           tflite_fp16, tflite_int8 (TFLite: SSD models) and onnx, each verified on
                           the test records (python -m tfodkit.export --formats; default saved_model)
  TFOD_EXPORT_TFLITE=1     the old switch: adds tflite to TFOD_EXPORT_FORMATS
  TFOD_ALLOW_CPU=1         train on the CPU even when the machine has NVIDIA GPUs that TensorFlow
                           cannot see (default: stop before training, with the reason)
  ARTIFACTS_TARGET         s3://bucket[/prefix], with RUN_NAME: the run's folders are
                           <target>/runs/<RUN_NAME>/training/ and .../exported_model/. With no
                           checkpoint in training_dir, training/ is first restored from there
                           (resuming at the newest complete checkpoint); a run already exported
                           there trains nothing; at the end both directories are uploaded there
  RUN_NAME                 the run's name (letters, digits, - and _); needed with ARTIFACTS_TARGET
                           (in an ECS task, the task id when unset)
  ARTIFACTS_URI            the old name of ARTIFACTS_TARGET (a warning; the runs/<RUN_NAME>/ layout)
  TFODKIT_PYTHON           Python with the toolkit's dependencies (default: .venv/bin/python
                           beside train.sh, else python3; PYTHON, its old name, still works)
  AWS_ENDPOINT_URL, AWS_PROFILE, ...  S3 access, as for the aws CLI (boto3)

exit status: 0 when every step succeeded (or a rerun found nothing to do); 2 bad
usage (nothing was done); 143 stopped by SIGTERM, 130 by SIGINT/Ctrl-C (during
training a checkpoint is saved first: rerun to resume); otherwise the failed
step's status.
"""

# The variables this module reads (each documented in USAGE_TEXT; read only through variable()).
VARIABLES = ("TENSORBOARD", "TENSORBOARD_PORT", "TFOD_NUM_GPUS", "TFOD_CROSS_DEVICE_OPS", "TFOD_CPU_REPLICAS",
             "TFOD_FROM_SCRATCH", "TFOD_PRETRAINED_DIR", "TFOD_EXPORT_FORMATS", "TFOD_EXPORT_TFLITE",
             "ARTIFACTS_TARGET", "RUN_NAME",
             "ARTIFACTS_URI")


def variable(name: str, default: str = "") -> str:
    """A documented environment variable of train.sh ('' when unset)."""
    if name not in VARIABLES:
        raise KeyError(f"{name} is not one of train.sh's documented variables")
    return os.environ.get(name, default).strip() or default


def log(message: str, in_signal_handler: bool = False) -> None:
    line = f"[{PROG} {time.strftime('%H:%M:%S', time.gmtime())}] {message}\n"
    if in_signal_handler:  # print() is not reentrant: the handler may interrupt one
        os.write(sys.stdout.fileno(), line.encode())
    else:
        print(line, end="", flush=True)


# ----------------------------------------------------------------------------- arguments and settings

@dataclass
class Plan:
    """Everything the run needs, checked before anything is written."""

    models_dir: Path
    training_dir: Path
    export_dir: Path
    records: str  # a local folder or s3://...
    model: zoo.ZooModel
    config: str | None
    hparams: str | None
    argv: list[str]
    num_gpus: int | None
    cpu_replicas: int | None
    cross_device_ops: str
    from_scratch: bool
    pretrained_dir: Path | None
    export_formats: tuple[str, ...]  # python -m tfodkit.export --formats
    tensorboard_port: int | None  # None: TensorBoard off
    artifacts: runs.Layout | None  # the run's S3 folders (ARTIFACTS_TARGET and RUN_NAME)
    warnings: list[str]  # printed when the run starts


def _local_file(text: str, what: str, flag_hint: str) -> None:
    if not Path(text).is_file():
        raise UserError(f"{what} {text} not found", flag_hint)


def _input_file(value: str, what: str, position: str) -> str:
    """An optional file argument: an s3:// URI checked for its form, or a local file made absolute."""
    if not value:
        return value
    if s3.is_s3(value):
        s3.parse_s3_uri(value, what, need_key=True)
        return value
    _local_file(value, what, f"check the {position} argument's path")
    return str(Path(value).absolute())


def _switch(name: str, default: str = "0") -> bool:
    value = variable(name, default)
    if value not in ("0", "1"):
        raise UserError(f"{name}={value!r} must be 0 or 1", f"e.g. {name}=1")
    return value == "1"


def plan(argv: Sequence[str]) -> Plan | None:
    """Parse and check train.sh's arguments and variables (exit 2 when anything is wrong); None for --help."""
    parser = ArgumentParser(prog=PROG, add_help=False, usage=USAGE_TEXT.split("\n\n")[0][len("usage: "):])
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("arguments", nargs="*")
    args = parser.parse_args(argv)
    if args.help:
        print(USAGE_TEXT, end="")
        return None
    n = len(args.arguments)
    if not 5 <= n <= 7:
        parser.error(f"expected 5 to 7 arguments, got {n}")
    models_dir, training_dir, export_dir, records, model_name, *rest = args.arguments
    config = rest[0] if len(rest) > 0 and rest[0] else None
    hparams = rest[1] if len(rest) > 1 and rest[1] else None
    for value, what in ((training_dir, "training_dir"), (export_dir, "exported_model_dir")):
        if not value:
            parser.error(f"{what} is empty")

    model = zoo.resolve(model_name)
    if s3.is_s3(records):
        s3.parse_s3_uri(records, "records")
    elif not Path(records).is_dir():
        raise UserError(f"records dir {records} does not exist",
                        "give the folder with training.record, testing.record and classes.pbtxt, or an s3:// prefix")
    else:
        records = str(Path(records).absolute())
    config = _input_file(config, "training config", "6th")
    hparams = _input_file(hparams, "hparams file", "7th")

    num_gpus = env_number("TFOD_NUM_GPUS", None, minimum=0, integer=True, example=1)
    cpu_replicas = env_number("TFOD_CPU_REPLICAS", None, minimum=1, integer=True, example=2)
    pretrained = variable("TFOD_PRETRAINED_DIR")
    if pretrained and not Path(pretrained).is_dir():
        raise UserError(f"TFOD_PRETRAINED_DIR={pretrained} is not a directory", "give an extracted zoo model folder")
    board = _switch("TENSORBOARD", "1")
    port = env_number("TENSORBOARD_PORT", 6006, minimum=1, integer=True) if board else None
    artifacts, warnings = _artifacts()
    return Plan(
        models_dir=Path(models_dir), training_dir=Path(training_dir).absolute(),
        export_dir=Path(export_dir).absolute(), records=records, model=model, config=config, hparams=hparams,
        argv=list(args.arguments), num_gpus=num_gpus, cpu_replicas=cpu_replicas,
        cross_device_ops=variable("TFOD_CROSS_DEVICE_OPS", "nccl"), from_scratch=_switch("TFOD_FROM_SCRATCH"),
        pretrained_dir=Path(pretrained).absolute() if pretrained else None, export_formats=_export_formats(),
        tensorboard_port=port, artifacts=artifacts, warnings=warnings)


def _export_formats() -> tuple[str, ...]:
    """TFOD_EXPORT_FORMATS, with tflite added by TFOD_EXPORT_TFLITE=1 (its old switch)."""
    text = variable("TFOD_EXPORT_FORMATS", ",".join(DEFAULT_FORMATS))
    return parse_formats(text + (",tflite" if _switch("TFOD_EXPORT_TFLITE") else ""), "TFOD_EXPORT_FORMATS")


def _artifacts() -> tuple[runs.Layout | None, list[str]]:
    """The run's S3 folders from ARTIFACTS_TARGET (or ARTIFACTS_URI, its old name) and RUN_NAME; warnings."""
    target, what, warnings = variable("ARTIFACTS_TARGET"), "ARTIFACTS_TARGET", []
    old = variable("ARTIFACTS_URI")
    if old and not target:
        target, what = old, "ARTIFACTS_URI"
    if not target:
        return None, warnings
    base = s3.parse_s3_uri(target, what)
    name = variable("RUN_NAME") or runs.ecs_task_id(warn=lambda m: warnings.append(f"warning: {m}"))
    if not name:
        raise UserError(f"{what} is set but RUN_NAME is not",
                        f"set RUN_NAME=<name>: the run's artifacts go to {target.rstrip('/')}/runs/<name>/")
    lay = runs.layout(base, runs.check_name(name))
    if what == "ARTIFACTS_URI":
        warnings.append(f"warning: ARTIFACTS_URI is the old name of ARTIFACTS_TARGET; set ARTIFACTS_TARGET instead "
                        f"(this run's artifacts go to {runs.uri_text(lay.root)})")
    elif old:
        warnings.append("warning: ARTIFACTS_URI is ignored: ARTIFACTS_TARGET is set")
    return lay, warnings


@dataclass
class Inputs:
    """The local inputs readconfig reads, after the fetch."""

    records_dir: Path
    config: Path | None
    hparams: Path | None


def readconfig_command(p: Plan, inputs: Inputs) -> list[str]:
    cmd = [sys.executable, str(ROOT / "readconfig.py"), "--pretrained_model", p.model.name,
           "--records_dir", str(inputs.records_dir), "--output_dir", str(p.training_dir)]
    if inputs.config:
        cmd += ["--config_override", str(inputs.config)]
    if inputs.hparams:
        cmd += ["--hparams", str(inputs.hparams)]
    replicas = p.num_gpus if p.num_gpus is not None else p.cpu_replicas  # what the batch must divide by
    if replicas is not None:
        cmd += ["--num_gpus", str(replicas)]
    if p.pretrained_dir:
        cmd += ["--pretrained_dir", str(p.pretrained_dir)]
    if p.from_scratch:
        cmd += ["--from_scratch"]
    return cmd


def train_command(p: Plan) -> list[str]:
    cmd = [sys.executable, "-m", "tfodkit.train", "--pipeline_config", str(p.training_dir / "pipeline.config"),
           "--model_dir", str(p.training_dir), "--cross_device_ops", p.cross_device_ops]
    if p.num_gpus is not None:
        cmd += ["--num_gpus", str(p.num_gpus)]
    if p.cpu_replicas is not None:
        cmd += ["--cpu_replicas", str(p.cpu_replicas)]
    return cmd


def evaluate_command(p: Plan) -> list[str]:
    return [sys.executable, "-m", "tfodkit.evaluate", "--pipeline_config", str(p.training_dir / "pipeline.config"),
            "--model_dir", str(p.training_dir)]


def report_command(p: Plan) -> list[str]:
    return [sys.executable, "-m", "tfodkit.report", str(p.training_dir)]


def export_command(p: Plan) -> list[str]:
    cmd = [sys.executable, "-m", "tfodkit.export", "--pipeline_config", str(p.training_dir / "pipeline.config"),
           "--model_dir", str(p.training_dir), "--output_dir", str(p.export_dir)]
    return cmd + ["--formats", ",".join(p.export_formats)]


def step_commands(p: Plan, inputs: Inputs) -> dict[str, list[str]]:
    """The child steps in their order, each with its flags."""
    return {"readconfig": readconfig_command(p, inputs), "train": train_command(p),
            "evaluate": evaluate_command(p), "export": export_command(p)}


def inputs_fingerprint(p: Plan, inputs: Inputs, commands: dict[str, list[str]]) -> dict:
    """What this run is made from (run.json's ``inputs``): equal for a rerun with nothing to do."""
    return runlog.fingerprint({k: v[1:] for k, v in commands.items()},  # not the interpreter's path
                              {"config": inputs.config, "hparams": inputs.hparams}, inputs.records_dir)


def child_env(p: Plan) -> dict[str, str]:
    """The steps' environment: the toolkit (and a TFOD checkout in models_dir) importable, output unbuffered."""
    paths = [str(ROOT)]
    research = p.models_dir / "research"
    if (research / "object_detection").is_dir():
        paths.append(str(research.absolute()))
    paths += [x for x in os.environ.get("PYTHONPATH", "").split(os.pathsep) if x and x not in paths]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1"}


# ----------------------------------------------------------------------------- signals and steps

class Interrupted(KeyboardInterrupt):
    """A signal arrived while an in-process step (fetch, upload) was running.

    A KeyboardInterrupt, so that boto3's transfers cancel their threads as they do on Ctrl-C.
    """


class Stop(Exception):
    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


class Run:
    """One run: signals, steps and run.json, in this one place.

    SIGTERM (an ECS stop, a spot reclaim) or SIGINT (Ctrl-C) stops the running
    step at once and starts no other: a child step gets SIGTERM (training then
    saves a checkpoint first; SIGTERM rather than SIGINT because a background
    job ignores SIGINT), an in-process step is interrupted. The exit status is
    then 143 or 130, whatever the step made of it.
    """

    def __init__(self, p: Plan):
        self.p = p
        self.received: int | None = None
        self.child: subprocess.Popen | None = None
        self.in_process = False
        self.env = child_env(p)
        self.tensorboard: subprocess.Popen | None = None
        self._restore_signals: Callable[[], None] | None = None

    # signals
    def __enter__(self) -> Run:
        self._restore_signals = on_stop_signals(self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        self.stop_tensorboard()
        if self._restore_signals:
            self._restore_signals()

    def _on_signal(self, signum: int, _frame) -> None:
        first = self.received is None
        if first:
            self.received = signum
            log(f"received {signal.Signals(signum).name}: stopping the running step", in_signal_handler=True)
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
        elif self.in_process and first:
            raise Interrupted(signum)

    def signal_status(self) -> int:
        return SIGNAL_STATUS.get(self.received, 143)

    # steps
    def _run_child(self, cmd: list[str]) -> int:
        self.child = subprocess.Popen(cmd, env=self.env)
        try:
            if self.received is not None:  # arrived between the check and the start
                self.child.send_signal(signal.SIGTERM)
            return self.child.wait()
        finally:
            self.child = None

    def _run_here(self, action: Callable[[], None]) -> int:
        self.in_process = True
        try:
            if self.received is not None:
                raise Interrupted(self.received)
            action()
            return 0
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return exc.status
        finally:
            self.in_process = False

    def step(self, name: str, what: list[str] | Callable[[], None]) -> None:
        """Run one step (a command, or a function run here), record it; Stop when it failed or a signal came."""
        if self.received is not None:
            self.stop(self.signal_status())
        log(f"step {name}: start")
        t0 = time.monotonic()
        try:
            status = self._run_child(what) if isinstance(what, list) else self._run_here(what)
        except Interrupted:
            status = self.signal_status()
        if status != 0 and self.received is not None:
            status = self.signal_status()
        seconds = time.monotonic() - t0
        runlog.step(self.p.training_dir, name, status, seconds)
        log(f"step {name}: status {status} after {seconds:.0f} s")
        if status != 0:
            self.stop(status)

    def skip(self, name: str, why: str) -> None:
        runlog.step(self.p.training_dir, name, 0, 0.0, skipped=why)

    def stop(self, status: int) -> None:
        self.finish(status)
        raise Stop(status)

    def finish(self, status: int) -> dict:
        self.stop_tensorboard()
        return runlog.finish(self.p.training_dir, status, self.p.export_dir)

    # TensorBoard
    def start_tensorboard(self) -> None:
        port = self.p.tensorboard_port
        if port is None:
            return
        logfile = self.p.training_dir / "tensorboard.log"
        with open(logfile, "wb") as out:
            self.tensorboard = subprocess.Popen(
                [sys.executable, "-m", "tensorboard.main", "--logdir", str(self.p.training_dir), "--host", "0.0.0.0",
                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env)
        log(f"TensorBoard: http://0.0.0.0:{port} (log: {logfile})")

    def stop_tensorboard(self) -> None:
        board, self.tensorboard = self.tensorboard, None
        if board is not None and board.poll() is None:
            board.terminate()
            try:
                # A viewer with nothing to save: no more of a stop's grace period than this.
                board.wait(timeout=2)
            except subprocess.TimeoutExpired:
                board.kill()
                board.wait()


# ----------------------------------------------------------------------------- the steps done here

def fetch(p: Plan) -> Inputs:
    """The inputs as local files: s3:// ones copied under <training_dir>/inputs/, each checked non-empty."""
    inputs_dir = p.training_dir / "inputs"
    client = None
    if s3.is_s3(p.records):
        client = s3.client()
        records_dir = inputs_dir / "records"
        s3.sync_down(p.records, records_dir, client, log=lambda m: log(f"fetch: {m}"))
    else:
        records_dir = Path(p.records)

    def one(source: str | None) -> Path | None:
        nonlocal client
        if not source:
            return None
        if s3.is_s3(source):
            uri = s3.parse_s3_uri(source, need_key=True)
            client = client or s3.client()
            local = s3.download_file(uri, inputs_dir / Path(uri.key).name, client)
        else:
            local = Path(source)
        if not local.is_file() or local.stat().st_size == 0:
            raise UserError(f"{source} is missing or empty", "check the file", status=FAILURE)
        return local

    return Inputs(records_dir, one(p.config), one(p.hparams))


def upload_artifacts(p: Plan) -> None:
    """Both directories to the run's folders; what the sidecar already sent (same size, not older) is skipped."""
    client = s3.client()
    for local, dest in ((p.training_dir, p.artifacts.training), (p.export_dir, p.artifacts.exported_model)):
        count = s3.upload_dir(local, dest, client, changed_only=True) if local.is_dir() else 0
        log(f"artifacts: {count} changed files of {local} -> {runs.uri_text(dest)}")


def restore(p: Plan) -> str | None:
    """Before a run on a training dir with no checkpoint: why nothing is to be done (the run is exported in
    S3), else None after restoring training/ from the run's S3 folder (when there is one)."""
    client = s3.client()
    if runs.exported(p.artifacts, client):
        return (f"run {p.artifacts.name} is already exported: {p.artifacts.export_json} (use another RUN_NAME to "
                "train again)")
    runs.restore(p.artifacts, p.training_dir, client, log=log)
    return None


# ----------------------------------------------------------------------------- main

def execute(p: Plan) -> int:
    for warning in p.warnings:
        print(warning, file=sys.stderr, flush=True)
    restoring = p.artifacts is not None and not runs.local_checkpoints(p.training_dir)
    p.training_dir.mkdir(parents=True, exist_ok=True)
    p.export_dir.parent.mkdir(parents=True, exist_ok=True)
    research = p.models_dir / "research"
    if (research / "object_detection").is_dir():
        log(f"using TFOD from {research.absolute()}")
    with Run(p) as run:
        restored: dict = {}
        if restoring:  # before run.json is read: the restored one is this run's previous record
            t0 = time.monotonic()
            try:
                status = run._run_here(lambda: restored.update(done=restore(p)))
            except Interrupted:
                status = run.signal_status()
            if run.received is not None:
                status = run.signal_status()
            if status != 0:
                return status
            if restored["done"]:
                log(f"nothing to train: {restored['done']}")
                return 0
            restored["seconds"] = time.monotonic() - t0
        previous = runlog.load(p.training_dir)
        runlog.start(p.training_dir, p.model.name, p.argv)
        if restoring:
            runlog.step(p.training_dir, "restore", 0, restored["seconds"])
        try:
            fetched: list[Inputs] = []
            run.step("fetch", lambda: fetched.append(fetch(p)))
            inputs = fetched[0]
            commands = step_commands(p, inputs)
            fingerprint = inputs_fingerprint(p, inputs, commands)
            runlog.record(p.training_dir, inputs=fingerprint)
            done = runlog.up_to_date(previous, fingerprint, p.training_dir, p.export_dir, p.export_formats)
            if done:
                log(f"nothing to do: {done} (delete {p.training_dir / 'run.json'} to run every step again)")
                for name in commands:
                    run.skip(name, "up to date")
                from tfodkit.report import stale  # no TensorFlow or matplotlib

                if why := stale(p.training_dir):  # deleted, or a run from before the report
                    log(f"report: {why}")
                    run.step("report", report_command(p))
            else:
                run.step("readconfig", commands["readconfig"])
                run.start_tensorboard()
                run.step("train", commands["train"])
                run.step("evaluate", commands["evaluate"])
                run.step("export", commands["export"])
                run.step("report", report_command(p))  # reads the evaluation's files: no model run
            if p.artifacts is not None:
                run.step("artifacts", lambda: upload_artifacts(p))
            if run.received is not None:  # arrived after the last step had finished
                run.stop(run.signal_status())
            data = run.finish(0)
        except Stop as stop:
            return stop.status
        except BaseException:
            run.finish(FAILURE)
            raise
    log(f"done ({data['seconds']} s in steps): metrics {p.training_dir / 'metrics.json'}, model {p.export_dir}, "
        f"record {p.training_dir / 'run.json'}")
    return 0


@cli
def main(argv: Sequence[str] | None = None) -> int:
    p = plan(sys.argv[1:] if argv is None else argv)
    return 0 if p is None else execute(p)

if __name__ == "__main__":
    raise SystemExit(main())
