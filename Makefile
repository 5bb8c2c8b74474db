# Two commands on a fresh clone: `make serve` runs the service, `make test` runs every test.
# Both create the virtualenv and install the package (and test tools) on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,fast]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/vote-ledger serve $(ARGS)

# the tests on two worker processes, one per core of the 2-core machine the suite is timed on;
# tests/conftest.py says which tests run together on one worker (--dist loadgroup)
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
