# The README's two commands: `make demo` and `make test`. Both build .venv from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck install clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Run the embedded stack: Temporal dev server, worker, local SMTP; enroll the sample leads.
demo: $(STAMP)
	LEADLOOP_TIME_SCALE=$${LEADLOOP_TIME_SCALE:-86400} $(BIN)/leadloop demo

## Run the whole test suite (SQLite and PostgreSQL, time-skipping and dev servers).
## Debian's chromium for the rep-page browser test (headless; Playwright drives it, downloads nothing).
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	command -v chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }

browser: $(CHROMIUM)

## Debian's dovecot for `leadloop inbox`'s tests: a real IMAP server a fixture starts on free loopback ports
## (tests/dovecot.py); the package's own service is not used.
DOVECOT ?= /usr/sbin/dovecot
$(DOVECOT):
	test -x $(DOVECOT) || { apt-get update -q >/dev/null && apt-get install -y -q dovecot-imapd >/dev/null; }

test: $(STAMP) $(CHROMIUM) $(DOVECOT)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy leadloop workflows activities starter scripts worker.py
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy leadloop workflows activities starter scripts worker.py

## Rebuild the shipped ranges file (leadloop/data/ranges/machine-ranges.json) from the providers' lists it was built
## from (scripts/ranges/README.md: where each copy comes from; the large ones go in scripts/ranges/downloads/).
.PHONY: ranges
ranges: $(STAMP)
	PYTHONPATH=. $(BIN)/python scripts/build_ranges.py

## Screenshot a lead's workflow page in the Temporal UI with headless chromium; run `make demo` in another
## terminal first. LEAD=3 picks the lead, OUT=FILE.png the file, TAB=history the event history tab.
LEAD ?= 1
TAB ?= user-metadata
OUT ?= .leadloop/screenshots/lead-$(LEAD).png
.PHONY: screenshot
screenshot: $(STAMP) $(CHROMIUM)
	$(BIN)/python scripts/ui_screenshot.py $(LEAD) --tab $(TAB) --output $(OUT)

## Screenshot of `leadloop report` made from a demo dataset in a temporary SQLite database (no Temporal needed), taken
## with headless chromium without network: docs/img/report.png. REPORT_PNG=FILE.png writes elsewhere.
REPORT_PNG ?= docs/img/report.png
.PHONY: report-screenshot
report-screenshot: $(STAMP) $(CHROMIUM)
	$(BIN)/python scripts/report_screenshot.py --demo --output $(REPORT_PNG)

## The benchmark: leadloop against the floors of its parts (bench/run.py; about 28 minutes with the defaults).
## BENCH_ARGS="--leads 600 --hot 30 --mem-leads 0 --configs sqlite-wal/sqlite" for a 6-minute look.
## Writes bench/results/<date>-<host>.json and .md (--out elsewhere).
BENCH_ARGS ?=
.PHONY: bench
bench: $(STAMP)
	PYTHONPATH=. $(BIN)/python bench/run.py $(BENCH_ARGS)

## The chaos run: 500 leads x 5 steps while the worker, the dev server, the SMTP server and the HTTP service are
## killed under them (bench/chaos.py; about 5 minutes). CHAOS_ARGS="--leads 100" for a quicker look.
CHAOS_ARGS ?=
.PHONY: chaos
chaos: $(STAMP)
	PYTHONPATH=. $(BIN)/python bench/chaos.py $(CHAOS_ARGS)

clean:
	rm -rf .leadloop
