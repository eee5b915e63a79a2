# Missive: `make run` serves the embedded default, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint install system-deps clean

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/missive quickstart --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check app worker tests migrations bench setup.py
	$(BIN)/mypy

# Debian packages the tests drive as real servers and tools: Chromium for the browser tests
# (Playwright's own download is not used), Dovecot for the bounce mailbox, Postfix's smtp-sink
# for bench/, SpamAssassin to score every kind of mail (local tests only). Installed only when
# missing; services are not started (the tests start their own).
# WeasyPrint (the PDF edition) needs Pango (pulls in HarfBuzz, fontconfig) and a font; the tests
# read its PDFs with poppler-utils. The same runtime libraries belong in the Dockerfile.
MULTIARCH := $(shell uname -m)-linux-gnu
SYSTEM_DEPS := /usr/bin/chromium:chromium /usr/sbin/dovecot:dovecot-imapd /usr/sbin/smtp-sink:postfix \
  /usr/bin/spamassassin:spamassassin \
  /usr/lib/$(MULTIARCH)/libpangoft2-1.0.so.0:libpangoft2-1.0-0 \
  /usr/lib/$(MULTIARCH)/libharfbuzz-subset.so.0:libharfbuzz-subset0 \
  /usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf:fonts-dejavu-core \
  /usr/bin/pdftotext:poppler-utils \
  /usr/bin/npm:npm

system-deps:
	@missing=""; for dep in $(SYSTEM_DEPS); do \
	  test -e "$${dep%%:*}" || missing="$$missing $${dep##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -eq 0 ]; then sudo=; else sudo=sudo; fi; \
	  echo "installing$$missing"; \
	  $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	    $$sudo apt-get install -y -q $$missing; fi

# axe-core, which the browser tests inject to check accessibility: from npm, never copied in.
AXE := node_modules/axe-core/axe.min.js

$(AXE): package.json | system-deps
	npm install --no-audit --no-fund --silent
	touch $(AXE)

test: $(STAMP) system-deps $(AXE) lint
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache node_modules
