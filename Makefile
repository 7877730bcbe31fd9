# Two entry points, each doing all set-up on a fresh machine:
#   make test   create .venv if missing, install memdedup with every extra, run the test suite
#   make demo   same set-up, then run the default pipeline
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -e '.[audit,workflow,dev]'
	$(PY) -m dedup.warmup
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/memdedup demo --out results/demo

bench: $(STAMP)
	$(PY) bench/dedup_bench.py

clean:
	rm -rf $(VENV) results .pytest_cache *.egg-info
