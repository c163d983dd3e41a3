# The two commands a fresh machine needs: `make repro` and `make test`.
# Both create .venv on first use and reinstall only when pyproject.toml or constraints.txt change.
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

CHROMIUM := /usr/bin/chromium
VEGA     := .cache/vega/.ready

.PHONY: repro test lint params gate bench clean-venv

# uv installs the same pins as pip, faster (it downloads and links wheels in parallel). It
# gets pip's own configuration (find-links, extra index URLs: where a machine keeps local wheels, such as a CPU
# build of torch) through its variables, and considers every index as pip does.
# --compile-bytecode: uv, unlike pip, writes no .pyc files, and where PYTHONDONTWRITEBYTECODE=1 (CI images,
# many Dockerfiles; this machine) Python never writes them either, so every process (each DVC stage, each
# test's subprocess) compiled torch's and onnx's sources again before its first line of work.
UV      := uv==0.13.9
PIP_SET  = $(shell python3 -m pip config get global.$(1) 2>/dev/null)
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q $(UV)
	UV_FIND_LINKS="$${PIP_FIND_LINKS:-$(call PIP_SET,find-links)}" UV_EXTRA_INDEX_URL="$(call PIP_SET,extra-index-url)" \
	  VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/uv pip install -q --compile-bytecode --index-strategy unsafe-best-match \
	  -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# Debian's Chromium runs the web bundle's page (the runtime matrix); installed as root where it is missing.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)) >/dev/null; \
	else echo "warning: no $(CHROMIUM), and not root to install it: the web bundle stays unverified"; fi

# `dvc plots show` loads vega from here, not from a CDN (.dvc/plots/offline.html): the versions DVC names.
$(VEGA):
	mkdir -p .cache/vega && cd .cache/vega && echo '{"private": true}' > package.json && \
	  npm install --silent --no-audit --no-fund --legacy-peer-deps vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2
	touch $(VEGA)

# params.yaml is recomposed only when a conf/ file is newer: `dvc exp run -S k=v` and `pipeline params k=v`
# write it themselves, and their overrides survive `make repro` (pipeline/core/params_file.py).
params.yaml: $(shell find conf -name '*.yaml') | $(STAMP)
	pipeline params
	touch params.yaml

## Run the whole pipeline: compose conf/ into params.yaml when conf/ changed, then let DVC rebuild what changed;
## then dvc.yaml's artifacts (what each bundle ships), the stages' times and what DVC itself costs when nothing changed, and docs/results.md from metrics/.
repro: $(STAMP) $(CHROMIUM) $(VEGA) params.yaml
	dvc repro
	pipeline dvc --write
	pipeline timings --noop-repro
	pipeline results

## Lint and run the test suite (real MNIST, small configs), on one pytest-xdist worker per core (at most 4: each
## builds the session's tiny pipeline for itself); an idle worker takes queued tests from a busy one (worksteal).
test: $(STAMP) $(CHROMIUM) $(VEGA)
	ruff check .
	pytest -n auto --maxprocesses 4 --dist worksteal

## The CI parity gate: the CI-sized pipeline up to the bundles (validate, the runtime matrix) in a scratch copy.
gate: $(STAMP) $(CHROMIUM)
	.ci/gate

## One-run speed comparisons (ORT vs torch eager, INT8 vs fp32) on this machine.
bench: $(STAMP)
	pipeline bench

params: $(STAMP)
	pipeline params

clean-venv:
	rm -rf $(VENV)
