# The front door: `make run` sets everything up and runs the main job on the demo university;
# `make test` sets everything up and runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   ?= demo
DB     ?= sqlite:///$(DEMO)/electives.db
# The demo keeps its own pseudonym key beside its data, so it never touches ~/.config.
DEMO_ENV := ELECTIVES_KEY_FILE=$(DEMO)/secret.key

.PHONY: install run demo-data demo-model test test-deps lint format bench clean postgres

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch is pinned in pyproject and installed in the same pip command as everything that needs it.
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

demo-data: install
	@mkdir -p $(DEMO)
	$(DEMO_ENV) $(BIN)/electives synth --out $(DEMO)/university
	$(DEMO_ENV) $(BIN)/electives import $(DEMO)/university/grades.csv --db $(DB) \
	    --map student="student serial" --map term=Year+term --map course="Crs Code" \
	    --map course_name="Course Name" --map grade=total --scale percent \
	    --catalog $(DEMO)/university/catalog.csv --report $(DEMO)/import-report.json

demo-model: demo-data
	$(DEMO_ENV) $(BIN)/electives train --db $(DB) --out $(DEMO)/model --seed 0

# The main job: the whole path on the demo university (generate, import, train, evaluate, recommend for a student
# on record and a new one), then the web app and API on http://127.0.0.1:8000 (Ctrl-C stops it).
run: install
	$(DEMO_ENV) $(BIN)/electives demo --dir $(DEMO)
	@echo "serving the demo model at http://127.0.0.1:8000 (access codes: electives access-code ID)"
	$(DEMO_ENV) $(BIN)/electives serve $(DEMO)/model --db $(DB) --report-dir $(DEMO)/report --host 127.0.0.1 --port 8000

# PostgreSQL and Chromium: installed when root with apt-get, else one line naming the command to run.
test-deps:
	@bash scripts/test-deps

postgres: test-deps
	@bash scripts/postgres-up

# The caller's ELECTIVES_* settings (a key, a database ...) never reach the tests; the suite's own settings
# (ELECTIVES_DATA, ELECTIVES_TEST_*, ELECTIVES_SCREENSHOTS) do. tests/conftest.py scrubs them as well, for pytest
# run without make.
TEST_ENV = env $(foreach v,$(filter ELECTIVES_%,$(.VARIABLES)),$(if $(filter ELECTIVES_DATA ELECTIVES_SCREENSHOTS ELECTIVES_TEST_%,$(v)),,-u $(v)))

test: install postgres
	$(TEST_ENV) $(BIN)/python -m pytest -n 2 --dist loadfile -q

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(DEMO) .pytest_cache build *.egg-info src/*.egg-info
