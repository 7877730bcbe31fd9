# Two entry points, each doing all set-up on a fresh machine:
#   make test   create .venv if missing, install memdedup with every extra, build the
#               compiled kernels, run the test suite; as root, also install (apt-get) and
#               start a single-node Slurm for the Slurm tests, stopped afterwards (elsewhere
#               those tests are skipped, naming why)
#   make demo   same set-up, then run the default pipeline
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
KERNELS := $(wildcard dedup/_kernels/*.py)
SLURM   := scripts/slurm-single-node.sh
AOT     := dedup/_kernels/_compiled.sha256

# The suite runs on TEST_WORKERS processes (pytest-xdist; tests/conftest.py says what runs
# together); TEST_WORKERS=0 runs it in this one.
TEST_WORKERS ?= 2
PYTEST  := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

.PHONY: test demo bench install clean bytecode

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -e '.[audit,workflow,dev]'
	touch $(STAMP)

# Ahead-of-time build of the Numba kernels for this CPU (rebuilt when a kernel changes),
# then the JIT caches for the multi-threaded path.
$(AOT): $(STAMP) $(KERNELS)
	$(PY) -m dedup._kernels.aot || echo "warning: kernel AOT build failed (no C compiler?); memdedup will use the JIT"
	$(PY) -m dedup.warmup

# Bytecode of our own modules: an editable install leaves them uncompiled, and where
# PYTHONDONTWRITEBYTECODE is set every run would compile them again (~30 ms of start-up).
# compileall skips files whose bytecode is current.
bytecode: $(STAMP)
	@$(PY) -m compileall -q dedup audit pipelines

install: $(AOT) bytecode

# A Slurm already running (started by hand) is used and left running; one started here is
# stopped when the tests end, however they end.
test: $(AOT) bytecode
	@if $(SLURM) status >/dev/null 2>&1; then \
		echo "make test: using the single-node Slurm already running"; \
		$(PYTEST); \
	else \
		trap '$(SLURM) stop' EXIT; trap 'exit 130' INT TERM; \
		$(SLURM) start || echo "make test: no Slurm here, the Slurm tests will be skipped (reason above)"; \
		$(PYTEST); \
	fi

# The default pipeline (Snakefile + configs/default.yaml) on this machine's cores.
demo: $(AOT) bytecode
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/snakemake --cores 2 --rerun-incomplete --quiet rules
	$(VENV)/bin/memdedup check results/demo --strict
	@echo
	@echo "Report: results/demo/report/comparison.html (one page per model: results/demo/report/*.html)"
	@echo "Checks: results/demo/checks.json"

bench: $(AOT) bytecode
	$(PY) bench/dedup_bench.py

clean:
	rm -rf $(VENV) results .pytest_cache *.egg-info dedup/_kernels/_compiled* dedup/_kernels/__pycache__
