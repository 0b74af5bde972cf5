"""readconfig.py: the merge, its precedence, and every bad input's one-line error."""

from __future__ import annotations

import tfodkit.compat  # noqa: F401

import json
import re

import pytest
from google.protobuf import text_format
from object_detection.builders import model_builder
from object_detection.protos import pipeline_pb2
from object_detection.utils import config_util

from tests.conftest import write_records
from tests.zoo_server import ZooServer, make_tarball
from tfodkit import config, zoo
from tfodkit.paths import BASE_CONFIGS

SSD = "SSD MobileNet V2 FPNLite 320x320"
ARCHS = [  # (zoo name, meta-arch, schedule path under train_config.optimizer)
    (SSD, "ssd", "momentum_optimizer"),
    ("Faster R-CNN ResNet50 V1 640x640", "faster_rcnn", "momentum_optimizer"),
    ("CenterNet Resnet50 V1 FPN 512x512", "center_net", "adam_optimizer"),
    ("EfficientDet D0 512x512", "ssd", "momentum_optimizer"),
]


@pytest.fixture
def records(tmp_path):
    return write_records(tmp_path / "records", "cat,dog,bird")


def _run(tmp_path, *extra, model=SSD, records=None):
    args = ["--pretrained_model", model, "--records_dir", str(records or tmp_path / "records"),
            "--output_dir", str(tmp_path / "train"), "--num_gpus", "0", *extra]
    return config.main(args)


def _hparams(tmp_path, **values):
    path = tmp_path / "hparams.json"
    path.write_text(json.dumps(values))
    return str(path)


def _load(tmp_path):
    return config_util.get_configs_from_pipeline_file(str(tmp_path / "train" / "pipeline.config"))


@pytest.mark.parametrize("name,arch,optimizer", ARCHS)
def test_merged_config_is_right_and_tfod_builds_it(tmp_path, records, name, arch, optimizer, capsys):
    hp = _hparams(tmp_path, batch_size=2, train_steps=400, learning_rate=0.01, num_examples=7,
                  checkpoint_every_n=50, seed=7, deterministic=True)
    assert _run(tmp_path, "--hparams", hp, "--from_scratch", model=name) == 0
    configs = _load(tmp_path)
    model_cfg = getattr(configs["model"], arch)
    assert model_cfg.num_classes == 3  # from the label map
    train = configs["train_config"]
    assert train.batch_size == 2 and train.num_steps == 400
    lr = getattr(train.optimizer, optimizer).learning_rate.cosine_decay_learning_rate
    base_text = (BASE_CONFIGS / zoo.resolve(name).base_config).read_text()
    base_pipeline = text_format.Parse(base_text, pipeline_pb2.TrainEvalPipelineConfig())
    base_lr = getattr(base_pipeline.train_config.optimizer, optimizer).learning_rate.cosine_decay_learning_rate
    assert lr.total_steps == 400
    assert lr.warmup_steps == round(base_lr.warmup_steps * 400 / base_lr.total_steps) < 400
    assert lr.learning_rate_base == pytest.approx(0.01)
    assert lr.warmup_learning_rate == pytest.approx(base_lr.warmup_learning_rate * 0.01 / base_lr.learning_rate_base)
    assert configs["eval_config"].num_examples == 7
    assert list(configs["train_input_config"].tf_record_input_reader.input_path) == [str(records / "training.record")]
    assert list(configs["eval_input_configs"][0].tf_record_input_reader.input_path) == \
        [str(records / "testing.record")]
    assert configs["train_input_config"].label_map_path == str(records / "classes.pbtxt")
    assert not train.fine_tune_checkpoint and not train.use_bfloat16
    settings = json.loads((tmp_path / "train" / "toolkit.json").read_text())
    assert settings["checkpoint_every_n"] == 50 and settings["model"] == name
    assert settings["seed"] == 7 and settings["deterministic"] is True
    model = model_builder.build(model_config=configs["model"], is_training=True)
    assert model.num_classes == 3
    out = capsys.readouterr().out
    assert "train_config.num_steps" in out and "hparams" in out and "paths" in out


def test_precedence_override_then_hparams_then_paths(tmp_path, records, capsys):
    override = tmp_path / "training.config"
    override.write_text("""
        train_config {
          batch_size: 6
          num_steps: 1000
          data_augmentation_options { random_adjust_brightness {} }
          data_augmentation_options { random_vertical_flip {} }
        }
        train_input_reader { tf_record_input_reader { input_path: "/somewhere/else.record" } }
        model { ssd { image_resizer { fixed_shape_resizer { height: 256 width: 256 } } } }
    """)
    hp = _hparams(tmp_path, batch_size=4, image_size=[288, 352])
    assert _run(tmp_path, "--config_override", str(override), "--hparams", hp, "--from_scratch") == 0
    train = _load(tmp_path)["train_config"]
    assert train.batch_size == 4  # hparams beat the override
    assert train.num_steps == 1000  # the override beats the base (600)
    # the override's list replaced the base's random_horizontal_flip instead of appending to it
    assert [o.WhichOneof("preprocessing_step") for o in train.data_augmentation_options] == \
        ["random_adjust_brightness", "random_vertical_flip"]
    resizer = _load(tmp_path)["model"].ssd.image_resizer.fixed_shape_resizer
    assert (resizer.height, resizer.width) == (288, 352)
    inputs = list(_load(tmp_path)["train_input_config"].tf_record_input_reader.input_path)
    assert inputs == [str(records / "training.record")]  # paths beat the override
    changes = {c["field"]: c for c in json.loads((tmp_path / "train" / "toolkit.json").read_text())["changes"]}
    assert changes["train_config.batch_size"]["old"] == 8 and changes["train_config.batch_size"]["new"] == 4
    assert changes["train_config.batch_size"]["source"] == "hparams"
    assert changes["train_config.num_steps"]["source"] == "override"


def test_switching_optimizer_in_override_replaces_the_oneof(tmp_path, records):
    override = tmp_path / "o.config"
    override.write_text("train_config { optimizer { adam_optimizer { learning_rate { constant_learning_rate "
                        "{ learning_rate: 0.001 } } } } }")
    hp = _hparams(tmp_path, learning_rate=0.002, train_steps=50)
    assert _run(tmp_path, "--config_override", str(override), "--hparams", hp, "--from_scratch") == 0
    opt = _load(tmp_path)["train_config"].optimizer
    assert opt.WhichOneof("optimizer") == "adam_optimizer"
    assert opt.adam_optimizer.learning_rate.constant_learning_rate.learning_rate == pytest.approx(0.002)


def _schedule(tmp_path, kind):
    lr = _load(tmp_path)["train_config"].optimizer.momentum_optimizer.learning_rate
    return getattr(lr, kind)


def _changes(tmp_path):
    prefix = "train_config.optimizer.momentum_optimizer.learning_rate."
    changes = json.loads((tmp_path / "train" / "toolkit.json").read_text())["changes"]
    return {c["field"].removeprefix(prefix): (c["old"], c["new"], c["source"]) for c in changes}


def _warnings(err):
    lines = err.strip().splitlines()
    assert all(line.startswith("warning: ") for line in lines), err
    return [line.removeprefix("warning: learning-rate schedule: ") for line in lines if "schedule" in line]


def _zoo_with_schedule(tmp_path, schedule_text):
    """A pretrained dir whose pipeline.config has ``schedule_text`` instead of SSD's cosine schedule."""
    pre = tmp_path / "pre"
    pre.mkdir(exist_ok=True)
    text = (BASE_CONFIGS / "ssd_mobilenet_v2_fpnlite_320x320.config").read_text()
    text, n = re.subn(r"cosine_decay_learning_rate \{[^}]*\}", schedule_text, text)
    assert n == 1
    (pre / "pipeline.config").write_text(text)
    return str(pre)


MANUAL = ("momentum_optimizer_value: 0.9 learning_rate { manual_step_learning_rate { initial_learning_rate: 0.1 "
          "schedule { step: 500 learning_rate: 0.01 } schedule { step: 800 learning_rate: 0.001 } } }")


def test_override_schedule_steps_are_kept_as_written(tmp_path, records, capsys):
    # the zoo config (num_steps 600) is not the reference of steps the user wrote: 500 and 800 stay 500 and 800
    override = tmp_path / "o.config"
    override.write_text(f"train_config {{ optimizer {{ momentum_optimizer {{ {MANUAL} }} }} }}")
    hp = _hparams(tmp_path, train_steps=1000, learning_rate=0.2)
    assert _run(tmp_path, "--config_override", str(override), "--hparams", hp, "--from_scratch") == 0
    lr = _schedule(tmp_path, "manual_step_learning_rate")
    assert [s.step for s in lr.schedule] == [500, 800]
    assert [s.learning_rate for s in lr.schedule] == pytest.approx([0.02, 0.002])
    assert lr.initial_learning_rate == pytest.approx(0.2)
    out, err = capsys.readouterr()
    assert _warnings(err) == []
    changes = _changes(tmp_path)
    assert changes["manual_step_learning_rate.schedule[1].step"] == (None, 800, "override")
    assert all(old is not None or new is not None for old, new, _ in changes.values())  # no "- -> -" rows
    assert re.search(r"manual_step_learning_rate\.schedule\[1\]\.step +- +800 +override", out), out

    # a step past train_steps is kept too, but said: one line on stderr
    hp = _hparams(tmp_path, train_steps=600)
    assert _run(tmp_path, "--config_override", str(override), "--hparams", hp, "--from_scratch") == 0
    assert [s.step for s in _schedule(tmp_path, "manual_step_learning_rate").schedule] == [500, 800]
    out, err = capsys.readouterr()
    assert _warnings(err) == ["manual_step_learning_rate.schedule[1] (step 800, rate 0.001) is at or past "
                              "train_steps 600: it never takes effect (kept as the override wrote it)"]
    assert "never takes effect" not in out

    # the override's own num_steps does not make its steps relative either
    override.write_text(f"train_config {{ num_steps: 1000 optimizer {{ momentum_optimizer {{ {MANUAL} }} }} }}")
    hp = _hparams(tmp_path, train_steps=2000)
    assert _run(tmp_path, "--config_override", str(override), "--hparams", hp, "--from_scratch") == 0
    assert [s.step for s in _schedule(tmp_path, "manual_step_learning_rate").schedule] == [500, 800]
    assert _warnings(capsys.readouterr().err) == []


def test_override_cosine_and_exponential_steps_are_kept(tmp_path, records, capsys):
    override = tmp_path / "o.config"
    override.write_text("train_config { optimizer { momentum_optimizer { learning_rate { cosine_decay_learning_rate "
                        "{ learning_rate_base: 0.05 total_steps: 5000 warmup_steps: 50 hold_base_rate_steps: 20 }"
                        " } } } }")
    hp = _hparams(tmp_path, train_steps=1000)
    assert _run(tmp_path, "--config_override", str(override), "--hparams", hp, "--from_scratch") == 0
    lr = _schedule(tmp_path, "cosine_decay_learning_rate")
    assert (lr.total_steps, lr.warmup_steps, lr.hold_base_rate_steps) == (1000, 50, 20)
    assert _warnings(capsys.readouterr().err) == [
        "cosine_decay_learning_rate.total_steps 5000 -> 1000 (a cosine schedule ends at train_steps)"]
    assert _changes(tmp_path)["cosine_decay_learning_rate.total_steps"] == (600, 1000, "hparams")

    override.write_text("train_config { num_steps: 1000 optimizer { momentum_optimizer { learning_rate { "
                        "exponential_decay_learning_rate { initial_learning_rate: 0.1 decay_steps: 400 "
                        "decay_factor: 0.9 burnin_steps: 30 } } } } }")
    hp = _hparams(tmp_path, train_steps=100, learning_rate=0.2)
    assert _run(tmp_path, "--config_override", str(override), "--hparams", hp, "--from_scratch") == 0
    lr = _schedule(tmp_path, "exponential_decay_learning_rate")
    assert (lr.decay_steps, lr.burnin_steps) == (400, 30) and lr.initial_learning_rate == pytest.approx(0.2)
    assert _warnings(capsys.readouterr().err) == []


def test_zoo_schedule_is_rescaled_to_the_run_and_said(tmp_path, records, capsys):
    # SSD's base: num_steps 600, cosine total_steps 600, warmup_steps 100
    assert _run(tmp_path, "--hparams", _hparams(tmp_path, train_steps=1200), "--from_scratch") == 0
    lr = _schedule(tmp_path, "cosine_decay_learning_rate")
    assert (lr.total_steps, lr.warmup_steps) == (1200, 200)
    assert _warnings(capsys.readouterr().err) == [
        "cosine_decay_learning_rate.total_steps 600 -> 1200 (a cosine schedule ends at train_steps)",
        "cosine_decay_learning_rate.warmup_steps 100 -> 200 (the zoo config's schedule, rescaled from its 600 steps "
        "to 1200)"]
    assert _changes(tmp_path)["cosine_decay_learning_rate.warmup_steps"] == (100, 200, "hparams")

    # the run's length from the override's num_steps rescales the zoo's schedule too (it used to stay at 600:
    # TFOD's cosine rate is 0 after total_steps, so steps 600-1000 would not have learned)
    override = tmp_path / "o.config"
    override.write_text("train_config { num_steps: 1000 }")
    assert _run(tmp_path, "--config_override", str(override), "--from_scratch") == 0
    lr = _schedule(tmp_path, "cosine_decay_learning_rate")
    assert (lr.total_steps, lr.warmup_steps) == (1000, 167)
    assert len(_warnings(capsys.readouterr().err)) == 2

    # nothing moved, nothing said
    assert _run(tmp_path, "--from_scratch") == 0
    assert _warnings(capsys.readouterr().err) == []


def test_zoo_manual_and_exponential_schedules_rescale(tmp_path, records, capsys):
    pre = _zoo_with_schedule(tmp_path, "manual_step_learning_rate { initial_learning_rate: 0.1 "
                             "schedule { step: 300 learning_rate: 0.01 } schedule { step: 500 learning_rate: 0.001 } "
                             "schedule { step: 590 learning_rate: 0.0001 } }")
    assert _run(tmp_path, "--pretrained_dir", pre, "--hparams", _hparams(tmp_path, train_steps=60)) == 0
    assert [s.step for s in _schedule(tmp_path, "manual_step_learning_rate").schedule] == [30, 50, 59]
    assert _warnings(capsys.readouterr().err) == [
        f"manual_step_learning_rate.schedule[{i}].step {old} -> {new} (the zoo config's schedule, rescaled from its "
        f"600 steps to 60)" for i, (old, new) in enumerate([(300, 30), (500, 50), (590, 59)])]

    # entries that land at or past the end are dropped, each said, and the table shows what they were
    assert _run(tmp_path, "--pretrained_dir", pre, "--hparams", _hparams(tmp_path, train_steps=2)) == 0
    assert [s.step for s in _schedule(tmp_path, "manual_step_learning_rate").schedule] == [1]
    warnings = _warnings(capsys.readouterr().err)
    assert warnings[1:] == [
        "dropped manual_step_learning_rate.schedule[1] (step 500, rate 0.001): the zoo config's schedule, rescaled "
        "from its 600 steps to 2, it lands on step 2, at or past the end",
        "dropped manual_step_learning_rate.schedule[2] (step 590, rate 0.0001): the zoo config's schedule, rescaled "
        "from its 600 steps to 2, it lands on step 2, at or past the end"]
    assert _changes(tmp_path)["manual_step_learning_rate.schedule[2].step"] == (590, None, "hparams")

    pre = _zoo_with_schedule(tmp_path, "exponential_decay_learning_rate { initial_learning_rate: 0.1 "
                             "decay_steps: 400 decay_factor: 0.9 burnin_steps: 60 }")
    assert _run(tmp_path, "--pretrained_dir", pre, "--hparams", _hparams(tmp_path, train_steps=60)) == 0
    lr = _schedule(tmp_path, "exponential_decay_learning_rate")
    assert (lr.decay_steps, lr.burnin_steps) == (40, 6)
    assert len(_warnings(capsys.readouterr().err)) == 2


def test_sharded_records_are_listed(tmp_path):
    records = write_records(tmp_path / "records", "a,b", shards=3)
    assert _run(tmp_path, "--from_scratch", records=records) == 0
    paths = list(_load(tmp_path)["train_input_config"].tf_record_input_reader.input_path)
    assert paths == [str(records / f"training-0000{i}-of-00003.record") for i in range(3)]


def test_pretrained_from_zoo_sets_fine_tune_checkpoint(tmp_path, records, monkeypatch):
    model = zoo.resolve(SSD)
    body = make_tarball(model.stem, (BASE_CONFIGS / model.base_config).read_text())
    with ZooServer({f"/{model.date}/{model.tarball}": body}) as server:
        monkeypatch.setenv("TFOD_ZOO_URL", server.url)
        assert _run(tmp_path, "--cache_dir", str(tmp_path / "cache")) == 0
    train = _load(tmp_path)["train_config"]
    assert train.fine_tune_checkpoint == str(tmp_path / "cache" / model.stem / "checkpoint" / "ckpt-0")
    assert train.fine_tune_checkpoint_type == "detection"
    # --pretrained_dir needs no network, and a dir without checkpoint trains from scratch
    pre = tmp_path / "cache" / model.stem
    assert _run(tmp_path, "--pretrained_dir", str(pre)) == 0
    assert _load(tmp_path)["train_config"].fine_tune_checkpoint == str(pre / "checkpoint" / "ckpt-0")
    for f in (pre / "checkpoint").iterdir():
        f.unlink()
    assert _run(tmp_path, "--pretrained_dir", str(pre)) == 0
    assert not _load(tmp_path)["train_config"].fine_tune_checkpoint


def test_from_scratch_warns_about_slow_batch_norm(tmp_path, records, capsys):
    pre = tmp_path / "pre"
    pre.mkdir()
    text = (BASE_CONFIGS / "ssd_mobilenet_v2_fpnlite_320x320.config").read_text()
    text = text.replace("decay: 0.9 ", "decay: 0.997 ")
    (pre / "pipeline.config").write_text(text)
    assert _run(tmp_path, "--pretrained_dir", str(pre)) == 0
    assert "warning: training from scratch for 600 steps with batch-norm decay 0.997" in capsys.readouterr().err


# ------------------------------------------------------------------ bad inputs: one line, non-zero, nothing written

def _bad(tmp_path, capsys, *extra, model=SSD, records=None):
    status = _run(tmp_path, *extra, model=model, records=records)
    err = capsys.readouterr().err
    assert status != 0
    assert not (tmp_path / "train").exists(), "nothing may be written on a bad input"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


BAD_HPARAMS = [
    ({"batch_sise": 8}, "unknown hyper-parameter 'batch_sise' (did you mean: batch_size"),
    ({"batch_size": "8"}, "batch_size must be an integer, got str '8'"),
    ({"batch_size": True}, "batch_size must be an integer, got bool True"),
    ({"train_steps": 0}, "train_steps must be at least 1, got 0"),
    ({"learning_rate": -0.1}, "learning_rate must be greater than 0, got -0.1"),
    ({"image_size": [320]}, "image_size must be an integer or [height, width]"),
    ({"fine_tune_checkpoint_type": "detect"},
     "must be one of classification, detection, fine_tune, full, got 'detect'"),
    ({"min_dim": 600, "max_dim": 300}, "min_dim 600 is larger than max_dim 300"),
    ({"warmup_steps": 600}, "warmup_steps 600 must be below train_steps 600"),
    ({"min_dim": 300}, "min_dim/max_dim apply to a keep_aspect_ratio_resizer, this model has fixed_shape_resizer"),
    ({"num_classes": 5}, "num_classes is 5 but the label map"),
    ({"seed": -1}, "seed must be at least 0, got -1"),
    ({"seed": 1, "deterministic": 1}, "deterministic must be true or false, got int 1"),
    ({"deterministic": True}, 'deterministic is true but no seed is set (add e.g. "seed": 0)'),
    ({"batch_size": 6}, None),  # fine alone: checked against GPUs below
]


@pytest.mark.parametrize("values,message", [b for b in BAD_HPARAMS if b[1]])
def test_bad_hparams(tmp_path, records, capsys, values, message):
    line = _bad(tmp_path, capsys, "--hparams", _hparams(tmp_path, **values), "--from_scratch")
    assert message in line


def test_invalid_json(tmp_path, records, capsys):
    (tmp_path / "h.json").write_text('{"batch_size": 8,}')
    line = _bad(tmp_path, capsys, "--hparams", str(tmp_path / "h.json"), "--from_scratch")
    assert f"{tmp_path / 'h.json'}:1:18: invalid JSON" in line


def test_override_parse_error_has_line_and_column(tmp_path, records, capsys):
    (tmp_path / "o.config").write_text("train_config {\n  batch_size: 8\n  num_step: 10\n}\n")
    line = _bad(tmp_path, capsys, "--config_override", str(tmp_path / "o.config"), "--from_scratch")
    assert f"{tmp_path / 'o.config'}:3:" in line and 'no field named "num_step"' in line
    assert "did you mean: num_steps" in line
    (tmp_path / "o.config").write_text("train_config {\n  batch_size: 8\n")
    line = _bad(tmp_path, capsys, "--config_override", str(tmp_path / "o.config"), "--from_scratch")
    assert f"{tmp_path / 'o.config'}:2:" in line


def test_batch_not_divisible_by_gpus(tmp_path, records, capsys):
    line = _bad(tmp_path, capsys, "--hparams", _hparams(tmp_path, batch_size=6), "--num_gpus", "4", "--from_scratch")
    assert "The `global_batch_size` 6 is not divisible by `num_replicas_in_sync` 4" in line
    assert "set batch_size to a multiple of 4, e.g. 8" in line


@pytest.mark.parametrize("labels,message", [
    ({0: "cat", 1: "dog"}, "class 'cat' has id 0; ids start at 1 (0 is the background)"),
    ({1: "cat", 2: "cat"}, "class 'cat' appears twice (ids 1 and 2)"),
])
def test_bad_label_maps(tmp_path, capsys, labels, message):
    records = write_records(tmp_path / "records", labels)
    assert message in _bad(tmp_path, capsys, "--from_scratch", records=records)


@pytest.mark.parametrize("labels,num_classes", [({1: "cat", 3: "dog"}, 3), ({0: "background", 1: "cat"}, 1)])
def test_label_ids_with_gaps_or_a_background_set_num_classes_to_the_largest_id(tmp_path, labels, num_classes):
    records = write_records(tmp_path / "records", labels)
    assert _run(tmp_path, "--from_scratch", records=records) == 0
    assert _load(tmp_path)["model"].ssd.num_classes == num_classes  # TFOD one-hot encodes id - 1


def test_missing_records(tmp_path, capsys):
    records = write_records(tmp_path / "records")
    (records / "testing.record").unlink()
    line = _bad(tmp_path, capsys, "--from_scratch", records=records)
    assert "lacks testing.record" in line and "tfodkit.dataset convert" in line
    assert "does not exist" in _bad(tmp_path, capsys, "--from_scratch", records=tmp_path / "nope")


def test_keypoint_model_without_keypoint_data(tmp_path, records, capsys):
    pre = tmp_path / "pre"
    pre.mkdir()
    (pre / "pipeline.config").write_text((BASE_CONFIGS / "centernet_resnet50_v1_fpn_512x512.config").read_text())
    name = "CenterNet Resnet50 V1 FPN Keypoints 512x512"
    line = _bad(tmp_path, capsys, "--pretrained_dir", str(pre), model=name)
    assert "predicts keypoints but training.record has no keypoint data" in line
    with_kp = write_records(tmp_path / "kp", "cat,dog,bird", keypoints=True)
    assert _run(tmp_path, "--pretrained_dir", str(pre), model=name, records=with_kp) == 0


def test_unknown_model(tmp_path, records, capsys):
    assert "unknown zoo model 'SSD Mobilenet 9000'" in _bad(tmp_path, capsys, model="SSD Mobilenet 9000")


def test_meta_architecture_switch_is_refused(tmp_path, records, capsys):
    (tmp_path / "o.config").write_text('model { center_net { num_classes: 3 feature_extractor { type: "x" } } }')
    line = _bad(tmp_path, capsys, "--config_override", str(tmp_path / "o.config"), "--from_scratch")
    assert "the config's model is center_net but SSD MobileNet V2 FPNLite 320x320 is ssd" in line


def test_a_failed_run_keeps_the_previous_config(tmp_path, records, capsys):
    assert _run(tmp_path, "--from_scratch") == 0
    before = (tmp_path / "train" / "pipeline.config").read_text()
    assert _run(tmp_path, "--hparams", _hparams(tmp_path, batch_size=0), "--from_scratch") == 2
    assert (tmp_path / "train" / "pipeline.config").read_text() == before
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["pipeline.config", "toolkit.json"]


def test_the_example_override_and_hparams_in_configs_work(tmp_path, records):
    from tfodkit.paths import CONFIGS

    assert _run(tmp_path, "--config_override", str(CONFIGS / "training.config"),
                "--hparams", str(CONFIGS / "traininghparams.json"), "--from_scratch") == 0
    configs = _load(tmp_path)
    assert configs["train_config"].batch_size == 8 and configs["train_config"].num_steps == 2000
    assert len(configs["train_config"].data_augmentation_options) == 3
    assert configs["eval_config"].include_metrics_per_category


@pytest.mark.parametrize("case", ["override typo", "override meta-arch", "num_classes", "batch vs GPUs",
                                  "override batch vs GPUs"])
def test_cheap_checks_come_before_the_zoo_download(tmp_path, records, capsys, monkeypatch, case):
    """A typo must not cost a gigabyte: these fail with the zoo server never asked for the tarball."""
    (tmp_path / "typo.config").write_text("train_config {\n  num_step: 10\n}\n")
    (tmp_path / "arch.config").write_text('model { center_net { num_classes: 3 } }')
    (tmp_path / "batch.config").write_text("train_config { batch_size: 6 }")
    (tmp_path / "classes.json").write_text(json.dumps({"num_classes": 5}))
    (tmp_path / "batch.json").write_text(json.dumps({"batch_size": 6}))
    extra, message = {
        "override typo": (["--config_override", str(tmp_path / "typo.config")], 'no field named "num_step"'),
        "override meta-arch": (["--config_override", str(tmp_path / "arch.config")], "the config's model is "
                               "center_net"),
        "num_classes": (["--hparams", str(tmp_path / "classes.json")], "num_classes is 5 but the label map"),
        "batch vs GPUs": (["--hparams", str(tmp_path / "batch.json"), "--num_gpus", "4"],
                          "batch_size 6 is not divisible by the 4 GPUs"),
        "override batch vs GPUs": (["--config_override", str(tmp_path / "batch.config"), "--num_gpus", "4"],
                                   "batch_size 6 is not divisible by the 4 GPUs"),
    }[case]
    model = zoo.resolve(SSD)
    body = make_tarball(model.stem, (BASE_CONFIGS / model.base_config).read_text())
    with ZooServer({f"/{model.date}/{model.tarball}": body}) as server:
        monkeypatch.setenv("TFOD_ZOO_URL", server.url)
        line = _bad(tmp_path, capsys, "--cache_dir", str(tmp_path / "cache"), *extra)
    assert message in line
    assert server.requests == []
    assert not (tmp_path / "cache").exists()
