# One-command entry points. Each sets up what a fresh machine lacks, then runs.
#   make demo   - the whole flow on the embedded digits data: train, export, generate, verify, bitstream,
#                 report (runs/demo/report.html)
#   make test   - the test suite on both cores
#   make bench  - benchmarks and the slow tests (writes docs/benchmarks.md)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml
	@{ command -v iverilog >/dev/null && [ -d /usr/share/datasets/fashion-mnist ]; } || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq iverilog dataset-fashion-mnist; } || \
	  echo "note: as root, apt-get install iverilog dataset-fashion-mnist (Icarus simulations, Fashion-MNIST)"
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[test,bench]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/fxp demo --force

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m slow -s
	HYPOTHESIS_PROFILE=explore $(BIN)/python -m pytest -n 2 -q tests/test_arithmetic.py tests/test_binary.py \
	  tests/test_golden.py tests/test_quantize_properties.py
	$(BIN)/python bench/bench_fxp.py --write-docs
	$(BIN)/python bench/bench_train.py --write-docs
	$(BIN)/python bench/bench_binary.py --write-docs
	$(BIN)/python bench/bench_models.py --write-docs
	$(BIN)/python bench/bench_compress.py --write-docs
	$(BIN)/python bench/bench_sparse.py --write-docs
	$(BIN)/python bench/bench_quantizers.py --write-docs
	$(BIN)/python bench/bench_verify.py --write-docs
	$(BIN)/python bench/bench_hw.py --write-docs
	$(BIN)/python bench/bench_network.py --write-docs
	$(BIN)/python bench/mutants.py --write-docs

clean:
	rm -rf $(VENV) runs build dist
