# Two commands for a fresh machine: `make run` serves, `make test` tests. Both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

SDK := app/web/static/vendor/.installed

.PHONY: run test lint clean web

$(INSTALLED): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

# The /talk page's browser SDK, from the npm registry at the versions web/package-lock.json pins.
$(SDK): web/package.json web/package-lock.json web/install-sdk.sh
	web/install-sdk.sh "$(CURDIR)/app/web/static/vendor"
	touch $(SDK)

web: $(SDK)

run: $(INSTALLED) $(SDK)
	$(VENV)/bin/ultravox-bridge serve

test: $(INSTALLED) $(SDK)
	$(PY) -m pytest

lint: $(INSTALLED)
	$(VENV)/bin/ruff check app tests
	$(VENV)/bin/ruff format --check app tests
	$(VENV)/bin/mypy app
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache web/node_modules app/web/static/vendor

# The speed benchmark (about two minutes); docs/benchmarks.md explains its output.
.PHONY: bench
bench: $(INSTALLED)
	$(PY) bench/run.py
