# Two commands set everything up on a fresh machine:
#   make app    installs the runtime requirements, compiles the quantizer kernels once (cached after the
#               first time) and starts the Streamlit app
#   make test   installs the test requirements and runs the test suite (what CI runs)
PYTHON ?= python3

.PHONY: install install-test chromium app test lint

install:
	$(PYTHON) -m pip install -q -r requirements.txt

install-test:
	$(PYTHON) -m pip install -q -r requirements-test.txt

app: install
	$(PYTHON) -m fmq warmup
	$(PYTHON) -m streamlit run app.py

# The browser test drives Debian's chromium (never a downloaded browser build); CI runs as root on Debian.
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium >/dev/null; } \
		|| echo "chromium could not be installed (not root?): the browser test will be skipped outside CI"

test: install-test chromium
	$(PYTHON) -m ruff check fmq tests benchmarks
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check fmq tests benchmarks
