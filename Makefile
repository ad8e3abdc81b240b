# llm-tiny: every command a user or CI runs. `make help` lists them.
PYTHON ?= python
PKGS := llm_tiny tok model

.DEFAULT_GOAL := help
.PHONY: help format lint test

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

format:  ## rewrite the code in place with black and ruff's fixes
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m black .

lint:  ## ruff, black --check and mypy: the same checks CI runs
	$(PYTHON) -m ruff check .
	$(PYTHON) -m black --check .
	$(PYTHON) -m mypy $(PKGS)

test:  ## the whole test suite with a coverage report
	$(PYTHON) -m pytest --cov --cov-report=term-missing:skip-covered
