# TFOD Toolkit: the front door. `make` alone lists the targets.
# Recipes call scripts; the logic lives in scripts/ and tfodkit/.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# PYTHON: the Python 3.11 that creates the venv (TFODKIT_PYTHON names one that has the toolkit's dependencies).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: help install install-runtime doctor lint test test-fast lock

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "; printf "usage: make <target>\n\n"} \
	  /^[a-zA-Z0-9_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## create .venv from the pinned lock files (idempotent)
	@PYTHON=$(PYTHON) VENV=$(VENV) scripts/install.sh

install-runtime: ## the runtime packages only: no linters, no checkov (what make demo needs)
	@PYTHON=$(PYTHON) VENV=$(VENV) scripts/install.sh --runtime-only

doctor: install ## print versions, GPUs, CUDA; build one model per meta-architecture
	$(PY) -m tfodkit doctor

lint: install ## ruff, shellcheck, hadolint, terraform fmt -check, checkov
	@VENV=$(VENV) scripts/lint.sh

# TEST_WORKERS: pytest-xdist processes. Most tests spend their time in one
# thread (TensorFlow's import and tracing), so 2 workers keep 2 cores busy.
# --dist loadscope: one module at a time per worker, so a module's fixtures
# (a trained model, a moto world) are built once; tests/conftest.py orders the
# modules by their slow tests, the longest first.
TEST_WORKERS ?= 2

test: install ## run the whole test suite (TEST_WORKERS=2 processes)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=15

test-fast: install ## every test not marked slow (nothing that trains, exports, builds a real model or takes over 10 s)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not slow"

# Predict (README: Predict): an exported model on images -> pictures + JSON.
# LABELS defaults to label_map.pbtxt beside saved_model/; PREDICT_ARGS go to predict.py.
EXPORTED     ?= exported_model
RESULTS      ?= results
LABELS       ?=
PREDICT_ARGS ?=
.PHONY: predict bench-predict report bench-report

report: install-runtime ## the run report: TRAINING=dir [REPORT_ARGS="--score_threshold 0.5 --iou 0.5"] -> dir/report/index.html
	$(PY) -m tfodkit.report "$(TRAINING)" $(REPORT_ARGS)

bench-report: install ## time the run report on a synthetic evaluation of 1,000 test images (bench/results/report.json)
	$(PY) bench/report.py

predict: install ## boxes + JSON: EXPORTED=dir IMAGES="a.jpg, dir/, *.png" [LABELS=pbtxt] [RESULTS=dir]
	$(PY) predict.py --model "$(EXPORTED)" $(if $(LABELS),--labels "$(LABELS)") --images "$(IMAGES)" \
	  --output_dir "$(RESULTS)" --json $(PREDICT_ARGS)

bench-predict: install ## predict.py vs a plain serving loop and a seed-style loop (bench/results/predict.json)
	VENV=$(VENV) bench/predict

lock: ## re-resolve requirements/*.in into the lock files (needs the package registry)
	$(PY) scripts/lock.py

# Datasets (README: Prepare a dataset): annotations -> a records folder
# (training/testing .record, classes.pbtxt, dataset.json); a check of records.
DATASET_ARGS ?=
CHECK_ARGS   ?=
.PHONY: dataset check-dataset bench-dataset

dataset: install ## annotations to records: FORMAT=voc|coco|csv|lisa|yolo|labelme IMAGES=dir ANNOTATIONS=path OUT=dir
	$(PY) -m tfodkit.dataset convert --format "$(FORMAT)" --images "$(IMAGES)" \
	  --annotations "$(ANNOTATIONS)" --output_dir "$(OUT)" $(DATASET_ARGS)

check-dataset: install ## decode and validate records with TFOD's decoder: RECORDS=dir|file
	$(PY) -m tfodkit.dataset check "$(RECORDS)" $(CHECK_ARGS)

bench-dataset: install ## dataset convert vs a plain single-process converter (bench/results/dataset.json)
	VENV=$(VENV) bench/dataset

# The main job, offline on CPU: synthetic shapes -> records -> train.sh ->
# predict.py on held-out images (about 22 minutes on 2 idle cores, install included).
DEMO_DIR ?= demo
IMAGE    ?= tfodkit
TAG      ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo latest)
TF_VARIANT ?= gpu
.PHONY: demo build push test-image gpu-check bench-train bench-loop bench-determinism

demo: install-runtime ## train, evaluate, export and predict on synthetic data, offline (DEMO_DIR=demo)
	@VENV=$(VENV) scripts/demo.sh $(DEMO_DIR)

build: ## build the Docker image IMAGE:TAG; TF_VARIANT=gpu (default, CUDA wheels) or cpu (needs a Docker engine)
	docker build --build-arg TF_VARIANT=$(TF_VARIANT) -t $(IMAGE):$(TAG) .

push: ## push IMAGE:TAG, e.g. IMAGE=<account>.dkr.ecr.<region>.amazonaws.com/tfodkit
	docker push $(IMAGE):$(TAG)

test-image: install ## the image for real: cpu variant on a local Debian base, the seed's docker run, resume, non-root, sidecar
	@VENV=$(VENV) scripts/test-image.sh

gpu-check: ## on a GPU machine: doctor, then 200 steps at batch 32 on 1 and on all GPUs (steps/s, memory, JSON)
	@scripts/gpu-check.sh

bench-train: install ## toolkit vs model_main_tf2.py: steps/s and whole-pipeline wall time (8 rounds of 400 steps: about 46 min here)
	$(PY) bench/train.py

# VARIANT: what bench/loop.py sets the toolkit's loop against (mirrored | chunk100 | cli).
VARIANT ?= mirrored
bench-loop: install ## the toolkit's loop vs a variant of itself: VARIANT=mirrored|chunk100|cli (5 rounds, about 15 min)
	$(PY) bench/loop.py --variant $(VARIANT)

bench-determinism: install ## steps/s unseeded vs seed vs deterministic training (~10 min)
	$(PY) bench/determinism.py

# AWS: the ECS GPU training cluster in terraform/ (see terraform/README.md).
# TFVARS is the variables file; TF_ARGS go to terraform (e.g. -auto-approve).
TFVARS ?= terraform/config.tfvars
.PHONY: setup plan apply destroy runtask-config

setup: ## terraform init in terraform/ (downloads the AWS provider)
	@scripts/terraform.sh setup $(TF_ARGS)

plan: ## show what apply would change (TFVARS=terraform/config.tfvars)
	@TFVARS=$(TFVARS) scripts/terraform.sh plan $(TF_ARGS)

apply: ## create or update the GPU cluster on AWS (TFVARS=...)
	@TFVARS=$(TFVARS) scripts/terraform.sh apply $(TF_ARGS)

destroy: ## delete the GPU cluster and everything terraform created (TFVARS=...)
	@TFVARS=$(TFVARS) scripts/terraform.sh destroy $(TF_ARGS)

runtask-config: ## write terraform's outputs to configs.json for runtask.sh
	@scripts/terraform.sh runtask-config $(TF_ARGS)

# One training run on the cluster: runtask.sh launches it, forwards TensorBoard,
# streams its log and exits with train.sh's exit code (README: Train on AWS).
# The venv's aws CLI (v1) is used only when no other aws is on PATH.
CONFIGS       ?= configs.json
MODEL         ?= SSD MobileNet V2 FPNLite 320x320
RUNTASK_FLAGS ?=
.PHONY: runtask

runtask: ## train on AWS: make runtask RECORDS=s3://.. CONFIG=s3://.. HPARAMS=s3://.. [MODEL="..."]
	@PATH="$$PATH:$(CURDIR)/$(VENV)/bin" ./runtask.sh $(RUNTASK_FLAGS) \
	  "$(CONFIGS)" "$(RECORDS)" "$(MODEL)" "$(CONFIG)" "$(HPARAMS)"

# Sweeps (README: Sweeps): many trainings from one YAML file, ranked by a metric.
# BACKEND=local runs train.sh here one trial at a time; ecs runs the file's `parallel`
# ECS tasks at once through runtask's code (CONFIGS). Rerun the same command to continue.
BACKEND   ?= local
SWEEP_DIR ?=
.PHONY: sweep sweep-status

sweep: install-runtime ## train and rank: SWEEP=file.yaml [BACKEND=local|ecs] [SWEEP_DIR=dir] [CONFIGS=configs.json]
	@PATH="$$PATH:$(CURDIR)/$(VENV)/bin" $(PY) -m tfodkit.sweep run "$(SWEEP)" --backend "$(BACKEND)" \
	  $(if $(SWEEP_DIR),--out "$(SWEEP_DIR)") --configs "$(CONFIGS)"

sweep-status: ## a sweep's leaderboard, while it runs too: SWEEP_DIR=dir
	@$(PY) -m tfodkit.sweep status "$(SWEEP_DIR)"
