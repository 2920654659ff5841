# docker-storage-exporter: `make run` against the local engine, `make test` for the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test lint deps venv clean accuracy dashboards bench bench-containerd

venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml setup.py exporter/sources/_walk.c exporter/sources/_bolt.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

run: venv
	$(BIN)/docker-storage-exporter $(ARGS)

deps:
	PYTHON=$(PYTHON) scripts/ensure-deps.sh

lint: venv
	$(BIN)/ruff check .

test: deps venv lint
	@# a venv made before gcc was there (make run): build the C walk now that deps installed it
	$(BIN)/python -c 'import exporter.sources._walk, exporter.sources._bolt' 2>/dev/null || $(BIN)/pip install -q -e '.[test]'
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; $(BIN)/python -m tests.harness.cleanup; exit $$rc

accuracy: deps venv
	$(BIN)/python scripts/accuracy.py --write docs/accuracy.md

dashboards: venv
	$(BIN)/python grafana/generate.py

bench: venv
	$(BIN)/python bench/scan_vs_du.py

# as root: a private containerd makes the root (cached under /tmp/dse-bench-containerd), then
# the test suite's trixie engine (containerd image store) is started, seeded, timed and stopped
bench-containerd: venv
	$(BIN)/python bench/containerd_store.py
	$(BIN)/python bench/containerd_engine.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
