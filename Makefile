# Two entry points on a fresh machine (only Python needed): `make demo` and `make test`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export MPLBACKEND ?= Agg

# The suite runs against the built wheel installed in its own venv (what users get), not the source tree.
WHEEL_VENV ?= .venv-wheel
FLOOR_VENV ?= .venv-floor
PEERS_VENV ?= .venv-peers
# The wheel is tagged for this interpreter and platform (it holds the compiled add(), lossfmt/_fastadd.c):
# recipes find it by its glob.
WHEEL_GLOB := dist/lossfmt-0.1.0-*.whl
WHEEL = $$(ls $(WHEEL_GLOB))
# torch is pinned to the CPU wheel this project is tested with (any other spec downloads gigabytes).
TORCH := torch==2.13.0
# The lowest supported versions (pyproject's floors), installed exactly by `make test-floor`.
FLOOR_PINS := pyarrow==17.0.0 numpy==1.24.0 matplotlib==3.10.7 watchdog==5.0.0 google-crc32c==1.5.0 pandas==2.0.0
# What the floor run leaves out: the framework integrations and the benchmark suite (not part of the
# floor promise; they run in `make test`).
FLOOR_IGNORE := --ignore-glob='$(CURDIR)/tests/test_integrations_*' --ignore=$(CURDIR)/tests/test_bench_smoke.py
# The peers of the benchmark's comparison table, in their own venv so the dev venv keeps its versions.
PEERS := trackio aim wandb mlflow tensorboard tensorboardX

.PHONY: demo dev test test-js test-pure test-fast test-floor wheel lint ruff typecheck bench bench-quick bench-peers bench-baseline clean

# The runtime: lossfmt + lossview + pandas, editable. Enough for the demo.
$(VENV)/.base: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[pandas]'
	touch $@

# The development venv: editable, with the dev tools and the real frameworks the integrations claim.
$(VENV)/.dev: $(VENV)/.base
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev,integrations]'
	touch $@

dev: $(VENV)/.dev

demo: $(VENV)/.base
	MPLBACKEND= $(VENV)/bin/python examples/run_demo.py

# The wheel users install (build isolation: only what pyproject declares). Built into a scratch directory
# under a lock (setuptools shares build/) and moved into dist/ in one rename, so a make running beside this
# one (`make test` and `make bench-peers`) never sees dist/ without a wheel; older wheels go after.
wheel:
	mkdir -p dist
	scratch=$$(mktemp -d dist/.build.XXXXXX) && trap 'rm -rf "$$scratch"' EXIT && \
	{ command -v flock >/dev/null && lock="flock dist/.lock" || lock=; } && \
	$$lock $(PYTHON) -m pip wheel -q --no-deps -w "$$scratch" . && \
	new=$$(ls "$$scratch"/lossfmt-*.whl) && mv -f "$$new" dist/ && \
	for old in $(WHEEL_GLOB); do [ "$$old" = "dist/$${new##*/}" ] || rm -f "$$old"; done

# A venv holding the wheel's dependencies, extras included (made once; the wheel is reinstalled each run).
$(WHEEL_VENV)/.deps: pyproject.toml | wheel
	rm -rf $(WHEEL_VENV)
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install -q --upgrade pip
	$(WHEEL_VENV)/bin/python -m pip install -q $(TORCH)
	$(WHEEL_VENV)/bin/python -m pip install -q "$(WHEEL)[dev,integrations]"
	touch $@

# The test command CI runs: lint, build the wheel, install it non-editable, run the whole suite (the
# `slow` fault-injection cases included) from outside the source tree, so `import lossfmt` can only
# resolve to the installed wheel (tests/test_package.py checks it).
test: ruff wheel $(WHEEL_VENV)/.deps
	$(WHEEL_VENV)/bin/python -m pip install -q --force-reinstall --no-deps $(WHEEL)
	$(call run_suite,$(WHEEL_VENV),--slow,LOSSFMT_REQUIRE_COMPILED=1)
	$(MAKE) test-pure
	$(MAKE) test-js

# The pure-Python add() (what a build without a C compiler installs; lossfmt/_compiled.py) on the tests of
# the write side, with the same wheel: LOSSFMT_PURE_PYTHON=1 turns the extension off.
PURE_TESTS := test_compiled test_writer test_writer_inputs test_recompact test_values test_checks test_crash test_resume test_faults \
	test_signals test_compaction test_integrity test_follow test_follower test_read_race test_format_rules \
	test_integrations_torch_distributed test_integrations_keras test_close_races
test-pure: $(WHEEL_VENV)/.deps
	$(call run_suite,$(WHEEL_VENV),--slow,LOSSFMT_PURE_PYTHON=1,$(PURE_TESTS:%=$(CURDIR)/tests/%.py))

# The second implementation (spec/js) against the vectors and the installed Python package, both ways.
test-js: $(WHEEL_VENV)/.deps
	@command -v node >/dev/null && command -v npm >/dev/null || { echo "make test-js: node and npm are missing; spec/js needs them" >&2; exit 1; }
	cd spec/js && npm ci --no-audit --no-fund --silent && PYTHON=$(CURDIR)/$(WHEEL_VENV)/bin/python npm test

# The floor, proven: the lowest supported pyarrow/numpy/matplotlib pinned exactly, with the wheel.
test-floor: wheel
	rm -rf $(FLOOR_VENV)
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python -m pip install -q --upgrade pip
	$(FLOOR_VENV)/bin/python -m pip install -q $(FLOOR_PINS) "$(WHEEL)[web,polars,tensorboard]" 'pytest>=8' 'hypothesis>=6.100'
	$(FLOOR_VENV)/bin/python -m pip install -q --force-reinstall --no-deps $(WHEEL)
	$(FLOOR_VENV)/bin/python -m pip check
	$(call run_suite,$(FLOOR_VENV),$(FLOOR_IGNORE))

# run_suite(venv, pytest args[, environment[, test files]]): pytest from a scratch directory with the repo
# as rootdir (the whole suite unless files are given).
define run_suite
	scratch=$$(mktemp -d) && trap 'rm -rf "$$scratch"' EXIT && cd "$$scratch" && \
	LOSSFMT_TEST_INSTALLED=1 $(3) $(CURDIR)/$(1)/bin/python -m pytest -q -p no:cacheprovider \
	    -c $(CURDIR)/pyproject.toml --rootdir $(CURDIR) $(2) $(or $(4),$(CURDIR)/tests)
endef

# Development loop: the editable venv, the slow cases left out.
test-fast: $(VENV)/.dev
	$(PY) -m pytest -q

# The linters come from the test venv (the dev extra pins them), so CI installs one venv, not two.
ruff: $(WHEEL_VENV)/.deps
	$(WHEEL_VENV)/bin/ruff check .
	$(WHEEL_VENV)/bin/ruff format --check .

# mypy --strict (pyproject's [tool.mypy]) on the source tree; `lossview` is the folder viewer/, linked
# under build/ so mypy sees the import name; the link's paths are printed back as viewer/.
typecheck: $(WHEEL_VENV)/.deps
	mkdir -p build/typecheck && ln -sfn ../../viewer build/typecheck/lossview
	$(WHEEL_VENV)/bin/mypy 2>&1 | sed 's#build/typecheck/lossview/#viewer/#'

lint: ruff typecheck

bench: $(VENV)/.dev
	$(PY) -m bench --runs 3

bench-quick: $(VENV)/.dev
	$(PY) -m bench --quick

# The peers table (trackio, aim, wandb offline, MLflow, TensorBoard, tensorboardX), in a separate venv.
$(PEERS_VENV)/.deps: pyproject.toml | wheel
	rm -rf $(PEERS_VENV)
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install -q $(TORCH)
	$(PEERS_VENV)/bin/python -m pip install -q "$(WHEEL)" $(PEERS)
	touch $@

# Run from a scratch directory with the checkout appended to sys.path, so the wheel is what is measured.
# PEERS_ARGS: e.g. '--json /abs/run1.json --out /abs/run1.md' (paths absolute: the run is elsewhere).
PEERS_ARGS ?=
bench-peers: wheel $(PEERS_VENV)/.deps
	$(PEERS_VENV)/bin/python -m pip install -q --force-reinstall --no-deps $(WHEEL)
	scratch=$$(mktemp -d) && trap 'rm -rf "$$scratch"' EXIT && cd "$$scratch" && \
	$(CURDIR)/$(PEERS_VENV)/bin/python -c "import runpy, sys; sys.path.append('$(CURDIR)'); \
	    runpy.run_module('bench.peers', run_name='__main__')" $(PEERS_ARGS)

# Before/after (issue 10): this tree against BASELINE_REV, built into a throwaway venv, side by side.
BASELINE_REV ?= 379f98c
bench-baseline: $(VENV)/.dev
	$(PY) -m bench.baseline --rev $(BASELINE_REV)

clean:
	rm -rf $(VENV) $(WHEEL_VENV) $(FLOOR_VENV) $(PEERS_VENV) build dist runs .pytest_cache .ruff_cache .hypothesis
