# The two commands a fresh machine needs: `make repro` and `make test`.
# Both create .venv on first use and reinstall only when pyproject.toml or constraints.txt change.
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

CHROMIUM := /usr/bin/chromium

.PHONY: repro test lint params gate bench clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# Debian's Chromium runs the web bundle's page (the runtime matrix); installed as root where it is missing.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)) >/dev/null; \
	else echo "warning: no $(CHROMIUM), and not root to install it: the web bundle stays unverified"; fi

## Run the whole pipeline: compose conf/ into params.yaml, then let DVC rebuild what changed.
repro: $(STAMP) $(CHROMIUM)
	pipeline params
	dvc repro
	pipeline timings

## Lint and run the test suite (real MNIST, small configs).
test: $(STAMP) $(CHROMIUM)
	ruff check .
	pytest

## The CI parity gate: the CI-sized pipeline in a scratch copy, ending in `pipeline validate`.
gate: $(STAMP) $(CHROMIUM)
	.ci/gate

## One-run speed comparisons (ORT vs torch eager, INT8 vs fp32) on this machine.
bench: $(STAMP)
	pipeline bench

params: $(STAMP)
	pipeline params

clean-venv:
	rm -rf $(VENV)
