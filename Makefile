# wattpay: `make demo` runs the billing job on the embedded default; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	rm -rf .wattpay/demo
	$(VENV)/bin/wattpay example .wattpay/demo/input --households 300 --days 30 --seed 7
	$(VENV)/bin/wattpay replay .wattpay/demo/input --clickhouse chdb://$(CURDIR)/.wattpay/demo/clickhouse

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/replay.py

clean:
	rm -rf $(VENV) .wattpay
