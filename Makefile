# Two commands for a new user: `make run` (the whole system on the embedded default)
# and `make test` (every test). Both create .venv/ when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := tests/e2e/atp/node_modules/.installed

.PHONY: venv run test hostile faults check bench clean cluster cluster-test

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

$(NODE_STAMP): tests/e2e/atp/package-lock.json
	cd tests/e2e/atp && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

run: venv
	$(VENV)/bin/plyr-appview run

test: venv $(NODE_STAMP)
	$(PY) -m pytest

# The hostile input suite in full (10,000+ generated cases); `make test` runs its short form.
hostile: venv
	PLYR_HOSTILE=full $(PY) -m pytest tests/hostile -q -p no:cacheprovider

# The fault suite in full (every scenario, several faults each, on a real local PDS);
# `make test` runs its short form. Prints the table RELIABILITY.md quotes.
faults: venv $(NODE_STAMP)
	PLYR_FAULTS=full $(PY) -m pytest tests/faults -q -p no:cacheprovider -rA

check: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: venv
	@for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf .data

# The scaled mode on this machine: S3 (moto), Tansu on S3, PostgreSQL, ingest, two projector
# workers in consumer groups, two API processes, each its own process; Ctrl-C stops them.
cluster: venv
	$(PY) -m plyr_appview.cluster

# The cluster test in full (a real local PDS, a projector worker killed mid-stream).
cluster-test: venv $(NODE_STAMP)
	PLYR_CLUSTER_TEST=full $(PY) -m pytest tests/cluster -q -p no:cacheprovider
