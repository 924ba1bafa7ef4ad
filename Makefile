# chatgate: two commands for a newcomer (`make run`, `make test`), plus the bench.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= chatgate.toml
# Optional dependencies, pyproject's extras, comma-separated: `make install EXTRAS=ldap`
# (the ldap credential provider); `make run EXTRAS=ldap` installs them before starting.
EXTRAS ?=
comma  := ,
INSTALLED := $(VENV)/.installed$(if $(EXTRAS),-$(subst $(comma),-,$(EXTRAS)))
# Processes the test suite is spread over (pytest-xdist, a test file at a time: a file's tests
# run in one process, in order, sharing its module fixtures; servers bind ports of their
# process's own range, tests/ports.py): `make test TEST_WORKERS=1` runs it in one process.
# (--dist loadfile, not loadgroup: xdist 3.8's groups do not take with pytest 9.2's node ids.)
TEST_WORKERS ?= 2
# The web chat's and the browser tests' npm packages (web/assets.lock.json), unpacked here.
WEB_ASSETS ?= web/dist

.PHONY: run test install install-test web-assets slixmpp-itests lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.$(if $(EXTRAS),[$(EXTRAS)])'
	@echo "installed chatgate$(if $(EXTRAS),[$(EXTRAS)]); optional dependencies:" \
		"make install EXTRAS=ldap (the ldap credential provider)"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(INSTALLED)

install-test: $(VENV)/.installed-test

## make web-assets: fetch the pinned converse.js and Strophe.js tarballs from the npm registry,
## verify their sha512 and unpack them into $(WEB_ASSETS); no Node needed, nothing done when current.
## The fetcher uses the standard library only, so the system Python runs it before any venv.
web-assets:
	PYTHONPATH=src $(PYTHON) -m chatgate.webassets fetch $(WEB_ASSETS)

## make slixmpp-itests: fetch slixmpp's own integration tests (its sdist on PyPI, sha256 checked)
## into .cache/interop/ for tests/interop (docs/interop.md); nothing done when current.
slixmpp-itests:
	$(PYTHON) tests/interop/fetch_slixmpp_itests.py

## make run: install into .venv, write chatgate.toml if missing, start the server in the foreground.
run: install web-assets
	$(BIN)/chatgate init --config $(CONFIG)
	exec $(BIN)/chatgate serve --config $(CONFIG)

## make test: install test dependencies (Python and Debian packages) and run the whole suite.
test: install-test web-assets slixmpp-itests
	bash tests/install-system-deps.sh
	$(BIN)/ruff check src tests $(wildcard bench) $(wildcard examples)
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

lint: install-test
	$(BIN)/ruff check src tests $(wildcard bench) $(wildcard examples)
	$(BIN)/mypy
	$(BIN)/ruff format --check src tests $(wildcard bench) $(wildcard examples)

## make bench: chatgate side by side with Prosody and ejabberd (QUICK=1 for a short run).
bench: install-test
	$(BIN)/pip install -q -e '.[bench]'
	bash bench/install-peers.sh
	$(BIN)/python -m bench.run $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) var .pytest_cache $(WEB_ASSETS) test-artifacts .cache
