# The README's two commands: `make up` (start the service) and `make test` (run every test).
#   make test       ruff, then every layer of tests/ (unit, redis, stack) on two pytest
#                   processes: stack tests share xdist group "service", so one process runs
#                   them and their session stacks start once (about 5-6 min on 2 cores).
#   make browser    Debian's chromium for tests/browser/ (apt-get, with sudo when not root),
#                   when it is missing and apt-get is usable; otherwise those tests skip.
#   make test-fast  the unit layer only (tests/unit/: no Redis, no servers), same two processes.
# The first interpreter that really runs and is 3.11 or 3.12 (pyenv shims may exist but fail).
PYTHON ?= $(shell for p in python3.12 python3.11 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12)))' 2>/dev/null \
	&& { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install install-service up test test-fast lint bench clean browser

SERVICE_STAMP := $(VENV)/.installed-service

# install: everything (the service and the test tools); install-service: what `make up`
# needs only (requirements.txt, a third of the download and disk).
install: $(STAMP)
install-service: $(SERVICE_STAMP)

$(SERVICE_STAMP): requirements.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 or 3.12 is needed"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@# setuptools prints a notice on every editable install: shown only if the install fails
	@$(BIN)/python -m pip install --quiet --no-deps -e . > $(VENV)/editable.log 2>&1 \
		|| { cat $(VENV)/editable.log; exit 1; }
	touch $(SERVICE_STAMP)

$(STAMP): $(SERVICE_STAMP) requirements-test.txt
	$(BIN)/python -m pip install --quiet -r requirements-test.txt
	touch $(STAMP)

# make up ARGS="--port 8000 --concurrency 2": ARGS goes to `ser up` as it is.
up: install-service
	$(BIN)/ser up $(ARGS)

# Debian's chromium for the browser tests (Playwright drives /usr/bin/chromium; it never
# downloads a browser). Missing and not installable: tests/browser/ skips, saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if ! command -v apt-get >/dev/null 2>&1; then echo "browser: no apt-get; tests/browser/ will skip"; \
		elif [ "$$(id -u)" = 0 ]; then apt-get install -y --no-install-recommends chromium \
			|| { apt-get update && apt-get install -y --no-install-recommends chromium; } \
			|| echo "browser: chromium could not be installed; tests/browser/ will skip"; \
		elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
			sudo -n apt-get install -y --no-install-recommends chromium \
			|| { sudo -n apt-get update && sudo -n apt-get install -y --no-install-recommends chromium; } \
			|| echo "browser: chromium could not be installed; tests/browser/ will skip"; \
		else echo "browser: not root and no sudo; tests/browser/ will skip"; fi; }

test: install browser
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test-fast: install
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m unit tests/unit

bench: install
	$(BIN)/python bench/accuracy.py
	$(BIN)/python bench/featurize_speed.py

clean:
	rm -rf $(VENV) .ser .pytest_cache .ruff_cache
