# TFOD Toolkit: the front door. `make` alone lists the targets.
# Recipes call scripts; the logic lives in scripts/ and tfodkit/.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: help install doctor lint test lock

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "; printf "usage: make <target>\n\n"} \
	  /^[a-zA-Z0-9_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## create .venv from the pinned lock files (idempotent)
	@PYTHON=$(PYTHON) VENV=$(VENV) scripts/install.sh

doctor: install ## print versions, GPUs, CUDA; build one model per meta-architecture
	$(PY) -m tfodkit doctor

lint: install ## ruff, shellcheck, hadolint, terraform fmt -check
	@VENV=$(VENV) scripts/lint.sh

test: install ## run the whole test suite
	$(PY) -m pytest

lock: ## re-resolve requirements/*.in into the lock files (needs the package registry)
	$(PY) scripts/lock.py
