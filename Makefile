# Two commands set everything up on a fresh machine: `make run` and `make test`.
# Both create .venv if missing, install the package editable with its dev extra, compile the kernels,
# then do their job. Both are idempotent.

PYTHON ?= python3
# One BLAS thread: numpy's OpenBLAS pool otherwise busy-spins beside the benchmarks on 2 cores.
export OPENBLAS_NUM_THREADS := 1
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BENCH_JSON := bench-results/bench.json

.PHONY: all venv build run test bench bench-short chaos soak lint typecheck clean

all: build

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml setup.py
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "setuptools>=68" wheel "numpy>=1.26" "Cython>=3.1,<4"
	$(PY) -m pip install -q --no-build-isolation -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

# cythonize recompiles only what changed, so this is cheap when nothing did.
build: $(STAMP)
	$(PY) setup.py -q build_ext --inplace

run: build
	$(VENV)/bin/engine run

test: build
	$(PY) -m pytest -q tests
	$(MAKE) --no-print-directory bench-short

# Short benchmark run for CI: measures every kernel beside its twin and fails on a ratio below its bar.
bench-short: build
	@mkdir -p bench-results
	ENGINE_BENCH_SHORT=1 $(PY) -m pytest -q benchmarks --benchmark-only --benchmark-disable-gc \
		--benchmark-json=$(BENCH_JSON) --benchmark-columns=median > bench-results/pytest.log || (cat bench-results/pytest.log; exit 1)
	$(PY) -m benchmarks.report $(BENCH_JSON) --check
	$(PY) -m benchmarks.latency --check bench-results/latency.json

bench: build
	@mkdir -p bench-results
	$(PY) -m pytest -q benchmarks --benchmark-only --benchmark-disable-gc \
		--benchmark-json=$(BENCH_JSON) \
		--benchmark-columns=median > bench-results/pytest.log || (cat bench-results/pytest.log; exit 1)
	$(PY) -m benchmarks.report $(BENCH_JSON) --check
	$(PY) -m benchmarks.latency --check bench-results/latency.json

# Chaos scenarios against the local venue's fault injection, long version (CI runs the short one in `make test`).
chaos: build
	ENGINE_CHAOS_FULL=1 $(PY) -m pytest -q -s tests/chaos/test_chaos.py

# Soak: 24 market hours at 100x (864 s; ENGINE_SOAK_S overrides); plot and summary in var/soak/.
soak: build
	$(PY) -m tools.soak --duration-s $${ENGINE_SOAK_S:-864} --out var/soak

lint: $(STAMP)
	$(VENV)/bin/ruff check engine tests benchmarks tools setup.py

typecheck: $(STAMP)
	$(VENV)/bin/mypy

clean:
	rm -rf build bench-results engine/_ext/*.so ext/*.c ext/*.html
