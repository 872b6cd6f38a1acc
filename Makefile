# One-command entry points. `make train` runs the main job, `make test` the fast tests (-m "not slow", a few
# minutes), `make test-all` every test (what CI runs); all create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of PyTorch. GPU users: make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0

.PHONY: install train test test-all lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# `sinerec` itself sets OMP_WAIT_POLICY=PASSIVE and picks torch's threads from the idle CPUs unless they are set
# (sinerec.runtime): `make train OMP_NUM_THREADS=2` or `OMP_WAIT_POLICY=ACTIVE make train` override it.
train: install
	$(VENV)/bin/sinerec train

test: install
	$(PY) -m pytest -q -m "not slow"

test-all: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src/sinerec

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
