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

lint: $(STAMP)
	$(BIN)/ruff check raftplane tests bench scripts

test: $(STAMP) lint
	$(BIN)/pytest -q tests

protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

bench: $(STAMP)
	$(BIN)/python bench/write_throughput.py --target all

clean:
	rm -rf .dev-cluster .pytest_cache
