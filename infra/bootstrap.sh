#!/usr/bin/env bash
# Installs the pinned local tools (infra/requirements.lock) into .local/venv. Idempotent: does
# nothing when the lock file has not changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.local/venv
stamp=$venv/.installed-lock.sha256
want=$(sha256sum infra/requirements.lock | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
python=${PYTHON:-python3}
"$python" -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is required"'
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir -r infra/requirements.lock
echo "$want" > "$stamp"
echo "local tools installed into $venv"
