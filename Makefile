# The README's two commands are `make demo` and `make test`; both set everything up.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint protos bench chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/raftplane dev --nodes 3 --data-dir .dev-cluster --demo

# mypy's settings (what it checks, how strictly) are in pyproject.toml's [tool.mypy].
lint: $(STAMP)
	$(BIN)/ruff check raftplane tests bench scripts
	$(BIN)/mypy

test: $(STAMP) lint
	$(BIN)/pytest -q tests

protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

bench: $(STAMP)
	$(BIN)/python bench/write_throughput.py --target all

# Random fault schedules, CHAOS_MINUTES of faults per run, on 3 and on 5 nodes, then as long
# of crashes at random failpoints; every run is bounded (fault count, op count, deadlines).
# Figures: .dev-cluster/chaos/results.jsonl.
CHAOS_MINUTES ?= 3
CHAOS_SEED ?= 7
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos.run --nodes 3 5 --minutes $(CHAOS_MINUTES) \
		--seed $(CHAOS_SEED) --json .dev-cluster/chaos/results.jsonl
	$(BIN)/python -m tests.chaos.run --failpoints --nodes 3 5 --minutes $(CHAOS_MINUTES) \
		--seed $(CHAOS_SEED) --json .dev-cluster/chaos/results.jsonl

clean:
	rm -rf .dev-cluster .pytest_cache
