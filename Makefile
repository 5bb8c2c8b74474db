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

test: $(STAMP)
	$(BIN)/pytest $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
