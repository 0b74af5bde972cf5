"""tfodkit/sweep.py: the sweep file's checks, the leaderboard's ranking, and real sweeps.

The slow test trains: a local sweep of 2 tiny SSD trials from scratch on
synthetic shapes, stopped by Ctrl-C in its first trial's training, resumed, and
run a third time to find nothing to do. The ECS sweep runs against moto with
the test playing the ECS agent (as tests/test_runtask.py does): it starts each
task the sweep launches, writes the run's metrics.json to S3 as train.sh's
upload would, and stops the task.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, Followed, synthetic_records
from tests.ecs_world import ACCOUNT, CLUSTER, DIRS, REGION, aws_user, make_world
from tfodkit import sweep

SSD = "SSD MobileNet V2 FPNLite 320x320"


def _write(tmp_path: Path, **changes) -> Path:
    data = {"name": "tiny", "records": str(tmp_path), "models": [SSD], "hparams": {"train_steps": 2},
            "search": {"learning_rate": {"low": 0.005, "high": 0.08, "log": True}, "batch_size": [1, 2]},
            "sampler": "tpe", "trials": 3, "parallel": 1, "objective": "map50"}
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


BAD = {
    "unknown key": ({"samplr": "tpe"}, "unknown key 'samplr' (did you mean: sampler"),
    "unknown model": ({"models": ["SSD MobileNet V9"]}, "models: unknown zoo model 'SSD MobileNet V9'"),
    "unknown hparam": ({"search": {"learning_rat": [0.1]}}, "search: unknown hyper-parameter 'learning_rat' "
                                                           "(did you mean: learning_rate)"),
    "bad fixed value": ({"hparams": {"batch_size": 0}}, "hparams: batch_size must be at least 1, got 0"),
    "bad choice": ({"search": {"batch_size": [2, "big"]}}, "search.batch_size: batch_size must be an integer"),
    "objective": ({"objective": "map_50"}, "objective 'map_50' is not a metrics.json metric (did you mean: map50"),
    "coco typo": ({"objective": "DetectionBoxes_Recall/AR@101"},
                  "objective 'DetectionBoxes_Recall/AR@101' is not a metrics.json metric (did you mean: "
                  "DetectionBoxes_Recall/AR@10"),
    "parallel 0": ({"parallel": 0}, "parallel must be a whole number of at least 1, got 0"),
    "trials 0": ({"trials": 0}, "trials must be a whole number of at least 1, got 0"),
    "grid with a range": ({"sampler": "grid"}, "a grid sweep needs a list of choices for every searched key, "
                                               "and learning_rate is a range"),
    "range of a str": ({"search": {"fine_tune_checkpoint_type": {"low": 1, "high": 2}}},
                       "fine_tune_checkpoint_type is a str hyper-parameter, so it takes a list of choices only"),
    "low above high": ({"search": {"learning_rate": {"low": 0.1, "high": 0.01}}}, "low 0.1 must be below high"),
    "unknown range key": ({"search": {"learning_rate": {"low": 0.1, "hi": 0.2}}},
                          "unknown range key 'hi' (did you mean: high)"),
    "in both": ({"hparams": {"batch_size": 2}}, "batch_size is both in hparams and in search"),
    "sampler": ({"sampler": "bayes"}, "sampler 'bayes' is not one of tpe, random, grid"),
    "missing records": ({"records": None}, "records is missing"),
    "bad name": ({"name": "my sweep"}, "name 'my sweep' is not a valid run name"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_bad_sweep_file_is_one_line_and_nothing_is_written(tmp_path, capsys, case):
    changes, message = BAD[case]
    path = _write(tmp_path, **changes)
    out = tmp_path / "out"
    assert sweep.main(["run", str(path), "--backend", "local", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_bad_yaml_ecs_records_and_a_missing_file(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("name: tiny\nmodels: [a, b\n")
    assert sweep.main(["run", str(path), "--backend", "local"]) == 2
    assert "broken.yaml:3:1: invalid YAML" in capsys.readouterr().err
    assert sweep.main(["run", str(_write(tmp_path)), "--backend", "ecs", "--out", str(tmp_path / "o")]) == 2
    assert "must be an s3:// prefix for --backend ecs" in capsys.readouterr().err
    assert sweep.main(["run", str(tmp_path / "nope.yaml"), "--backend", "local"]) == 2
    assert "sweep file" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_another_sweep_in_the_same_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    sweep.prepare_dir(sweep.load(str(_write(tmp_path))), out, "local")
    changed = _write(tmp_path, search={"batch_size": [1, 2, 4]})
    assert sweep.main(["run", str(changed), "--backend", "local", "--out", str(out)]) == 2
    assert "holds another sweep (it differs in: search)" in capsys.readouterr().err
    more = _write(tmp_path, trials=9)  # more trials of the same sweep: allowed (prepare_dir passes)
    sweep.prepare_dir(sweep.load(str(more)), out, "local")


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "a":
            self.links.append(attrs["href"])


def test_the_objective_is_any_metric_of_metrics_json(tmp_path):
    """A short name, a top-level key, one class's AP or a COCO metric of "all"; a class metrics.json lacks is a
    trial's failure reason, naming the classes it has."""
    metrics = {"mAP": 0.4, "mAP@0.5": 0.7, "per_class_AP": {"circle": 0.6, "square": 0.2},
               "all": {"DetectionBoxes_Recall/AR@100": 0.8, "DetectionBoxes_Precision/mAP": 0.4}}
    for objective, expected in [("map50", 0.7), ("mAP", 0.4), ("AP/square", 0.2),
                                ("DetectionBoxes_Recall/AR@100", 0.8)]:
        s = sweep.load(str(_write(tmp_path, objective=objective)))
        value, attrs, reason = sweep.metric_attrs(metrics, s)
        assert (value, reason) == (expected, None), objective
        assert attrs["map50"] == 0.7 and attrs["per_class_AP"] == metrics["per_class_AP"]
    s = sweep.load(str(_write(tmp_path, objective="AP/triangle")))
    assert sweep.metric_attrs(metrics, s)[::2] == (None, "metrics.json has no class 'triangle' (its classes: "
                                                         "circle, square)")
    s = sweep.load(str(_write(tmp_path, objective="DetectionBoxes_Recall/AR@1")))
    assert sweep.metric_attrs(metrics, s)[2] == "metrics.json has no number 'DetectionBoxes_Recall/AR@1' (got None)"


def test_the_leaderboard_ranks_by_the_objective_running_then_failed_last(tmp_path, capsys):
    """A real Optuna study told by hand: what the leaderboard, best.json, the page and status make of it."""
    s = sweep.load(str(_write(tmp_path, sampler="random", trials=5)))
    out = tmp_path / "out"
    sweep.prepare_dir(s, out, "local")
    study = sweep.open_study(s, out, 0)
    space = {k: p.distribution() for k, p in s.space().items()}
    values = [0.25, None, 0.75, 0.5, "running"]
    (out / "trials" / "002" / "training" / "report").mkdir(parents=True)
    (out / "trials" / "002" / "training" / "report" / "index.html").write_text("<html></html>")
    for number, value in enumerate(values):
        trial = study.ask(fixed_distributions=space)
        assert trial.number == number
        attrs = {"map": 0.1 * number, "map50": value if isinstance(value, float) else None, "wall_s": 10.0 + number,
                 "per_class_AP": {"circle": 0.5, "square": 0.25}, "steps_per_sec": 2.0, "export": f"e{number}"}
        if number == 2:
            attrs["report"] = "trials/002/training/report/index.html"
        if value == "running":
            continue
        sweep.tell(study, number, sweep.Outcome(value=value, reason=None if value is not None else
                                                "train.sh exited 1: out of memory", attrs=attrs))
    sweep.write_results(study, s, out, "local")

    with open(out / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["trial"] for r in rows] == ["2", "3", "0", "4", "1"]
    assert [r["state"] for r in rows] == ["complete"] * 3 + ["running", "fail"]
    assert [r["objective"] for r in rows[:3]] == ["0.75", "0.5", "0.25"]
    assert list(rows[0]) == ["trial", "model", "learning_rate", "batch_size", "objective", "map", "map50",
                             "AP/circle", "AP/square", "steps_per_sec", "wall_s", "export", "state", "report",
                             "reason"]
    assert rows[-1]["reason"] == "train.sh exited 1: out of memory"
    trials = {t.number: t for t in study.trials}
    assert float(rows[0]["learning_rate"]) == trials[2].params["learning_rate"]
    best = json.loads((out / "best.json").read_text())
    assert (best["trial"], best["value"], best["export"]) == (2, 0.75, "e2")
    assert best["hparams"] == {"train_steps": 2, **trials[2].params}
    board = json.loads((out / "leaderboard.json").read_text())
    assert [r["trial"] for r in board["rows"]] == [2, 3, 0, 4, 1]

    page = Page()
    page.feed((out / "index.html").read_text())
    assert page.images == ["page/objective.png"]  # no training events here: no curves
    assert (out / "page" / "objective.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.links == ["trials/002/training/report/index.html"]
    assert all((out / link).is_file() for link in page.links)

    assert sweep.main(["status", str(out)]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].startswith("sweep tiny (local): 4 of 5 trials finished (3 complete, 1 failed), 1 running")
    assert [line.split()[0] for line in text[2:7]] == ["2", "3", "0", "4", "1"]
    assert "trial 1 failed: train.sh exited 1: out of memory" in text
    assert text[-1] == "best: trial 2 map50 0.7500, export e2"


@pytest.mark.parametrize("sampler", ["grid", "random"])
def test_a_continued_sweep_does_not_draw_the_same_values_again(tmp_path, sampler):
    """A sweep process asks trial 0 and dies with it running; the next process (a new sampler, seeded again)
    resumes it and asks the rest: four different grid points, or four different random draws."""
    s = sweep.load(str(_write(tmp_path, sampler=sampler, trials=4,
                              search={"learning_rate": [0.01, 0.02], "batch_size": [1, 2]})))
    out = tmp_path / "out"
    sweep.prepare_dir(s, out, "local")
    space = {k: p.distribution() for k, p in s.space().items()}
    first = sweep.open_study(s, out, 0).ask(fixed_distributions=space)
    study = sweep.open_study(s, out, 1)
    running, finished, new = sweep.pending(study, s)
    assert ([t.number for t in running], finished, new) == ([0], 0, 3)
    assert running[0].params == first.params
    sweep.tell(study, 0, sweep.Outcome(value=0.5))
    for _ in range(new):
        trial = study.ask(fixed_distributions=space)
        sweep.tell(study, trial.number, sweep.Outcome(value=0.1))
    points = [tuple(sorted(t.params.items())) for t in study.trials]
    if sampler == "grid":
        assert len(set(points)) == 4
    again = sweep.open_study(s, out, 0).ask(fixed_distributions=space)  # a seed not moved on: trial 0's draw
    assert sampler == "grid" or again.params == first.params


def test_status_of_a_folder_without_a_sweep_is_one_line(tmp_path, capsys):
    assert sweep.main(["status", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path} has no leaderboard.json") and err.count("\n") == 1


def test_three_trials_failing_the_same_way_stop_the_sweep(tmp_path, moto_s3):
    """train.sh cannot read the records (no such bucket): three failed trials, not ten."""
    path = _write(tmp_path, records="s3://no-such-bucket/records", trials=10)
    out = tmp_path / "out"
    env = {**_env(), "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"]}
    with Followed([sys.executable, "-m", "tfodkit.sweep", "run", str(path), "--backend", "local", "--out", str(out)],
                  env=env, merge=True) as run:
        assert run.finish(120) == 1, run.stdout
    rows = json.loads((out / "leaderboard.json").read_text())["rows"]
    assert [r["state"] for r in rows] == ["fail"] * 3
    assert len({r["reason"] for r in rows}) == 1 and "no-such-bucket" in rows[0]["reason"], rows
    assert rows[0]["reason"].startswith("train.sh exited 1: ")
    assert any(line.startswith("sweep: stopping: 3 trials in a row failed the same way") for line in run.out)
    assert not (out / "best.json").exists()


# --- a real local sweep ----------------------------------------------------------------------------------------

def _env() -> dict[str, str]:
    env = {**os.environ, "TENSORBOARD": "0", "TFOD_FROM_SCRATCH": "1", "TFODKIT_PYTHON": sys.executable,
           "PYTHONPATH": str(ROOT)}
    for name in ("ARTIFACTS_TARGET", "RUN_NAME", "ARTIFACTS_URI"):
        env.pop(name, None)
    return env


def _sweep(args: list[str]) -> Followed:
    return Followed([sys.executable, "-m", "tfodkit.sweep", *args], env=_env(), terminal_job=True, merge=True)


@pytest.mark.slow
@pytest.mark.timeout(2700)  # three train.sh runs (each trains, evaluates, exports and verifies): 445-495 s measured
def test_local_sweep_is_stopped_by_ctrl_c_resumes_completes_and_ranks(tmp_path):
    data = synthetic_records(tmp_path / "shapes", images=8, holdout=1, seed=3)
    path = _write(tmp_path, records=str(data / "records"), sampler="grid", seed=0, trials=2,
                  hparams={"train_steps": 2, "image_size": 128, "checkpoint_every_n": 1},
                  search={"learning_rate": [0.01, 0.04], "batch_size": [1, 2]})
    out = tmp_path / "out"
    args = ["run", str(path), "--backend", "local", "--out", str(out)]

    # 1. Ctrl-C while the first trial trains: the trial is stopped, it stays running in the study
    t0 = time.monotonic()
    with _sweep(args) as first:
        log = out / "trials" / "000" / "train.log"
        first.until("trial 0 to train", lambda: log.is_file() and "train: step 1/" in log.read_text(), 300)
        first.signal(signal.SIGINT, group=True)  # Ctrl-C in a terminal: the whole process group
        assert first.finish(120) == 130, first.stdout
    assert "sweep: received SIGINT: no new trial starts" in first.out
    assert any(line.startswith("sweep: stopped by SIGINT; resume: ") and str(out) in line for line in first.out)
    board = json.loads((out / "leaderboard.json").read_text())
    assert [(r["trial"], r["state"]) for r in board["rows"]] == [(0, "running")]
    assert not (out / "trials" / "001").exists()
    stopped_at = [int(line.split("ckpt-")[-1]) for line in log.read_text().splitlines()
                  if "checkpoint ckpt-" in line and line.startswith("train:")]
    print(f"stopped after {time.monotonic() - t0:.0f} s")

    # 2. the rerun resumes trial 0 (its checkpoint) and runs the other one
    t1 = time.monotonic()
    with _sweep(args) as second:
        assert second.finish(2400) == 0, second.stdout
    print(f"resumed and finished in {time.monotonic() - t1:.0f} s")
    assert "sweep: resuming trial 0 (left running by an earlier sweep)" in second.out
    assert sum("start:" in line for line in second.out) == 2
    text = log.read_text()
    assert text.count("=== ") == 2  # two train.sh runs on trial 0's dir
    if stopped_at:  # the SIGTERM's checkpoint: the second run resumed from it
        assert f"ckpt-{stopped_at[-1]}" in text.split("=== ")[-1]
    board = json.loads((out / "leaderboard.json").read_text())
    rows = board["rows"]
    assert [r["state"] for r in rows] == ["complete"] * 2
    values = []
    for r in rows:  # each row is its trial's own metrics.json and hparams.json
        tdir = out / "trials" / f"{r['trial']:03d}"
        metrics = json.loads((tdir / "training" / "metrics.json").read_text())
        hparams = json.loads((tdir / "hparams.json").read_text())
        assert r["objective"] == metrics["mAP@0.5"] == r["map50"] and r["map"] == metrics["mAP"]
        assert (r["learning_rate"], r["batch_size"]) == (hparams["learning_rate"], hparams["batch_size"])
        assert r["export"] == str(tdir / "exported_model") and (tdir / "exported_model" / "saved_model").is_dir()
        assert r["report"] == f"trials/{r['trial']:03d}/training/report/index.html" and (out / r["report"]).is_file()
        # train.json's rate (0 for a resumed trial that had one step left: its first step is not timed)
        assert r["steps_per_sec"] == json.loads((tdir / "training" / "train.json").read_text())["steps_per_sec"]
        assert r["wall_s"] > 0
        values.append((-r["objective"], r["trial"]))
    assert values == sorted(values)  # best first; a tie goes to the earlier trial
    assert len({(r["learning_rate"], r["batch_size"]) for r in rows}) == 2  # two different grid points
    best = json.loads((out / "best.json").read_text())
    assert best["trial"] == rows[0]["trial"] and best["export"] == rows[0]["export"]
    page = Page()
    page.feed((out / "index.html").read_text())
    assert page.images == ["page/objective.png", "page/best_training.png"]
    assert sorted(page.links) == sorted(r["report"] for r in rows)

    # 3. a third run has nothing to do
    before = {p: p.stat().st_mtime for p in (out / "trials").rglob("metrics.json")}
    with _sweep(args) as third:
        assert third.finish(120) == 0, third.stdout
    assert "sweep: all 2 trials are finished: nothing to run" in third.out
    assert not any("start:" in line for line in third.out)
    assert {p: p.stat().st_mtime for p in (out / "trials").rglob("metrics.json")} == before


# --- an ECS sweep against moto, the test playing the ECS agent ------------------------------------------------



@pytest.fixture
def cluster(moto_endpoint, tmp_path):
    """A cluster with one GPU container instance, the task definition with its artifacts sidecar, the buckets,
    configs.json and the sweep's environment (the aws CLI of the venv, a profile with dummy credentials)."""
    from moto.moto_api import state_manager

    from tests.conftest import reset_moto

    reset_moto(moto_endpoint)
    state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})  # the agent decides
    aws = make_world(moto_endpoint, SSD)
    configs, env = aws_user(tmp_path)
    env.update(PYTHONPATH=str(ROOT),
               AWS_ENDPOINT_URL=moto_endpoint, RUNTASK_POLL_SECONDS="0.2")
    yield {"configs": configs, "env": env, "s3": aws["s3"]}
    state_manager.unset_transition("ecs::task")


class Agent(threading.Thread):
    """The ECS agent and train.sh's upload, for every task the sweep starts.

    A task waits PROVISIONING for a moment, runs for ``seconds`` (and while it is the only one running and
    more of the ``expected`` tasks are to come, until the next one starts, at most ``alone`` seconds: so
    that ``parallel`` is reached however slowly the loaded machine launches), writes its run's
    training/metrics.json and train.json to S3 and exits 0; the first task of
    ``reclaimed`` is stopped by a spot reclaim (exit 143) instead, and ``failing`` exits 1 and writes nothing.
    The run's map50 is ten times its learning rate, read from the hparams.json the sweep uploaded.
    """

    def __init__(self, s3, reclaimed: str, failing: str, expected: int, seconds: float = 1.0,
                 alone: float = 60.0):
        super().__init__(daemon=True)
        from moto.ecs.models import ecs_backends

        self.backend, self.s3 = ecs_backends[ACCOUNT][REGION], s3
        self.reclaimed, self.failing, self.seconds, self.alone = reclaimed, failing, seconds, alone
        self.expected = expected  # tasks the sweep will start in all
        self.seen: dict[str, dict] = {}  # task arn -> what the agent did with it
        self.most_running = 0
        self.holding = False  # True: the running tasks keep running
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.done.is_set():
                self.step()
                time.sleep(0.05)
        except Exception as exc:  # noqa: BLE001 (reported by the test)
            self.error = exc

    @staticmethod
    def run_name(task) -> str:
        return task.started_by.split("/", 1)[1]

    def step(self) -> None:
        from moto.ecs.models import Container

        now = time.time()
        for task in list(self.backend.tasks.get(CLUSTER, {}).values()):
            state = self.seen.get(task.task_arn)
            if state is None:
                task_def = self.backend.describe_task_definition(task.task_definition_arn)
                task.last_status, task.containers = "PROVISIONING", []
                for definition in task_def.container_definitions:
                    c = Container(task_def)
                    c.name, c.image = definition["name"], definition["image"]
                    c.last_status, c.exitCode = "PENDING", None
                    task.containers.append(c)
                self.seen[task.task_arn] = {"created": now, "name": self.run_name(task)}
            elif task.last_status == "PROVISIONING" and now - state["created"] > 0.5:
                for c in task.containers:
                    c.last_status = "RUNNING"
                task.started_at = now
                task.last_status = "RUNNING"
                state["started"] = now
                self.most_running = max(self.most_running, self.running())
            elif task.last_status == "RUNNING" and now - state["started"] > self.seconds and not self.holding and \
                    (self.running() >= 2 or len(self.seen) >= self.expected or now - state["started"] > self.alone):
                self.finish(task, state)

    def running(self) -> int:
        """Tasks this agent started and has not stopped (moto creates a task as RUNNING: it is not, yet)."""
        return sum("started" in s and "stopped" not in s for s in self.seen.values())

    def finish(self, task, state: dict) -> None:
        name = state["name"]
        first = [s for s in self.seen.values() if s["name"] == name][0] is state
        if name == self.reclaimed and first:
            code, stop_code, reason = 143, "SpotInterruption", "Your Spot Task was interrupted."
        elif name == self.failing:
            code, stop_code, reason = 1, "EssentialContainerExited", "Essential container in task exited"
        else:
            hparams = json.loads(self.s3.get_object(Bucket="tfod-artifacts",
                                                    Key=f"runs/{name}/inputs/hparams.json")["Body"].read())
            state["hparams"] = hparams
            metrics = {"mAP": hparams["learning_rate"], "mAP@0.5": 10 * hparams["learning_rate"],
                       "mAP@0.75": 0.0, "per_class_AP": {"circle": 0.5, "square": 0.25}, "step": 2}
            for key, data in (("training/metrics.json", metrics), ("training/train.json", {"steps_per_sec": 3.5}),
                              ("exported_model/export.json", {})):
                self.s3.put_object(Bucket="tfod-artifacts", Key=f"runs/{name}/{key}", Body=json.dumps(data).encode())
            code, stop_code, reason = 0, "EssentialContainerExited", "Essential container in task exited"
        self.backend.stop_task(CLUSTER, task.task_arn, reason)  # gives the instance's memory back, as ECS does
        for c in task.containers:
            c.last_status = "STOPPED"
            c.exitCode = code if c.name == "training" else 0
        state["stopped"] = time.time()
        task.stopped_at = state["stopped"]
        task.stopped_reason, task.stop_code = reason, stop_code
        task.desired_status = task.last_status = "STOPPED"


@pytest.mark.slow  # over 10 s alone, so make test-fast leaves it out
def test_ecs_sweep_keeps_to_parallel_relaunches_a_reclaim_collects_metrics_and_records_a_failure(cluster, tmp_path):
    path = _write(tmp_path, name="ecs-lr", records="s3://tfod-records/shapes", sampler="random", seed=1, trials=5,
                  parallel=2)
    out = tmp_path / "out"
    agent = Agent(cluster["s3"], reclaimed="ecs-lr-001", failing="ecs-lr-002", expected=6)
    agent.start()
    try:
        t0 = time.monotonic()
        with Followed([sys.executable, "-m", "tfodkit.sweep", "run", str(path), "--backend", "ecs", "--out",
                       str(out), "--configs", str(cluster["configs"])], env=cluster["env"], merge=True) as run:
            assert run.finish(300) == 0, run.stdout
        print(f"ecs sweep: {time.monotonic() - t0:.0f} s")
    finally:
        agent.done.set()
        agent.join(5)
    assert agent.error is None, agent.error
    t = min(st["created"] for st in agent.seen.values())
    timeline = [(st["name"], *(round(st.get(k, -1) - t, 1) for k in ("created", "started", "stopped")))
                for st in agent.seen.values()]
    assert agent.most_running == 2, timeline  # never more than parallel, and parallel used
    tasks = {arn: t for t in [agent.backend.tasks[CLUSTER]] for arn, t in t.items()}
    names = sorted(agent.run_name(t) for t in tasks.values())
    assert names == ["ecs-lr-000", "ecs-lr-001", "ecs-lr-001", "ecs-lr-002", "ecs-lr-003", "ecs-lr-004"]
    command = next(iter(tasks.values())).overrides["containerOverrides"][0]["command"]
    assert command[:5] == [*DIRS, "s3://tfod-records/shapes", SSD] and command[5] == ""
    assert command[6].startswith("s3://tfod-artifacts/runs/ecs-lr-00") and command[6].endswith("/inputs/hparams.json")
    assert "sweep: trial #1: SpotInterruption (Your Spot Task was interrupted.), training exit 143; relaunching run " \
           "ecs-lr-001 (restart 1/3)" in run.out

    board = json.loads((out / "leaderboard.json").read_text())
    rows = board["rows"]
    assert [r["state"] for r in rows] == ["complete"] * 4 + ["fail"]
    assert rows[-1]["trial"] == 2 and "training exit 1 (Essential container in task exited)" in rows[-1]["reason"]
    for r in rows[:4]:  # each one's metrics from its run's S3 folder, computed there from its own hparams
        assert r["objective"] == r["map50"] == pytest.approx(10 * r["learning_rate"])
        assert r["export"] == f"s3://tfod-artifacts/runs/ecs-lr-{r['trial']:03d}/exported_model/"
        assert r["steps_per_sec"] == 3.5 and r["AP/circle"] == 0.5
        spans = [s["stopped"] - s["started"] for s in agent.seen.values() if s["name"] == f"ecs-lr-{r['trial']:03d}"]
        assert r["instance_hours"] == pytest.approx(sum(spans) / 3600, abs=2e-4) and r["instance_hours"] > 0
    assert [r["objective"] for r in rows[:4]] == sorted((r["objective"] for r in rows[:4]), reverse=True)
    best = json.loads((out / "best.json").read_text())
    assert best["trial"] == rows[0]["trial"] and best["run"] == f"ecs-lr-{rows[0]['trial']:03d}"
    assert best["export"] == rows[0]["export"]


@pytest.mark.slow  # over 10 s alone, so make test-fast leaves it out
def test_ctrl_c_leaves_the_ecs_tasks_running_and_the_rerun_reattaches_to_them(cluster, tmp_path):
    path = _write(tmp_path, name="ecs-cc", records="s3://tfod-records/shapes", sampler="random", trials=3,
                  parallel=2)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "tfodkit.sweep", "run", str(path), "--backend", "ecs", "--out", str(out),
            "--configs", str(cluster["configs"])]
    agent = Agent(cluster["s3"], reclaimed="", failing="", expected=3)
    agent.holding = True
    agent.start()
    try:
        with Followed(args, env=cluster["env"], merge=True, terminal_job=True) as first:
            first.until("two running tasks", lambda: agent.running() == 2 and
                        any("start (2 running)" in line for line in first.out), 120)
            first.signal(signal.SIGINT, group=True)  # Ctrl-C: the aws CLI calls in flight get it too
            assert first.finish(60) == 130, first.stdout
        assert any("2 trial task(s) keep running (and billing): ecs-cc-000 " in x for x in first.out), first.stdout
        assert any(line.startswith("sweep: stopped by SIGINT; resume: ") for line in first.out)
        rows = json.loads((out / "leaderboard.json").read_text())["rows"]
        assert [(r["trial"], r["state"]) for r in rows] == [(0, "running"), (1, "running")]
        with Followed(args, env=cluster["env"], merge=True) as second:
            second.saw("sweep: trial #1: reattached to run ecs-cc-001", "out")
            second.saw("sweep: trial #0: reattached to run ecs-cc-000", "out")
            agent.holding = False
            assert second.finish(120) == 0, second.stdout
    finally:
        agent.done.set()
        agent.join(5)
    assert agent.error is None, agent.error
    names = sorted(agent.run_name(t) for t in agent.backend.tasks[CLUSTER].values())
    assert names == ["ecs-cc-000", "ecs-cc-001", "ecs-cc-002"]  # the two were not launched again
    rows = json.loads((out / "leaderboard.json").read_text())["rows"]
    assert [r["state"] for r in rows] == ["complete"] * 3
