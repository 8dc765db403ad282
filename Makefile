# DataFlows SMS webhook triggers. `make demo` and `make test` are the two commands; see README.md.
SHELL := /bin/bash
VENV := .local/venv
PY := $(VENV)/bin/python
export SAM_CLI_TELEMETRY := 0
export CARGO_TERM_COLOR := never

.PHONY: tools build up demo invoke test lint unit infra-test emulator-test contract integration template sam-build deploy schemas redrive soak fuzz bench clean

tools:            ## the pinned Python tools, in .local/venv
	@infra/bootstrap.sh

build:            ## the six function binaries (debug), as the local stack runs them
	cargo build --workspace --bins

up: tools build   ## the local stack in the foreground; Ctrl-C stops it
	$(PY) infra/stack.py up

demo: tools build ## publish sample events through the whole local stack and show the verified webhooks
	$(PY) infra/demo.py

invoke: tools     ## `sam local invoke` without Docker, on the running `make up`: make invoke FN=sms EVENT=events/sms.received.json
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=sms EVENT=events/sms.received.json"; exit 2; }
	$(PY) infra/invoke.py $(FN) $(EVENT) $(INVOKE_ARGS)

test: tools lint unit template infra-test emulator-test contract build integration ## everything, emulator included

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

unit:
	cargo test --workspace

template: tools    ## cfn-lint with the serverless rules, checkov, sam validate, and the deployed template after the SAM transform (tests/template)
	$(VENV)/bin/cfn-lint template.yaml --append-rules cfn_lint_serverless.rules
	@# checkov exits 1 on a finding; a template it cannot parse would pass silently, so that fails too.
	set -o pipefail; BC_SKIP_MAPPING=TRUE .local/checkov/bin/checkov --file template.yaml --framework cloudformation \
	  --quiet --compact --skip-download | tee .local/checkov.out; ! grep -q "Parsing errors" .local/checkov.out
	$(VENV)/bin/sam validate --lint
	$(PY) -m pytest -q tests/template

infra-test: tools ## infra/'s Python tools without a stack: the charts of make soak and make bench
	$(PY) -m pytest -q tests/tools

emulator-test: tools ## the emulator's DynamoDB behaviours (conflicts, throttling, size limit, accounting); no Rust
	$(PY) -m pytest -q tests/emulator

contract: tools    ## the receiver's contract: schemas/asyncapi.json through the AsyncAPI reference parser, every schema and example (tests/contract)
	$(VENV)/bin/node infra/asyncapi/validate.cjs schemas/asyncapi.json
	$(PY) -m pytest -q tests/contract

integration: tools build
	$(PY) -m pytest -q tests/integration

sam-build: tools  ## what `sam build` deploys: release binaries through cargo-lambda, for the Architecture `sam deploy` deploys
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/sam build --parameter-overrides "$$($(PY) infra/architecture.py build-overrides)"

deploy: tools     ## sam build for the deployed Architecture, check each bootstrap's machine, sam deploy; ARCH=arm64 switches first
	$(if $(ARCH),$(PY) infra/architecture.py set $(ARCH))
	$(MAKE) --no-print-directory sam-build
	$(PY) infra/architecture.py check
	$(VENV)/bin/sam deploy $(DEPLOY_ARGS)

soak: tools build ## thousands of events, failing receivers, killed functions; prints the accounting; charts in .local/charts/
	$(PY) infra/soak.py

bench: tools      ## every performance figure beside its target (docs/performance.md); release build first; charts in .local/charts/
	cargo build --release --workspace --bins --exclude dataflows-cli
	$(PY) infra/bench.py $(BENCH_ARGS)

fuzz:             ## cargo-fuzz each parser and the filter engine (FUZZ_SECONDS each, default 300)
	infra/fuzz.sh $(or $(FUZZ_SECONDS),300)

redrive:          ## move a category's dead letters back to its queue on the local stack: make redrive CATEGORY=sms
	cargo run -q -p dataflows-cli -- dead-letters redrive $(if $(CATEGORY),--category $(CATEGORY))

schemas:          ## regenerate schemas/ from the Rust types
	UPDATE_SCHEMAS=1 cargo test -p dataflows-shared --test suite schemas::

clean:
	rm -rf .local .aws-sam target
