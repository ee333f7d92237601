# Everything installs into .venv with the first python3 >= 3.11 found; no root needed.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The hot-path modules are compiled with mypyc (tools/build_compiled.py), rebuilt whenever
# one of their sources changes. RELAY_PURE=1 (or `make pure`) keeps plain Python.
COMPILED_STAMP := build/mypyc/.compiled
COMPILED_SOURCES := $(shell $(PYTHON) tools/build_compiled.py sources 2>/dev/null)

.PHONY: install compiled pure run test lint bench clean

install: $(STAMP) compiled

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is required"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

ifeq ($(RELAY_PURE),1)
compiled: pure
else
compiled: $(COMPILED_STAMP)
# The compiled modules were deleted behind make's back: the stamp no longer tells the truth.
ifeq ($(wildcard relay/_mypyc__mypyc.*),)
$(shell rm -f $(COMPILED_STAMP))
endif
endif

# setuptools (mypyc's build backend) comes with a venv only up to Python 3.11.
$(COMPILED_STAMP): $(STAMP) tools/build_compiled.py $(COMPILED_SOURCES)
	$(BIN)/python -c 'import setuptools' 2>/dev/null || $(BIN)/python -m pip install --quiet setuptools
	$(BIN)/python tools/build_compiled.py build || { \
		echo "mypyc compilation failed; RELAY_PURE=1 make ... runs plain Python"; exit 1; }
	touch $@

# Plain Python: removes every compiled module (and the stamp, so `make install` rebuilds).
pure:
	$(PYTHON) tools/build_compiled.py purge

run: install
	$(BIN)/relay dev

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/run.py
	$(BIN)/python bench/projectconfigs.py
	$(BIN)/python bench/pii.py
	$(BIN)/python bench/normalize.py
	$(BIN)/python bench/kafka.py

clean: pure
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache bench/results/*.tmp
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
