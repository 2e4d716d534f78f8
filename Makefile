# Ratatoskr: `make run` starts ratd on the embedded default config; `make test` runs
# everything. Both set up .venv first when needed.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUF := npx --yes @bufbuild/buf@1.75.0
PROTOS := $(wildcard proto/ratatoskr/v1/*.proto)

.PHONY: install run test test-services lint proto check-proto bench clean stubs clients-toolchains

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[server,cpu,dev]"
	touch $(STAMP)

run: install
	$(VENV)/bin/ratd $(RATD_ARGS)

test: install clients-toolchains test-services
	$(PY) -m pytest $(PYTEST_ARGS)

# What tests start besides ratd: redis-server (tests/test_governance_redis.py), a Debian
# package installed when missing (as root; the test skips with the reason otherwise).
test-services:
	@sh client/toolchains.sh redis

lint: install
	$(VENV)/bin/ruff check client/ratatoskr server cli tests benchmarks
	$(VENV)/bin/mypy
	$(BUF) lint
	if [ -f ../shared/tools/check_wire_compat.py ]; then \
		$(PY) ../shared/tools/check_wire_compat.py proto/ > /tmp/ratatoskr-wire.txt \
		|| { cat /tmp/ratatoskr-wire.txt; exit 1; }; tail -n 1 /tmp/ratatoskr-wire.txt; \
	else echo "wire check skipped: ../shared is not beside this checkout"; fi

# Regenerate the committed Python stubs from proto/ (grpcio-tools is pinned in [dev]).
proto: install
	$(PY) -m grpc_tools.protoc -Iproto --python_out=client --pyi_out=client \
		--grpc_python_out=client $(PROTOS)

# Client stubs for Go, TypeScript, C++, Java and Ruby from proto/ (buf.gen.yaml) and the
# third-party protos in client/proto-deps/ (health, google.rpc). Go and TypeScript output
# is committed; C++, Java and Ruby output lands in gitignored client/<lang>/gen/.
stubs: clients-toolchains
	$(BUF) generate
	$(BUF) generate --template client/proto-deps/buf.gen.yaml

# What the clients' conformance tests build with (Debian packages, npm ci); quick when
# already there, never fatal: a language that cannot be set up skips its test.
clients-toolchains:
	@sh client/toolchains.sh $(CLIENT_LANGUAGES)

# The whole suite (benchmarks/suite.py): ratd vs direct vs LiteLLM, local inference vs raw
# ONNX Runtime and sentence-transformers, report and plots in benchmarks/results/. LiteLLM
# and PyTorch install into their own venvs under benchmarks/ on first use.
# BENCH_ARGS=--quick for a short pass.
bench: install
	$(PY) benchmarks/suite.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
