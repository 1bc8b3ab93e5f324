# Two commands set everything up on a fresh Debian machine and run:
#   make demo   -- the whole loop (measure -> fit -> search -> C -> deploy -> report) on the host
#   make test   -- the test suite
# Both are idempotent: apt and pip only run when something is missing or changed.

SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PKGS := build-essential python3-venv python3-dev binutils gcc-riscv64-unknown-elf binutils-riscv64-unknown-elf ccache libevent-dev libjson-c-dev verilator
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_OUT ?= demo-out
PYTEST_ARGS ?=
FUZZ_FRAMES ?= 100000
FUZZ_REPORT ?= out/fuzz-report.json

.PHONY: setup demo test bench fuzz zoo clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: setup
	$(BIN)/mico demo --out $(DEMO_OUT)

# search + deploy every zoo model on the host, one report (zoo-out/index.html)
zoo: setup
	$(BIN)/mico sweep --target host --plan zoo --store zoo-out/store.db --jobs 2 --budget 0.5 --no-progress
	$(BIN)/mico fit --store zoo-out/store.db --target host --op all --features analytic --model linear -o zoo-out/proxy.json
	$(BIN)/mico zoo --target host --proxy zoo-out/proxy.json --store zoo-out/store.db --out zoo-out

test: setup
	$(BIN)/pytest -q $(PYTEST_ARGS)

bench: setup
	$(BIN)/pytest benchmarks/test_host_timings.py --benchmark-compare --benchmark-compare-fail=median:25% --benchmark-autosave
	$(BIN)/python benchmarks/bench_kernels.py
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_proxy_fit.py
	$(BIN)/python benchmarks/bench_rtl.py
	$(BIN)/python benchmarks/bench_bitfusion.py
	$(BIN)/python benchmarks/bench_validate.py

# The protocol fuzzer against the ASan/UBSan host firmware (tests/test_hostile_firmware.py),
# FUZZ_FRAMES frames instead of the 5,000 of the test suite; the count and verdict go to FUZZ_REPORT.
fuzz: setup
	@mkdir -p $(dir $(FUZZ_REPORT))
	MICO_FUZZ_FRAMES=$(FUZZ_FRAMES) MICO_FUZZ_REPORT=$(FUZZ_REPORT) \
	  $(BIN)/pytest -q --timeout=0 tests/test_hostile_firmware.py -k fuzz; rc=$$?; cat $(FUZZ_REPORT); exit $$rc

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
