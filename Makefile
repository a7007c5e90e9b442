# abacus — the two commands a new user needs: `make run` and `make test`.
CARGO ?= cargo
BIN := target/release/abacus
OUT ?= results/sample

.PHONY: build run test bench fmt clippy clean

build:
	$(CARGO) build --release

## Build, then count the bundled sample (data/) and print the summary and where the Parquet is.
run: build
	$(BIN) run data/sample.ndjson.zst --config data/abacus.toml --out $(OUT) --overwrite
	@echo "Parquet results: $(OUT)/part-*.parquet   summary: $(OUT)/_summary.json"

PYTHON ?= python3

## Every test: unit, property and integration tests (one release profile: the same build as `run`),
## then `make run`'s output opened with pandas, pyarrow, polars, DuckDB and Spark, and every README example
## (with a self-test that a broken example fails). The Python part needs
## tests/readers/requirements.txt (.ci/run installs it).
test:
	$(CARGO) test --release
	$(MAKE) --no-print-directory run
	$(BIN) run data/sample.ndjson.zst --config data/abacus.toml --out results/sample-parts --overwrite -q \
	    --checkpoint-dir results/sample-parts.ckpt --checkpoint-every "20000 events"  # rows in several parts
	$(PYTHON) tests/readers/test_readers.py $(OUT) results/sample-parts
	$(PYTHON) scripts/readme_examples.py
	$(PYTHON) scripts/readme_examples.py --self-test

## Throughput, memory and the DuckDB comparison; writes BENCHMARKS.md (see scripts/bench.sh).
bench: build
	python3 -m pip install -q -r scripts/requirements.txt || echo "could not install duckdb: the DuckDB comparison will be skipped"
	scripts/bench.sh

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --release --all-targets

clean:
	$(CARGO) clean
	rm -rf results bench-data
