# The two commands a new user needs: `make run` (the embedded default) and `make test`.
.PHONY: run test soak bench lint format install

# Use uv from PATH, or install it once into var/tools with the machine's own python3 and pip.
UV := $(shell command -v uv 2>/dev/null || echo var/tools/bin/uv)
PY := .venv/bin/python

# The tests run against the production shape: PostgreSQL and Redis. These defaults are the
# local services; CI sets the same variables.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

var/tools/bin/uv:
	python3 -m venv var/tools
	var/tools/bin/pip install --quiet uv

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	touch $@

install: .venv/.synced

run: install
	FC_EMBEDDED=1 $(PY) manage.py migrate --no-input
	FC_EMBEDDED=1 $(PY) manage.py collectstatic --no-input --verbosity 0
	FC_EMBEDDED=1 $(PY) manage.py demo
	FC_EMBEDDED=1 $(PY) manage.py runembedded 127.0.0.1:8000

test: install
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	SECRET_KEY=tests-only-not-a-secret \
	FC_VAR_DIR=$(CURDIR)/var/test \
	$(PY) -m pytest $(PYTEST_ARGS)

# The long proofs (docs/reliability.md): load and faults against real workers on Redis and
# PostgreSQL (tests/soak), the embedded default's 60-deploy burst five times over, and the
# slot's Hypothesis state machine and the API's schemathesis run with more examples.
# FC_SOAK_SHORT=1: the short version CI runs.
SOAK_ENV = DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	SECRET_KEY=tests-only-not-a-secret \
	FC_VAR_DIR=$(CURDIR)/var/soak \
	FC_SOAK=1

soak: install
	$(SOAK_ENV) $(PY) -m pytest tests/soak -m soak $(PYTEST_ARGS)
	if [ -z "$$FC_SOAK_SHORT" ]; then \
		$(SOAK_ENV) SLOT_EXAMPLES=150 $(PY) -m pytest $(PYTEST_ARGS) \
			tests/deploys/test_slot_stateful.py \
			"tests/test_embedded_reliability.py::test_sixty_deploys_queued_at_once_while_polled_all_merge"; \
		$(SOAK_ENV) SCHEMATHESIS_EXAMPLES=400 $(PY) -m pytest $(PYTEST_ARGS) \
			"tests/test_api_schema.py::test_every_operation_answers_as_its_schema_says"; \
	fi

bench: install
	env -u DATABASE_URL -u REDIS_URL FC_EMBEDDED=1 FC_VAR_DIR=$(CURDIR)/var/bench $(PY) -m bench

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	.venv/bin/lint-imports

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .
