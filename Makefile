# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint build docs bench bench-quick bench-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall (and so rebuild the extension) when the build inputs change.
$(STAMP): $(PY) pyproject.toml setup.py aring/_native.pyx aring/_native.pxd $(wildcard aring/_core/*.pxi aring/includes/*.h)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

build: $(STAMP)

demo: $(STAMP)
	$(PY) -m aring demo

test: $(STAMP) lint
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check aring tests examples benchmarks
	$(VENV)/bin/mypy --strict aring
	$(VENV)/bin/mypy --strict tests/typing
	$(PY) -m mypy.stubtest --allowlist tests/stubtest_allowlist.txt aring._native

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# Debian packages the relay and HTTP rows need; named, never installed behind your back.
bench-deps:
	@missing=""; for t in socat iperf3 strace wrk ab; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then echo "make bench: missing:$$missing (Debian: apt-get install -y socat iperf3 strace wrk apache2-utils); their rows stay pending" >&2; fi

bench: $(BENCH_STAMP) bench-deps
	$(PY) benchmarks/run.py

bench-quick: $(BENCH_STAMP) bench-deps
	$(PY) benchmarks/run.py --quick

docs: $(PY)
	$(PY) -m pip install --quiet -e '.[docs]'
	$(VENV)/bin/sphinx-build -W -b html docs docs/_build/html

clean:
	rm -rf build $(VENV) aring/*.so aring/_native.c docs/_build
