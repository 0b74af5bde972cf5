"""Sweeps: train many variants of one job (zoo models, hyper-parameters) and rank them by a metric.

    python -m tfodkit.sweep run SWEEP.yaml --backend local|ecs [--out DIR] [--configs configs.json]
    python -m tfodkit.sweep status DIR

The sweep file names the records, the zoo models, the fixed hparams and a
search space; Optuna (ask and tell) picks each trial's values, and the study
lives in ``DIR/study.journal`` (Optuna's JournalStorage: a plain append-only
file, no SQLite). A trial is one train.sh run:

- ``local``: one after another, each in ``DIR/trials/NNN/`` (hparams.json,
  training/, exported_model/, train.log);
- ``ecs``: each a named run ``<name>-NNN`` launched through runtask's code, at
  most ``parallel`` at once, followed to its end (a spot reclaim relaunches it
  as runtask.sh does), its metrics.json read from the run's S3 folder.

After every trial (and when one starts) ``DIR/leaderboard.csv``,
``leaderboard.json``, ``best.json`` and ``index.html`` are rewritten, whole.

Rerunning the same command continues the sweep: finished trials (complete or
failed) are not run again; a trial left running by a Ctrl-C, a SIGTERM or a
kill is resumed under its own number with its own values (locally train.sh
resumes from its newest checkpoint; on ECS the sweep reattaches to the run's
task, or launches the run again, which restores its checkpoints from S3).
"""

from __future__ import annotations

import csv
import datetime as dt
import fcntl
import io
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tfodkit import config, runs, zoo
from tfodkit.errors import FAILURE, SIGNAL_STATUS, ArgumentParser, UserError, cli, did_you_mean, on_stop_signals
from tfodkit.fsutil import AtomicFile, replace_dir, staging_dir, write_json_atomic, write_text_atomic
from tfodkit.paths import ROOT

PROG = "python -m tfodkit.sweep"
KEYS = ("name", "records", "models", "override", "hparams", "search", "sampler", "trials", "parallel", "objective",
        "seed", "max_restarts")
REQUIRED = ("name", "records", "models", "objective")
SAMPLERS = ("tpe", "random", "grid")
RANGE_KEYS = ("low", "high", "log", "step")
# The objective's short names and the metrics.json keys they stand for (evaluate.summarize).
OBJECTIVES = {"map": "mAP", "map50": "mAP@0.5", "map75": "mAP@0.75"}
# Every other objective is a key of metrics.json's "all" (TFOD's COCO metrics; the losses are left out, since the
# objective is maximized) or AP/<class>, one class's AP of metrics.json's per_class_AP.
COCO_METRICS = tuple(f"DetectionBoxes_Precision/mAP{s}" for s in ("", "@.50IOU", "@.75IOU", " (small)", " (medium)",
                                                                  " (large)")) + \
    tuple(f"DetectionBoxes_Recall/AR@{s}" for s in ("1", "10", "100", "100 (small)", "100 (medium)", "100 (large)"))
CLASS_AP = "AP/"
JOURNAL, SWEEP_JSON, LOCK = "study.journal", "sweep.json", ".lock"


def say(message: str) -> None:
    print(f"sweep: {message}", flush=True)


# ----------------------------------------------------------------------------- the sweep file

@dataclass(frozen=True)
class Param:
    """One searched hyper-parameter: choices, or a range (int or float, optionally log or stepped)."""

    name: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    kind: str = "categorical"  # categorical | int | float

    def distribution(self):
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.choices is not None:
            return CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)


@dataclass(frozen=True)
class Sweep:
    path: str
    name: str
    records: str
    models: tuple[str, ...]  # canonical zoo display names
    override: str | None
    hparams: dict[str, Any]
    search: tuple[Param, ...]
    sampler: str
    trials: int
    parallel: int
    objective: str  # as written
    metric: str  # the metrics.json key
    seed: int
    max_restarts: int

    def space(self) -> dict[str, Param]:
        """What Optuna samples: the searched hparams, and the model when there are several."""
        params = {p.name: p for p in self.search}
        if len(self.models) > 1:
            params = {"model": Param("model", choices=self.models), **params}
        return params

    def identity(self) -> dict:
        """What makes two sweep files the same sweep (trials and parallel may change between runs)."""
        data = asdict(self)
        for key in ("path", "trials", "parallel", "max_restarts"):
            data.pop(key)
        return json.loads(json.dumps(data))

    def grid_size(self) -> int:
        return math.prod(len(p.choices) for p in self.space().values())

    def total(self) -> int:
        """The trials the sweep runs: ``trials``, or every grid point once when the grid is smaller."""
        return min(self.trials, self.grid_size()) if self.sampler == "grid" else self.trials


def _whole(data: dict, key: str, default: int, minimum: int, where: str) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UserError(f"{where}: {key} must be a whole number of at least {minimum}, got {value!r}",
                        f"e.g. {key}: {max(minimum, 1) if key != 'seed' else 0}")
    return value


def _param(key: str, value: Any, fixed: dict[str, Any], where: str) -> Param:
    spec = config.check_key(key, f"{where}: search")
    source = f"{where}: search.{key}"
    if isinstance(value, list):
        if not value:
            raise UserError(f"{source} is an empty list", f"give at least one value, e.g. {key}: [8, 16]")
        for v in value:
            if not isinstance(v, str | int | float | bool):
                raise UserError(f"{source}: choice {v!r} is not a number, string or boolean",
                                "use plain values (image_size as one number, e.g. [256, 320])")
            config.check_hparams({**fixed, key: v}, source)
        if len(set(map(repr, value))) != len(value):
            raise UserError(f"{source} lists a value twice: {value!r}", "list each choice once")
        return Param(key, choices=tuple(value))
    if not isinstance(value, dict):
        raise UserError(f"{source} must be a list of choices or a range {{low: .., high: ..}}, got {value!r}",
                        f"e.g. {key}: {{low: 0.005, high: 0.08, log: true}} or {key}: [8, 16]")
    unknown = [k for k in value if k not in RANGE_KEYS]
    if unknown:
        raise UserError(f"{source}: unknown range key {unknown[0]!r}",
                        did_you_mean(str(unknown[0]), RANGE_KEYS) or f"a range has {', '.join(RANGE_KEYS)}")
    if "low" not in value or "high" not in value:
        raise UserError(f"{source}: a range needs low and high", f"e.g. {key}: {{low: 0.005, high: 0.08}}")
    if spec.kind not in ("int", "float"):
        raise UserError(f"{source}: {key} is a {spec.kind} hyper-parameter, so it takes a list of choices only",
                        f"e.g. {key}: [..., ...]")
    low, high = value["low"], value["high"]
    for v in (low, high):
        config.check_hparams({**fixed, key: v}, source)
    if spec.kind == "int" and not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
        raise UserError(f"{source}: {key} is a whole number, so low and high must be too", "e.g. low: 8, high: 32")
    if not low < high:
        raise UserError(f"{source}: low {low!r} must be below high {high!r}", "swap them, or list one choice")
    log = value.get("log", False)
    if not isinstance(log, bool):
        raise UserError(f"{source}: log must be true or false, got {log!r}", "e.g. log: true")
    step = value.get("step")
    if step is not None and (not isinstance(step, int | float) or isinstance(step, bool) or step <= 0):
        raise UserError(f"{source}: step must be a positive number, got {step!r}", "e.g. step: 0.01")
    if step is not None and log:
        raise UserError(f"{source}: a range cannot have both log and step", "drop one of them")
    return Param(key, low=low, high=high, log=log, step=step, kind=spec.kind)


def parse(data: Any, path: str) -> Sweep:
    """The sweep file's contents, every key checked; a one-line UserError for the first problem."""
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a YAML mapping (name:, records:, models:, ...), got "
                        f"{type(data).__name__}", "see README: Sweeps")
    for key in data:
        if key not in KEYS:
            raise UserError(f"{path}: unknown key {key!r}",
                            did_you_mean(str(key), KEYS) or f"known keys: {', '.join(KEYS)}")
    for key in REQUIRED:
        if data.get(key) in (None, "", []):
            raise UserError(f"{path}: {key} is missing", "see README: Sweeps for an example")
    name = str(data["name"])
    runs.check_name(name, f"{path}: name")
    if len(name) > 90:
        raise UserError(f"{path}: name is {len(name)} characters long", "use at most 90: trial runs add -NNN")
    records = data["records"]
    if not isinstance(records, str):
        raise UserError(f"{path}: records must be a folder or an s3:// prefix, got {records!r}", "e.g. records/")
    models = data["models"]
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise UserError(f"{path}: models must be a list of zoo model names, got {models!r}",
                        'e.g. models: ["SSD MobileNet V2 FPNLite 320x320"]')
    canonical = []
    for m in models:
        try:
            canonical.append(zoo.resolve(m).name)
        except UserError as exc:
            raise UserError(f"{path}: models: {exc.what}", exc.fix) from None
    if len(set(canonical)) != len(canonical):
        raise UserError(f"{path}: models names one model twice", "list each model once")
    override = data.get("override")
    if override is not None and not isinstance(override, str):
        raise UserError(f"{path}: override must be a file path or s3:// URI, got {override!r}",
                        "e.g. override: configs/training.config")
    fixed = data.get("hparams") or {}
    if not isinstance(fixed, dict):
        raise UserError(f"{path}: hparams must be a mapping, got {fixed!r}", "e.g. hparams: {train_steps: 2000}")
    fixed = config.check_hparams(fixed, f"{path}: hparams")
    search = data.get("search") or {}
    if not isinstance(search, dict):
        raise UserError(f"{path}: search must be a mapping of hyper-parameter: choices or range, got {search!r}",
                        "e.g. search: {batch_size: [8, 16]}")
    for key in search:
        if key == "model":
            raise UserError(f"{path}: search.model: the models are searched through models:", "list them there")
        if key in fixed:
            raise UserError(f"{path}: {key} is both in hparams and in search", "keep it in one of them")
    params = tuple(_param(str(k), v, fixed, path) for k, v in search.items())
    sampler = data.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise UserError(f"{path}: sampler {sampler!r} is not one of {', '.join(SAMPLERS)}",
                        did_you_mean(str(sampler), SAMPLERS) or "e.g. sampler: tpe")
    if sampler == "grid":
        ranges = [p.name for p in params if p.choices is None]
        if ranges:
            raise UserError(f"{path}: a grid sweep needs a list of choices for every searched key, and "
                            f"{ranges[0]} is a range", f"list its values, e.g. {ranges[0]}: [0.01, 0.04]")
    objective = data["objective"]
    known = [*OBJECTIVES, *OBJECTIVES.values(), *COCO_METRICS]
    if objective not in known and not (isinstance(objective, str) and objective.startswith(CLASS_AP)
                                       and objective[len(CLASS_AP):]):
        raise UserError(f"{path}: objective {objective!r} is not a metrics.json metric",
                        did_you_mean(str(objective), known) or
                        f"one of {', '.join([*OBJECTIVES, *OBJECTIVES.values()])}, AP/<class>, or a key of "
                        "metrics.json's \"all\" such as DetectionBoxes_Recall/AR@100")
    where = path
    sweep = Sweep(path=path, name=name, records=records, models=tuple(canonical), override=override,
                  hparams=fixed, search=params, sampler=sampler,
                  trials=_whole(data, "trials", 10, 1, where), parallel=_whole(data, "parallel", 1, 1, where),
                  objective=objective, metric=OBJECTIVES.get(objective, objective),
                  seed=_whole(data, "seed", 0, 0, where), max_restarts=_whole(data, "max_restarts", 3, 0, where))
    if not sweep.space():
        raise UserError(f"{path}: nothing to search: one model and no search:", "add a search: key or more models")
    return sweep


def load(path: str) -> Sweep:
    import yaml

    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise UserError(f"sweep file {path} not found", "check the path") from None
    except OSError as exc:
        raise UserError(f"cannot read sweep file {path}: {exc.strerror}", "check the path") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}{at}: invalid YAML: {problem}", "fix the YAML syntax") from None
    return parse(data, path)


def check_backend(sweep: Sweep, backend: str) -> None:
    """The inputs the backend can read: local folders and files for local, s3:// records for ecs."""
    from tfodkit import s3

    if backend == "ecs":
        if not s3.is_s3(sweep.records):
            raise UserError(f"{sweep.path}: records {sweep.records!r} must be an s3:// prefix for --backend ecs",
                            "upload the records folder and give its s3:// URI")
        s3.parse_s3_uri(sweep.records, "records")
        if sweep.override and s3.is_s3(sweep.override):
            s3.parse_s3_uri(sweep.override, "override", need_key=True)
    else:
        if s3.is_s3(sweep.records):
            s3.parse_s3_uri(sweep.records, "records")  # train.sh fetches it
        elif not Path(sweep.records).is_dir():
            raise UserError(f"{sweep.path}: records dir {sweep.records} does not exist",
                            "give the folder with training.record, testing.record and classes.pbtxt")
    if sweep.override and not s3.is_s3(sweep.override) and not Path(sweep.override).is_file():
        raise UserError(f"{sweep.path}: override {sweep.override} not found", "check its path")


# ----------------------------------------------------------------------------- the study

def trial_dir(out: Path, number: int) -> Path:
    return out / "trials" / f"{number:03d}"


def run_name(sweep: Sweep, number: int) -> str:
    return f"{sweep.name}-{number:03d}"


def _quiet_optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_study(sweep: Sweep, out: Path, finished: int):
    """The study in out/study.journal (created or continued). The random and TPE samplers' seed is the sweep's
    seed plus the trials already asked, so a continued sweep does not draw the first trials' values again; the
    grid sampler keeps the sweep's seed (its trials name grid points by their index in the grid it shuffled
    with it) and skips the points already run or running by itself."""
    optuna = _quiet_optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    seed = sweep.seed + finished
    if sweep.sampler == "grid":
        class Grid(optuna.samplers.GridSampler):
            def after_trial(self, *args) -> None:
                """Nothing: GridSampler's calls Study.stop() once the grid is done, which raises outside
                optimize(); the sweep stops asking by itself (pending())."""

        sampler = Grid({k: list(p.choices) for k, p in sweep.space().items()}, seed=sweep.seed)
    elif sweep.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:  # trials running at once count as their worst until told (constant_liar)
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=sweep.parallel > 1)
    storage = JournalStorage(JournalFileBackend(str(out / JOURNAL)))
    return optuna.create_study(storage=storage, study_name=sweep.name, direction="maximize", sampler=sampler,
                               load_if_exists=True)


def prepare_dir(sweep: Sweep, out: Path, backend: str) -> None:
    """out/sweep.json: the sweep this folder holds; another sweep file's search there is refused."""
    out.mkdir(parents=True, exist_ok=True)
    saved = out / SWEEP_JSON
    record = {"sweep": sweep.identity(), "file": sweep.path, "backend": backend, "trials": sweep.trials,
              "parallel": sweep.parallel}
    if saved.is_file():
        try:
            before = json.loads(saved.read_text())
        except ValueError:
            before = {}
        if before.get("sweep") != record["sweep"]:
            changed = sorted(k for k in record["sweep"] if (before.get("sweep") or {}).get(k) != record["sweep"][k])
            raise UserError(f"{out} holds another sweep (it differs in: {', '.join(changed) or 'everything'})",
                            "give a new --out, or restore the sweep file as it was")
        if before.get("backend") not in (None, backend):
            raise UserError(f"{out} is a --backend {before.get('backend')} sweep", f"rerun it with --backend "
                            f"{before.get('backend')}, or give a new --out")
    write_json_atomic(saved, record)


class Lock:
    """One sweep process per folder: a second one would run the same trials."""

    def __init__(self, out: Path):
        self.path = out / LOCK
        self.file = None

    def __enter__(self) -> Lock:
        self.file = open(self.path, "a")  # noqa: SIM115 (held for the whole sweep)
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise UserError(f"another sweep is running in {self.path.parent}",
                            f"watch it with {PROG} status {self.path.parent}") from None
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


def trial_hparams(sweep: Sweep, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A trial's model and its hparams.json (the fixed ones with its searched values)."""
    model = params.get("model", sweep.models[0])
    return model, {**sweep.hparams, **{k: v for k, v in params.items() if k != "model"}}


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in params.items())


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@dataclass
class Outcome:
    """What a finished trial reports: told COMPLETE with its objective, or FAIL with a one-line reason."""

    value: float | None = None
    reason: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


def metric_attrs(metrics: dict, sweep: Sweep) -> tuple[float | None, dict[str, Any], str | None]:
    """(the objective, the leaderboard's metric columns, why there is no objective) from a metrics.json."""
    attrs = {"map": metrics.get("mAP"), "map50": metrics.get("mAP@0.5"), "map75": metrics.get("mAP@0.75"),
             "per_class_AP": metrics.get("per_class_AP") or {}, "step": metrics.get("step")}
    if sweep.metric.startswith(CLASS_AP):
        value = attrs["per_class_AP"].get(sweep.metric[len(CLASS_AP):])
        if value is None:
            return None, attrs, (f"metrics.json has no class {sweep.metric[len(CLASS_AP):]!r} (its classes: "
                                 f"{', '.join(attrs['per_class_AP']) or 'none'})")
    else:
        value = metrics.get(sweep.metric, (metrics.get("all") or {}).get(sweep.metric))
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None, attrs, f"metrics.json has no number {sweep.metric!r} (got {value!r})"
    return float(value), attrs, None


def tell(study, number: int, outcome: Outcome) -> None:
    from optuna.trial import TrialState

    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    for key, value in outcome.attrs.items():
        study._storage.set_trial_user_attr(trial_id, key, value)
    if outcome.reason is None:
        study.tell(number, outcome.value)
    else:
        study._storage.set_trial_user_attr(trial_id, "reason", outcome.reason)
        study.tell(number, state=TrialState.FAIL)


def set_attrs(study, number: int, **attrs) -> None:
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    for key, value in attrs.items():
        study._storage.set_trial_user_attr(trial_id, key, value)


class Signals:
    """SIGINT (Ctrl-C) and SIGTERM: no new trial starts; the running ones are stopped (local) or left
    running (ecs); the sweep then exits 130 or 143 after saying how to resume."""

    def __init__(self):
        self.received: int | None = None
        self.child: subprocess.Popen | None = None
        self._restore: Callable[[], None] | None = None

    def __enter__(self) -> Signals:
        self._restore = on_stop_signals(self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        if self._restore:
            self._restore()

    def _on_signal(self, signum: int, _frame) -> None:
        if self.received is None:
            self.received = signum
            os.write(sys.stdout.fileno(), f"sweep: received {signal.Signals(signum).name}: no new trial starts\n"
                     .encode())
        child = self.child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)  # train.sh saves a checkpoint and exits 143

    @property
    def status(self) -> int:
        return SIGNAL_STATUS.get(self.received, 143)


def pending(study, sweep: Sweep) -> tuple[list, int, int]:
    """(the trials left RUNNING by an earlier sweep process, how many are finished, how many new ones to ask)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    finished = sum(t.state.is_finished() for t in trials)
    return running, finished, max(0, sweep.total() - finished - len(running))


class Repeats:
    """Three trials in a row failing for the same reason (records that cannot be read, missing credentials):
    every other trial would fail the same way, so no new one starts."""

    LIMIT = 3

    def __init__(self):
        self.reason: str | None = None
        self.count = 0

    def add(self, outcome: Outcome) -> None:
        if outcome.reason is None:
            self.reason, self.count = None, 0
        else:
            self.count = self.count + 1 if outcome.reason == self.reason else 1
            self.reason = outcome.reason

    @property
    def stop(self) -> bool:
        return self.count >= self.LIMIT

    def say(self) -> None:
        say(f"stopping: {self.count} trials in a row failed the same way ({self.reason}); fix that and rerun "
            "(the failed trials stay failed, new ones continue the sweep)")


def resume_hint(sweep: Sweep, out: Path, backend: str, configs: str | None) -> str:
    cmd = [*PROG.split(), "run", sweep.path, "--backend", backend, "--out", str(out)]
    if backend == "ecs" and configs:
        cmd += ["--configs", configs]
    return f"resume: {shlex.join(cmd)}"


# ----------------------------------------------------------------------------- local backend

def _last_error(log: Path) -> str | None:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    errors = [ln.strip() for ln in lines if ln.startswith("error: ")]
    return errors[-1][len("error: "):] if errors else None


def local_trial(sweep: Sweep, out: Path, number: int, params: dict[str, Any], signals: Signals) -> Outcome | None:
    """One trial through train.sh in out/trials/NNN/; None when a signal stopped it (it stays RUNNING)."""
    tdir = trial_dir(out, number)
    tdir.mkdir(parents=True, exist_ok=True)
    model, hparams = trial_hparams(sweep, params)
    write_json_atomic(tdir / "hparams.json", hparams)
    training, export = tdir / "training", tdir / "exported_model"
    override = str(Path(sweep.override).absolute()) if sweep.override and "://" not in sweep.override else \
        (sweep.override or "")
    records = sweep.records if "://" in sweep.records else str(Path(sweep.records).absolute())
    cmd = ["bash", str(ROOT / "train.sh"), str(tdir), str(training), str(export), records, model, override,
           str(tdir / "hparams.json")]
    env = {**os.environ, "TENSORBOARD": os.environ.get("TENSORBOARD", "0")}  # one port for many runs: off
    start = time.monotonic()
    with open(tdir / "train.log", "ab") as log:
        log.write(f"\n=== {dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ} {shlex.join(cmd)}\n".encode())  # noqa: UP017
        log.flush()
        signals.child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, cwd=tdir)
        try:
            if signals.received is not None:
                signals.child.send_signal(signal.SIGTERM)
            code = signals.child.wait()
        finally:
            signals.child = None
    seconds = time.monotonic() - start
    if signals.received is not None and code != 0:
        return Outcome(attrs={"wall_s": seconds})  # reason None, value None: interrupted
    outcome = Outcome(attrs={"wall_s": seconds, "export": str(export)})
    if code != 0:
        why = _last_error(tdir / "train.log") or "see its train.log"
        outcome.reason = f"train.sh exited {code}: {why}"
        return outcome
    metrics = _read_json(training / "metrics.json")
    outcome.value, metric_cols, outcome.reason = metric_attrs(metrics, sweep)
    outcome.attrs.update(metric_cols)
    outcome.attrs["steps_per_sec"] = _read_json(training / "train.json").get("steps_per_sec")
    report = training / "report" / "index.html"
    if report.is_file():
        outcome.attrs["report"] = str(report.relative_to(out))
    return outcome


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_local(sweep: Sweep, out: Path, signals: Signals) -> int:
    study = None
    running, finished, new = [], 0, 0
    study = open_study(sweep, out, 0)
    running, finished, new = pending(study, sweep)
    study = open_study(sweep, out, finished + len(running))
    total = finished + len(running) + new
    if running:
        say(f"resuming trial {', '.join(str(t.number) for t in running)} (left running by an earlier sweep)")
    if not running and not new:
        say(f"all {finished} trials are finished: nothing to run")
    queue = [(t.number, dict(t.params)) for t in running]
    done, repeats = finished, Repeats()
    while (queue or new) and signals.received is None and not repeats.stop:
        if queue:
            number, params = queue.pop(0)
        else:
            trial = study.ask(fixed_distributions={k: p.distribution() for k, p in sweep.space().items()})
            number, params, new = trial.number, dict(trial.params), new - 1
        write_results(study, sweep, out, "local")
        say(f"trial {done + 1}/{total} (#{number}) start: {params_text(params)} (log: "
            f"{trial_dir(out, number) / 'train.log'})")
        before = _trial(study, number).user_attrs.get("wall_s", 0.0)
        outcome = local_trial(sweep, out, number, params, signals)
        outcome.attrs["wall_s"] = round(before + outcome.attrs["wall_s"], 1)
        if outcome.value is None and outcome.reason is None:  # stopped by a signal: resumed by a rerun
            set_attrs(study, number, wall_s=outcome.attrs["wall_s"])
            break
        tell(study, number, outcome)
        repeats.add(outcome)
        done += 1
        result = f"{sweep.objective} {outcome.value:.4f}" if outcome.reason is None else f"failed: {outcome.reason}"
        say(f"trial {done}/{total} (#{number}) done in {outcome.attrs['wall_s']:.0f} s: {result}")
        write_results(study, sweep, out, "local")
    write_results(study, sweep, out, "local")
    if repeats.stop:
        repeats.say()
        return FAILURE
    return finish(study, sweep, out, "local", signals, None)


def _trial(study, number: int):
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def finish(study, sweep: Sweep, out: Path, backend: str, signals: Signals, configs: str | None) -> int:
    if signals.received is not None:
        say(f"stopped by {signal.Signals(signals.received).name}; {resume_hint(sweep, out, backend, configs)}")
        return signals.status
    best = _best(study)
    if best is None:
        say(f"no trial completed: see {out / 'leaderboard.csv'} for the reasons")
        return FAILURE
    say(f"best: trial #{best.number} {sweep.objective} {best.value:.4f} ({params_text(best.params)}); "
        f"leaderboard {out / 'leaderboard.csv'}, page {out / 'index.html'}")
    return 0


def _best(study):
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


# ----------------------------------------------------------------------------- ecs backend

@dataclass
class Launched:
    number: int
    params: dict[str, Any]
    name: str
    task: str  # the ARN of its current task
    restarts: int = 0
    hours: float = 0.0  # instance-hours of its earlier tasks
    started: float = field(default_factory=time.monotonic)


def _epoch(value: Any) -> float | None:
    """A describe-tasks timestamp (epoch seconds from aws CLI v1, ISO 8601 from v2) as epoch seconds."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def task_hours(task: dict) -> float:
    start, stop = _epoch(task.get("startedAt")), _epoch(task.get("stoppedAt"))
    return max(0.0, (stop - start) / 3600) if start is not None and stop is not None else 0.0


class Ecs:
    """The ECS side of a sweep: runtask's settings, aws CLI calls and decisions, for many runs at once."""

    def __init__(self, sweep: Sweep, out: Path, configs: str):
        from tfodkit import runtask, s3

        self.rt, self.sweep, self.out = runtask, sweep, out
        self.settings = runtask.load_settings(configs)
        self.aws = runtask.Aws(self.settings)
        try:
            self.task_def = runtask.describe_task_definition(self.aws, self.settings.task_definition)
        except runtask.AwsError as exc:
            raise UserError(f"cannot read task definition {self.settings.task_definition}: {exc}",
                            "check task_definition, profile and region in configs.json", FAILURE) from None
        self.container = runtask.find_container(self.task_def, self.settings.container)
        if not runtask.artifacts_target(self.task_def):
            raise UserError(f"task definition {self.settings.task_definition} has no ARTIFACTS_TARGET",
                            "a sweep reads each trial's metrics.json from its run's S3 folder: deploy the "
                            "terraform/ task definition with its artifacts sidecar")
        self.s3 = s3.client(profile=self.settings.profile or None, region_name=self.settings.region)
        self.failures = 0  # describe-tasks calls failed in a row

    def layout(self, name: str) -> runs.Layout:
        return self.rt.run_layout(self.task_def, name)

    def launch(self, number: int, params: dict[str, Any]) -> str:
        """Upload the trial's inputs to <run>/inputs/ and start its first task; its ARN."""
        from tfodkit import s3

        name = run_name(self.sweep, number)
        lay = self.layout(name)
        model, hparams = trial_hparams(self.sweep, params)
        inputs = trial_dir(self.out, number) / "inputs"
        inputs.mkdir(parents=True, exist_ok=True)
        write_json_atomic(inputs / "hparams.json", hparams)
        override = self.sweep.override or ""
        if override and not s3.is_s3(override):
            write_text_atomic(inputs / Path(override).name, Path(override).read_text())
            override = str(lay.root.join("inputs", Path(override).name))
        s3.upload_dir(inputs, lay.root.join("inputs"), self.s3)
        command = self.rt.train_command(self.container, self.rt.Inputs(
            records=self.sweep.records, model=model, config=override,
            hparams=str(lay.root.join("inputs", "hparams.json"))))
        return self.rt.run_task(self.aws, self.settings, self.settings.task_definition,
                                self.rt.overrides(self.task_def, self.settings.container, command, name), name)

    def running_task(self, name: str) -> str | None:
        """The run's task that is still running (a sweep killed while it trained), or None."""
        arns = self.aws("ecs", "list-tasks", "--cluster", self.settings.cluster, "--started-by",
                        self.rt.started_by(name), "--desired-status", "RUNNING").get("taskArns") or []
        return arns[-1] if arns else None

    def describe(self, arns: list[str]) -> dict[str, dict]:
        """The tasks by ARN; {} after a failed call (throttling, network: the next poll asks again), a
        UserError after five failures in a row."""
        found: dict[str, dict] = {}
        try:
            for i in range(0, len(arns), 100):  # describe-tasks takes at most 100
                out = self.aws("ecs", "describe-tasks", "--cluster", self.settings.cluster, "--tasks",
                               *arns[i:i + 100])
                found.update({t["taskArn"]: t for t in out.get("tasks") or []})
        except self.rt.AwsError as exc:
            self.failures += 1
            if self.failures >= 5:
                raise UserError(f"cannot see the trials' tasks: {exc}", "check your AWS login and configs.json; "
                                "rerun the sweep to reattach to them", FAILURE) from None
            say(f"warning: {exc} (retrying)")
            return {}
        self.failures = 0
        return found

    def stopped(self, run: Launched, task: dict) -> Outcome | None:
        """A trial's task stopped: None after relaunching its run (a spot reclaim), else the trial's outcome."""
        rt, container = self.rt, self.settings.container
        run.hours += task_hours(task)
        code = rt.exit_code(task, container)
        lay = self.layout(run.name)
        if code != 0:
            reason = rt.relaunch_reason(task, container)
            exported = rt._s3_state(self.settings, lay)[0] if reason else False
            if reason and not exported:
                if run.restarts >= self.sweep.max_restarts:
                    return self._failed(run, f"{reason}; not relaunched: max_restarts {self.sweep.max_restarts} "
                                             "reached")
                run.restarts += 1
                say(f"trial #{run.number}: {reason}; relaunching run {run.name} (restart {run.restarts}/"
                    f"{self.sweep.max_restarts})")
                try:
                    run.task = rt.run_task(self.aws, self.settings, task["taskDefinitionArn"],
                                           task.get("overrides") or {}, run.name)
                except UserError as exc:
                    return self._failed(run, f"{reason}; the relaunch failed: {exc}")
                return None
            if not exported:
                what = f"training exit {code}" if rt.started(task) else "the task did not start"
                why = task.get("stoppedReason") or task.get("stopCode") or "stopped"
                return self._failed(run, f"task {runs.task_id(task['taskArn'])} failed: {what} ({why})")
        return self._collect(run, lay)

    def _failed(self, run: Launched, reason: str) -> Outcome:
        return Outcome(reason=reason, attrs=self._common(run))

    def _common(self, run: Launched) -> dict[str, Any]:
        return {"wall_s": round(time.monotonic() - run.started, 1), "instance_hours": round(run.hours, 4),
                "run": run.name, "restarts": run.restarts}

    def _collect(self, run: Launched, lay: runs.Layout) -> Outcome:
        """The finished run's metrics.json and train.json (and its report and curves for the page) from S3."""
        from tfodkit import s3

        tdir = trial_dir(self.out, run.number) / "training"
        outcome = Outcome(attrs={**self._common(run), "export": runs.uri_text(lay.exported_model)})
        try:
            s3.download_file(lay.training.join("metrics.json"), tdir / "metrics.json", self.s3)
        except UserError as exc:
            outcome.reason = f"the run wrote no metrics.json to {runs.uri_text(lay.training)} ({exc.what})"
            return outcome
        for rel in ("train.json",):
            if s3.exists(lay.training.join(rel), self.s3):
                s3.download_file(lay.training.join(rel), tdir / rel, self.s3)
        for folder in ("report", "train"):  # the run report, and the TensorBoard events the page plots
            s3.download_prefix(lay.training.join(folder), tdir / folder, self.s3)
        outcome.value, cols, outcome.reason = metric_attrs(_read_json(tdir / "metrics.json"), self.sweep)
        outcome.attrs.update(cols)
        outcome.attrs["steps_per_sec"] = _read_json(tdir / "train.json").get("steps_per_sec")
        if (tdir / "report" / "index.html").is_file():
            outcome.attrs["report"] = str((tdir / "report" / "index.html").relative_to(self.out))
        return outcome


def run_ecs(sweep: Sweep, out: Path, configs: str, signals: Signals) -> int:
    from tfodkit.runtask import _seconds

    ecs = Ecs(sweep, out, configs)
    poll = _seconds("RUNTASK_POLL_SECONDS", 5)
    study = open_study(sweep, out, 0)
    running, finished, new = pending(study, sweep)
    study = open_study(sweep, out, finished + len(running))
    total, done = finished + len(running) + new, finished
    if not running and not new:
        say(f"all {finished} trials are finished: nothing to run")
    active: dict[int, Launched] = {}
    queue = [(t.number, dict(t.params)) for t in running]
    space = {k: p.distribution() for k, p in sweep.space().items()}
    repeats = Repeats()
    while signals.received is None:
        changed = False
        while (queue or new) and len(active) < sweep.parallel and signals.received is None and not repeats.stop:
            changed = True
            if queue:
                number, params = queue.pop(0)
                name = run_name(sweep, number)
                arn = ecs.running_task(name)
                if arn:
                    say(f"trial #{number}: reattached to run {name}'s task {runs.task_id(arn)}")
            else:
                trial = study.ask(fixed_distributions=space)
                number, params, new, arn = trial.number, dict(trial.params), new - 1, None
                name = run_name(sweep, number)
            if arn is None:
                try:
                    arn = ecs.launch(number, params)
                except UserError as exc:
                    if signals.received is not None:  # Ctrl-C reached the aws CLI too: resumed by a rerun
                        say(f"trial #{number}: its launch was interrupted; the rerun reattaches to its task if "
                            "it started, else launches it")
                        break
                    failed = Outcome(reason=f"could not launch: {exc}")
                    tell(study, number, failed)
                    repeats.add(failed)
                    done += 1
                    say(f"trial {done}/{total} (#{number}) failed: could not launch: {exc}")
                    continue
            active[number] = Launched(number, params, name, arn)
            set_attrs(study, number, run=name)
            say(f"trial #{number} start ({len(active)} running): run {name}: {params_text(params)}")
        if changed:  # once the launches are out, so that each task starts without delay
            write_results(study, sweep, out, "ecs")
        if not active:
            break
        time.sleep(poll)
        if signals.received is not None:
            break
        tasks = ecs.describe([run.task for run in active.values()])
        for number, run in list(active.items()):
            task = tasks.get(run.task)
            if not task or task.get("lastStatus") != "STOPPED":
                continue
            outcome = ecs.stopped(run, task)
            if outcome is None:
                continue
            del active[number]
            tell(study, number, outcome)
            repeats.add(outcome)
            done += 1
            result = f"{sweep.objective} {outcome.value:.4f}" if outcome.reason is None else \
                f"failed: {outcome.reason}"
            say(f"trial {done}/{total} (#{number}) done: {result}")
            write_results(study, sweep, out, "ecs")
    write_results(study, sweep, out, "ecs")
    if signals.received is not None and active:
        say(f"{len(active)} trial task(s) keep running (and billing): "
            + ", ".join(f"{r.name} {runs.task_id(r.task)}" for r in active.values())
            + "; the rerun below reattaches to them")
    if repeats.stop and signals.received is None:
        repeats.say()
        return FAILURE
    return finish(study, sweep, out, "ecs", signals, configs)


# ----------------------------------------------------------------------------- results

def leaderboard(study, sweep: Sweep, backend: str) -> tuple[list[str], list[dict]]:
    """The columns and the rows, best first: completed trials by the objective (ties: the earlier trial), then
    the running ones, then the failed ones."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    classes = sorted({c for t in trials for c in (t.user_attrs.get("per_class_AP") or {})})
    searched = [k for k in sweep.space() if k != "model"]
    columns = ["trial", "model", *searched, "objective", "map", "map50", *[f"AP/{c}" for c in classes],
               "steps_per_sec", "wall_s", "export", *(["instance_hours"] if backend == "ecs" else []),
               "state", "report", "reason"]
    rank = {TrialState.COMPLETE: 0, TrialState.RUNNING: 1, TrialState.WAITING: 1}
    ordered = sorted(trials, key=lambda t: (rank.get(t.state, 2), -(t.value or 0.0) if t.state ==
                                            TrialState.COMPLETE else 0, t.number))
    rows = []
    for t in ordered:
        a = t.user_attrs
        model, _hp = trial_hparams(sweep, t.params)
        row = {"trial": t.number, "model": model, **{k: t.params.get(k) for k in searched},
               "objective": t.value if t.state == TrialState.COMPLETE else None,
               "map": a.get("map"), "map50": a.get("map50"),
               **{f"AP/{c}": (a.get("per_class_AP") or {}).get(c) for c in classes},
               "steps_per_sec": a.get("steps_per_sec"), "wall_s": a.get("wall_s"), "export": a.get("export")}
        if backend == "ecs":
            row["instance_hours"] = a.get("instance_hours")
        row.update(state=t.state.name.lower(), report=a.get("report"), reason=a.get("reason"))
        rows.append(row)
    return columns, rows


def write_results(study, sweep: Sweep, out: Path, backend: str) -> None:
    columns, rows = leaderboard(study, sweep, backend)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    write_text_atomic(out / "leaderboard.csv", buf.getvalue())
    write_json_atomic(out / "leaderboard.json", {"sweep": sweep.name, "objective": sweep.objective,
                                                 "metric": sweep.metric, "trials": sweep.total(),
                                                 "backend": backend, "columns": columns, "rows": rows})
    best = _best(study)
    if best is not None:
        model, hparams = trial_hparams(sweep, best.params)
        write_json_atomic(out / "best.json", {
            "trial": best.number, "model": model, "params": best.params, "hparams": hparams,
            "objective": sweep.objective, "value": best.value, "export": best.user_attrs.get("export"),
            "report": best.user_attrs.get("report"), "run": best.user_attrs.get("run"),
            "training": str(trial_dir(out, best.number) / "training")})
    write_page(study, sweep, out, columns, rows)


def write_page(study, sweep: Sweep, out: Path, columns: list[str], rows: list[dict]) -> None:
    """out/index.html in the run report's offline style: the leaderboard (each trial's report linked), the
    objective against each searched parameter, and the best trial's training curves; figures in out/page/."""
    from tfodkit.report import page as rp

    best = _best(study)
    done = [r for r in rows if r["state"] == "complete"]
    body = [f"<p>{len(done)} of {sweep.total()} trials complete ({sum(r['state'] == 'fail' for r in rows)} failed, "
            f"{sum(r['state'] == 'running' for r in rows)} running); objective: {rp.esc(sweep.objective)} "
            f"(maximized); sampler: {rp.esc(sweep.sampler)}; sweep file: {rp.esc(sweep.path)}</p>"]
    shown = [c for c in columns if c not in ("export", "report")]
    cells = []
    for r in rows:
        cells.append([f"{r[c]:.4g}" if isinstance(r[c], float) else ("" if r[c] is None else r[c])
                      for c in shown])
    table = rp.table(shown, cells, left=2)
    for r in rows:  # link each trial number to its run report
        if r.get("report"):
            table = table.replace(f"<tr><td class=l>{r['trial']}</td>",
                                  f"<tr><td class=l><a href=\"{rp.esc(r['report'])}\">{r['trial']}</a></td>", 1)
    body.append("<h2 id=leaderboard>Leaderboard</h2>" + table)
    with staging_dir(out / "page") as staged:
        pictures = []
        if done:
            pictures.append(plot_params(sweep, done, staged / "objective.png"))
        if best is not None:
            scalars = rp.training_scalars(trial_dir(out, best.number) / "training")
            if scalars:
                pictures.append(rp.plot_training(scalars, staged / "best_training.png"))
        replace_dir(staged, out / "page")
    if "objective.png" in pictures:
        body.append(f"<h2 id=objective>{rp.esc(sweep.objective)} against each parameter</h2>"
                    "<img src=\"page/objective.png\" alt=\"objective against each parameter\">")
    if best is not None:
        body.append(f"<h2 id=best>The best trial: #{best.number}</h2>"
                    + rp.table(["", ""], [[k, _short(v)] for k, v in best.params.items()]
                               + [[sweep.objective, f"{best.value:.4f}"],
                                  ["export", best.user_attrs.get("export") or "n/a"]], left=2))
        if "best_training.png" in pictures:
            body.append("<img src=\"page/best_training.png\" alt=\"the best trial's training curves\">")
    html = rp.TEMPLATE.substitute(title=f"Sweep {rp.esc(sweep.name)}", body="\n".join(body))
    write_text_atomic(out / "index.html", html)


def plot_params(sweep: Sweep, done: list[dict], path: Path) -> str:
    from tfodkit.report import page as rp

    space = sweep.space()
    names = list(space)
    fig = rp.figure(figsize=(4 * len(names), 3.2))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        p = space[name]
        ys = [r["objective"] for r in done]
        if p.choices is not None:
            labels = [str(c) for c in p.choices]
            xs = [labels.index(str(r[name])) for r in done]
            ax.set_xticks(range(len(labels)), labels, rotation=20 if name == "model" else 0, fontsize=8)
            ax.set_xlim(-0.5, len(labels) - 0.5)
        else:
            xs = [r[name] for r in done]
            if p.log:
                ax.set_xscale("log")
        ax.scatter(xs, ys)
        ax.set_xlabel(name)
        ax.set_ylabel(sweep.objective)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with AtomicFile(path, "wb") as f:
        fig.savefig(f, format="png", dpi=90)
    return path.name


# ----------------------------------------------------------------------------- status

def status(out: Path) -> int:
    data = _read_json(out / "leaderboard.json")
    if not data.get("columns"):
        raise UserError(f"{out} has no leaderboard.json", f"start a sweep there with {PROG} run SWEEP.yaml --out "
                        f"{out}")
    rows = data["rows"]
    columns = [c for c in data["columns"] if c not in ("export", "report", "reason")]
    counts = {s: sum(r["state"] == s for r in rows) for s in ("complete", "fail", "running")}
    print(f"sweep {data['sweep']} ({data['backend']}): {counts['complete'] + counts['fail']} of {data['trials']} "
          f"trials finished ({counts['complete']} complete, {counts['fail']} failed), {counts['running']} running; "
          f"objective {data['objective']}")
    text = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(t[i]) for t in text)]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for t in text:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)).rstrip())
    for r in rows:
        if r.get("reason"):
            print(f"trial {r['trial']} failed: {r['reason']}")
    best = _read_json(out / "best.json")
    if best:
        print(f"best: trial {best['trial']} {best['objective']} {best['value']:.4f}, export {best['export']}")
    return 0


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------- main

def run(args) -> int:
    sweep = load(args.sweep)
    check_backend(sweep, args.backend)
    out = (Path(args.out) if args.out else Path("sweeps") / sweep.name).absolute()  # train.sh runs in trial dirs
    if args.backend == "ecs":
        from tfodkit import runtask

        runtask.load_settings(args.configs)  # checked before anything is written
    out.mkdir(parents=True, exist_ok=True)
    with Lock(out), Signals() as signals:
        prepare_dir(sweep, out, args.backend)
        if sweep.sampler == "grid" and sweep.trials > sweep.grid_size():
            say(f"note: the grid has {sweep.grid_size()} points: {sweep.grid_size()} trials, not {sweep.trials}")
        if args.backend == "local":
            return run_local(sweep, out, signals)
        return run_ecs(sweep, out, args.configs, signals)


@cli
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run (or continue) a sweep")
    p.add_argument("sweep", metavar="SWEEP.yaml")
    p.add_argument("--backend", choices=("local", "ecs"), required=True,
                   help="local: train.sh here, one trial after another; ecs: parallel ECS tasks (runtask)")
    p.add_argument("--out", help="the sweep's folder (default sweeps/<name>); rerun with it to continue")
    p.add_argument("--configs", default="configs.json", help="runtask's configs.json (--backend ecs)")
    p = sub.add_parser("status", help="print the leaderboard of a sweep (while it runs, too)")
    p.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "status":
        return status(args.dir)
    from tfodkit.runtask import AwsError  # stdlib only

    try:
        return run(args)
    except AwsError as exc:
        raise UserError(str(exc), "check the profile and region in configs.json, and your AWS login; rerun the "
                        "sweep to continue it", FAILURE) from None


if __name__ == "__main__":
    raise SystemExit(main())
