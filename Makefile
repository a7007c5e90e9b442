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

## Every test: unit, property and integration tests (one release profile: the same build as `run`).
test:
	$(CARGO) test --release

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
