# The two commands the README gives: `make serve` and `make test`.
# Each creates the virtual environment it needs on first use.

# The first interpreter that really runs (a pyenv shim can exist and fail)
# and is one durable-rules builds for: 3.12, 3.11, or python3 when it is one.
ifeq ($(origin PYTHON), undefined)
PYTHON := $(shell for p in python3.12 python3.11 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12)))' \
	>/dev/null 2>&1 && { command -v $$p; break; }; done)
endif
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: serve test lint typecheck check bench clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "no Python 3.11 or 3.12 found: install one, or run make PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/incident-policy serve $(ARGS)

test: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check engine api tests bench
	$(BIN)/ruff format --check engine api tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

check: $(STAMP)
	$(BIN)/incident-policy rules check rules/
	$(BIN)/incident-policy rules test rules/

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
