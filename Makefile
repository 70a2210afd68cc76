# Two commands on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is installed first, on its own, so that the package's install finds it there. On plain PyPI
# torch==2.13.0 for Linux is the CUDA build with GBs of NVIDIA wheels; PyTorch's CPU index has the CPU
# build: `make install TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu`. Left empty, pip's own
# configuration decides (on these machines it finds the CPU wheel on disk).
TORCH := torch==2.13.0
TORCH_INDEX_URL ?=
# the extras the tests use (`cloud`'s gcsfs is not; its s3fs comes with dev)
EXTRAS := dev,docs,ray,atari,minatar,box2d,envpool,render,video,driving,tensorboard,plot,wandb,hub

.PHONY: install train test cluster-check clean

# A failed test prints at once (--instafail), so a suite that dies later still shows it; a Ray
# process that aborts writes its stack to Ray's own logs, not to the console: print those.
RAY_CRASHES := grep -h -A25 -e 'Check failed' -e '\*\*\* SIGABRT' -e '\*\*\* SIGSEGV' \
	/tmp/ray/session_*/logs/*.log 2>/dev/null | tail -n 80 || true

$(BIN)/distdqn: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) $(TORCH)
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]' $(TORCH)
	touch $@

install: $(BIN)/distdqn

train: install
	$(BIN)/distdqn train --env CartPole-v1 --stop-return 475

test: install
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet  # the docs site, into site/
	$(BIN)/python -m pytest -q --instafail tests || { $(RAY_CRASHES); exit 1; }

# A Ray cluster of containers on this machine through node loss, hangs, partitions and preemption
# (scripts/cluster_check.py); needs root and Docker (installed and started when missing).
cluster-check: install
	$(BIN)/python scripts/cluster_check.py

clean:
	rm -rf $(VENV) runs
