# Two commands set everything up on a fresh machine:
#   make app    installs the runtime requirements and starts the Streamlit app
#   make test   installs the test requirements and runs the test suite (what CI runs)
PYTHON ?= python3

.PHONY: install install-test app test lint

install:
	$(PYTHON) -m pip install -q -r requirements.txt

install-test:
	$(PYTHON) -m pip install -q -r requirements-test.txt

app: install
	$(PYTHON) -m streamlit run app.py

test: install-test
	$(PYTHON) -m ruff check fmq tests benchmarks
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check fmq tests benchmarks
