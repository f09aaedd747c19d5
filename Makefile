# Two entry points on a fresh machine (only Python needed): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export MPLBACKEND ?= Agg

.PHONY: demo test lint bench clean

# The runtime: lossfmt + lossview + pandas. Enough for the demo.
$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[pandas]'
	touch $@

# Everything the tests exercise: dev tools and the real frameworks the integrations claim.
# torch is pinned to the CPU wheel this project is tested with.
$(VENV)/.dev: $(VENV)/.base
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,integrations]'
	touch $@

demo: $(VENV)/.base
	MPLBACKEND= $(VENV)/bin/python examples/run_demo.py

test: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(VENV)/.dev
	$(PY) -m bench

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .hypothesis
