# Two commands on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned first so that pip takes the CPU build; an unpinned torch pulls a CUDA build of GBs.
TORCH := torch==2.13.0

.PHONY: install train test cluster-check clean

$(BIN)/distdqn: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev,docs,ray,atari,minatar,envpool,render,driving]'
	touch $@

install: $(BIN)/distdqn

train: install
	$(BIN)/distdqn train --env CartPole-v1 --stop-return 475

test: install
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet  # the docs site, into site/
	$(BIN)/python -m pytest -q tests

# A Ray cluster of containers on this machine through node loss, hangs, partitions and preemption
# (scripts/cluster_check.py); needs root and Docker (installed and started when missing).
cluster-check: install
	$(BIN)/python scripts/cluster_check.py

clean:
	rm -rf $(VENV) runs
