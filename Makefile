# foleyflow: the two commands a newcomer needs.
#   make demo   set up everything (system packages, .venv) and run the main job on the bundled example
#   make test   set up everything plus test dependencies and run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.foleyflow-installed

.PHONY: demo test setup test-slow clean-venv

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh $(VENV)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

clean-venv:
	rm -rf $(VENV)
